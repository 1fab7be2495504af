"""The report: findings of one command as a table for a person (laid out by report_layout), JSON
(a stable public schema) or JUnit XML.

JSON schema (stable; extra top-level keys come from `Report.extra`):

    {"tool": "fgclip-doctor", "version": str, "command": str, "target": str | null,
     "facts": {name: {"value": any, "source": str}},
     "findings": [{"code", "rule", "status": "PASS|WARN|FAIL|SKIP", "severity": "fail|warn",
                   "measured", "expected", "message", "fix", "sources": [str], "subject": str,
                   "missing": [str]}],  # missing: a SKIP's absent facts (vocabulary names)
     "summary": {"pass": int, "warn": int, "fail": int, "skip": int},
     "exit_code": 0 | 1}

Non-finite floats anywhere in the document are written as the strings "nan", "inf", "-inf" so
the output is strict JSON.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text

from fgclip_doctor import __version__
from fgclip_doctor.checks.causes import root_of
from fgclip_doctor.checks.registry import Finding, Status
from fgclip_doctor.errors import DoctorUsageError
from fgclip_doctor.facts import Facts
from fgclip_doctor.report_layout import (
    INDENT,
    finding_block,
    group_findings,
    one_line_groups,
    one_liners,
    section_lines,
)
from fgclip_doctor.terminal import terminal_width
from fgclip_doctor.text_wrap import display, wrap

SPARKS = "▁▂▃▄▅▆▇█"


@dataclass
class Report:
    """Everything one command found; rendered by `emit`."""

    command: str
    target: str | None
    facts: Facts
    findings: list[Finding]
    title_lines: list[str] = field(default_factory=list)
    sections: list[tuple[str, RenderableType]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    strict: bool = False


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts per status: {"pass", "warn", "fail", "skip"}."""
    counts = {s.value.lower(): 0 for s in (Status.PASS, Status.WARN, Status.FAIL, Status.SKIP)}
    for f in findings:
        counts[Status(f.status).value.lower()] += 1
    return counts


def exit_code(findings: Iterable[Finding], strict: bool = False) -> int:
    """1 if any FAIL (or, when strict, any WARN), else 0. SKIP never fails."""
    counts = summary(findings)
    return 1 if counts["fail"] or (strict and counts["warn"]) else 0


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def finding_json(f: Finding) -> dict[str, Any]:
    """One finding in the public JSON form."""
    return {
        "code": f.code,
        "rule": f.rule,
        "status": Status(f.status).value,
        "severity": f.severity,
        "measured": f.measured,
        "expected": f.expected,
        "message": f.message,
        "fix": f.fix,
        "sources": list(f.sources),
        "subject": f.subject,
        "missing": list(f.missing),
    }


def to_json(report: Report) -> dict[str, Any]:
    """The report as the public JSON document (see the module docstring)."""
    doc: dict[str, Any] = {
        "tool": "fgclip-doctor",
        "version": __version__,
        "command": report.command,
        "target": report.target,
        "facts": report.facts.to_json(),
        "findings": [finding_json(f) for f in report.findings],
        "summary": summary(report.findings),
        "exit_code": exit_code(report.findings, report.strict),
    }
    for key, value in report.extra.items():
        if key in doc:
            raise ValueError(f"report.extra may not replace the schema key {key!r}")
        doc[key] = value
    return _finite(doc)


def _case_name(f: Finding) -> str:
    return f"{f.rule} [{f.subject}]" if f.subject else f.rule


def _details(f: Finding) -> str:
    lines = [f"measured: {f.measured}", f"expected: {f.expected}", f.message]
    lines += [f"source: {s}" for s in f.sources]
    if f.fix:
        lines.append(f"fix: {f.fix}")
    return "\n".join(line for line in lines if line)


