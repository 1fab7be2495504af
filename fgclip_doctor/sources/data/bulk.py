"""check-data's fast path for JSON Lines: a block of lines -> typed msgspec structs -> bulk checks.

The fast path only ever decides one thing: "this record has no defect at all". Everything else
(a line the typed decode refuses, a record any bulk check flags) goes through the reference path,
`RecordChecker.line` (Python's json, as FG-CLIP's loader reads it, and the subject's own
`fgclip.boxes.box_problem` per box), so every count and example is the reference's by
construction; the fast path adds the clean records' totals (records, boxes, valid boxes) in bulk.

Decoding (msgspec, chosen on bench/check_data.py's numbers over orjson: orjson builds every string
of a record, captions and long_expr included) reads exactly the fields the checks read, into
typed structs; every other field is skipped without building a Python object. The types refuse
what needs a closer look: a missing or mistyped field, an empty f_path, a bbox that is not 4
numbers (bools and NaN refused), a box entry that is not an object, short_expr missing or empty,
flag_short_neg not an int, short_expr_negs not a dict / list of at least num_negatives non-empty
strings (msgspec counts a dict after duplicate keys collapse, as Python's json does). msgspec does
not check UTF-8 in the strings it skips: blocks that are not ASCII are checked with Python's
decoder first (tasks.py). Its nesting limit (~1000, the interpreter's recursion limit) is below
orjson's (1024), so a record msgspec accepts is one the reference decodes too.

A block's lines are decoded by one call (`decode_lines`, no Python per line) when every line is
one object on its own: each newline has `}` before it and `{` after it (a value spanning a
newline would need `}` then `{` inside it, which is not JSON), and there are as many values as
lines. Otherwise, or when the typed decode refuses any line, the block is decoded line by line.

Boxes are checked per block as one (n, 4) float64 array: in [-tol, 1 + tol], and at least one
grid cell wide and high (which implies x1 < x2, y1 < y2, finite): the same float comparisons as
fgclip.boxes.box_problem + smaller_than_cell (`clean_boxes`; tests/test_data_formats.py checks
that they agree). A block whose boxes all pass is passed on the block's minimum and maximum
alone. When a test replaces the subject's box functions the fast path turns off, so the scan
follows the replacement.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain
from typing import Annotated

import msgspec
import numpy as np

from fgclip import boxes as subject_boxes

# the subject's functions clean_boxes mirrors (a replaced one turns the fast path off)
_MIRRORED = (subject_boxes.box_problem, subject_boxes.smaller_than_cell)
_REFUSED = (msgspec.MsgspecError, RecursionError)
_PACK = msgspec.msgpack.Encoder().encode
_OPEN, _BEFORE, _AFTER = ord("{"), (-1).__add__, (1).__add__


def enabled(opts) -> bool:
    """The fast path applies: asked for, a positive grid, the subject's box functions unchanged."""
    current = (subject_boxes.box_problem, subject_boxes.smaller_than_cell)
    return opts.bulk and opts.grid >= 1 and current == _MIRRORED


@lru_cache(maxsize=8)
def record_decoder(max_boxes: int, num_negatives: int) -> msgspec.json.Decoder:
    """A decoder of one JSON Lines record into the fields the checks read (see the docstring).

    short_expr_negs as a dict is read as a struct with the keys "0" .. "m-1" (m = max(10,
    num_negatives), FineHARD's layout), each a non-empty string, and no other key: no dict or
    key strings are built (~25 % of the decode). Any other dict goes through the reference.
    bbox_info may hold more than max_boxes entries (`flagged` sends those records to the
    reference): a refusal would cost the whole block its one-call decode."""
    text = Annotated[str, msgspec.Meta(min_length=1)]
    keys = [str(i) for i in range(max(10, num_negatives))]
    rewrites = msgspec.defstruct(
        "Rewrites",
        [(f"n{k}", text) for k in keys],
        rename=dict(zip((f"n{k}" for k in keys), keys)),
        forbid_unknown_fields=True,
        gc=False,
    )
    negs = rewrites | Annotated[list[text], msgspec.Meta(min_length=num_negatives)] | None
    box = msgspec.defstruct(
        "Box",
        [
            ("bbox", tuple[float, float, float, float]),
            ("short_expr", text),
            ("flag_short_neg", int | None, None),
            ("short_expr_negs", negs, None),
        ],
        gc=False,
    )
    record = msgspec.defstruct(
        "Record",
        [("f_path", text), ("caption", str), ("short_caption", str), ("bbox_info", list[box])],
        gc=False,
    )
    return msgspec.json.Decoder(record)


