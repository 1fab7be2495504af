"""Text for a fixed-width terminal: word wrapping that never splits a word, truncation at a word
boundary, and absolute paths shortened for display.

All widths are terminal cells (rich's `cell_len`: `×`, `→`, `▇` take one, CJK takes two).
Wrapping works on `rich.text.Text`, so styles survive; it breaks only at whitespace. A single
token wider than the line (a long path) is folded after a separator such as `/`, `:` or `.`; only a
token with no separator at all is cut, because a line is never wider than the width.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from rich.cells import cell_len
from rich.text import Text

from fgclip_doctor.phrases import say_names

FOLD_AFTER = "/\\:;,=&|?)."  # a token wider than a line may break after one of these
ELLIPSIS = "…"
NBSP = "\xa0"  # a space the wrapper never breaks at (`path:line --flag` stays on one line)
_TOKEN = re.compile(r"[^ \t\n]+")
_FLAG_AFTER_LINE = re.compile(r"(:\d+) (--?[\w-])")
_ABS_PATH = re.compile(r"(?<![\w.~$/-])/[\w.@+~%-]+(?:/[\w.@+~%-]*)*")


def _fold_points(token: str, start: int, avail: int, first_avail: int) -> list[int]:
    """Offsets (relative to the whole string) where a too-long token is broken into pieces."""
    cuts, piece_start, room = [], 0, first_avail
    while cell_len(token[piece_start:]) > room:
        best = glued = None
        for i in range(piece_start + 1, len(token)):
            if cell_len(token[piece_start:i]) > room:
                break
            if token[i - 1] in FOLD_AFTER:
                best = i
            if token[i - 1] == NBSP:  # `path:line --flag` breaks before the flag first
                glued = i
        best = glued if glued is not None else best
        if best is None:  # no separator fits: cut at the width (a token, not a word)
            best = piece_start + 1
            while best < len(token) and cell_len(token[piece_start : best + 1]) <= room:
                best += 1
        cuts.append(start + best)
        piece_start, room = best, avail
    return cuts


def wrap_ranges(plain: str, width: int, indent: int = 0, first_indent: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of each line of `plain` wrapped to `width` cells, lines after the first
    indented by `indent` cells (the first by `first_indent`, default `indent`). Newlines force a
    break; runs of spaces inside a line are kept as written."""
    first = indent if first_indent is None else first_indent
    lines: list[tuple[int, int]] = []
    offset = 0
    for segment in plain.split("\n"):
        start = end = None  # the line being filled
        for m in _TOKEN.finditer(segment):
            s, e = m.start() + offset, m.end() + offset
            avail = max(1, width - (first if not lines else indent))
            if start is not None:
                if cell_len(plain[start:e]) <= avail:
                    end = e
                    continue
                room = avail - cell_len(plain[start:s])
                if cell_len(plain[s:e]) > width - indent and room >= 8:  # folds anyway: start here
                    cuts = _fold_points(plain[s:e], s, max(1, width - indent), room)
                    lines.append((start, cuts[0]))
                    for a, b in zip(cuts, cuts[1:]):
                        lines.append((a, b))
                    start, end = cuts[-1], e
                    continue
                lines.append((start, end))
                avail = max(1, width - indent)
            if cell_len(plain[s:e]) > avail:  # one token wider than the line: fold it
                for cut in _fold_points(plain[s:e], s, max(1, width - indent), avail):
                    lines.append((s, cut))
                    s = cut
            start, end = s, e
        lines.append((start, end) if start is not None else (offset, offset))
        offset += len(segment) + 1
    return lines


def wrap(text: Text | str, width: int, indent: int = 0, first_indent: int | None = None) -> list[Text]:
    """`text` as lines of at most `width` cells, each prefixed by its indent (spaces)."""
    text = Text(text) if isinstance(text, str) else text
    first = indent if first_indent is None else first_indent
    out = []
    for i, (s, e) in enumerate(wrap_ranges(text.plain, width, indent, first)):
        line = Text(" " * (first if i == 0 else indent))
        line.append_text(text[s:e])
        line = _unglue(line)
        line.rstrip()  # a fold after a glued space leaves one at the end
        out.append(line)
    return out


def _unglue(text: Text) -> Text:
    text.plain = text.plain.replace(NBSP, " ")  # same length: the styles' spans stay valid
    return text


def glue(text: str) -> str:
    """`path:line --flag` held together for the wrapper (the space becomes a plain one again
    when the line is made)."""
    return _FLAG_AFTER_LINE.sub(lambda m: m.group(1) + NBSP + m.group(2), text)


def display(text: str) -> str:
    """A report string as the table shows it: fact names in words, paths shortened,
    `path:line --flag` unbreakable."""
    return glue(shorten_paths(say_names(text)))


def truncate(text: Text | str, width: int) -> Text:
    """`text` on one line of at most `width` cells: cut at the last word boundary that fits,
    with an ellipsis; unchanged when it fits."""
    text = Text(text) if isinstance(text, str) else text.copy()
    plain = text.plain.replace("\n", " ")
    text = Text(plain, style=text.style, spans=text.spans)
    if cell_len(plain) <= width:
        return _unglue(text)
    room = width - cell_len(ELLIPSIS)
    cut = 0
    for m in _TOKEN.finditer(plain):
        if cell_len(plain[: m.end()]) > room:
            break
        cut = m.end()
    if cut == 0:  # the first word alone is too long: cut inside it, marked by the ellipsis
        while cut < len(plain) and cell_len(plain[: cut + 1]) <= room:
            cut += 1
    out = text[:cut]
    out.rstrip()
    out.append(ELLIPSIS)
    return _unglue(out)


def shorten_paths(text: str, cwd: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Absolute paths in `text` as a person would type them: relative to the working directory
    when under it, `$FGCLIP_CACHE/...` under the doctor's cache, `~/...` under the home folder.
    Pure string work (no filesystem access); only for display, JSON keeps the absolute paths."""
    env = os.environ if environ is None else environ
    cwd = os.getcwd() if cwd is None else cwd
    roots = [(cwd, "")]
    if env.get("FGCLIP_CACHE"):
        roots.append((env["FGCLIP_CACHE"], "$FGCLIP_CACHE/"))
    if env.get("HOME"):
        roots.append((env["HOME"], "~/"))

    def short(m: re.Match) -> str:
        path = m.group(0)
        for root, prefix in roots:
            root = root.rstrip("/")
            if root and path.startswith(root + "/") and len(path) > len(root) + 1:
                return prefix + path[len(root) + 1 :]
        return path

    return _ABS_PATH.sub(short, text)