def to_junit(report: Report) -> str:
    """JUnit XML: one testsuite `fgclip-doctor.<command>`, one testcase per finding.

    FAIL -> <failure>; SKIP -> <skipped message=reason>; WARN -> <failure> when strict,
    otherwise a passing case with <system-out>WARN: ...</system-out>.
    """
    counts = summary(report.findings)
    failures = counts["fail"] + (counts["warn"] if report.strict else 0)
    suite_name = f"fgclip-doctor.{report.command}"
    attrs = {
        "name": suite_name,
        "tests": str(len(report.findings)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(counts["skip"]),
        "time": "0",
    }
    root = ET.Element("testsuites", {k: attrs[k] for k in ("name", "tests", "failures", "errors", "skipped", "time")})
    suite = ET.SubElement(root, "testsuite", attrs)
    for f in report.findings:
        case = ET.SubElement(suite, "testcase", {"classname": f.code, "name": _case_name(f), "time": "0"})
        status = Status(f.status)
        if status is Status.FAIL or (status is Status.WARN and report.strict):
            failure = ET.SubElement(case, "failure", {"message": f.message, "type": status.value})
            failure.text = _details(f)
        elif status is Status.SKIP:
            ET.SubElement(case, "skipped", {"message": f.message})
        elif status is Status.WARN:
            ET.SubElement(case, "system-out").text = f"WARN: {f.message}\n{_details(f)}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def sparkline(values: Iterable[float], width: int | None = None) -> str:
    """Unicode sparkline (▁..█) of `values`; NaN/Inf shown as '!'. Longer series are averaged
    down to `width` characters when `width` is given."""
    vals = [float(v) for v in values]
    if width is not None and width > 0 and len(vals) > width:
        buckets = [vals[i * len(vals) // width : (i + 1) * len(vals) // width] for i in range(width)]
        vals = [math.nan if any(not math.isfinite(x) for x in b) else sum(b) / len(b) for b in buckets]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return "!" * len(vals)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if not math.isfinite(v):
            out.append("!")
        elif span == 0:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))])
    return "".join(out)


def footer(findings: list[Finding], strict: bool, shown: dict[str, int] | None = None) -> str:
    """`<n> PASS · <n> WARN · <n> FAIL · <n> SKIP · exit <code>`, counting what the table shows
    (`shown`: blocks and one-liners) and, when that differs, how many findings they hold."""
    c = shown or summary(findings)
    held = f" ({len(findings)} findings)" if sum(c.values()) != len(findings) else ""
    return (
        f"{c['pass']} PASS · {c['warn']} WARN · {c['fail']} FAIL · {c['skip']} SKIP{held}"
        f" · exit {exit_code(findings, strict)}"
    )


def shown_counts(groups: list[list[Finding]], rest: list[Finding]) -> dict[str, int]:
    """What the reader sees per status: one per block (a group of subjects, a consequence under its
    root too) and one per one-liner (subjects of one rule and status joined)."""
    counts = {s.value.lower(): 0 for s in (Status.PASS, Status.WARN, Status.FAIL, Status.SKIP)}
    for item in [g[0] for g in groups] + one_line_groups(rest):
        counts[Status(item.status).value.lower()] += 1
    return counts


def by_root(groups: list[list[Finding]], problems: list[Finding]) -> list[tuple[list[Finding], Finding | None]]:
    """The problem blocks with each consequence right under its root (checks/causes.py): (group, root)."""
    roots = {id(g[0]): root_of(g[0], problems) for g in groups}
    out: list[tuple[list[Finding], Finding | None]] = []
    for g in groups:
        if roots[id(g[0])] is None:
            out.append((g, None))
            out += [(h, roots[id(h[0])]) for h in groups if any(roots[id(h[0])] is f for f in g)]
    placed = {id(g[0]) for g, _ in out}
    return out + [(g, roots[id(g[0])]) for g in groups if id(g[0]) not in placed]