def clean_boxes(coords: np.ndarray, tol: float, grid: int) -> np.ndarray:
    """(n, 4) boxes -> (n,) bool: valid (box_problem is None) and not tiny (not smaller_than_cell).

    box_problem's range test is `x < -tol or x > 1.0 + tol` on ordered boxes; smaller_than_cell's
    is `(x2 - x1) < 1.0 / grid`: a width of at least one cell (> 0) also means ordered, non-zero
    and finite. NaN fails every comparison."""
    lo, hi, cell = -tol, 1.0 + tol, 1.0 / grid
    x1, y1, x2, y2 = coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3]
    return (x1 >= lo) & (y1 >= lo) & (x2 <= hi) & (y2 <= hi) & (x2 - x1 >= cell) & (y2 - y1 >= cell)


def all_clean(coords: np.ndarray, tol: float, grid: int) -> bool:
    """clean_boxes(coords).all(), from three reductions: every coordinate in [-tol, 1 + tol] and
    every width and height at least a cell. The same thing: a clean box has x1 >= -tol and
    x2 >= x1 + cell, so x2 >= -tol too (and x1 <= 1 + tol likewise); NaN fails min and max, and
    an infinity stops at them (before the subtraction, where inf - inf would warn)."""
    return bool(
        coords.min() >= -tol and coords.max() <= 1.0 + tol and (coords[:, 2:] - coords[:, :2]).min() >= 1.0 / grid
    )


def coordinates(bboxes: list[tuple]) -> np.ndarray:
    """(n, 4) float64 array of n 4-tuples of floats, without reading a Python float per number:
    msgpack writes each tuple as 0x94 then four times 0xcb and a big-endian float64 (37 bytes),
    after an array header of 1, 3 or 5 bytes; the numbers are one strided view of that."""
    n = len(bboxes)
    packed = _PACK(bboxes)
    head = len(packed) - 37 * n
    if head not in (1, 3, 5):  # never, for tuples of 4 floats; kept exact all the same
        return np.fromiter(chain.from_iterable(bboxes), np.float64, 4 * n).reshape(n, 4)
    return np.ndarray((n, 4), ">f8", packed, head + 2, (37, 9)).astype(np.float64)


def one_object_per_line(data, start: int, nl: list[int]) -> bool:
    """Every line of data[start : nl[-1] + 1] (newlines at `nl`) is `{` ... `}` exactly."""
    get = data.__getitem__  # C calls only: this runs for every line
    return (
        bool(nl)
        and data[start] == _OPEN
        and bytes(map(get, map(_BEFORE, nl))) == b"}" * len(nl)
        and bytes(map(get, map(_AFTER, nl[:-1]))) == b"{" * (len(nl) - 1)
    )


