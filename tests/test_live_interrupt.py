"""Issue 11.4: Ctrl-C during `live` (SIGINT to the doctor, single process and --nproc 2): the probe
hooks and the Trainer wrap removed, the temporary output folders removed, no process left, exit 130,
one line `fgclip-doctor: aborted`, no traceback.

The interrupt is sent once the training has started, seen by a marker the training writes per
sample it loads (never a fixed sleep); the deadline on that wait only guards against a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
psutil = pytest.importorskip("psutil")

# The plain CLIPModel training, marking each sample it loads in $FGCLIP_TEST_MARK.
MARKED_TRAINING = f"""
import os
import sys

sys.path.insert(0, {str(ROOT / "tests/helpers")!r})
import train_plain_clip as plain


class Marked(plain.RandomPairs):
    def __getitem__(self, i):
        with open(os.environ["FGCLIP_TEST_MARK"], "a") as fh:
            fh.write("x")
        return super().__getitem__(i)


plain.RandomPairs = Marked
plain.main()
"""


def _wait_for(condition, what: str, proc: subprocess.Popen, deadline_s: float = 600) -> None:
    end = time.monotonic() + deadline_s  # a hang guard, not a speed assumption
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the doctor exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"no {what} within {deadline_s} s")
        time.sleep(0.2)


def _alive(procs) -> list:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.parametrize("nproc, child", [(1, False), (2, True), (1, True)])
def test_ctrl_c_during_live_cleans_up_and_exits_130(tmp_path, nproc, child):
    (tmp_path / "train.py").write_text(MARKED_TRAINING)
    script = tmp_path / "train.sh"
    script.write_text(
        f'#!/bin/bash\ncd "$(dirname "$0")"\n{sys.executable} train.py --output_dir out \\\n'
        "  --per_device_train_batch_size 4 --report_to none --use_cpu True\n"
    )
    temp, mark = tmp_path / "tmp", tmp_path / "mark"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp), FGCLIP_TEST_MARK=str(mark))
    cmd = [sys.executable, "-m", "fgclip_doctor", "live", str(script), "--steps", "100000", "--device", "cpu"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    elif child:  # one child process (as for FG-CLIP's own checkout)
        cmd += ["--python", sys.executable]
    # SIGINT at its default in the child even when this test runs from a background job (where it
    # is ignored and the child would inherit that): the doctor then sees Ctrl-C as a terminal sends it.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    children = []
    try:
        _wait_for(lambda: mark.exists() and mark.stat().st_size >= 2 * 4 * nproc, "training step", proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= (nproc + 1 if nproc > 1 else int(child))  # torchrun and its ranks, or the child
        assert any(p.name.startswith("fgclip-doctor-") for p in temp.iterdir())  # its temp folder exists
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        left = _alive(children)
        for p in left:  # never leave a rank running, whatever failed
            p.kill()
    assert left == []  # no torchrun, no rank left behind
    assert proc.returncode == 130, err
    # The doctor's one line, last; (a transformers logger bound to the real stderr may warn before it)
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "fgclip-doctor: aborted", err
    assert [ln for ln in err.splitlines() if ln.startswith("fgclip-doctor")] == ["fgclip-doctor: aborted"]
    assert out == ""
    assert [p.name for p in temp.iterdir() if p.name.startswith("fgclip-doctor-")] == []  # temp folders removed
    assert not (tmp_path / "out").exists()


def test_interrupted_run_removes_hooks_and_restores_the_process(tmp_path, monkeypatch):
    """In-process: the probes' patches, the doctor's reporting integration, sys.argv, the cwd, the
    output descriptors and the temp folders are all undone when the training is interrupted (as
    live's caller sees it: KeyboardInterrupt)."""
    import tempfile

    import torch.nn.functional as F
    import transformers

    from fgclip_doctor.commands.live.runner import run_training
    from fgclip_doctor.sources.launch.target import read_target

    (tmp_path / "train.py").write_text(
        MARKED_TRAINING.replace(
            "plain.main()",
            "import signal\n"
            "_get = Marked.__getitem__\n"
            "MARK = os.environ['FGCLIP_TEST_MARK']\n"
            "Marked.__getitem__ = lambda self, i: (signal.raise_signal(signal.SIGINT) if os.path.exists(MARK)"
            " and os.path.getsize(MARK) > 8 else None, _get(self, i))[1]\n"
            "plain.main()",
        )
    )
    script = tmp_path / "proj.sh"
    script.write_text(f'cd "$(dirname "$0")"\n{sys.executable} train.py --output_dir out --report_to none\n')
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("FGCLIP_TEST_MARK", str(tmp_path / "mark"))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    before = (F.cross_entropy, transformers.Trainer.__init__, transformers.Trainer.train, list(sys.argv))
    descriptors = [os.fstat(fd).st_ino for fd in (1, 2)]
    # The script patches the helper module it imports (in this process): run it on a fresh copy
    # and put the original back, so later tests import an unpatched helper.
    saved = sys.modules.pop("train_plain_clip", None)
    # Python's own Ctrl-C handler for this test, even where the suite runs with SIGINT ignored.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_training(read_target(script), steps=1000, device="cpu")
    finally:
        signal.signal(signal.SIGINT, handler)
        sys.modules.pop("train_plain_clip", None)
        if saved is not None:
            sys.modules["train_plain_clip"] = saved
    assert (F.cross_entropy, transformers.Trainer.__init__, transformers.Trainer.train, sys.argv) == before
    assert "fgclip-doctor" not in INTEGRATION_TO_CALLBACK
    assert [os.fstat(fd).st_ino for fd in (1, 2)] == descriptors  # stdout / stderr point where they did
    assert os.getcwd() == str(tmp_path / "elsewhere")
    assert [p.name for p in temp.iterdir() if p.name.startswith("fgclip-doctor-")] == []
