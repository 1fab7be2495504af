"""`fgclip-doctor rules [NAME]`: the catalogue as a table, or one rule's docs (what, why, example,
evidence, fix, thresholds).

The severity shown is what a rule can report, read from its code (never run): `ctx.problem` is the
rule's own severity, `ctx.failed` / `ctx.warned` always fail / warn (called or chosen), in the rule's function and
in the helpers of the checks it calls (logit-scale-clamp FAILs on a scale above the clamp and WARNs
when there is no clamp: "fail / warn").
"""

from __future__ import annotations

import ast
import inspect
import textwrap

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fgclip_doctor.casebook import cases_for_rule
from fgclip_doctor.checks.registry import SEVERITIES, Rule
from fgclip_doctor.text_wrap import wrap

_WHERE = {"C": "config", "K": "checkpoint", "L": "live run", "D": "data"}
_COMMAND = {"C": "check-config", "K": "inspect-ckpt", "L": "live", "D": "check-data"}
#: RuleContext constructors and the severity each reports (None: the rule's own)
_EMITS = {"failed": "fail", "warned": "warn", "problem": None}
LEGEND = (
    "where: "
    + " · ".join(f"{c} {_WHERE[c]} ({_COMMAND[c]})" for c in _WHERE)
    + ". severity: what the rule reports when its check does not pass (fail / warn: either, by case)."
)


def severities(r: Rule) -> list[str]:
    """The severities rule `r` can report, from its code and the check helpers it calls."""
    found: set[str] = set()
    seen: set[object] = set()

    def visit(func: object) -> None:
        if func in seen:
            return
        seen.add(func)
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        except (OSError, TypeError, SyntaxError):  # no source to read: the declared severity stands
            return
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in _EMITS and getattr(node.value, "id", "") == "ctx":
                found.add(_EMITS[node.attr] or r.severity)  # called, or chosen (`make = ctx.warned`)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called = getattr(func, "__globals__", {}).get(node.func.id)
                module = getattr(called, "__module__", "") or ""
                if inspect.isfunction(called) and (
                    module == r.func.__module__ or module.startswith("fgclip_doctor.checks")
                ):
                    visit(called)

    visit(r.func)
    return [s for s in SEVERITIES if s in found] or [r.severity]


def print_rules(rules: list[Rule], console: Console) -> None:
    """The catalogue, one row per rule, then the legend of its columns."""
    if not rules:
        console.print("(no rules registered)")
        return
    console.print(rules_table(rules))
    for line in wrap(LEGEND, console.width):
        console.print(line, soft_wrap=True)


def rules_table(rules: list[Rule]) -> Table:
    table = Table(header_style="bold")
    for name in ("code", "rule", "where", "severity", "checks"):
        table.add_column(name, no_wrap=name != "checks")
    for r in rules:
        table.add_row(r.code, r.name, " ".join(r.where), " / ".join(severities(r)), r.title)
    return table


def _say(console: Console, text: str | Text, indent: int = 0) -> None:
    """`text` wrapped to the console, its lines after the first indented too; no trailing spaces."""
    for line in wrap(text, console.width, indent=indent, first_indent=indent):
        console.print(line, soft_wrap=True)


def explain_rule(r: Rule, console: Console) -> None:
    where = ", ".join(_WHERE[c] for c in r.where)
    head = Text(f"{r.code} {r.name}", style="bold")
    head.append(f" ({' / '.join(severities(r))} · where: {where})", style="dim")
    _say(console, head)
    _say(console, r.title)
    for heading, body in (
        ("What it does", r.what),
        ("Why it matters", r.why),
        ("Example", r.example),
        ("Evidence", r.evidence),
        ("Fix", r.fix),
    ):
        console.print()
        console.print(Text(heading, style="bold underline"))
        for paragraph in body.strip().splitlines():
            _say(console, paragraph.strip(), indent=2)
    console.print()
    console.print(Text("Proven by (casebook: python bench/casebook.py NAME)", style="bold underline"))
    cases = cases_for_rule(r.name)
    for c in cases:
        note = f" [pending: {c.pending}]" if c.pending else ""
        _say(console, f"{c.name} ({c.command}){note}: {c.citation}", indent=2)
    if not cases:
        console.print(Text("  (no case yet)"))
    console.print()
    console.print(Text("Default thresholds", style="bold underline"))
    if r.thresholds:
        for key, value in sorted(r.thresholds.items()):
            console.print(Text(f"  {key} = {value:g}"))
    else:
        console.print(Text("  (none)"))
    console.print()
    _say(console, Text(f"Override in pyproject.toml: [tool.fgclip-doctor.thresholds.{r.name}]", style="dim"))
