"""Shared by the rule tests: run one rule on hand-made facts, as a given command would."""

from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, RuleContext, get_rule
from fgclip_doctor.facts import Facts


def check_rule(name: str, facts: Facts, command: str, **thresholds) -> list[Finding]:
    """Findings of rule `name` (slug or code) on `facts`, thresholds overridden by `thresholds`."""
    r = get_rule(name)
    out = r.func(facts, RuleContext(r, {**r.thresholds, **thresholds}, command))
    return [out] if isinstance(out, Finding) else out


def by_subject(findings: list[Finding]) -> dict[str, Finding]:
    """Findings keyed by their subject (one per scale, term, ...)."""
    return {f.subject: f for f in findings}
