"""check-config on launches of code that is not the bundled subject (issue 10): the launch's code is
read statically from the directory check-config runs in (copies of tests/trees/), its flags typed
against its own parser, and no rule PASSes on an assumed value. Plus FG-CLIP's own `fgclip`
package as the working directory, and `train.py -- ARGS` / `-m MOD -- ARGS` targets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from schema import exit_of
from typer.testing import CliRunner

from fgclip_doctor.cli import app

TREES = Path(__file__).parent / "trees"
REPO = Path(__file__).parents[1]


def run(cwd: Path, *args: str) -> tuple[int, dict, dict, str]:
    """(exit code, findings {(code, subject): finding}, facts {name: (value, source)}, stderr)."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, ["check-config", "--format", "json", *args])
    finally:
        os.chdir(before)
    assert result.exit_code in (0, 1), result.stderr or result.stdout
    doc = json.loads(result.stdout)
    assert result.exit_code == doc["exit_code"] == exit_of(doc)
    findings = {(f["code"], f.get("subject", "")): f for f in doc["findings"]}
    facts = {k: (v["value"], v["source"]) for k, v in doc["facts"].items()}
    return result.exit_code, findings, facts, result.stderr


def status(findings: dict, code: str, subject: str = "") -> str:
    return findings[(code, subject)]["status"]


