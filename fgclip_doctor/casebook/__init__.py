"""The casebook as data: real silent training faults, each a launch with exactly one fault, a healthy
twin that differs only in that fault, and the finding(s) that must catch it.

Plain data, no runner: `fgclip-doctor rules NAME` reads it to name the cases that prove a rule;
`bench/casebook.py` runs every case and `tests/test_casebook.py` the cheap ones. A launch is the
subject (`python -m fgclip.train --preset tiny` + flags), optionally with one fault of
`fgclip/faults.py` (FGCLIP_FAULT), or a small training script of another family (tests/helpers/),
or a copy of a training tree of another codebase (tests/trees/) with one text edit, or, for
check-data, one named rewrite of the synthetic annotations. Faults never enter as facts.
margin_cases.py holds the near-miss pairs (a fault just past a rule's threshold, a twin just inside).
"""

from __future__ import annotations

from fgclip_doctor.casebook.case import Case, Expect, Launch
from fgclip_doctor.casebook.margin_cases import MARGIN_CASES
from fgclip_doctor.casebook.other_cases import OTHER_CASES
from fgclip_doctor.casebook.subject_cases import SUBJECT_CASES

__all__ = ["CASES", "Case", "Expect", "Launch", "case", "cases_for_rule"]

CASES: tuple[Case, ...] = SUBJECT_CASES + OTHER_CASES + MARGIN_CASES


def cases_for_rule(rule: str) -> list[Case]:
    """The cases whose fault must produce a finding of `rule` (slug)."""
    return [c for c in CASES if any(e.rule == rule for e in c.expected)]


def case(name: str) -> Case:
    found = [c for c in CASES if c.name == name]
    if not found:
        raise KeyError(f"no casebook case {name!r}")
    return found[0]
