"""From-scratch runs and loss-chance (FGD701): a run from random weights sits at chance for its
first steps by nature (bench/from_scratch.py); inside loss-chance's calibrated `scratch_steps` that is
too early to judge, after them and for a fine-tune the same FAIL as before.

The plain CLIPModel helper at LR 1e-7 stays near chance (ln 16 for 16 candidates): from its config
(random weights, measured: no `_name_or_path`), and the same weights saved and given as
`--model_name_or_path` (a fine-tune, read from the launch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fgclip_doctor.checks.registry import get_rule
from fgclip_doctor.cli import app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from train_plain_clip import tiny_clip  # noqa: E402

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SCRATCH_STEPS = 100  # loss-chance's default scratch_steps


def run(tmp_path: Path, steps: int, base: Path | None = None) -> tuple[int, dict]:
    script = tmp_path / "train.sh"
    extra = f" --model_name_or_path {base}" if base else ""
    script.write_text(
        f"{sys.executable} {ROOT}/tests/helpers/train_plain_clip.py --output_dir {tmp_path}/out "
        f"--per_device_train_batch_size 16 --learning_rate 1e-7 --logging_steps 5 --use_cpu True{extra}\n"
    )
    result = runner.invoke(app, ["live", str(script), "--steps", str(steps), "--interval", "5", "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def chance_findings(doc: dict) -> list[dict]:
    return [f for f in doc["findings"] if f["rule"] == "loss-chance"]


def test_from_scratch_at_chance_inside_its_window_is_too_early_not_a_fail(tmp_path):
    code, doc = run(tmp_path, 30)
    assert doc["facts"]["model.fine_tuning"]["value"] is False
    assert "no base model" in doc["facts"]["model.fine_tuning"]["source"]  # read: the launch gives none
    [f] = chance_findings(doc)
    assert f["status"] == "SKIP" and "too early for a run from random weights" in f["message"]
    assert f"judged from step {SCRATCH_STEPS} on" in f["message"]
    assert "bench/from_scratch.py" in f["message"]  # the calibration it rests on
    assert code == 0 and not [g for g in doc["findings"] if g["status"] == "FAIL"]


def test_the_same_run_as_a_fine_tune_fails(tmp_path):
    base = tmp_path / "base"
    tiny_clip().save_pretrained(base)
    code, doc = run(tmp_path, 30, base)
    assert doc["facts"]["model.fine_tuning"]["value"] is True
    [f] = chance_findings(doc)
    assert code == 1 and f["status"] == "FAIL" and "at chance, not falling" in f["message"]


def test_from_scratch_still_at_chance_after_its_window_fails(tmp_path):
    code, doc = run(tmp_path, SCRATCH_STEPS + 5)
    [f] = chance_findings(doc)
    assert code == 1 and f["status"] == "FAIL"


def test_the_window_and_its_calibration_are_in_the_rules_docs():
    rule = get_rule("loss-chance")
    assert rule.thresholds["scratch_steps"] == SCRATCH_STEPS
    assert "from_scratch.py" in rule.what and "ViT-B/16" in rule.what


@pytest.mark.parametrize(
    "source, fine_tuning, said",
    [("", False, "built from its config"), ("/runs/base", True, "'/runs/base'"), (None, None, None)],
)
def test_where_the_launch_does_not_say_the_start_is_measured(source, fine_tuning, said):
    from fgclip_doctor.facts import Facts
    from fgclip_doctor.probes.record import ProbeRecord
    from fgclip_doctor.sources.live import observed_facts

    facts = observed_facts(ProbeRecord(model_source=source))
    assert facts.value("model.fine_tuning") is fine_tuning
    if said:
        assert said in facts.get("model.fine_tuning").source
    read = Facts()
    read.set("model.fine_tuning", True, "train.sh:3 --model_name_or_path")
    assert observed_facts(ProbeRecord(model_source=""), read).value("model.fine_tuning") is True  # the launch wins
