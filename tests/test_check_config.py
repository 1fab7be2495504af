"""check-config end to end: real launch scripts, the real subject built on meta, real checkpoints."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from schema import exit_of, validate
from typer.testing import CliRunner

from fgclip_doctor.cli import app

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path("scripts")  # the copy in the test's folder (see _in_clean_dir)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_clean_dir(synthetic_root, monkeypatch, tmp_path):
    # Launch scripts use relative output dirs (runs/tiny): run from an empty folder, so a user's
    # own runs/ in the checkout (the README's training command makes one) is not resumed here.
    # The launch scripts come along, so sources read `scripts/seed_bug.sh:NN` as in the checkout.
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    monkeypatch.chdir(tmp_path)


def check(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["check-config", *args, "--format", "json"])
    assert result.exit_code in (0, 1), result.output + str(result.exception)
    doc = json.loads(result.stdout)
    validate(doc)
    assert doc["exit_code"] == result.exit_code == exit_of(doc)
    return result.exit_code, doc


def by_rule(doc: dict) -> dict[tuple[str, str], dict]:
    return {(f["rule"], f["subject"]): f for f in doc["findings"]}


def statuses(doc: dict, rule: str) -> set[str]:
    return {f["status"] for f in doc["findings"] if f["rule"] == rule}


def script(tmp_path: Path, source: Path, drop: tuple[str, ...] = (), add: str = "", out: str | None = None) -> Path:
    """A copy of a launch script without some flags, with extra flags, or another output dir."""
    lines = [ln for ln in source.read_text().splitlines() if not any(f"--{d} " in ln for d in drop)]
    text = "\n".join(lines) + "\n"
    if out is not None:
        text = re.sub(r"^OUT=.*$", f"OUT={out}", text, flags=re.M)
    if add:
        text = text.replace("    --seed 0 \\\n", f"    --seed 0 \\\n    {add} \\\n")
    path = tmp_path / source.name
    path.write_text(text)
    return path


def test_seed_bug_fails_the_three_mistakes_with_provenance():
    code, doc = check(str(SCRIPTS / "seed_bug.sh"))
    assert code == 1
    f = by_rule(doc)
    init = f[("logit-scale-init", "finegrained")]
    assert init["status"] == "FAIL" and "2.6592 (T 14.3)" in init["message"] and "4.6052 (T 100)" in init["message"]
    assert any(re.match(r"scripts/seed_bug\.sh:\d+ --logit_scale_init_value", s) for s in init["sources"])
    assert any(s.endswith("base/model.safetensors: logit_scale") for s in init["sources"])
    units = f[("step-units", "bank warmup")]
    assert units["status"] == "FAIL"
    assert "400 forward calls = optimizer step 50 at gradient accumulation 8" in units["message"]
    assert "optimizer step 40" in units["message"]
    assert any("--gradient_accumulation_steps" in s for s in units["sources"])
    assert statuses(doc, "bank-active") == {"FAIL"}
    region = f[("negatives-count", "region")]
    assert region["status"] == "FAIL" and "in-batch candidates only" in region["message"]
    assert doc["facts"]["bank.switch_on_step"]["value"] == 50
    assert doc["facts"]["train.forward_calls"]["value"] == 320


def test_from_scratch_2_6592_is_not_a_failure(tmp_path):
    path = script(tmp_path, SCRIPTS / "seed_bug.sh", drop=("model_name_or_path", "from_openai"))
    _, doc = check(str(path))
    assert doc["facts"]["model.fine_tuning"]["value"] is False
    assert statuses(doc, "logit-scale-init") == {"PASS"}
    assert "from scratch" in by_rule(doc)[("logit-scale-init", "finegrained")]["message"]
    assert statuses(doc, "bank-active") == {"FAIL"}  # the warmup is still never reached


def test_healthy_tiny_launch_passes():
    code, doc = check(str(SCRIPTS / "train_tiny.sh"))
    # every C rule judges the healthy tiny launch, and passes it: no WARN, no SKIP
    not_pass = [(f["rule"], f["subject"], f["status"]) for f in doc["findings"] if f["status"] != "PASS"]
    assert code == 0 and not_pass == [] and doc["summary"]["pass"] == len(doc["findings"]) >= 30
    facts = doc["facts"]
    assert facts["scale.finegrained.init"]["value"] == pytest.approx(4.6052, abs=1e-3)
    assert facts["bank.switch_on_step"]["value"] == 50
    assert statuses(doc, "logit-scale-init") == {"PASS"}


def test_no_argument_checks_the_default_run():
    result = runner.invoke(app, ["check-config"])
    assert result.exit_code == 0, result.output
    assert "default run" in result.stdout and "FGD101" in result.stdout


def test_gpu_script_shows_what_the_gpu_run_would_use():
    code, doc = check(str(SCRIPTS / "train_ucf_full.sh"), "--dataset-size", "120000")
    facts = doc["facts"]
    assert facts["run.launcher"]["value"] == "deepspeed" and facts["run.world_size"]["value"] == 4
    assert facts["train.global_batch"]["value"] == 16 * 4 * 8
    # HF Trainer: ceil(120000 / (16 * 4)) = 1875 batches per epoch, // 8 = 234 steps, x 10 epochs.
    assert facts["train.optimizer_steps"]["value"] == 2340
    assert facts["bank.switch_on_step"]["value"] == 7  # ceil(50 / 8)
    assert facts["train.bf16"]["value"] is True and facts["candidates.global"]["value"] == 64
    # The base weights are on the GPU machine, not here: the init check says so instead of passing.
    assert statuses(doc, "logit-scale-init") == {"SKIP"}
    assert (
        facts["model.base_readable"]["value"] is False and "not readable here" in facts["model.base_readable"]["source"]
    )


def test_resume_override_names_the_checkpoint_and_both_values(tmp_path, synthetic_root):
    from fgclip.model import FGCLIPModel

    out = tmp_path / "run"
    old = FGCLIPModel.from_clip(str(synthetic_root / "base"), new_scale_init=2.6562)
    old.save_pretrained(out / "checkpoint-20")  # the real library writes the real checkpoint
    (out / "checkpoint-20" / "trainer_state.json").write_text(json.dumps({"global_step": 20, "log_history": []}))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    code, doc = check(str(script(tmp_path, SCRIPTS / "train_tiny.sh", out=str(out))))
    assert code == 1
    f = by_rule(doc)[("resume-override", "finegrained")]
    assert f["status"] == "FAIL" and "checkpoint-20" in f["message"]
    assert "2.6562" in f["message"] and "4.6052" in f["message"]
    assert statuses(doc, "resume-auto") == {"WARN"}
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}


def test_a_warmup_hard_coded_in_init_beats_the_flag(monkeypatch):
    from fgclip import memory_bank

    original = memory_bank.RegionMemoryBank.__init__

    def hard_coded(self, dim, size=128, warmup_forward_calls=50, mask_same_caption=True):
        original(self, dim, size, 400, mask_same_caption)  # what the team's __init__ did

    monkeypatch.setattr(memory_bank.RegionMemoryBank, "__init__", hard_coded)
    code, doc = check(str(SCRIPTS / "train_tiny.sh"))
    fact = doc["facts"]["bank.warmup_forward_calls"]
    assert fact["value"] == 400 and "overrides" in fact["source"] and "--memory_bank_warmup_steps" in fact["source"]
    assert code == 1 and statuses(doc, "step-units") == {"FAIL"}


def test_junit_output_parses():
    result = runner.invoke(app, ["check-config", str(SCRIPTS / "seed_bug.sh"), "--format", "junit"])
    assert result.exit_code == 1
    suite = ET.fromstring(result.stdout).find("testsuite")
    assert suite.get("name") == "fgclip-doctor.check-config"
    failures = [tc.get("classname") for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert {"FGD101", "FGD202", "FGD301", "FGD201"} <= set(failures)
    assert int(suite.get("failures")) == len(failures)


def test_unknown_training_code_falls_back_to_flags(tmp_path):
    # code without an argument parser: its flags are read by name
    (tmp_path / "my_project").mkdir()
    (tmp_path / "my_project/train.py").write_text("import sys\n\nprint(sys.argv)\n")
    path = tmp_path / "train_other.sh"
    path.write_text(
        f"cd {tmp_path}\n"
        "torchrun --nproc_per_node 2 my_project/train.py \\\n  --per_device_train_batch_size 32 \\\n"
        "  --gradient_accumulation_steps 4 --max_steps 1000 --fp16 True --output_dir out\n"
    )
    code, doc = check(str(path))
    facts = doc["facts"]
    assert facts["run.subject_known"]["value"] is False
    assert facts["train.global_batch"]["value"] == 32 * 2 * 4
    # fp16 in code the doctor did not write: WARN (FG-CLIP's own code refuses it: FAIL there)
    assert statuses(doc, "fp16") == {"WARN"}
    assert code == (1 if any(f["status"] == "FAIL" for f in doc["findings"]) else 0)
    assert statuses(doc, "logit-scale-init") == {"SKIP"}


def one_error_line(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fgclip-doctor: error: "), result.stderr
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    one_error_line(runner.invoke(app, ["check-config", str(tmp_path / "missing.sh")]), "missing.sh", "no such file")
    nolaunch = tmp_path / "nolaunch.sh"
    nolaunch.write_text("echo hello\nls -l\n")
    one_error_line(runner.invoke(app, ["check-config", str(nolaunch)]), "no training launch")
    broken = tmp_path / "args.json"
    broken.write_text('{"max_steps": 10,\n "learning_rate": }\n')
    one_error_line(runner.invoke(app, ["check-config", str(broken)]), "args.json", "invalid JSON at line 2")
    yaml = tmp_path / "args.yaml"
    yaml.write_text("max_steps: [10\nlearning_rate: 1\n")
    one_error_line(runner.invoke(app, ["check-config", str(yaml)]), "args.yaml", "invalid YAML")
    one_error_line(runner.invoke(app, ["check-config", "--format", "xml"]))  # usage error


def test_a_flag_the_subject_rejects_fails_unknown_flag_with_its_line(tmp_path):
    # The run would die at start (HfArgumentParser), so it is a finding, not unreadable input;
    # a flag that abbreviates a real one is what argparse accepts, and so does the doctor.
    unknown = script(tmp_path, SCRIPTS / "train_tiny.sh", add="--bogus_flag 3 --memory_bank_warmup 50")
    result = runner.invoke(app, ["check-config", str(unknown), "--format", "json"])
    assert result.exit_code == 1, result.output
    findings = [f for f in json.loads(result.stdout)["findings"] if f["rule"] == "unknown-flag"]
    assert [(f["status"], f["subject"]) for f in findings] == [("FAIL", "--bogus_flag")]
    assert "unrecognized" in findings[0]["message"] and findings[0]["sources"][0].endswith("--bogus_flag")


def test_corrupt_checkpoint_in_output_dir_exits_2(tmp_path):
    ckpt = tmp_path / "run" / "checkpoint-5"
    ckpt.mkdir(parents=True)
    import torch
    from safetensors.torch import save_file

    save_file({"logit_scale": torch.tensor(4.6), "w": torch.zeros(64, 64)}, ckpt / "model.safetensors")
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    path = script(tmp_path, SCRIPTS / "train_tiny.sh", out=str(tmp_path / "run"))
    one_error_line(runner.invoke(app, ["check-config", str(path)]), "model.safetensors", "truncated")


def test_args_file_is_read_like_hfargumentparser(tmp_path, synthetic_root):
    args = {
        "model_name_or_path": str(synthetic_root / "base"),
        "base_model": str(synthetic_root / "base"),
        "from_openai": True,
        "data_path": str(synthetic_root / "train.jsonl"),
        "image_folder": str(synthetic_root),
        "add_box_loss": True,
        "use_hard_neg": True,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 2,
        "num_train_epochs": 1,
        "output_dir": str(tmp_path / "out"),
        "memory_bank_warmup_steps": 50,
    }
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args, indent=1))
    code, doc = check(str(path))
    facts = doc["facts"]
    # 512 records / 8 per device = 64 batches, // 2 = 32 optimizer steps in one epoch.
    assert facts["train.dataset_size"]["value"] == 512 and facts["train.optimizer_steps"]["value"] == 32
    assert facts["bank.switch_on_step"]["value"] == 25 and code == 0
    assert re.match(r".*args\.json:\d+ gradient_accumulation_steps", facts["train.grad_accum"]["source"])