class BulkLines:
    """The fast path of one task's JSON Lines blocks, beside its RecordChecker `chk`."""

    def __init__(self, chk) -> None:
        o = chk.o
        self.chk, self.tol, self.grid, self.max_boxes = chk, o.tol, o.grid, o.max_boxes
        dec = record_decoder(o.max_boxes, o.num_negatives)
        self.decode, self.decode_lines = dec.decode, dec.decode_lines
        # records kept one by one, in line order: the clean copy, image checks
        self.ordered = chk.keep or o.image_root is not None

    def block(self, data, start: int, end: int, n: int) -> int:
        """Check the complete lines of `data[start:end]` (UTF-8; bytes, bytearray or mmap) after
        line `n`; return the last line. Lines are decoded from slices of one memoryview."""
        find, nl = data.find, []
        at = find(b"\n", start, end)
        while at >= 0:  # the newlines: one C call each
            nl.append(at)
            at = find(b"\n", at + 1, end)
        with memoryview(data) as view:
            recs = None
            if one_object_per_line(data, start, nl):
                try:
                    recs = self.decode_lines(view[start:end])
                except _REFUSED:
                    pass
            if recs is not None and len(recs) == len(nl):
                slow = []  # (line, start, stop) of the lines for the reference
            else:
                recs, slow = self.one_by_one(view, start, nl, n)
        line = n + len(nl)  # the block's last line
        lines = range(n + 1, line + 1)  # the records' lines
        if slow:
            skip = {i for i, _, _ in slow}
            lines = [i for i in lines if i not in skip]
        chk, p = self.chk, self.chk.p
        bad = self.flagged(recs)
        if self.ordered or bad:
            starts = [start] + [i + 1 for i in nl]  # line k of the block: starts[k] .. nl[k]
        if self.ordered:  # every line in order: clean ones kept here, the others by the reference
            verdict = {lines[j]: recs[j] for j in range(len(recs)) if j not in bad}
            for k, i in enumerate(range(n + 1, line + 1)):
                raw = data[starts[k] : nl[k]]
                if i in verdict:
                    self.keep(i, verdict[i], raw)
                else:
                    chk.line(i, raw.decode("utf-8"))
            return line
        clean = recs
        if bad:
            clean = [r for j, r in enumerate(recs) if j not in bad]
            slow = sorted(slow + [(lines[j], starts[lines[j] - n - 1], nl[lines[j] - n - 1]) for j in bad])
        nboxes = sum([len(r.bbox_info) for r in clean])
        p.records += len(clean)
        p.boxes += nboxes
        p.valid_boxes += nboxes
        for i, a, b in slow:  # in line order: the examples kept are the first K
            chk.line(i, data[a:b].decode("utf-8"))
        return line

    def one_by_one(self, view, start: int, nl: list[int], n: int) -> tuple[list, list]:
        """Decode each line on its own: (records, (line, start, stop) of the refused lines)."""
        decode, refused = self.decode, _REFUSED
        recs, slow = [], []
        append = recs.append
        for k, stop in enumerate(nl):
            try:
                append(decode(view[start:stop]))
            except refused:
                slow.append((n + 1 + k, start, stop))
            start = stop + 1
        return recs, slow

    def flagged(self, recs: list) -> set[int]:
        """Indices of the records a bulk check flags: a box not clean, more boxes than
        max_boxes, short_expr blank, or flag_short_neg 1 without short_expr_negs. (Comprehensions
        over struct fields: ~2x less CPU than map(attrgetter) on Python 3.11.)"""
        info = [r.bbox_info for r in recs]
        flat = [*chain.from_iterable(info)]
        if not flat:
            return set()
        sizes = [*map(len, info)]
        coords = coordinates([b.bbox for b in flat])
        blank = any(map(str.isspace, [b.short_expr for b in flat]))
        unneg = None in [b.short_expr_negs for b in flat] and any(
            b.flag_short_neg == 1 and b.short_expr_negs is None for b in flat
        )
        if not unneg and not blank and max(sizes) <= self.max_boxes and all_clean(coords, self.tol, self.grid):
            return set()
        odd = [b.short_expr.isspace() or (b.flag_short_neg == 1 and b.short_expr_negs is None) for b in flat]
        owner = np.repeat(np.arange(len(recs)), sizes)
        bad = ~clean_boxes(coords, self.tol, self.grid) | np.asarray(odd, dtype=bool)
        return set(owner[bad].tolist()) | {j for j, k in enumerate(sizes) if k > self.max_boxes}

    def keep(self, line: int, rec, raw: bytes) -> None:
        """A clean record in ordered mode: its image checked, its line copied to the clean file."""
        chk, p = self.chk, self.chk.p
        n = len(rec.bbox_info)
        p.records += 1
        p.boxes += n
        p.valid_boxes += n
        image_ok = chk.o.image_root is None or chk.image(line, rec.f_path)
        if chk.keep and image_ok:
            chk.clean.write(raw.decode("utf-8").rstrip("\r") + "\n")
            p.clean_records += 1
            p.clean_boxes += n
