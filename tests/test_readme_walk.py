"""The README, walked as a new user walks it: every command of its set-up, doctor and subject
sections, in the order written, in a fresh copy of the checkout, each to the exit code its comment
gives (`(exit 1)`; no mention: 0).

The copy holds what a clone of this checkout holds (`git ls-files`: tracked and not-ignored
files), so `data/` and `runs/` start absent. `fgclip-doctor` and `python` resolve to this
interpreter and the copy's code. The synthetic data and tiny base come from the session's cache
(the `synthetic_root` fixture), as they would after a first run. A few commands cannot run here as
written; the tables below say which and why, and each entry must still match a README command.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("## Set-up", "### Beside your own training code", "## The doctor", "## The subject: training offline")

#: command prefix -> why it is not run here
SKIPPED = {
    "pip install": "installs into the environment; .ci/run runs the installs from nothing (three venvs)",
    "fgclip-doctor live": "a real training run per command, minutes on a CPU; tests/test_live*.py run live",
}
#: command as written -> (what runs instead, why): fewer steps, the same kind of output and exit
SUBSTITUTED = {
    "python -m fgclip.synthetic --out data/synthetic": (
        "python -m fgclip.synthetic --out data/synthetic --base-steps 3",
        "the tiny base's 300 pretraining steps take half a minute; 3 write the same files",
    ),
    "ENABLE_RUNTIME_DIAG=1 python -m fgclip.train --preset seed-bug --output_dir runs/seed-bug": (
        "ENABLE_RUNTIME_DIAG=1 python -m fgclip.train --preset seed-bug --output_dir runs/seed-bug"
        " --max_steps 2 --save_steps 2",
        "40 optimizer steps at accumulation 8 take minutes on a CPU; 2 print the same diag lines",
    ),
}


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment): the comment starts at a `#` at the line's start or after a blank, outside
    quotes, as bash reads it."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1 :]
    return line, ""


def readme_commands(text: str) -> list[tuple[str, str, int]]:
    """(section, command, expected exit) for each command in the bash blocks of SECTIONS, in order;
    continuation lines joined, the `# comment` cut off (its `exit N` is the expected code)."""
    out, section, block, pending = [], "", None, ""
    for line in text.splitlines():
        if block is None:
            if line.startswith("#"):
                section = next((s for s in SECTIONS if line.startswith(s)), "")
            elif line.strip() == "```bash" and section:
                block = section
            continue
        if line.strip() == "```":
            block = None
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        command, comment = split_comment(pending)
        pending = ""
        if command.strip():
            m = re.search(r"\bexit (\d)\b", comment)
            out.append((block, " ".join(command.split()), int(m.group(1)) if m else 0))
    return out


def fresh_copy(dest: Path) -> Path:
    """The files a clone of this checkout would hold (tracked or new, not ignored) copied to `dest`."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: there is no clone to walk the README in")
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_the_readme_commands_parse_with_their_exit_codes():
    commands = readme_commands((ROOT / "README.md").read_text())
    sections = {section for section, _, _ in commands}
    assert sections == set(SECTIONS), sections
    assert ("## The doctor", "fgclip-doctor check-config scripts/seed_bug.sh", 1) in commands
    joined = [c for _, c, _ in commands if c.startswith("fgclip-doctor inspect-ckpt")]
    assert joined and joined[0].endswith("--expect 'region_loss@500<0.5'")  # the continuation line
    written = [c for _, c, _ in commands]
    for prefix in SKIPPED:
        assert any(c.startswith(prefix) for c in written), f"SKIPPED names no README command: {prefix}"
    for command in SUBSTITUTED:
        assert command in written, f"SUBSTITUTED names no README command: {command}"
    # the data check-data reads is made before it (a fresh clone has no data/)
    made = written.index("python -m fgclip.synthetic --out data/synthetic --no-base")
    assert made < next(i for i, c in enumerate(written) if c.startswith("fgclip-doctor check-data"))


