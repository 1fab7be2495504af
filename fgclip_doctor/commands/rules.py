"""`fgclip-doctor rules [NAME]`: the catalogue as a table, or one rule's docs (what, why, example,
evidence, fix, thresholds)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fgclip_doctor.casebook import cases_for_rule
from fgclip_doctor.checks.registry import Rule


def print_rules(rules: list[Rule], console: Console) -> None:
    """The catalogue, one row per rule."""
    console.print(rules_table(rules) if rules else "(no rules registered)")


def rules_table(rules: list[Rule]) -> Table:
    table = Table(header_style="bold")
    for name in ("code", "rule", "where", "severity", "checks"):
        table.add_column(name, no_wrap=name != "checks")
    for r in rules:
        table.add_row(r.code, r.name, " ".join(r.where), r.severity, r.title)
    return table


_WHERE = {"C": "config", "K": "checkpoint", "L": "live run", "D": "data"}


def explain_rule(r: Rule, console: Console) -> None:
    where = ", ".join(_WHERE[c] for c in r.where)
    console.print(Text(f"{r.code} {r.name}", style="bold"), Text(f"({r.severity} · where: {where})", style="dim"))
    console.print(Text(r.title))
    for heading, body in (
        ("What it does", r.what),
        ("Why it matters", r.why),
        ("Example", r.example),
        ("Evidence", r.evidence),
        ("Fix", r.fix),
    ):
        console.print()
        console.print(Text(heading, style="bold underline"))
        console.print(Text("\n".join("  " + line for line in body.strip().splitlines())))
    console.print()
    console.print(Text("Proven by (casebook: python bench/casebook.py NAME)", style="bold underline"))
    cases = cases_for_rule(r.name)
    for c in cases:
        note = f" [pending: {c.pending}]" if c.pending else ""
        console.print(Text(f"  {c.name} ({c.command}){note}: {c.citation}"))
    if not cases:
        console.print(Text("  (no case yet)"))
    console.print()
    console.print(Text("Default thresholds", style="bold underline"))
    if r.thresholds:
        for key, value in sorted(r.thresholds.items()):
            console.print(Text(f"  {key} = {value:g}"))
    else:
        console.print(Text("  (none)"))
    console.print(Text(f"\nOverride in pyproject.toml: [tool.fgclip-doctor.thresholds.{r.name}]", style="dim"))
