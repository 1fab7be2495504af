"""Issue 20, one verdict one story: a table's verdict is the finding's status, levels no loss can show
are not printed, and consequences sit under their root cause (checks/causes.py)."""

from __future__ import annotations

from fgclip_doctor.checks.causes import root_of
from fgclip_doctor.checks.registry import Finding, Status
from fgclip_doctor.commands.live.command import _others, _verdict
from fgclip_doctor.units import level_text


def finding(rule: str, subject: str, status: Status, message: str = "") -> Finding:
    return Finding("FGD000", rule, status, "fail", "m", "e", message, "fix", (), subject)


def test_levels_below_what_a_loss_can_show():
    assert level_text(9.9e-86) == "< 1e-4"  # the floor inspect-ckpt printed for T 100 over 4 candidates
    assert level_text(0.0) == "< 1e-4"
    assert level_text(2.0794) == "2.08" and level_text(4.1589) == "4.16" and level_text(None) == "?"


def test_the_ratio_verdict_is_loss_chance_and_other_verdicts_are_named():
    """seed-bug live: loss-chance PASSes hardneg while logit-scale-init FAILs it: the ratio column says
    PASS (the judgement of that ratio), the other column names the FAIL."""
    findings = [
        finding("loss-chance", "hardneg", Status.PASS),
        finding("logit-scale-init", "hardneg", Status.FAIL),
        finding("negatives-count", "hardneg", Status.PASS),
    ]
    assert _verdict(findings, "hardneg").plain == "PASS"
    assert _others(findings, "hardneg").plain == "logit-scale-init FAIL"
    assert _verdict(findings, "region").plain == "—" and _others(findings, "region").plain == "—"
    skipped = [finding("loss-chance", "global", Status.SKIP), finding("bf16-logits", "global", Status.PASS)]
    assert _verdict(skipped, "global").plain == "SKIP"  # too early to judge: not the PASS of another rule


def test_consequences_point_to_their_root():
    units = finding("step-units", "bank warmup", Status.FAIL, "bank warmup 400 forward calls ... never reached")
    active = finding("bank-active", "", Status.FAIL, "never enabled within the run: warmup 400 forward calls")
    region = finding("negatives-count", "region", Status.FAIL, "region: in-batch only: the bank switches on at 400")
    everything = [units, active, region]
    assert root_of(units, everything) is None
    assert root_of(active, everything) is units and root_of(region, everything) is units  # through bank-active
    assert root_of(region, [active, region]) is active  # step-units passed: bank-active is the root
    other = finding("negatives-count", "region", Status.FAIL, "region: 3 candidates, max_boxes 1")
    assert root_of(other, [active, other]) is None  # short for another reason: its own block
    warned = finding("bank-active", "", Status.WARN, "warmup")
    assert root_of(region, [warned, region]) is None  # a cause of another status is not grouped


def test_a_table_says_how_to_read_its_numbers_at_any_width():
    """The loss tables' captions (why live's chance differs from inspect-ckpt's) are printed under them,
    in the grid and in the narrow label + rest layout alike."""
    from rich.table import Table

    from fgclip_doctor.commands.live.command import CHANCE_NOTE
    from fgclip_doctor.facts import Facts
    from fgclip_doctor.report import Report, render

    table = Table(caption=CHANCE_NOTE)
    for col in ("term", "chance", "floor"):
        table.add_column(col)
    table.add_row("global", "2.08", level_text(9.9e-86))
    report = Report("live", None, Facts(), [], sections=[("Loss terms", table)])
    for width in (60, 100, 200):
        text = " ".join(render(report, "table", width).split())
        assert "one direction at a time" in text and "twice this row" in text and "< 1e-4" in text, width
