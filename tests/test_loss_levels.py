"""Issue 12 on real runs: lr-zero (FGD603), loss-floor (FGD705), loss-plateau (FGD706), the low side
of logit-scale-clamp, loss-chance's trend, sigmoid losses, temperatures as numbers.

Plain transformers CLIPModel / SiglipModel Trainer scripts (tests/helpers) write the checkpoints;
`inspect-ckpt`, `check-config` and `live` judge them as a user would run them.
"""

from __future__ import annotations

import json
import math
import runpy
import sys
from pathlib import Path

import pytest
from schema import exit_of
from typer.testing import CliRunner

from fgclip_doctor.cli import app
from fgclip_doctor.sources.derived import chance_level, loss_floor

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
NEW = ("lr-zero", "loss-floor", "loss-plateau")


def doctor(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code in (0, 1), (result.output or "") + repr(result.exception)
    doc = json.loads(result.stdout)
    assert result.exit_code == doc["exit_code"] == exit_of(doc)
    return result.exit_code, doc


def status(doc: dict, rule: str, subject: str | None = None) -> set[str]:
    return {f["status"] for f in doc["findings"] if f["rule"] == rule and subject in (None, f["subject"])}


def fails(doc: dict) -> set[str]:
    return {f["rule"] for f in doc["findings"] if f["status"] == "FAIL"}


def fact(doc: dict, name: str):
    return doc["facts"][name]["value"]


def clip_args(out: Path, lr: str, scale: str, steps: int = 12, *extra: str, helper: str = "train_plain_clip") -> list:
    flag = "--logit_scale_init" if helper == "train_plain_siglip" else "--logit_scale_init_value"
    return [
        sys.executable,
        str(ROOT / "tests" / "helpers" / f"{helper}.py"),
        *("--output_dir", str(out), "--per_device_train_batch_size", "64", "--max_steps", str(steps)),
        *("--learning_rate", lr, flag, scale, "--logging_steps", "1", "--save_steps", str(steps)),
        *("--report_to", "none", "--use_cpu", "True", *extra),
    ]


# the `runs` fixture trains three plain-CLIP runs in one test's setup
pytestmark = pytest.mark.timeout(1800)


def train(args: list) -> None:
    """`python SCRIPT FLAGS...` (args as clip_args builds them), run in this process: the script as
    `__main__` with sys.argv = [SCRIPT, FLAGS...] and the cwd a subprocess had. What it writes is
    what the tests read; a new interpreter would only add its imports (~5 s a run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [str(a) for a in args[1:]])
        mp.chdir(ROOT)
        runpy.run_path(str(args[1]), run_name="__main__")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Real CLIPModel runs of 12 steps at batch 64: LR 0 at scale 0; a healthy one (LR 1e-3 at
    2.6592); one whose scale collapses under weight decay (HF Trainer decays logit_scale), saved
    at steps 20 and 40."""
    root = tmp_path_factory.mktemp("issue12")
    train(clip_args(root / "lr0", "0", "0"))
    train(clip_args(root / "ok", "1e-3", "2.6592"))
    wd = ["--weight_decay", "20", "--lr_scheduler_type", "constant", "--save_steps", "20"]
    train(clip_args(root / "wd", "1e-2", "2.6592", 40, *wd))
    return {"lr0": root / "lr0" / "checkpoint-12", "ok": root / "ok" / "checkpoint-12", "wd": root / "wd"}


# ---- the formulas (sources/derived.py) -----------------------------------------------------------


def test_floor_and_chance_numbers_of_the_issue():
    assert loss_floor(64, 0.0) == pytest.approx(2.254, abs=1e-3)  # 0.54 x ln 64
    assert loss_floor(64, 0.0) / math.log(64) == pytest.approx(0.542, abs=1e-3)
    assert loss_floor(64, 2.6592) < 1e-10 and loss_floor(4, 2.6592) < 1e-10  # CLIP's init: ~0
    assert chance_level(64, "sigmoid") == pytest.approx(math.log(64) + 63 * math.log(64 / 63))
    for n in (2, 16, 64, 1024):
        for s in (-1.0, 0.0, 1.0, 2.3, 4.6):
            for kind in ("softmax", "sigmoid"):
                assert 0 <= loss_floor(n, s, kind) < chance_level(n, kind)
        assert loss_floor(n, 0.0, "sigmoid") > loss_floor(n, 2.3, "sigmoid")  # a hotter scale, a lower floor


# ---- inspect-ckpt on real checkpoints ------------------------------------------------------------


def test_lr0_scale0_checkpoint_fails_with_temperature_as_a_number(runs):
    code, doc = doctor("inspect-ckpt", str(runs["lr0"]))
    assert code == 1
    assert {"lr-zero", "loss-floor", "loss-plateau", "logit-scale-clamp"} <= fails(doc)
    assert fact(doc, "scale.global.value.temperature") == 1.0  # a number, not a string
    assert fact(doc, "loss.chance.global") == pytest.approx(math.log(64))
    assert fact(doc, "loss.floor.global") == pytest.approx(2.254, abs=1e-3)
    assert status(doc, "loss-chance") == {"SKIP"}  # step 12 < 20: the new rules speak instead
    plateau = next(f for f in doc["findings"] if f["rule"] == "loss-plateau")
    assert "at LR 0" in plateau["message"] and "12 logs" in plateau["message"]


def test_healthy_checkpoint_is_silent_on_the_new_rules(runs):
    code, doc = doctor("inspect-ckpt", str(runs["ok"]))
    assert code == 0
    for rule in (*NEW, "logit-scale-clamp"):
        assert status(doc, rule) == {"PASS"}, rule
    assert fact(doc, "scale.global.value.temperature") == pytest.approx(math.exp(2.6592), rel=0.05)


def test_milestone_below_the_floor_fails(runs):
    # the healthy run's floor is tiny but not 0: a milestone under it can never be met
    code, doc = doctor("inspect-ckpt", str(runs["ok"]), "--expect", "loss@12<1e-30")
    floor = next(f for f in doc["findings"] if f["rule"] == "loss-floor")
    assert code == 1 and floor["status"] == "FAIL" and "loss@12<1e-30 can never be met" in floor["message"]


def test_scale_collapsing_under_weight_decay_is_caught_later(runs):
    code, doc = doctor("inspect-ckpt", str(runs["wd"]))
    assert code == 1 and fact(doc, "train.optimizer_steps_done") == 40
    assert "loss-floor" in fails(doc)
    assert fact(doc, "scale.global.value") < 0.1 < 2.6592  # fell from CLIP's init
    assert fact(doc, "loss.floor.global") > 0.5 * math.log(64)


# ---- check-config and live on the same scripts ---------------------------------------------------


def _script(tmp_path: Path, args: list, name: str = "train.sh") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/bash\n" + " ".join(args) + "\n")
    return path


def test_check_config_fails_learning_rate_0_and_passes_1e_3(tmp_path):
    code, doc = doctor("check-config", str(_script(tmp_path, clip_args(tmp_path / "o", "0", "0"))))
    lr = next(f for f in doc["findings"] if f["rule"] == "lr-zero")
    assert code == 1 and lr["status"] == "FAIL" and any("--learning_rate" in s for s in lr["sources"])
    code, doc = doctor("check-config", str(_script(tmp_path, clip_args(tmp_path / "o", "1e-3", "2.6592"))))
    assert status(doc, "lr-zero") == {"PASS"}


def test_live_lr0_scale0_script_fails(tmp_path):
    code, doc = doctor("live", str(_script(tmp_path, clip_args(tmp_path / "o", "0", "0"))), "--steps", "12")
    assert code == 1 and {"lr-zero", "loss-floor", "logit-scale-clamp"} <= fails(doc)
    assert fact(doc, "scale.global.value.temperature") == 1.0
    [term] = fact(doc, "observed.terms")
    assert fact(doc, f"loss.floor.{term}") == pytest.approx(2.254, abs=1e-3)


def test_siglip_checkpoint_and_live_use_the_sigmoid_levels(tmp_path):
    train(clip_args(tmp_path / "sig", "0", "0", helper="train_plain_siglip"))
    code, doc = doctor("inspect-ckpt", str(tmp_path / "sig" / "checkpoint-12"))
    assert fact(doc, "loss.global.kind") == "sigmoid"
    assert fact(doc, "loss.chance.global") == pytest.approx(chance_level(64, "sigmoid"))  # 5.15, not ln 64
    assert fact(doc, "loss.floor.global") == pytest.approx(loss_floor(64, 0.0, "sigmoid"))
    assert code == 1 and {"lr-zero", "loss-floor"} <= fails(doc)
    args = clip_args(tmp_path / "o", "1e-3", "2.302585", helper="train_plain_siglip")
    code, doc = doctor("live", str(_script(tmp_path, args)), "--steps", "6", "--interval", "2")
    [term] = fact(doc, "observed.terms")
    assert "siglip" in term and fact(doc, f"loss.{term}.kind") == "sigmoid"
    assert fact(doc, f"loss.chance.{term}") == pytest.approx(chance_level(64, "sigmoid"), rel=1e-4)
    assert status(doc, "loss-floor", term) == {"PASS"} and status(doc, "lr-zero") == {"PASS"}


# ---- the other branches, on facts shaped as the sources write them -----------------------------


def _history(values: list[float], chance: float, **more) -> object:
    from fgclip_doctor.facts import Facts

    facts = Facts()
    facts.set("history.loss_keys", {"global": "loss"}, "t")
    facts.set("history.series", {"loss": [[i + 1, v] for i, v in enumerate(values)]}, "t")
    facts.set("loss.chance.global", chance, "t")
    for name, value in more.items():
        facts.set(name.replace("__", "."), value, "t")
    return facts


def test_plateau_warns_at_a_positive_lr_and_passes_off_chance():
    from rule_check import check_rule

    at_chance = _history([4.16, 4.15, 4.17] * 4, math.log(64), schedule__base_lrs=[1e-4])
    [f] = check_rule("loss-plateau", at_chance, "inspect-ckpt")
    assert f.status.value == "WARN" and "positive LR" in f.message
    falling = _history([4.16 - 0.1 * i for i in range(12)], math.log(64), schedule__base_lrs=[1e-4])
    assert check_rule("loss-plateau", falling, "inspect-ckpt")[0].status.value == "PASS"


def test_loss_chance_flat_fails_falling_is_too_early():
    from rule_check import check_rule

    flat = _history([4.16, 4.17, 4.15, 4.16, 4.16] * 5, math.log(64))
    assert check_rule("loss-chance", flat, "inspect-ckpt")[0].status.value == "FAIL"
    falling = _history([9.0 - 0.2 * i for i in range(25)], math.log(64))  # 4.2 at step 25, still falling
    [f] = check_rule("loss-chance", falling, "inspect-ckpt")
    assert f.status.value == "SKIP" and "too early to judge" in f.message


def test_lr_zero_before_the_schedule_ends_fails_at_its_end_passes():
    from rule_check import check_rule

    base = dict(schedule__base_lrs=[1e-3], optim__group_lrs=[0.0], schedule__total_steps=100, schedule__warmup_steps=5)
    early = _history([1.0], 1.0, train__optimizer_steps_done=60, **base)
    assert "schedule" in {f.subject for f in check_rule("lr-zero", early, "inspect-ckpt") if f.status.value == "FAIL"}
    end = _history([1.0], 1.0, train__optimizer_steps_done=100, **base)
    assert {f.status.value for f in check_rule("lr-zero", end, "inspect-ckpt")} == {"PASS"}
