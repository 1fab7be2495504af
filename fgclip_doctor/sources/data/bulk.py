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
numbers (bools and NaN refused), a box entry that is not an object, more boxes than max_boxes,
short_expr missing or empty, flag_short_neg not an int, short_expr_negs not a dict / list of at
least num_negatives non-empty strings (msgspec counts a dict after duplicate keys collapse, as
Python's json does). msgspec does not check UTF-8 in the strings it skips: blocks that are not
ASCII are checked with Python's decoder first (tasks.py). Its nesting limit (~1000, the
interpreter's recursion limit) is below orjson's (1024), so a record msgspec accepts is one the
reference decodes too.

Boxes are checked per block as one (n, 4) float64 array: in [-tol, 1 + tol], and at least one
grid cell wide and high (which implies x1 < x2, y1 < y2, finite): `clean_boxes`, the same float
comparisons as fgclip.boxes.box_problem + smaller_than_cell (tests/test_data_formats.py checks
that they agree). When a test replaces the subject's box functions the fast path turns off, so
the scan follows the replacement.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain
from operator import attrgetter
from typing import Annotated

import msgspec
import numpy as np

from fgclip import boxes as subject_boxes

# the subject's functions clean_boxes mirrors (a replaced one turns the fast path off)
_MIRRORED = (subject_boxes.box_problem, subject_boxes.smaller_than_cell)
_REFUSED = (msgspec.MsgspecError, RecursionError)
_INFO, _BBOX, _SHORT = attrgetter("bbox_info"), attrgetter("bbox"), attrgetter("short_expr")
_FLAG, _NEGS = attrgetter("flag_short_neg"), attrgetter("short_expr_negs")


def enabled(opts) -> bool:
    """The fast path applies: asked for, a positive grid, the subject's box functions unchanged."""
    current = (subject_boxes.box_problem, subject_boxes.smaller_than_cell)
    return opts.bulk and opts.grid >= 1 and current == _MIRRORED


@lru_cache(maxsize=8)
def record_decoder(max_boxes: int, num_negatives: int) -> msgspec.json.Decoder:
    """A decoder of one JSON Lines record into the fields the checks read (see the docstring).

    short_expr_negs as a dict is read as a struct with the keys "0" .. "m-1" (m = max(10,
    num_negatives), FineHARD's layout), each a non-empty string, and no other key: no dict or
    key strings are built (~25 % of the decode). Any other dict goes through the reference."""
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
        [
            ("f_path", text),
            ("caption", str),
            ("short_caption", str),
            ("bbox_info", Annotated[list[box], msgspec.Meta(max_length=max_boxes)]),
        ],
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


class BulkLines:
    """The fast path of one task's JSON Lines blocks, beside its RecordChecker `chk`."""

    def __init__(self, chk) -> None:
        o = chk.o
        self.chk, self.tol, self.grid = chk, o.tol, o.grid
        self.decode = record_decoder(o.max_boxes, o.num_negatives).decode
        # records kept one by one, in line order: the clean copy, image checks
        self.ordered = chk.keep or o.image_root is not None

    def block(self, data: bytes, end: int, n: int) -> int:
        """Check the complete lines of `data[:end]` (UTF-8) after line `n`; return the last line.

        Lines are decoded from slices of one memoryview (no copy per line)."""
        decode, refused, find, view = self.decode, _REFUSED, data.find, memoryview(data)
        recs, slow = [], []  # typed records; (line, start, stop) of the lines for the reference
        append, start = recs.append, 0
        while start < end:  # per line: the least Python there can be
            stop = find(b"\n", start)
            try:
                append(decode(view[start:stop]))
            except refused:
                slow.append((n + 1 + len(recs) + len(slow), start, stop))
            start = stop + 1
        line = n + len(recs) + len(slow)  # the block's last line
        at = range(n + 1, line + 1)  # the records' lines
        if slow:
            skip = {i for i, _, _ in slow}
            at = [i for i in at if i not in skip]
        chk, p = self.chk, self.chk.p
        bad = self.flagged(recs)
        if self.ordered:  # every line in order: clean ones kept here, the others by the reference
            verdict = {at[j]: recs[j] for j in range(len(recs)) if j not in bad}
            start = 0
            for i in range(n + 1, line + 1):
                stop = find(b"\n", start)
                if i in verdict:
                    self.keep(i, verdict[i], data[start:stop])
                else:
                    chk.line(i, data[start:stop].decode("utf-8"))
                start = stop + 1
            return line
        clean = recs
        if bad:
            clean = [r for j, r in enumerate(recs) if j not in bad]
            starts = [0] + [m + 1 for m in _newlines(data, end)]  # rare: a flagged record's bytes
            slow = sorted(slow + [(at[j], starts[at[j] - n - 1], starts[at[j] - n] - 1) for j in bad])
        nboxes = sum(map(len, [r.bbox_info for r in clean]))
        p.records += len(clean)
        p.boxes += nboxes
        p.valid_boxes += nboxes
        for i, start, stop in slow:  # in line order: the examples kept are the first K
            chk.line(i, data[start:stop].decode("utf-8"))
        return line

    def flagged(self, recs: list) -> set[int]:
        """Indices of the records a bulk check flags: a box not clean, short_expr blank, or
        flag_short_neg 1 without short_expr_negs."""
        flat = [*chain.from_iterable(map(_INFO, recs))]  # C loops only: this runs for every box
        if not flat:
            return set()
        coords = np.fromiter(chain.from_iterable(map(_BBOX, flat)), np.float64, 4 * len(flat))
        ok = clean_boxes(coords.reshape(-1, 4), self.tol, self.grid)
        blank = any(map(str.isspace, map(_SHORT, flat)))
        if ok.all() and not blank and (1, None) not in zip(map(_FLAG, flat), map(_NEGS, flat)):
            return set()
        odd = [b.short_expr.isspace() or (b.flag_short_neg == 1 and b.short_expr_negs is None) for b in flat]
        owner = np.repeat(np.arange(len(recs)), [len(r.bbox_info) for r in recs])
        return set(owner[~ok | np.asarray(odd, dtype=bool)].tolist())

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


def _newlines(data: bytes, end: int):
    """Positions of the newlines in data[:end]."""
    at = data.find(b"\n", 0, end)
    while at >= 0:
        yield at
        at = data.find(b"\n", at + 1, end)
