"""The casebook's cheap cases, end to end: each fault is caught with its exact finding, and its healthy
twin has no FAIL and exactly the WARNs the case expects. The expensive cases run in bench/casebook.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.casebook import fault_env, run_case  # noqa: E402
from fgclip import faults  # noqa: E402
from fgclip_doctor.casebook import CASES, Case, Expect, Launch, cases_for_rule  # noqa: E402
from fgclip_doctor.checks.registry import all_rules  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHEAP = [c for c in CASES if c.cost == "cheap"]


@pytest.mark.parametrize("case", CHEAP, ids=[c.name for c in CHEAP])
def test_cheap_case(case, synthetic_root):
    if case.pending:
        pytest.skip(case.pending)
    r = run_case(case, synthetic_root)
    assert not r.missing, f"{case.name}: not found {r.missing}; found {sorted(r.fault.findings)}"
    assert r.fault.exit_code == (1 if any(e.status == "FAIL" for e in case.expected) else 0)
    assert not r.twin_fails and r.twin.exit_code == 0, sorted(r.twin_fails)
    assert not r.twin_warns_unexpected, sorted(r.twin_warns_unexpected)


def test_the_casebook_is_complete_and_cited():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names) >= 20
    for c in CASES:
        assert c.citation and c.expected and c.fault != c.twin, c.name
        assert c.command in ("check-config", "live", "inspect-ckpt", "check-data")
        assert c.fault.fault is None or c.fault.fault.partition(":")[0] in faults.FAULTS
        # a twin is healthy: no injected fault, or (near-miss) a dose of one inside the rule's line
        assert c.twin.fault is None or (c.near_miss and ":" in c.twin.fault), c.name
    rules = {r.name for r in all_rules()}
    assert {e for c in CASES if not c.pending for e in (x.rule for x in c.expected)} <= rules


def test_cases_say_what_decides_them_and_why_a_twin_warns():
    """Issue 20: evidence per case (flag-decided cases are named, not counted as measured), near-miss
    pairs exist for rules with thresholds, and a twin's WARNs come with the reason they are right."""
    assert {c.evidence for c in CASES} == {"measured", "read", "flag"}
    assert sorted(c.name for c in CASES if c.evidence == "flag") == [
        "bank-size-not-batches",
        "coef-lr-zero",
        "config-lr-zero",
        "grad-accum-negatives",
        "lr-zero",
    ]
    margin = [c for c in CASES if c.near_miss]
    assert len(margin) >= 7 and all(c.fault != c.twin for c in margin)
    assert all(c.twin_why for c in CASES if c.twin_warns)
    with pytest.raises(ValueError, match="twin_why"):
        Case("x", "y", "live", Launch(), Launch(), (), twin_warns=(Expect("r", "", "WARN"),))
    with pytest.raises(ValueError, match="evidence"):
        Case("x", "y", "live", Launch(), Launch(), (), evidence="hunch")


def test_every_rule_of_the_catalogue_is_proven_by_a_case():
    """Done-when of issue 15: each registered rule fires in >= 1 case on a real run, checkpoint or launch."""
    rules = {r.name for r in all_rules()}
    proven = {e.rule for c in CASES if not c.pending for e in c.expected}
    assert sorted(rules - proven) == []
    assert len(rules) >= 38
    assert [c.name for c in CASES if c.pending] == []  # a case the runners skip proves nothing


def test_cases_for_rule_and_the_rules_command_name_the_cases():
    from typer.testing import CliRunner

    from fgclip_doctor.cli import app

    assert [c.name for c in cases_for_rule("head-lr")] == ["head-outside-optimizer"]
    out = CliRunner().invoke(app, ["rules", "bank-hygiene"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "bank-unnormalised" in out.stdout and "moco" in out.stdout.lower()


def test_faults_are_off_by_default_and_named():
    with fault_env(None):
        assert not any(faults.active(name) for name in faults.FAULTS)
    with fault_env("eos-cut,frozen-scales"):
        assert faults.active("eos-cut") and faults.active("frozen-scales") and not faults.active("pixel-boxes")
    with pytest.raises(KeyError):
        faults.active("no-such-fault")


def test_a_fault_takes_a_dose():
    """`name:dose` in FGCLIP_FAULT: the near-miss cases inject just past and just inside a line."""
    with fault_env("region-image-mix:0.8,eos-cut"):
        assert faults.dose("region-image-mix") == 0.8 and faults.dose("eos-cut") == 1.0
        assert faults.active("region-image-mix") and faults.dose("pixel-boxes") == 0.0
    with fault_env(None):
        assert faults.dose("region-image-mix") == 0.0 and not faults.active("region-image-mix")
    with pytest.raises(KeyError):
        faults.dose("no-such-fault")
