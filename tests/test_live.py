"""live end to end: real short runs of the subject and of code the doctor has never seen."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from schema import exit_of, validate
from typer.testing import CliRunner

from fgclip_doctor.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def live(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["live", *args, "--format", "json"])
    assert result.exit_code in (0, 1), (result.output or "") + repr(result.exception)
    doc = json.loads(result.stdout)
    validate(doc, {"live"})
    assert result.exit_code == doc["exit_code"] == exit_of(doc)
    return result.exit_code, doc


def by_rule(doc):
    return {(f["rule"], f["subject"]): f for f in doc["findings"]}


@pytest.fixture(scope="module")
def default_run(synthetic_root):
    return live("--steps", "60")


def test_default_run_passes_and_the_bank_switches_on_at_call_50(default_run):
    code, doc = default_run
    bad = [(f["rule"], f["subject"], f["message"]) for f in doc["findings"] if f["status"] in ("FAIL", "WARN")]
    assert code == 0 and not bad, bad
    assert all(f["message"] for f in doc["findings"] if f["status"] == "SKIP")  # every SKIP says why
    facts, terms = doc["facts"], doc["live"]["terms"]
    assert facts["bank.enabled_at_call"]["value"] == 50
    region = terms["region"]
    first, last = region["columns"][0], region["columns"][-1]
    assert first[1] <= 4 * 8 and last[1] - region["rows"] == 128  # in-batch -> in-batch + queue
    switch = [c for c in region["columns"] if c[1] > 4 * 8][0]
    assert switch[0] == 50  # the bank switches on at forward call 50 and its columns join that call
    assert terms["global"]["columns_max"] == 8 and terms["hardneg"]["columns_max"] == 11
    assert facts["scale.finegrained.init"]["value"] == pytest.approx(4.6052, abs=1e-3)


def test_trainable_parameters_in_no_optimizer_group_fail_lr_zero_live(synthetic_root, monkeypatch):
    # The default run holds every trainable parameter (lr-zero / parameters PASS, above); here the
    # subject's own fault hook leaves roi_projection out of the optimizer, as the seed's follow-up feared.
    monkeypatch.setenv("FGCLIP_FAULT", "roi-outside-optimizer")
    code, doc = live("--steps", "3")
    found = by_rule(doc)
    assert code == 1 and found[("lr-zero", "parameters")]["status"] == "FAIL"
    assert "roi_projection.weight" in found[("lr-zero", "parameters")]["message"]
    assert found[("lr-zero", "lr")]["status"] == "PASS" and found[("head-lr", "roi_projection")]["status"] == "FAIL"


def test_default_run_lr_zero_holds_every_parameter(default_run):
    found = by_rule(default_run[1])
    assert found[("lr-zero", "parameters")]["status"] == "PASS"
    assert "live: the model's parameters with requires_grad" in found[("lr-zero", "parameters")]["sources"]


def test_default_run_table_shows_terms(synthetic_root):
    result = runner.invoke(app, ["live", "--steps", "3"])
    assert result.exit_code in (0, 1), result.output
    for word in ("Loss terms", "region", "hardneg", "Memory bank", "Gradients", "FGD101"):
        assert word in result.stdout


def test_seed_bug_fails_measured(tmp_path, synthetic_root):
    # scripts/seed_bug.sh with 1 image per device instead of 8: the bank counts forward calls,
    # so everything the seed's run shows is unchanged, at an eighth of the CPU time; 52 steps are
    # enough to see the switch-on at forward call 400 (optimizer step 50).
    text = (
        (ROOT / "scripts" / "seed_bug.sh")
        .read_text()
        .replace("--per_device_train_batch_size 8", "--per_device_train_batch_size 1")
    )
    script = tmp_path / "seed_bug_small.sh"
    script.write_text(text)
    code, doc = live(str(script), "--steps", "52")
    assert code == 1
    f = by_rule(doc)
    assert f[("logit-scale-init", "finegrained")]["status"] == "FAIL"
    assert "T 14.3" in f[("logit-scale-init", "finegrained")]["message"]
    assert doc["facts"]["scale.finegrained.init"]["source"] == "live: model parameters at train begin"
    assert f[("step-units", "bank warmup")]["status"] == "FAIL"
    assert {x["status"] for x in doc["findings"] if x["rule"] == "bank-active"} == {"FAIL"}
    region = doc["live"]["terms"]["region"]
    # In-batch only until the bank's switch-on at forward call 400 (optimizer step 50), then + queue.
    assert doc["facts"]["bank.enabled_at_call"]["value"] == 400
    assert region["columns"][0][1] <= 1 * 4
    assert region["columns"][-1][1] - region["rows"] == 128
    assert region["ln_candidates_last"] > 4.8  # ln(in-batch + 128) as measured, not ln 4


def test_code_never_seen_plain_clip(tmp_path):
    script = tmp_path / "train_clip.sh"
    script.write_text(
        f"#!/bin/bash\n{sys.executable} {ROOT}/tests/helpers/train_plain_clip.py \\\n"
        f"  --output_dir {tmp_path}/out --per_device_train_batch_size 6 --learning_rate 1e-3 \\\n"
        "  --logit_scale_init_value 3.0 --report_to none --use_cpu True\n"
    )
    code, doc = live(str(script), "--steps", "4", "--interval", "2")
    facts = doc["facts"]
    assert facts["run.subject_known"]["value"] is False
    [term] = facts["observed.terms"]["value"]
    assert "contrastive_loss" in term  # named by call site
    assert facts[f"observed.candidates.{term}"]["value"] == 6  # candidates = batch size
    assert facts["scale.global.init"]["value"] == pytest.approx(3.0, abs=1e-6)  # the true logit scale
    assert facts[f"observed.loss.{term}.chance"]["value"] == pytest.approx(
        torch.log(torch.tensor(6.0)).item(), rel=1e-5
    )
    assert not (tmp_path / "out").exists()  # never the user's output dir


def test_bad_target_exits_2(tmp_path):
    result = runner.invoke(app, ["live", str(tmp_path / "nope.sh")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["live", "--preset", "nope"])
    assert result.exit_code == 2 and "unknown preset" in result.stderr


def test_bad_preset_is_rejected_before_any_data_is_generated(tmp_path, monkeypatch):
    import fgclip.base_model
    import fgclip.synthetic

    def never(*args, **kwargs):
        raise AssertionError("synthetic data generated for a preset that does not exist")

    monkeypatch.setenv("FGCLIP_CACHE", str(tmp_path / "cache"))  # empty: any preset work would build here
    monkeypatch.setattr(fgclip.synthetic, "generate", never)
    monkeypatch.setattr(fgclip.base_model, "pretrain_base", never)
    result = runner.invoke(app, ["live", "--preset", "nope"])
    [line] = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and result.stdout == ""
    assert line.startswith("fgclip-doctor: error: ") and "unknown preset" in line and "nope" in line
    assert not (tmp_path / "cache").exists()


def _script(tmp_path: Path, name: str, args: str) -> Path:
    path = tmp_path / f"{name}.sh"
    path.write_text(f"#!/bin/bash\n{sys.executable} {ROOT}/tests/helpers/{name}.py \\\n  {args}\n")
    return path


def test_nproc_2_gathers_and_offsets_targets(tmp_path):
    script = _script(
        tmp_path,
        "train_unoffset_ddp",
        f"--offset True --output_dir {tmp_path}/o --per_device_train_batch_size 4 --report_to none --use_cpu True",
    )
    log = tmp_path / "ranks.log"
    code, doc = live(
        str(script), "--steps", "3", "--interval", "1", "--nproc", "2", "--device", "cpu", "--log", str(log)
    )
    assert "train_runtime" in log.read_text()  # what the ranks printed (the Trainer's last log), not on the terminal
    facts = doc["facts"]
    [term] = facts["observed.terms"]["value"]
    assert facts[f"observed.candidates.{term}"]["value"] == 2 * 4  # global candidates = 2 x per-rank batch
    assert facts[f"observed.ddp.{term}.gathered"]["value"] is True
    assert {f["status"] for f in doc["findings"] if f["rule"] == "ddp-targets"} == {"PASS"}


def test_nproc_2_unoffset_targets_fail(tmp_path):
    script = _script(
        tmp_path,
        "train_unoffset_ddp",
        f"--output_dir {tmp_path}/o --per_device_train_batch_size 4 --report_to none --use_cpu True",
    )
    code, doc = live(str(script), "--steps", "3", "--interval", "1", "--nproc", "2", "--device", "cpu")
    [f] = [f for f in doc["findings"] if f["rule"] == "ddp-targets"]
    assert code == 1 and f["status"] == "FAIL" and "rank 1" in f["message"]


def test_training_that_raises_is_one_line_exit_2(tmp_path):
    # --fp16 and --bf16 together: transformers refuses them inside the script's own argument parsing,
    # on any machine (a GPU or not); the bf16 in the message brings the CPU hint under --device cpu
    script = tmp_path / "train_clip.sh"
    script.write_text(
        f"#!/bin/bash\n{sys.executable} {ROOT}/tests/helpers/train_plain_clip.py \\\n"
        f"  --output_dir {tmp_path}/out --fp16 True --bf16 True --report_to none\n"
    )
    result = runner.invoke(app, ["live", str(script), "--steps", "2", "--device", "cpu"])
    [line] = result.stderr.strip().splitlines()
    assert result.exit_code == 2
    assert "the training raised ValueError" in line and "bf16" in line
    assert "train_plain_clip.py:" in line  # the launched code's frame, not the library's
    assert "--device cuda" in line  # the hint


def test_subject_bf16_launch_runs_on_the_cpu(tmp_path, synthetic_root):
    # The subject gets --use_cpu before TrainingArguments validates, so a bf16 launch runs on a CPU too
    text = (ROOT / "scripts" / "train_tiny.sh").read_text().replace("--seed 0", "--seed 0 --bf16 True")
    script = tmp_path / "tiny_bf16.sh"
    script.write_text(text.replace("OUT=${OUT:-runs/tiny}", f"OUT={tmp_path}/out"))
    code, doc = live(str(script), "--steps", "2", "--interval", "1", "--device", "cpu")
    dtypes = {t["dtype"] for t in doc["live"]["terms"].values()}
    assert dtypes == {"torch.bfloat16"}, dtypes  # the logits ran in bf16 autocast, as the launch says
    assert not (tmp_path / "out").exists()
    # Real-run silences: global starts at ln 100 and the clamp holds it there (not a frozen scale);
    # the bank (warmup 50 forward calls) never switched on in 2 steps, and the SKIP says so.
    frozen = by_rule(doc)[("logit-scale-frozen", "global")]
    assert frozen["status"] == "PASS" and "clamp ceiling" in frozen["message"]
    assert all(f["status"] != "WARN" for f in doc["findings"] if f["rule"] == "logit-scale-frozen")
    [fneg] = [f for f in doc["findings"] if f["rule"] == "bank-false-negatives"]
    assert fneg["status"] == "SKIP" and "never switched on in this run" in fneg["message"]


def test_default_run_keeps_the_trainer_logs_in_the_json(default_run):
    _, doc = default_run
    logs = [entry for entry in doc["live"]["trainer_logs"] if "loss" in entry]
    assert [entry["step"] for entry in logs] == list(range(5, 61, 5))  # logging_steps 5 of the tiny preset
    assert all("doctor/fail" in entry for entry in logs)  # the callback's own keys, as in a user's run


@pytest.mark.timeout(1800)  # live in a subprocess (up to 900 s)
def test_default_live_fits_two_screens_and_keeps_the_training_output_in_the_log(synthetic_root, tmp_path):
    import os
    import subprocess

    log = tmp_path / "train.log"
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "fgclip_doctor", "live", "--steps", "60", "--log", str(log)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    shown = result.stdout.splitlines() + result.stderr.splitlines()
    assert len(shown) <= 120, len(shown)
    assert max(len(line) for line in result.stdout.splitlines()) <= 100
    assert not [line for line in shown if line.startswith("{'loss'") or "it/s]" in line]  # not echoed
    assert "\x1b[" not in result.stderr  # off a terminal: no progress bar
    written = log.read_text()
    assert written.count("{'loss'") == 12  # every logging step of 60 (logging_steps 5)


def test_progress_bar_shows_each_loss_term_on_a_terminal_only():
    import io

    from rich.console import Console

    from fgclip_doctor.commands.live.progress import ProgressBar

    snapshot = {"terms": {"global": {"loss_sum": 0.8, "loss_calls": 2}, "region": {"loss_sum": 6.4, "loss_calls": 2}}}
    for terminal in (True, False):
        out = io.StringIO()
        bar = ProgressBar(60, Console(file=out, force_terminal=terminal, width=100)).start()
        bar.update(5, [snapshot])
        bar.progress.refresh()
        bar.stop()
        text = out.getvalue()
        if terminal:
            assert "5/60" in text and "global 0.4" in text and "region 3.2" in text
        else:
            assert text == ""
