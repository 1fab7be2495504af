"""The table's lines, laid out for a fixed width: problems as blocks, passes as one line each,
and the commands' summary sections as grids that shrink to the width.

A problem block, in the manner of ruff / rustc diagnostics:

    FAIL FGD101 logit-scale-init · finegrained
      finegrained starts at 2.6592 (T 14.3); base global 4.6052 (T 100): CLIP's from-scratch
      init on a base at ln 100
      measured: 2.6592 (T 14.3)   expected: 4.6052 (T 100); at least 0.5 x the base temperature
      sources: scripts/seed_bug.sh:21 --logit_scale_init_value · scripts/seed_bug.sh:13 ...
      fix: start new scales at the base's scale (drop --logit_scale_init_value, or set 4.6052)

A pass (or a skip, with its reason) is one line, cut at a word boundary with an ellipsis:

    PASS FGD102 logit-scale-clamp · global    4.6052 (T 100)

Every function returns `rich.text.Text` lines of at most `width` cells; no word is split across
lines (see text_wrap). Absolute paths are shortened for display only (JSON keeps them).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import replace

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from fgclip_doctor.checks.registry import Finding, Status
from fgclip_doctor.text_wrap import NBSP, display, truncate, wrap

STATUS_STYLE = {Status.PASS: "green", Status.WARN: "bold yellow", Status.FAIL: "bold red", Status.SKIP: "dim"}
LABEL_STYLE = "dim"
INDENT = 2  # a block's body under its header
GAP = 2  # between grid columns
MIN_WRAP = 20  # a grid column narrower than this reads badly: lay the table out as label + rest
MIN_REASON = 40  # a SKIP's reason wraps under its column when the column leaves this much room


def unique_sources(sources: Iterable[str]) -> list[str]:
    """Each source once, in order; one that another source of the same finding quotes whole
    (`train.sh:23 --x` inside `train.sh:23 --x ÷ accumulation (...)`) adds nothing and goes."""
    items = list(dict.fromkeys(s for s in sources if s))

    def quoted(s: str, t: str) -> bool:
        return re.search(r"(?:^|[\s(])" + re.escape(s) + r"(?:$|[\s),;])", t) is not None

    return [s for s in items if not any(t != s and quoted(s, t) for t in items)]


# ---- findings ----------------------------------------------------------------------------------


def _head(f: Finding) -> Text:
    """`FGD101 logit-scale-init · finegrained` (no status)."""
    head = Text(f.code, style="bold")
    head.append(f" {f.rule}")
    if f.subject:
        head.append(" · ")
        head.append(display(f.subject), style="bold")
    return head


def _status(f: Finding) -> Text:
    status = Status(f.status)
    return Text(status.value, style=STATUS_STYLE[status])


def _labelled(label: str, body: str, width: int) -> list[Text]:
    """`  label: body` wrapped, continuation lines aligned under the body."""
    text = Text(label, style=LABEL_STYLE)
    text.append(" " + display(body))
    return wrap(text, width, indent=INDENT + cell_len(label) + 1, first_indent=INDENT)


def _measured_expected(f: Finding, width: int) -> list[Text]:
    """`  measured: a   expected: b` (on two lines when one does not fit); a side that is empty
    (a SKIP measured nothing) is left out, and the line too when both are."""
    pairs = [
        (label, display(value)) for label, value in (("measured:", f.measured), ("expected:", f.expected)) if value
    ]
    one = Text(" " * INDENT)
    for i, (label, value) in enumerate(pairs):
        one.append("   " if i else "")
        one.append(label, style=LABEL_STYLE)
        one.append(f" {value}")
    if not pairs or cell_len(one.plain) <= width:
        return [one] if pairs else []
    return [line for label, value in pairs for line in _labelled(label, value, width)]


def _sources(f: Finding, width: int) -> list[Text]:
    """`  from: a · b · c` wrapped as one paragraph; `path:line --flag` never broken; no line
    when the finding cites nothing."""
    label = "from:"
    text = Text(label, style=LABEL_STYLE)
    items = [display(s) for s in unique_sources(f.sources)]
    if not items:
        return []
    for i, item in enumerate(items):
        text.append(" ")
        text.append(item)
        if i < len(items) - 1:
            text.append(NBSP + "·", style=LABEL_STYLE)  # the dot stays with the source before it
    return wrap(text, width, indent=INDENT + len(label) + 1, first_indent=INDENT)


def same_problem(a: Finding, b: Finding) -> bool:
    """Two findings one block can show: one rule, one verdict, one measured / expected / fix /
    sources, differing only in subject and message (finegrained and hardneg both started low)."""
    return (a.code, a.status, a.measured, a.expected, a.fix, unique_sources(a.sources)) == (
        b.code,
        b.status,
        b.measured,
        b.expected,
        b.fix,
        unique_sources(b.sources),
    )


def group_findings(findings: list[Finding]) -> list[list[Finding]]:
    """Consecutive findings that are the same problem, grouped (order kept)."""
    groups: list[list[Finding]] = []
    for f in findings:
        if groups and same_problem(groups[-1][0], f):
            groups[-1].append(f)
        else:
            groups.append([f])
    return groups


def finding_block(group: Finding | list[Finding], width: int, root: Finding | None = None) -> list[Text]:
    """Header, message(s), measured vs expected, sources, fix (fix omitted when there is none).
    A group of the same problem on several subjects is one block, one message per subject. With
    `root` (the finding this one follows from, checks/causes.py), a `cause:` line points to the root's
    block, shown above it, instead of a fix of its own."""
    group = [group] if isinstance(group, Finding) else group
    f = group[0]
    header = _status(f)
    header.append(" ")
    header.append_text(_head(f))
    for other in group[1:]:
        header.append(", ")
        header.append(display(other.subject), style="bold")
    lines = wrap(header, width, indent=len(Status(f.status).value) + 1, first_indent=0)
    for message in dict.fromkeys(g.message for g in group if g.message):  # each said once
        lines += wrap(display(message), width, indent=INDENT, first_indent=INDENT)
    lines += _measured_expected(f, width)
    lines += _sources(f, width)
    if root is not None:
        where = f"{root.code} {root.rule}" + (f" · {root.subject}" if root.subject else "")
        lines += _labelled("cause:", f"follows from {where} above; its fix fixes this too", width)
    elif f.fix:
        lines += _labelled("fix:", f.fix, width)
    return lines


def _tail(f: Finding) -> str:
    return f.message if Status(f.status) is Status.SKIP or not f.measured else f.measured


def one_line_groups(findings: list[Finding]) -> list[Finding]:
    """Consecutive findings of one rule and one status (SKIPs: one reason too) as one finding:
    subjects joined ("global, region, hardneg"), what was measured said once per distinct value."""
    groups: list[list[Finding]] = []
    for f in findings:
        last = groups[-1][0] if groups else None
        if (
            last is not None
            and (last.code, last.status) == (f.code, f.status)
            and (Status(f.status) is not Status.SKIP or _reason(last) == _reason(f))
        ):
            groups[-1].append(f)
        else:
            groups.append([f])
    out = []
    for g in groups:
        if len(g) == 1:
            out.append(g[0])
            continue
        subjects = ", ".join(dict.fromkeys(f.subject for f in g if f.subject))
        tails = " · ".join(dict.fromkeys(_tail(f) for f in g if _tail(f)))
        is_skip = Status(g[0].status) is Status.SKIP
        reason = _reason(g[0]).replace("\0", "each")
        reason = re.sub(r"\b([Tt])he each\b", lambda m: "Each" if m.group(1) == "T" else "each", reason)
        out.append(
            replace(g[0], subject=subjects, measured="" if is_skip else tails, message=reason if is_skip else tails)
        )
    return out


def _reason(f: Finding) -> str:
    """A SKIP's reason with its subject as a hole: the same reason for several subjects
    ("the global loss's floor ...", "the region loss's floor ...") is said once, for each."""
    if not f.subject:
        return f.message
    return re.sub(rf"\b{re.escape(f.subject)}\b", "\0", f.message)


def one_liners(findings: list[Finding], width: int) -> list[Text]:
    """One line per rule and status: status, code, rule · subject(s), then what was measured,
    heads aligned, cut at a word boundary to the width. A SKIP's reason is never cut: it wraps,
    its lines under the reason's column (or indented, when that column leaves too little room)."""
    findings = one_line_groups(findings)
    heads = [_head(f) for f in findings]
    widest: dict[Status, int] = {}  # heads aligned within each status (passes, then skips)
    for f, head in zip(findings, heads):
        widest[Status(f.status)] = max(widest.get(Status(f.status), 0), cell_len(head.plain))
    lines = []
    for f, head in zip(findings, heads):
        pad = min(widest[Status(f.status)], width // 2)
        line = _status(f)
        line.append(" ")
        line.append_text(head)
        line.append(" " * max(0, pad - cell_len(head.plain)) + "  ")
        column = cell_len(line.plain)
        skip = Status(f.status) is Status.SKIP
        line.append(display(_tail(f) or ""), style="dim" if skip else "")
        line.rstrip()
        if not skip:
            lines.append(truncate(line, width))
            continue
        under = column if width - column >= MIN_REASON else 2 * INDENT
        lines += wrap(line, width, indent=under, first_indent=0)
    return lines


# ---- sections ----------------------------------------------------------------------------------


def _cell(cell: RenderableType, style: str | None) -> Text:
    """A table cell as Text for display; its styles kept unless a shortened path moved them."""
    if isinstance(cell, Text):
        short = display(cell.plain)
        text = cell.copy() if len(short) == len(cell.plain) else Text(short, style=cell.style)
        text.plain = short
    else:
        text = Text(display(str(cell)))
    if style and not text.style:
        text.style = style
    return text


def _block(text: Text, width: int) -> list[Text]:
    """A cell's lines wrapped to its column (its own newlines kept)."""
    return wrap(text, max(1, width)) if text.plain else [Text("")]


def _side_by_side(columns: list[list[Text]], widths: list[int], right: list[bool]) -> list[Text]:
    height = max(len(c) for c in columns)
    lines = []
    for i in range(height):
        line = Text()
        for j, (col, w) in enumerate(zip(columns, widths)):
            cell = col[i] if i < len(col) else Text("")
            padding = " " * max(0, w - cell_len(cell.plain))
            if j:
                line.append(" " * GAP)
            if right[j]:
                line.append(padding)
                line.append_text(cell)
            else:
                line.append_text(cell)
                if j < len(columns) - 1:
                    line.append(padding)
        line.rstrip()
        lines.append(line)
    return lines


def _grid(header: list[Text] | None, rows: list[list[Text]], widths: list[int], right: list[bool]) -> list[Text]:
    out = []
    for row in ([header] if header else []) + rows:
        out += _side_by_side([_block(c, w) for c, w in zip(row, widths)], widths, right)
    return out


def _flow(headers: list[str], rows: list[list[Text]], width: int, named: bool) -> list[Text]:
    """Two columns: the first cell as the label, the others run together and wrapped beside it
    (`header value · header value` when the table has many named columns)."""
    label_w = min(max(cell_len(r[0].plain) for r in rows), max(10, width // 3))
    rest_w = width - label_w - GAP
    out = []
    for row in rows:
        rest = Text()
        for name, cell in zip(headers[1:], row[1:]):
            if not cell.plain.strip():
                continue
            if rest.plain:
                rest.append(" · " if named else "  ")
            if named:
                rest.append(f"{name} ", style=LABEL_STYLE)
            value = cell.copy()
            value.plain = value.plain.replace("\n", " · ")  # same length: spans stay valid
            rest.append_text(value)
        if rest_w >= MIN_WRAP:
            out += _side_by_side([_block(row[0], label_w), _block(rest, rest_w)], [label_w, rest_w], [False, False])
        else:  # too narrow for two columns: label, then the rest indented under it
            out += _block(row[0], width) + wrap(rest, width, indent=INDENT, first_indent=INDENT)
    return out


def _labelled_row(label: Text, body: list[Text], label_w: int, start: int, width: int) -> list[Text]:
    """`label` in the first `start` cells of the body's first line (or on a line of its own)."""
    if cell_len(label.plain) > label_w:
        return wrap(label, width) + body
    first = label.copy()
    first.append(" " * (start - cell_len(label.plain)))
    first.append_text(body[0][start:])
    return [first] + body[1:]


def _tabbed(rows: list[list[Text]], width: int) -> list[Text]:
    """label · value · source, in the fewest lines of: the source column at a tab stop, or each
    value beside its label with its sources on the lines below. At a tab stop, a row whose value
    is wider than its column, or whose source has a word wider than the room left, puts its
    source on its own lines under the value (never pushed along, never folded mid-path)."""
    label_w = min(max(cell_len(r[0].plain) for r in rows), max(10, width // 3))
    start = label_w + GAP

    def stacked(label: Text, value: Text, source: Text) -> list[Text]:
        body = wrap(value, width, indent=start, first_indent=start)
        if source.plain:
            body += wrap(source, width, indent=start + INDENT, first_indent=start + INDENT)
        return _labelled_row(label, body, label_w, start, width)

    def beside(label: Text, value: Text, source: Text, value_w: int) -> list[Text] | None:
        column = start + value_w + GAP
        words = re.findall(r"[^ \t\n]+", source.plain)  # `path:line --flag` (glued by a NBSP) is one word
        if cell_len(value.plain) > value_w or max(map(cell_len, words), default=0) > width - column:
            return None
        text = value.copy()
        if source.plain:
            text.append(" " * (value_w - cell_len(value.plain) + GAP))
            text.append_text(source)
        return _labelled_row(label, wrap(text, width, indent=column, first_indent=start), label_w, start, width)

    stops = sorted({cell_len(r[1].plain) for r in rows if start + cell_len(r[1].plain) + GAP + MIN_WRAP <= width})
    layouts = []
    for value_w in reversed(stops):  # the widest stop first: it wins a tie
        out: list[Text] = []
        for label, value, source in rows:
            out += beside(label, value, source, value_w) or stacked(label, value, source)
        layouts.append(out)
    layouts.append([line for label, value, source in rows for line in stacked(label, value, source)])
    return min(layouts, key=len)  # ties: the widest tab stop, all stacked last


def table_lines(table: Table, width: int) -> list[Text]:
    """A rich Table laid out within `width`: its natural grid when that fits; else the last
    column wrapped, or a label + rest layout, whichever takes fewer lines."""
    cols = table.columns
    if not cols:
        return []
    headers = [str(c.header) for c in cols]
    rows = [list(r) for r in zip(*[[_cell(cell, c.style) for cell in c.cells] for c in cols])]
    if not rows:
        return []
    header = [Text(h, style="bold") for h in headers] if table.show_header else None
    right = [c.justify == "right" for c in cols]
    natural = [
        max(
            cell_len(line)
            for t in ([header[j]] if header else []) + [r[j] for r in rows]
            for line in t.plain.split("\n")
        )
        for j in range(len(cols))
    ]
    if sum(natural) + GAP * (len(cols) - 1) <= width or len(cols) == 1:
        return _grid(header, rows, [min(w, width) for w in natural], right)
    named = table.show_header and len(cols) > 3
    flow = _tabbed(rows, width) if len(cols) == 3 else _flow(headers, rows, width, named)
    rest = width - sum(natural[:-1]) - GAP * (len(cols) - 1)
    if rest >= MIN_WRAP:
        grid = _grid(header, rows, natural[:-1] + [rest], right)
        if len(grid) <= len(flow):
            return grid
    return flow


def section_lines(title: str, body: RenderableType, width: int) -> list[Text]:
    """A summary section: its title, then its body within `width`."""
    lines = [Text(title, style="bold underline")]
    if isinstance(body, Table):  # its caption (how to read it) wrapped under it
        note = wrap(Text(display(str(body.caption)), style="dim"), width) if body.caption else []
        return lines + table_lines(body, width) + note
    if isinstance(body, (Text, str)):
        return lines + wrap(Text(display(body)) if isinstance(body, str) else _cell(body, None), width)
    console = Console(width=width, file=io.StringIO(), color_system=None)  # any other renderable
    for segments in console.render_lines(body, console.options, pad=False):
        line = Text()
        for seg in segments:
            line.append(seg.text, seg.style)
        lines.append(line)
    return lines
