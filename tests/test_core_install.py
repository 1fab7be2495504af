"""The core install: what a CI runner needs before the GPUs start, without torch or transformers.

`pip install -e .` brings neither (they are the `live` / `subject` extras). The reading commands
must run there: check-config on a user's launch, check-data, inspect-ckpt on safetensors (single,
sharded, with trainer_state.json), rules. The commands that do need torch say so in one line with
the command that installs it, and exit 2. Each command runs in a subprocess under
tests/helpers/without_torch.py, which refuses torch, transformers and accelerate and logs every
refused import: torch must never even be asked for. `.ci/run` runs this file (`-m core`) a third
time in a venv holding the core alone, where nothing needs blocking.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from fgclip_doctor import environment

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "helpers" / "without_torch.py"


def core(*args: str, cwd: Path, blocked: Path) -> subprocess.CompletedProcess:
    """The CLI in a subprocess as the core install runs it; refused imports are appended to `blocked`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), FGCLIP_BLOCKED_LOG=str(blocked), COLUMNS="100", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, str(HELPER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def refused(blocked: Path) -> set[str]:
    return set(blocked.read_text().split()) if blocked.exists() else set()


def as_json(result: subprocess.CompletedProcess) -> dict:
    assert result.stderr == "", result.stderr
    return json.loads(result.stdout)


def status(doc: dict, code: str) -> set[str]:
    return {f["status"] for f in doc["findings"] if f["code"] == code}


# ---- what pip installs -----------------------------------------------------------------------------


def test_the_core_has_no_torch_and_each_extra_says_what_it_adds():
    from packaging.requirements import Requirement  # pytest's own dependency

    tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda reqs: {Requirement(r).name for r in reqs}
    assert not names(project["dependencies"]) & {"torch", "transformers", "accelerate", "deepspeed"}
    extras = project["optional-dependencies"]
    assert {"torch", "transformers"} <= names(extras["live"])
    assert {"torch", "transformers", "accelerate"} <= names(extras["subject"])
    assert not names(extras["test-core"]) & {"torch", "transformers", "fgclip-doctor"}


def test_install_commands_name_this_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert environment.install_command("subject") == 'pip install -e ".[subject]"'
    monkeypatch.chdir(tmp_path)
    assert environment.install_command("live") == f'pip install -e "{ROOT}[live]"'
    assert environment.torch_install_command().endswith("--index-url https://download.pytorch.org/whl/cpu")


def test_transformers_without_torch_imports_quietly(monkeypatch):
    # transformers 5 imported without torch logs "PyTorch was not found..." (an advisory) on stderr;
    # the reading commands import it for TrainingArguments only. Verified by hand in a venv with
    # transformers 5.25 and no torch: check-config on tests/trees/fgclip_v1 with an empty stderr.
    monkeypatch.delenv("TRANSFORMERS_NO_ADVISORY_WARNINGS", raising=False)
    monkeypatch.setattr(environment, "importable", lambda name: name != "torch")
    environment.quiet_transformers_without_torch()
    assert os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] == "1"
    monkeypatch.delenv("TRANSFORMERS_NO_ADVISORY_WARNINGS")
    monkeypatch.setattr(environment, "importable", lambda name: True)  # with torch: advisories stay on
    environment.quiet_transformers_without_torch()
    assert "TRANSFORMERS_NO_ADVISORY_WARNINGS" not in os.environ


# ---- the reading commands run without torch, and never ask for it ----------------------------------


def test_rules_run_without_torch(tmp_path):
    blocked = tmp_path / "blocked"
    table = core("rules", cwd=tmp_path, blocked=blocked)
    assert table.returncode == 0 and table.stderr == "", table.stderr
    assert "FGD101" in table.stdout and "loss-plateau" in table.stdout
    one = core("rules", "step-units", cwd=tmp_path, blocked=blocked)
    assert one.returncode == 0 and "FGD301" in one.stdout
    assert refused(blocked) == set()


@pytest.mark.parametrize(
    "tree, launch, expected",
    [
        # open_clip: argparse, no HF: everything is read, transformers or not
        ("open_clip", "train.sh", {"FGD601": "WARN", "FGD201": "PASS", "FGD102": "PASS"}),
        # FG-CLIP v1: its own ModelArguments / DataArguments and the code are read; the fields of the
        # inherited TrainingArguments wait for a transformers (the note says so)
        ("fgclip_v1", "scripts/train.sh", {"FGD101": "PASS", "FGD102": "WARN", "FGD704": "PASS"}),
        ("fgclip2", "scripts/train/stage2.sh", {"FGD704": "WARN", "FGD103": "WARN"}),
    ],
)
def test_check_config_on_a_users_launch_runs_without_torch(tmp_path, tree, launch, expected):
    where = tmp_path / tree
    shutil.copytree(ROOT / "tests" / "trees" / tree, where)
    blocked = tmp_path / "blocked"
    doc = as_json(core("check-config", launch, "--format", "json", cwd=where, blocked=blocked))
    assert doc["facts"]["run.subject_known"]["value"] is False
    for code, verdict in expected.items():
        assert verdict in status(doc, code), (code, status(doc, code))
    assert "torch" not in refused(blocked)  # transformers is asked for (TrainingArguments), torch never
    table = core("check-config", launch, cwd=where, blocked=blocked)
    assert table.returncode == doc["exit_code"] and table.stderr == "", table.stderr
    if tree != "open_clip":
        assert "the fields of the base TrainingArguments are unknown" in " ".join(table.stdout.split())


