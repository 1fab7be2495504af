"""live on code it cannot run in its own process, and what a person at a terminal sees.

- FG-CLIP's own checkout: a package called `fgclip` (tests/trees/fgclip_v1_live, a tiny FG-CLIP
  v1-style training: global, region over a RoIAlign on the patch grid, hard negatives) runs in a
  child process that never imports the bundled subject, and its terms come back measured.
- `--python`: another interpreter runs the training (here the same one, so the test needs no venv).
- Under a pseudo-terminal (as a person runs it) the training's own output never shows; the
  progress bar does, from before the first step.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from schema import validate
from typer.testing import CliRunner

from fgclip_doctor.cli import app

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "tests" / "trees" / "fgclip_v1_live"
runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def fgclip_checkout(tmp_path) -> Path:
    """A copy of the FG-CLIP v1-style tree: its package is called `fgclip`, like FG-CLIP's."""
    checkout = tmp_path / "FG-CLIP"
    shutil.copytree(TREE, checkout)
    return checkout


def live_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["live", *args, "--format", "json"])
    assert result.exit_code in (0, 1), (result.output or "") + repr(result.exception)
    doc = json.loads(result.stdout)
    validate(doc, {"live"})
    return result.exit_code, doc


@pytest.fixture(scope="module")
def checkout_run(tmp_path_factory) -> tuple[Path, int, dict]:
    """One live run of a FG-CLIP v1-style checkout's scripts/train_tiny.sh (4 steps, probes read every
    2), from the checkout as its users run it (`fgclip` importable there): (checkout, exit code, JSON
    report). The checkout's fgclip/__init__.py appends the folder of the package the training
    imported to imported.txt, so the run also says which `fgclip` that was."""
    checkout = tmp_path_factory.mktemp("v1") / "FG-CLIP"
    shutil.copytree(TREE, checkout)
    marker = checkout / "imported.txt"
    (checkout / "fgclip" / "__init__.py").write_text(
        f"import os\nopen({str(marker)!r}, 'a').write(os.path.dirname(os.path.abspath(__file__)) + '\\n')\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(checkout)
        code, doc = live_json("scripts/train_tiny.sh", "--steps", "4", "--interval", "2")
    return checkout, code, doc


def test_fgclip_checkout_runs_in_a_child_process_and_measures_its_terms(checkout_run):
    fgclip_checkout, code, doc = checkout_run
    notes = doc["live"]["notes"]
    assert any(n.startswith("ran in a child process: the launch's own package `fgclip`") for n in notes), notes
    terms = doc["live"]["terms"]
    # measured by name: the reader placed each term at its own method (global_loss, pair_loss, hard_loss)
    assert set(terms) == {"global", "global/reverse", "region", "region/reverse", "hardneg"}, terms
    placed = [n for n in notes if n.startswith("probes placed by reading the code: ")]
    assert placed and "region at fgclip.model.fgclip_tiny:FineGrainedCLIP.pair_loss" in placed[0]
    assert "RoIAlign at fgclip.model.fgclip_tiny:roi_align" in placed[0]
    assert not any("fallback" in n for n in notes)  # every term placed: no F.* patch
    # 8 images a batch, 2 boxes an image, each box against its caption and 4 rewrites
    assert terms["global"]["columns_max"] == 8
    assert terms["region"]["columns_max"] == 16
    assert terms["hardneg"]["columns_max"] == 5
    facts = doc["facts"]
    for term in terms.values():
        assert term["loss_first"] > 0 and math.isfinite(term["logit_max"]) and term["logit_min"] < term["logit_max"]
    found = {(f["rule"], f["subject"]): f for f in doc["findings"]}
    # boxes reaching its own roi_align on the patch grid, and the box features, measured
    assert (
        found[("roi-scale", "")]["status"] == "PASS" and "live: RoIAlign outputs" in found[("roi-scale", "")]["sources"]
    )
    assert found[("region-collapse", "")]["status"] == "PASS"
    assert found[("loss-floor", "region")]["status"] == "PASS"
    assert facts["scale.finegrained.init"]["value"] == pytest.approx(2.6592, abs=1e-4)  # measured at train begin
    assert facts["train.optimizer_steps_done"]["value"] == 4
    assert [entry["step"] for entry in doc["live"]["trainer_logs"] if "loss" in entry] == [2, 4]
    assert not (fgclip_checkout / "checkpoints").exists()  # never the launch's output_dir
    assert code == doc["exit_code"]


def test_bundled_subject_is_not_imported_by_the_child(checkout_run):
    # The checkout's fgclip/__init__.py says which package the training imported (`checkout_run`).
    fgclip_checkout, _, _ = checkout_run
    assert (fgclip_checkout / "imported.txt").read_text().split() == [str(fgclip_checkout / "fgclip")]


def test_python_option_runs_the_training_with_that_interpreter(tmp_path):
    script = tmp_path / "train.sh"
    script.write_text(
        f"{sys.executable} {ROOT}/tests/helpers/train_plain_clip.py --output_dir {tmp_path}/out "
        "--per_device_train_batch_size 6 --report_to none --use_cpu True\n"
    )
    code, doc = live_json(str(script), "--steps", "2", "--interval", "1", "--python", sys.executable)
    assert doc["live"]["notes"][0] == f"ran with {sys.executable} (--python), in a child process"
    [term] = doc["live"]["terms"]
    assert doc["live"]["terms"][term]["columns_max"] == 6
    result = runner.invoke(app, ["live", str(script), "--steps", "2", "--python", str(tmp_path / "no-python")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"cannot start {tmp_path / 'no-python'}" in result.stderr


def _on_a_terminal(cmd: list[str], cwd: Path) -> tuple[int, str]:
    """Run `cmd` with stdin, stdout and stderr on a pseudo-terminal; everything it showed there."""
    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120", TERM="xterm")
    proc = subprocess.Popen(cmd, stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env=env)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end of the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return proc.wait(timeout=600), shown.decode("utf-8", errors="replace")


@pytest.mark.parametrize("nproc", [1, 2])
def test_on_a_terminal_the_training_output_never_shows_and_the_progress_does(tmp_path, nproc):
    script = tmp_path / "train.sh"
    script.write_text(
        f"{sys.executable} {ROOT}/tests/helpers/train_plain_clip.py --output_dir {tmp_path}/out "
        "--per_device_train_batch_size 4 --logging_steps 1 --use_cpu True\n"
    )
    cmd = [sys.executable, "-m", "fgclip_doctor", "live", str(script), "--steps", "6", "--interval", "2"]
    code, shown = _on_a_terminal(cmd + ["--nproc", str(nproc)], tmp_path)
    assert code == 0 or code == 1, shown[-2000:]
    assert "'loss'" not in shown and "grad_norm" not in shown and "it/s" not in shown  # the Trainer's own lines
    assert "train_runtime" not in shown
    # The bar is up before the first step: its status line, then the steps
    assert f"starting {nproc} process" in shown if nproc > 1 else "starting" in shown
    assert "/6" in shown
    assert "PASS" in shown  # the report itself


def test_deepspeed_launch_on_a_cpu_runs_without_it_and_says_what_was_dropped(fgclip_checkout, monkeypatch):
    # FG-CLIP's launch: `deepspeed fgclip/train/train_mem.py --deepspeed ./scripts/zero2.json ...`
    monkeypatch.chdir(fgclip_checkout)
    code, doc = live_json("scripts/train_ds.sh", "--steps", "2", "--interval", "1", "--device", "cpu")
    [note] = [n for n in doc["live"]["notes"] if n.startswith("--deepspeed")]
    # with DeepSpeed installed, the engine needs a GPU; without it (the compat venv), it is not there
    why = "DeepSpeed's engine needs a GPU and this run is on the CPU"
    if importlib.util.find_spec("deepspeed") is None:
        why = "DeepSpeed is not installed here"
    assert note.startswith(
        f"--deepspeed ./scripts/zero2.json left out: {why}; dropped ZeRO stage 2, optimizer offload to cpu."
    )
    assert "the batches, candidates and logits the probes measure are the same" in note.lower()
    assert {"global", "region", "hardneg"} <= set(doc["live"]["terms"])  # measured without the engine, by name


def test_what_a_deepspeed_config_asks_of_the_engine():
    from fgclip_doctor.commands.live.engine import dropped_parts

    config = {
        "zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}, "offload_optimizer": {"device": "none"}},
        "bf16": {"enabled": True},
        "fp16": {"enabled": "auto"},  # follows --fp16: no cast of its own
    }
    assert dropped_parts(config) == ["ZeRO stage 3", "parameter offload to nvme", "its bf16 cast of the whole model"]
    assert dropped_parts({}) == []