class Walk:
    """The walk (every command in order, in a fresh copy) in a thread of its own, each command a
    subprocess as before. tests/conftest.py's `synthetic_root` starts it as soon as the synthetic data
    exists when this test is selected: its commands (about a minute, most of it one CPU core: the tiny
    run and interpreter start-ups) then run while the tests before this one do, and the test waits for
    its outcome. Started by nobody, the test starts it and waits."""

    def __init__(self, tmp: Path, synthetic_root: Path) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.stopped = False
        self.outcome: tuple[Path, list[str], int] | None = None
        self.error: BaseException | None = None
        # the environment as it is now, in the main thread: tests running beside the walk set their
        # own variables (monkeypatch), and none of those may reach the walk's commands
        self.environ = dict(os.environ)
        self.thread = threading.Thread(target=self._main, args=(tmp, synthetic_root), name="readme-walk", daemon=True)
        self.thread.start()

    def _main(self, tmp: Path, synthetic_root: Path) -> None:
        try:
            self.outcome = self._walk(tmp, synthetic_root)
        except BaseException as err:  # noqa: BLE001 - re-raised in the test by result()
            self.error = err

    def _walk(self, tmp: Path, synthetic_root: Path) -> tuple[Path, list[str], int]:
        repo = fresh_copy(tmp / "clone")
        assert not (repo / "data").exists() and not (repo / "runs").exists()
        shims = tmp / "bin"
        shims.mkdir()
        for name, target in (("python", ""), ("fgclip-doctor", " -m fgclip_doctor")):
            (shims / name).write_text(f'#!/bin/sh\nexec "{sys.executable}"{target} "$@"\n')
            (shims / name).chmod(0o755)
        env = dict(
            self.environ,
            PATH=f"{shims}{os.pathsep}{self.environ['PATH']}",
            PYTHONPATH=str(repo),
            FGCLIP_CACHE=str(synthetic_root.parent),
            COLUMNS="100",
            NO_COLOR="1",
        )
        wrong, ran = [], 0
        for _, command, expected in readme_commands((repo / "README.md").read_text()):
            if any(command.startswith(prefix) for prefix in SKIPPED):
                continue
            command = SUBSTITUTED.get(command, (command,))[0]
            returncode, stderr = self._run(command, repo, env)
            ran += 1
            if returncode != expected:
                wrong.append(f"{command}: exit {returncode}, README says {expected}\n{stderr[-1500:]}")
        return repo, wrong, ran

    def _run(self, command: str, cwd: Path, env: dict) -> tuple[int, str]:
        """`bash -c command` to its end (600 s at most), in a session of its own so that stop() ends
        all of it: (exit code, stderr)."""
        with self.lock:
            if self.stopped:
                raise RuntimeError("the README walk was stopped: the test session ended")
            self.proc = proc = subprocess.Popen(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        try:
            _, stderr = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            proc.communicate()
            raise
        return proc.returncode, stderr

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def result(self) -> tuple[Path, list[str], int]:
        """(the copy, the commands that exited otherwise than the README says, how many ran)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome

    def stop(self) -> None:
        """End a walk still running (the session is over: no command outlives it)."""
        with self.lock:
            self.stopped = True
            proc = self.proc
        if proc is not None:
            self._kill(proc)  # its communicate() in the walk's thread returns
        self.thread.join()


_STARTED: list[Walk] = []


def start_walk(tmp: Path, synthetic_root: Path) -> None:
    """Called by tests/conftest.py's `synthetic_root` (once) when this module's walk test is selected."""
    if not _STARTED:
        _STARTED.append(Walk(tmp, synthetic_root))


def stop_walk() -> None:
    """Called by tests/conftest.py at the end of the session."""
    for walk in _STARTED:
        walk.stop()


@pytest.mark.subject
def test_the_readme_runs_in_order_from_a_fresh_copy(tmp_path, synthetic_root):
    start_walk(tmp_path, synthetic_root)  # a no-op when synthetic_root started it
    repo, wrong, ran = _STARTED[0].result()
    assert wrong == [], "\n".join(wrong)
    assert ran >= 8
    assert (repo / "runs" / "tiny" / "checkpoint-60").is_dir() and (repo / "data" / "synthetic" / "base").is_dir()
    # what the walk made is ignored: a clone's `git status` shows none of it
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True)
    untracked = [line for line in status.stdout.decode().splitlines() if line.startswith("?? ")]
    assert untracked and not [line for line in untracked if line[3:].startswith(("data/", "runs/"))]