def tree(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(TREES / name, dst)
    return dst


@pytest.mark.transformers
def test_fgclip_v1_launch(tmp_path):
    v1 = tree(tmp_path, "fgclip_v1")
    _, found, facts, _ = run(v1, "scripts/train.sh")
    # deepspeed without --num_gpus / --include / hostfile: every visible GPU, unknown here
    assert "run.world_size" not in facts and "candidates.global" not in facts
    assert status(found, "FGD201", "global") == "SKIP"
    assert "one process per visible GPU" in found[("FGD201", "global")]["message"]
    assert facts["train.auto_resume"] == (True, "fgclip/train/train_fgclip.py:50 glob checkpoint-*")
    assert status(found, "FGD401") == "PASS"  # no checkpoint-* yet
    assert facts["features.gathered.global"][0] is True and facts["features.gathered.region"][0] is False
    assert status(found, "FGD103", "logit_scale_finegraind") == "WARN"  # decays all but LayerNorm and bias
    assert status(found, "FGD102", "clamp") == "WARN"  # no clamp is never a PASS
    assert status(found, "FGD101", "finegrained") == "PASS"  # a copy of the base's logit_scale
    assert facts["train.per_device_batch"] == (512, "scripts/train.sh:21 --per_device_train_batch_size")
    assert "TrainingArguments" in facts["train.fp16"][1]  # HF code: the installed default, and it says so
    assert status(found, "FGD209") == "PASS"  # the v1 loss takes torch.distributed's world size
    # once a checkpoint-* exists, the glob resume WARNs
    ckpt = v1 / "checkpoints" / "stage2" / "checkpoint-100"
    ckpt.mkdir(parents=True)
    save_file({"logit_scale": np.array(4.6052, dtype=np.float32)}, str(ckpt / "model.safetensors"))
    _, found, _, _ = run(v1, "scripts/train.sh")
    assert status(found, "FGD401") == "WARN"


@pytest.mark.transformers
def test_fp16_fails_on_code_that_refuses_it_and_warns_elsewhere(tmp_path):
    v1 = tree(tmp_path, "fgclip_v1")
    script = v1 / "scripts/train.sh"
    script.write_text(script.read_text().replace("--bf16 True", "--fp16 True"))
    _, found, facts, _ = run(v1, "scripts/train.sh")
    assert facts["train.fp16"] == (True, "scripts/train.sh:20 --fp16")
    assert status(found, "FGD601") == "FAIL"  # its assert stops the run at start
    assert "fgclip/train/train_fgclip.py:48" in " ".join(found[("FGD601", "")]["sources"])


@pytest.mark.transformers
def test_rejected_flag_fails_naming_its_line(tmp_path):
    v1 = tree(tmp_path, "fgclip_v1")
    script = (v1 / "scripts/train.sh").read_text().replace('--report_to "none"', '--report_to "none" --warmup 200')
    (v1 / "scripts/train.sh").write_text(script)
    code, found, _, _ = run(v1, "scripts/train.sh")
    assert code == 1
    warmup = found[("FGD303", "--warmup")]
    assert warmup["status"] == "FAIL" and "ambiguous option: --warmup" in warmup["message"]
    assert warmup["message"].startswith("scripts/train.sh:30 --warmup")


def test_fgclip2_world_size_from_a_flag(tmp_path):
    v2 = tree(tmp_path, "fgclip2")
    script = v2 / "scripts/train/stage2.sh"
    _, found, facts, _ = run(v2, str(script.relative_to(v2)))
    assert status(found, "FGD209") == "WARN"  # launch world unknown (deepspeed without --num_gpus)
    assert status(found, "FGD704", "region") == "WARN" and status(found, "FGD704", "hardneg") == "WARN"
    assert status(found, "FGD704", "global") == "PASS"
    text = script.read_text()
    script.write_text(text.replace("deepspeed fgclip2", "deepspeed --num_gpus 4 fgclip2"))
    _, found, facts, _ = run(v2, str(script.relative_to(v2)))
    assert facts["run.world_size"][0] == 4 and facts["loss.world_size"][0] == 8
    assert status(found, "FGD209") == "FAIL"
    script.write_text(text.replace("deepspeed fgclip2", "deepspeed --num_gpus 8 fgclip2"))
    _, found, _, _ = run(v2, str(script.relative_to(v2)))
    assert status(found, "FGD209") == "PASS"


# A fork's per-node launch (the multi-node shape of lazymieie/FG-CLIP's stage-1 scripts, in our own
# words): everything from the environment with defaults, the loss's world size computed in bash.
FORK_LAUNCH = """#!/usr/bin/env bash
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}"
NUM_NODES="${NUM_NODES:-4}"
NUM_GPUS_PER_NODE="${NUM_GPUS_PER_NODE:-8}"
TRAIN_WORLD_SIZE="${TRAIN_WORLD_SIZE:-$((NUM_NODES * NUM_GPUS_PER_NODE))}"
cd "$ROOT"
deepspeed --hostfile "$ROOT/hostfile" --no_ssh --node_rank "${NODE_RANK:-0}" \\
  --num_nodes "$NUM_NODES" --num_gpus "$NUM_GPUS_PER_NODE" \\
  fgclip2/train/train.py --output_dir out --train_use_word_size "$TRAIN_WORLD_SIZE" \\
  --per_device_train_batch_size 288 --gradient_accumulation_steps 2 --report_to none
"""


@pytest.mark.parametrize(
    ("environ", "world", "verdict"),
    [({}, 32, "PASS"), ({"TRAIN_WORLD_SIZE": "16"}, 32, "FAIL"), ({"NUM_NODES": "2"}, 16, "PASS")],
)
def test_fork_multinode_launch_world_from_the_environment(tmp_path, monkeypatch, environ, world, verdict):
    v2 = tree(tmp_path, "fgclip2")
    script = v2 / "scripts/train/multinode.sh"
    script.write_text(FORK_LAUNCH)
    for name in ("ROOT", "NUM_NODES", "NUM_GPUS_PER_NODE", "TRAIN_WORLD_SIZE", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    _, found, facts, _ = run(tmp_path, str(script))  # from elsewhere: the script's own cd finds the tree
    assert facts["run.world_size"][0] == world and facts["run.directory"][0] == str(v2)
    assert status(found, "FGD209") == verdict


@pytest.mark.transformers
def test_hf_clipmodel_on_8_gpus_shows_64_candidates_no_pass(tmp_path):
    hf = tree(tmp_path, "run_clip")
    _, found, facts, _ = run(hf, "train.sh")
    assert facts["run.world_size"][0] == 8
    assert facts["candidates.global"][0] == 64
    assert status(found, "FGD201", "global") == "FAIL"
    assert "22252" in found[("FGD201", "global")]["message"]


def test_open_clip_carries_no_hf_defaults(tmp_path):
    oc = tree(tmp_path, "open_clip")
    code, found, facts, _ = run(oc, "train.sh")  # the script's `cd src` is followed: its code is read there
    assert facts["run.directory"] == (str(oc / "src"), "train.sh:2 cd src")
    assert not any("TrainingArguments" in src for _, src in facts.values())
    assert facts["train.per_device_batch"] == (320, "train.sh:5 --batch-size")
    assert facts["train.learning_rate"][0] == pytest.approx(1e-3)
    assert facts["train.fp16"][0] is True and "fp16 autocast" in facts["train.fp16"][1]
    assert status(found, "FGD601") == "WARN"  # --precision amp is fp16 autocast: never "fp16 off"
    assert status(found, "FGD303") == "PASS"  # --warmup: exact match before abbreviations
    # no accumulation flag: what the code does says it (nothing assumed from TrainingArguments)
    assert facts["train.grad_accum"] == (
        1,
        "open_clip_train/train.py:12: the optimizer steps on every batch of the loop at open_clip_train/train.py:7",
    )


def test_args_file_of_other_code_is_not_read_as_the_subject(tmp_path):
    (tmp_path / "args.json").write_text(json.dumps({"batch_size": 32, "learning_rate": 1e-4, "precision": "amp"}))
    _, found, facts, _ = run(tmp_path, "args.json")
    assert facts["run.subject_known"][0] is False
    assert facts["train.learning_rate"] == (1e-4, "args.json:1 learning_rate")
    for default_only in ("train.per_device_batch", "train.fp16", "train.weight_decay", "train.grad_accum"):
        assert default_only not in facts, default_only
    skip = found[("FGD101", "")]
    assert skip["status"] == "SKIP" and "--logit_scale_init_value" not in skip["message"]


@pytest.mark.transformers
def test_training_script_and_module_targets(tmp_path):
    hf = tree(tmp_path, "run_clip")
    _, found, facts, _ = run(
        hf, "run_clip.py", "--", "--per_device_train_batch_size", "12", "--output_dir", "o", "--bogus", "1"
    )
    assert facts["train.per_device_batch"] == (12, "command line --per_device_train_batch_size")
    assert facts["run.world_size"][0] == 1
    assert status(found, "FGD303", "--bogus") == "FAIL"
    oc = tree(tmp_path, "open_clip")
    _, found, facts, _ = run(oc / "src", "-m", "open_clip_train.main", "--", "--batch-size", "8", "--warmup", "5")
    assert facts["train.per_device_batch"][0] == 8 and status(found, "FGD303") == "PASS"
    result = CliRunner().invoke(app, ["check-config", "tests/fixtures/none.sh", "--", "--lr", "1"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1


def doctor(cwd: Path, *args: str, pythonpath: str = str(REPO)) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run(
        [sys.executable, "-m", "fgclip_doctor", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.transformers
def test_fgclip_checkout_as_working_directory(tmp_path):
    """FG-CLIP's own package `fgclip` first on sys.path (`python -m`, PYTHONPATH=.): read, never imported."""
    v1 = tree(tmp_path, "fgclip_v1")
    (v1 / "fgclip" / "__init__.py").write_text("raise SystemExit('the user package was imported')\n")
    checked = doctor(v1, "check-config", "scripts/train.sh", "-q", pythonpath=f".{os.pathsep}{REPO}")
    assert checked.returncode in (0, 1), checked.stderr
    assert "Traceback" not in checked.stderr and "user package" not in checked.stderr + checked.stdout
    assert "fgclip/train/train_mem.py is not the bundled subject" in " ".join(checked.stdout.split())
    # live runs FG-CLIP's package in a child process (its own `fgclip`, never the bundled one): the
    # user's __init__ above stops that child, and the doctor says so in one line
    live = doctor(v1, "live", "scripts/train.sh", pythonpath=f".{os.pathsep}{REPO}")
    assert live.returncode == 2 and live.stderr.count("\n") == 1, live.stderr
    assert "the user package was imported" in live.stderr and "is not a package" not in live.stderr
    # `-m fgclip.train` here runs FG-CLIP's package, not the subject: read as text
    (v1 / "subject.sh").write_text("python -m fgclip.train --preset tiny\n")
    other = doctor(v1, "check-config", "subject.sh", "-q")  # a package without __main__.py: python -m stops
    assert other.returncode == 2 and other.stderr.count("\n") == 1 and "Traceback" not in other.stderr, other.stderr
    assert "fgclip/train is a package without __main__.py" in other.stderr, other.stderr
    assert "recognised fgclip.train" not in other.stdout
