"""Messages computed from facts print the facts' own numbers (FGD208 once said
"per_device x world = 256" on a launch whose world is 14).

Real launches through check-config first (the numbers in the message against the facts of the
same report), then the negatives / step-units messages over generated facts.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from fuzz_cli import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from rule_check import by_subject, check_rule
from typer.testing import CliRunner

from fgclip.warmup import reached as bank_reached
from fgclip.warmup import switch_on_at
from fgclip_doctor.checks import negatives, schedule  # noqa: F401 (register)
from fgclip_doctor.checks.registry import Status
from fgclip_doctor.cli import app
from fgclip_doctor.facts import Facts


def check_config_json(tmp_path, script: str, code: str = "print('never run')\n") -> tuple[dict, dict]:
    """(findings by code + subject, facts) of `check-config` on `script`, run from tmp_path,
    where train.py holds `code` (read as text, never run)."""
    (tmp_path / "train.py").write_text(code)
    (tmp_path / "launch.sh").write_text(script)
    import os

    before = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(app, ["check-config", "launch.sh", "--format", "json"])
    finally:
        os.chdir(before)
    assert result.exit_code in (0, 1), result.stderr
    doc = json.loads(result.stdout)
    findings = {(f["code"], f.get("subject", "")): f for f in doc["findings"]}
    return findings, {k: v["value"] for k, v in doc["facts"].items()}


RUN_CLIP = Path(__file__).parent / "trees" / "run_clip" / "run_clip.py"


def test_fgd208_on_a_foreign_launch_of_world_14(tmp_path):
    findings, facts = check_config_json(
        tmp_path,
        "torchrun --nproc_per_node 14 train.py \\\n"
        "  --per_device_train_batch_size 256 --gradient_accumulation_steps 4 "
        "--max_steps 10 --output_dir out\n",
        RUN_CLIP.read_text(),  # HF CLIPModel: the loss sees the local batch only (transformers#22252)
    )
    msg = findings[("FGD208", "")]["message"]
    assert facts["run.world_size"] == 14 and facts["train.per_device_batch"] == 256
    m = re.search(
        r"accumulation (\d+) .*\(global batch (\d+)\).* sees (\d+) candidates per forward "
        r"\(per_device (\d+); features not gathered across world (\d+)\)",
        msg,
    )
    assert m, msg
    accum, total, n, per, world = map(int, m.groups())
    assert (accum, total, n, per, world) == (
        facts["train.grad_accum"],
        facts["train.global_batch"],
        facts["candidates.global"],
        facts["train.per_device_batch"],
        facts["run.world_size"],
    )
    assert "per_device x world = 256" not in msg


def test_fgd208_on_the_subject_at_world_14(synthetic_root, tmp_path):
    findings, facts = check_config_json(
        tmp_path,
        "torchrun --nproc_per_node 14 -m fgclip.train --preset tiny --gradient_accumulation_steps 4 --output_dir out\n",
    )
    msg = findings[("FGD208", "")]["message"]
    m = re.search(r"sees (\d+) candidates per forward \(per_device (\d+) x world (\d+)\)", msg)
    assert m, msg
    n, per, world = map(int, m.groups())
    assert (n, per, world) == (facts["candidates.global"], facts["train.per_device_batch"], 14)
    assert n == per * world


# ---- generated facts ----------------------------------------------------------------------------
ints = st.integers(1, 5000)


def _facts(**values) -> Facts:
    facts = Facts()
    for name, value in values.items():
        facts.set(name.replace("__", "."), value, f"test {name}")
    return facts


@fuzz_settings(60)
@given(per=ints, world=st.integers(1, 64), accum=st.integers(2, 64), gathered=st.booleans())
def test_fgd208_numbers_are_the_facts(per, world, accum, gathered):
    n = per * world if gathered or world == 1 else per
    facts = _facts(
        train__per_device_batch=per,
        run__world_size=world,
        train__grad_accum=accum,
        candidates__global=n,
        train__global_batch=per * world * accum,
    )
    [f] = check_rule("grad-accum-negatives", facts, "check-config")
    assert f.status is Status.WARN
    m = re.fullmatch(
        r"accumulation (\d+) multiplies the batch per optimizer step \(global batch (\d+)\) "
        r"but not the negatives: each loss sees (\d+) candidates per forward"
        r" \(per_device (\d+)(?: x world (\d+)|; features not gathered across world (\d+))\)",
        f.message,
    )
    assert m, f.message
    got = [int(g) for g in m.groups() if g is not None]
    assert got == [accum, per * world * accum, n, per, world]


@fuzz_settings(60)
@given(per=ints, world=st.integers(2, 64), gathered=st.booleans())
def test_fgd201_global_numbers_are_the_facts(per, world, gathered):
    facts = _facts(
        train__per_device_batch=per,
        run__world_size=world,
        features__gathered=gathered,
        candidates__global=per * world if gathered else per,
        loss__terms=["global"],
    )
    f = by_subject(check_rule("negatives-count", facts, "check-config"))["global"]
    if gathered:
        assert f.message == f"global: {per * world} candidates per row ({per} per device x world {world})"
    else:
        assert f.message.startswith(
            f"global: each rank only sees its own batch: {per} candidates per row "
            f"instead of {per} x {world} = {per * world} "
        )


@fuzz_settings(60)
@given(k=ints, q=ints, warmup=st.integers(0, 10_000), accum=st.integers(1, 64), steps=st.integers(1, 2000))
def test_negatives_and_step_units_numbers_are_the_facts(k, q, warmup, accum, steps):
    # when the bank switches on is the subject's (fgclip.warmup, which its RegionMemoryBank.tick
    # uses; tests/test_warmup_boundary.py runs the real bank at the boundary): not restated here
    switch = math.ceil(switch_on_at(warmup) / accum)  # the optimizer step holding that forward call
    facts = _facts(
        loss__terms=["region"],
        bank__enabled=True,
        bank__size=q,
        candidates__region__in_batch=k,
        candidates__region__with_bank=k + q,
        bank__warmup_forward_calls=warmup,
        train__grad_accum=accum,
        bank__switch_on_step=switch,
        train__optimizer_steps=steps,
        train__forward_calls=steps * accum,
    )
    reached = bank_reached(steps * accum, warmup)  # the run's last forward call, as the bank counts
    timing = f"{warmup} forward calls = optimizer step {switch} at gradient accumulation {accum}"
    run = f"the run ends at optimizer step {steps} ({steps * accum} forward calls)"

    region = by_subject(check_rule("negatives-count", facts, "check-config"))["region"]
    if reached:
        assert region.message == f"region: {k} -> {k} + {q} = {k + q} candidates from optimizer step {switch}"
    else:
        assert region.message == (
            f"region: in-batch candidates only (<= {k}) for the whole run, where {k} + {q} "
            f"= {k + q} was intended: the bank switches on at {timing}; {run}"
        )

    [units] = check_rule("step-units", facts, "check-config")
    assert units.measured == f"{warmup} forward calls = optimizer step {switch}"
    assert units.expected == f"<= {steps * accum} forward calls (optimizer step {steps})"
    assert units.message == f"bank warmup {timing}; " + (
        f"reached within the run ({run})" if reached else f"{run}: never reached"
    )

    [active] = check_rule("bank-active", facts, "check-config")
    if reached:
        assert active.message == f"bank on from warmup {timing}, within the {steps}-step run"
    else:
        assert active.message == (
            f"never enabled within the run: warmup {timing}; the run has {steps} "
            f"optimizer steps ({steps * accum} forward calls)"
        )

    [size] = check_rule("bank-size", facts, "check-config")
    assert str(q) in size.message and str(k) in size.message