def render_table(report: Report, console: Console, verbosity: int = 0) -> None:
    """Print the report for a person, within `console.width` columns: the title lines, the
    sections, the problems (FAIL, then WARN) as blocks, passes and skips one line each (only a
    count with verbosity -1, blocks too with verbosity 1), then the footer line."""
    for line in report_lines(report, console.width, verbosity):
        console.print(line, soft_wrap=True)


def report_lines(report: Report, width: int, verbosity: int = 0) -> list[Text]:
    """The lines `render_table` prints (each at most `width` cells)."""
    lines: list[Text] = []
    for i, title in enumerate(report.title_lines):
        lines += wrap(Text(display(title), style="bold" if i == 0 else ""), width, indent=INDENT, first_indent=0)
    for i, (title, body) in enumerate(report.sections):
        lines += ([Text("")] if i else []) + section_lines(title, body, width)
    order = (Status.FAIL, Status.WARN, Status.PASS, Status.SKIP)
    ranked = sorted(report.findings, key=lambda f: order.index(Status(f.status)))
    as_block = [verbosity > 0 or Status(f.status) in (Status.FAIL, Status.WARN) for f in ranked]
    blocks = [f for f, b in zip(ranked, as_block) if b]
    rest = [f for f, b in zip(ranked, as_block) if not b]
    if blocks:  # one blank line above the problems; the blocks follow each other like mypy's
        lines.append(Text(""))
    groups = group_findings(blocks)
    for group, root in by_root(groups, blocks):
        lines += finding_block(group, width, root)
    shown = shown_counts(groups, rest)
    if rest:
        lines.append(Text(""))
        if verbosity < 0:
            c = summary(rest)  # not listed: counted as findings, as the line below says
            shown = {**shown_counts(groups, []), "pass": c["pass"], "skip": c["skip"]}
            c = summary(rest)
            lines += wrap(Text(f"{c['pass']} PASS and {c['skip']} SKIP not listed (-q)", style="dim"), width)
        else:
            lines += one_liners(rest, width)
    if not report.findings:
        lines += [Text(""), Text("(no rules ran)")]
    lines += [Text("")] + wrap(footer(report.findings, report.strict, shown), width)
    return lines


def render(report: Report, format: str, width: int | None = None, verbosity: int = 0) -> str:
    """The report as text in `format` (a table: plain text, no colour, `width` or the width
    terminal.terminal_width gives)."""
    if format == "json":
        return json.dumps(to_json(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if format == "junit":
        return to_junit(report)
    if format == "table":
        width = terminal_width() if width is None else width
        return "".join(line.plain.rstrip() + "\n" for line in report_lines(report, width, verbosity))
    raise DoctorUsageError(f"unknown format {format!r} (table, json, junit)")


def emit(report: Report, format: str, output: Path | None, console: Console, verbosity: int = 0) -> int:
    """Write the report in `format` to `output`, or to the console when no output is given.

    The chosen format goes to exactly one place: with `--output FILE` the file gets it (a table
    as plain text) and nothing is printed; without, a table is printed with colour through
    `console` and JSON / JUnit go to the console's file verbatim. A table written to a file has
    the console's width. `verbosity`: -1 passes as a count (-q), 0 one line each, 1 in full (-v).
    Returns the exit code.
    """
    if output is not None:
        text = render(report, format, console.width, verbosity)
        output.write_text(text, encoding="utf-8", errors="backslashreplace")  # lone surrogates from inputs
    elif format == "table":
        render_table(report, console, verbosity)
    else:
        console.file.write(render(report, format))
        console.file.flush()
    return exit_code(report.findings, report.strict)


def refuse_output_into(target: str | None, output: Path | None) -> None:
    """The doctor never writes into what it inspects."""
    if output is None or not target or not Path(target).exists():
        return
    inspected, out = Path(target).resolve(), output.resolve()
    if out == inspected or inspected in out.parents:
        raise DoctorUsageError(f"{output}: --output would write into the inspected {target}")