def _records(folder: Path, n: int, box: list[float]) -> Path:
    """n FG-CLIP records over real PNGs, each with one box (every box `box`)."""
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        Image.new("RGB", (32, 32), (i * 20 % 255, 90, 120)).save(folder / "images" / f"{i}.png")
        negs = {str(j): f"a shape number {j}" for j in range(10)}
        info = [
            {
                "bbox": box,
                "short_expr": "a red square",
                "long_expr": "a red square on the left",
                "short_expr_negs": negs,
            }
        ]
        record = {"f_path": f"images/{i}.png", "caption": "a picture", "short_caption": "a square", "bbox_info": info}
        lines.append(json.dumps(record))
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "train.jsonl"


def test_check_data_runs_without_torch(tmp_path):
    blocked = tmp_path / "blocked"
    good = _records(tmp_path / "good", 6, [0.1, 0.1, 0.5, 0.5])
    args = ("--image-root", str(good.parent), "--check-images", "--format", "json")
    doc = as_json(core("check-data", str(good), *args, cwd=tmp_path, blocked=blocked))
    assert doc["exit_code"] == 0 and status(doc, "FGD501") == {"PASS"} and status(doc, "FGD510") == {"PASS"}
    inverted = _records(tmp_path / "bad", 6, [0.5, 0.2, 0.3, 0.4])  # x2 < x1: FG-CLIP's loader crashes
    table = core("check-data", str(inverted), cwd=tmp_path, blocked=blocked)
    assert table.returncode == 1 and table.stderr == "" and "FAIL FGD501" in table.stdout
    assert refused(blocked) == set()


def _checkpoint(folder: Path, losses: list[float]) -> Path:
    """A plain CLIP checkpoint as HF saves it sharded: two safetensors shards, their index, and a
    trainer_state.json logging `losses` at a per-device batch of 8."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shards = {
        "model-00001-of-00002.safetensors": {
            "vision_model.embeddings.patch_embedding.weight": rng.standard_normal((8, 3, 4, 4), dtype=np.float32),
            "text_model.embeddings.token_embedding.weight": rng.standard_normal((10, 8), dtype=np.float32),
        },
        "model-00002-of-00002.safetensors": {
            "logit_scale": np.array(4.6052, dtype=np.float32),
            "text_projection.weight": rng.standard_normal((8, 8), dtype=np.float32),
            "visual_projection.weight": rng.standard_normal((8, 8), dtype=np.float32),
        },
    }
    for name, tensors in shards.items():
        save_file(tensors, str(folder / name))
    weight_map = {key: name for name, tensors in shards.items() for key in tensors}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    history = [{"step": s, "loss": loss, "learning_rate": 1e-4} for s, loss in enumerate(losses, 1)]
    state = {"global_step": len(losses), "max_steps": len(losses), "train_batch_size": 8, "log_history": history}
    (folder / "trainer_state.json").write_text(json.dumps(state))
    return folder


def test_inspect_ckpt_on_safetensors_runs_without_torch(tmp_path):
    blocked = tmp_path / "blocked"
    learning = _checkpoint(tmp_path / "learning" / "checkpoint-20", [2.0 - 0.08 * s for s in range(20)])
    doc = as_json(core("inspect-ckpt", str(learning), "--format", "json", cwd=tmp_path, blocked=blocked))
    assert doc["facts"]["scale.global.value"]["value"] == pytest.approx(4.6052)
    assert doc["facts"]["ckpt.tensors"]["value"] == 5  # both shards, through the index
    assert status(doc, "FGD701") == {"PASS"} and doc["exit_code"] == 0
    stuck = _checkpoint(tmp_path / "stuck" / "checkpoint-20", [float(np.log(8))] * 20)  # chance at 8
    table = core("inspect-ckpt", str(stuck), cwd=tmp_path, blocked=blocked)
    assert table.returncode == 1 and table.stderr == "" and "FAIL FGD701" in table.stdout
    assert refused(blocked) == set()


# ---- what needs torch says so: one line, the command that installs it, exit 2 -------------------


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("fgclip-doctor: error: ") and "Traceback" not in result.stderr, line
    return line


def test_commands_that_need_torch_name_the_install(tmp_path):
    blocked = tmp_path / "blocked"
    pickle = tmp_path / "pytorch_model.bin"
    pickle.write_bytes(b"\x80\x04K\x01.")  # a pickle of the int 1: never unpickled here
    line = one_line(core("inspect-ckpt", str(pickle), cwd=tmp_path, blocked=blocked))
    assert "pytorch_model.bin" in line and "needs torch" in line
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in line
    line = one_line(core("check-config", cwd=tmp_path, blocked=blocked))  # the bundled default run
    assert "torch and transformers are not installed" in line and f'pip install -e "{ROOT}[subject]"' in line
    launch = tmp_path / "train.sh"
    launch.write_text(f"python {ROOT}/tests/helpers/train_plain_clip.py --output_dir out\n")
    line = one_line(core("live", str(launch), "--steps", "2", cwd=tmp_path, blocked=blocked))
    assert f'pip install -e "{ROOT}[live]"' in line
    assert not (tmp_path / "out").exists()
