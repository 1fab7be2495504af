"""Running a training program the doctor did not write, with a probe callback, as its own launch would.

Nothing here replaces a method of transformers. The run's overrides are the program's own flags,
appended to its arguments (HfArgumentParser, like argparse, keeps the last value of a repeated
flag), so `TrainingArguments` is built and validated with them before any Trainer exists:
`max_steps`, a temporary `output_dir` (never the user's, so nothing to resume), no saving, no tqdm,
and `report_to` naming only the doctor. The callback enters the Trainer as that reporting
integration: transformers builds a run's reporting callbacks from `report_to` through its
integration table (`INTEGRATION_TO_CALLBACK`), which holds the doctor's callback for the
duration of the run only (an instance there is used as is, `CallbackHandler.add_callback`).

Used in the doctor's process (commands/live/runner.py) and in a child process that must never
import the bundled subject (probes/child.py): stdlib, torch and transformers only.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

#: the `report_to` name the doctor's callback is registered under for a run
INTEGRATION = "fgclip-doctor"
#: the TrainingArguments fields live sets through the program's flags
OVERRIDDEN = ("max_steps", "output_dir", "report_to", "disable_tqdm", "save_strategy", "use_cpu")
#: flags of the launch a live run drops: it never resumes, never writes where the launch writes
DROPPED = ("resume_from_checkpoint",)


def override_flags(steps: int, output_dir: str, save: bool, device: str) -> list[str]:
    """The flags appended after the launch's own: they win, and are validated with the rest."""
    flags = ["--max_steps", str(steps), "--output_dir", output_dir, "--report_to", INTEGRATION]
    flags += ["--disable_tqdm", "True"]
    if not save:
        flags += ["--save_strategy", "no"]
    if device == "cpu":  # before TrainingArguments validates: a --bf16 launch is refused on a CPU without it
        flags += ["--use_cpu", "True"]
    return flags


@contextlib.contextmanager
def registered(callback) -> Iterator[None]:
    """`report_to=fgclip-doctor` gives the Trainer `callback` for the block; closed after."""
    from transformers.integrations import integration_utils

    table = integration_utils.INTEGRATION_TO_CALLBACK
    table[INTEGRATION] = callback
    try:
        yield
    finally:
        table.pop(INTEGRATION, None)
        callback.close()


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Everything printed in the block goes to `path`: file descriptors 1 and 2 (C code, loggers
    bound to the real stderr, subprocesses) and sys.stdout / sys.stderr. Restored after."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    with open(path, "a", encoding="utf-8", errors="replace", buffering=1) as sink:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:  # no such descriptor (an embedded interpreter): Python-level only
                pass
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """chdir to `path` for the block (restored after, also on error or Ctrl-C). OSError if it cannot."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_entry(entry: str, kind: str, argv: list[str], paths: list[str] = ()) -> None:
    """Run `entry` (a script path, or a module for kind "module") as `__main__` with `argv`, from
    the working directory, with sys.path[0] as python sets it and the launch's PYTHONPATH entries
    (`paths`) after it. Exceptions (SystemExit too) pass."""
    saved, saved_path = sys.argv, list(sys.path)
    sys.argv = [entry] + list(argv)
    script = kind != "module"
    sys.path[:0] = [str(Path(entry).resolve().parent if script else Path.cwd()), *paths]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*found in sys.modules.*", category=RuntimeWarning)
            if script:
                runpy.run_path(entry, run_name="__main__")
            else:
                runpy.run_module(entry, run_name="__main__", alter_sys=True)
    finally:
        sys.path[:] = saved_path
        sys.argv = saved


def last_line(text: str) -> str:
    """The last non-empty line the training printed (its own error message, usually)."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def training_error(err: BaseException, device: str) -> str:
    """`the training raised ValueError: ... (at file.py:12)`, the innermost frame of the user's
    code, plus a hint for bf16 on a CPU."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    libraries = ("site-packages", "dist-packages", sysconfig.get_paths()["stdlib"], str(Path(__file__).parents[1]))
    own = [f for f in frames if not f.filename.startswith("<") and not any(p in f.filename for p in libraries)]
    frame = (own or frames or [None])[-1]
    where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
    text = " ".join(str(err).split()) or "no message"
    hint = ""
    if device == "cpu" and "bf16" in text:
        hint = "; live runs on the CPU here: --device cuda on a GPU machine, or --use_cpu True in the launch"
    return f"the training raised {type(err).__name__}: {text}{where}{hint}"


def exit_message(code: object, output: str) -> str | None:
    """What a SystemExit of the training means: None for a clean exit, else one line."""
    if code in (None, 0):
        return None
    said = last_line(output)
    return f"the training exited with {code!r}" + (f": {said}" if said else "")
