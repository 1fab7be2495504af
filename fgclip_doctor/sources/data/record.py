"""check-data's record checks: what is wrong with one FG-CLIP annotation record, and its boxes.

`RecordChecker.record` is the reference path: every JSON array item, and every JSON Lines record
the fast path (bulk.py) does not pass as clean. Flat code, locals bound once, examples formatted
only while fewer than K are kept. Every box goes through the subject's own
`fgclip.boxes.box_problem`, so "flagged here" means "dropped by the loader". `decode` reads a
record as Python's json (FG-CLIP's loader) does, through orjson when it can.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from dataclasses import dataclass, field

from fgclip import boxes as subject_boxes
from fgclip_doctor.sources.data.bulk import BulkLines
from fgclip_doctor.sources.data.bulk import enabled as bulk_enabled

SIZE_KINDS = 1000  # distinct image sizes kept for "most common"

#: required record fields and their JSON types (FG-CLIP's dataset indexes them directly)
REQUIRED = (("f_path", str), ("caption", str), ("short_caption", str), ("bbox_info", list))

# category -> (unit, what it counts). Box categories are per box entry; the first six are the
# loader's drops (box_problem's names, pixel coordinates split out of out_of_range).
INVALID = ("malformed", "nonfinite", "inverted", "zero_area", "out_of_range", "pixel_coords")
CATEGORIES = {
    "malformed": ("boxes", "bbox missing or not 4 numbers"),
    "nonfinite": ("boxes", "a coordinate is NaN or Inf"),
    "inverted": ("boxes", "x1 > x2 or y1 > y2"),
    "zero_area": ("boxes", "x1 == x2 or y1 == y2"),
    "out_of_range": ("boxes", "outside [0, 1] beyond the tolerance"),
    "pixel_coords": ("boxes", "outside [0, 1] with max > 1.5: likely pixel coordinates"),
    "tiny": ("boxes", "valid, but smaller than one cell of the patch grid"),
    "empty_caption": ("boxes", "valid, but short_expr and long_expr both empty"),
    "negatives_malformed": ("boxes", "flag_short_neg set, short_expr_negs not a list/dict of non-empty strings"),
    "negatives_short": ("boxes", "flag_short_neg set, fewer rewrites than the loss needs"),
    "not_json": ("records", "line (or .json document) is not valid JSON / UTF-8"),
    "not_object": ("records", "valid JSON but not an object"),
    "missing_fields": ("records", "f_path, caption, short_caption or bbox_info missing or mistyped"),
    "over_max": ("records", "more valid boxes than the loader keeps"),
    "missing_image": ("records", "image not found under --image-root"),
    "unreadable_image": ("records", "image found but PIL cannot open it"),
    "loader_crash": (
        "records",
        (
            "FG-CLIP's loader raises on it (with add_box_loss / use_hard_neg): "
            "an inverted or malformed box among the first max_boxes, or a "
            "missing field; the run stops there"
        ),
    ),
}


@dataclass(frozen=True)
class ScanOptions:
    """What to check (the CLI's --grid, --max-boxes, --examples, --image-root, --check-images)."""

    grid: int = 14
    max_boxes: int = 4
    num_negatives: int = 10  # FG-CLIP / fgclip.data default num_hard_negatives
    examples: int = 5
    image_root: str | None = None
    check_images: bool = False
    tol: float = 1e-6  # box_problem's default, as the loader uses it
    bulk: bool = True  # JSON Lines through the fast path (bulk.py); False: every record by the reference


@dataclass
class Tally:
    """Counters shared by one task's result and the merged scan."""

    records: int = 0  # non-blank lines / list items, malformed ones included
    boxes: int = 0
    valid_boxes: int = 0
    over_max_boxes: int = 0
    images_checked: int = 0
    counts: dict = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)  # (w, h) -> images (SIZE_KINDS kinds at most)
    size_lo: tuple[int, int] | None = None  # smallest width and smallest height seen
    size_hi: tuple[int, int] | None = None

    def add_size(self, size: tuple[int, int], n: int = 1) -> None:
        """Count `n` images of `size` (a bounded number of distinct sizes); widen min / max."""
        if n and (size in self.sizes or len(self.sizes) < SIZE_KINDS):
            self.sizes[size] += n
        lo, hi = self.size_lo or size, self.size_hi or size
        self.size_lo = (min(lo[0], size[0]), min(lo[1], size[1]))
        self.size_hi = (max(hi[0], size[0]), max(hi[1], size[1]))


TALLY_INTS = ("records", "boxes", "valid_boxes", "over_max_boxes", "images_checked")


@dataclass
class Partial(Tally):
    """What one task found; example lines are local to its range."""

    task: int = 0
    lines: int = 0  # lines owned by the range, blank ones included
    examples: dict = field(default_factory=dict)  # category -> [(local line, detail)]
    clean_records: int = 0
    clean_boxes: int = 0


class RecordChecker:
    """Per-task state and the per-record checks (the hot path: keep it flat)."""

    def __init__(self, opts: ScanOptions, part: Partial, clean) -> None:
        self.o, self.p, self.clean = opts, part, clean
        self.k = opts.examples
        self.keep = clean is not None
        # bound once per task (tests patch fgclip.boxes.box_problem before a scan)
        self.fast = (
            subject_boxes.box_problem,
            opts.tol,
            subject_boxes.smaller_than_cell,
            opts.grid,
            opts.num_negatives,
        )
        self.open_image, self.unreadable = None, UNREADABLE_IMAGE
        if opts.check_images:
            from PIL import Image

            self.open_image = Image.open
            self.unreadable = (*UNREADABLE_IMAGE, Image.DecompressionBombError)  # a header too large to be an image
        self.bulk = BulkLines(self) if bulk_enabled(opts) else None  # JSON Lines' fast path

    def note(self, cat: str, line: int, fmt: str, *args) -> None:
        """Count one `cat`; keep it as an example while fewer than K are kept (format lazily)."""
        self.p.counts[cat] += 1
        ex = self.p.examples.setdefault(cat, [])
        if len(ex) < self.k:
            ex.append((line, (fmt % args)[:200]))

    def not_json(self, line: int, err: Exception) -> None:
        self.p.records += 1
        col = f" (col {err.colno})" if isinstance(err, json.JSONDecodeError) else ""
        self.note("not_json", line, "not JSON: %s%s", getattr(err, "msg", err), col)

    def line(self, line: int, text: str) -> None:
        """Check one line of JSON Lines (the reference path): blank lines are skipped, as the
        loader skips them; the rest is decoded as Python's json decodes it."""
        if text and not text.isspace():
            try:
                rec = decode(text)
            except (ValueError, RecursionError) as err:
                self.not_json(line, err)
                return
            self.record(line, rec, text.rstrip("\r") if self.keep else None)

    def record(self, line: int, rec, raw: str | None) -> None:
        """Check one decoded record (the hot path: locals bound once, problems reported lazily)."""
        p, o, note = self.p, self.o, self.note
        p.records += 1
        if type(rec) is not dict:
            note("not_object", line, "a JSON %s, not an object", type(rec).__name__)
            note("loader_crash", line, "TypeError: item is a %s", type(rec).__name__)
            return
        get = rec.get
        bad, crash = (), None
        if not (
            type(get("caption")) is str
            and type(get("short_caption")) is str
            and type(get("bbox_info")) is list
            and type(get("f_path")) is str
            and rec["f_path"]
        ):
            bad = [k for k, t in REQUIRED if type(get(k)) is not t or (k == "f_path" and not rec[k])]
            crash = ", ".join(_field_problem(rec, k) for k in bad)
            note("missing_fields", line, "%s", crash)
        info = get("bbox_info")
        info = info if type(info) is list else ()
        keep, kept, valid = self.keep, [], 0
        problem_of, tol, tiny, grid, nneg = self.fast
        for i, entry in enumerate(info):
            if type(entry) is dict:
                box = entry.get("bbox")
                problem = problem_of(box, tol)
            else:
                box, problem = entry, "malformed"
            if problem is not None:
                if problem == "out_of_range" and subject_boxes.looks_like_pixels(box):
                    problem = "pixel_coords"
                note(problem, line, "box %d %.80r", i, box)
                if crash is None and i < o.max_boxes and problem in CRASHY:
                    crash = fgclip_raises(entry, i)
                continue
            valid += 1
            if keep:
                kept.append(entry)
            if tiny(box, grid):
                note("tiny", line, "box %d %r under 1/%d", i, box, grid)
            cap = entry.get("short_expr") or entry.get("long_expr")
            if not cap or type(cap) is not str or cap.isspace():
                note("empty_caption", line, "box %d: no short_expr / long_expr", i)
            if entry.get("flag_short_neg") == 1:
                # the rewrites, as fgclip.data._negatives reads them (dict in key order, or list);
                # C loops only (all, join): this runs for every box of a 40M-box dataset
                negs = entry.get("short_expr_negs")
                values = [*negs.values()] if type(negs) is dict else negs
                try:  # join raises TypeError on a non-string; all() finds an empty one
                    ok = type(values) is list and all(values) and "".join(values) is not None
                except TypeError:
                    ok = False
                if not ok:
                    note("negatives_malformed", line, "box %d short_expr_negs %.60r", i, negs)
                elif len(values) < nneg:
                    note("negatives_short", line, "box %d: %d rewrites, %d needed", i, len(values), nneg)
        p.boxes += len(info)
        p.valid_boxes += valid
        if crash is not None:
            note("loader_crash", line, "%s", crash)
        if valid > o.max_boxes:
            p.over_max_boxes += valid - o.max_boxes
            note("over_max", line, "%d valid boxes, the loader keeps %d", valid, o.max_boxes)
        image_ok = True
        if o.image_root is not None and "f_path" not in bad:
            image_ok = self.image(line, rec["f_path"])
        if keep and not bad and image_ok:
            if valid != len(info):
                rec["bbox_info"] = kept
                raw = None
            self.clean.write((raw if raw is not None else json.dumps(rec, ensure_ascii=False)) + "\n")
            p.clean_records += 1
            p.clean_boxes += valid

    def image(self, line: int, f_path: str) -> bool:
        """The record's image exists (and opens, with --check-images); its size is counted."""
        path = os.path.join(self.o.image_root, f_path)
        self.p.images_checked += 1
        if self.open_image is None:
            if os.path.isfile(path):
                return True
            self.note("missing_image", line, "%s", f_path)
            return False
        try:
            with self.open_image(path) as im:
                size = im.size
        except FileNotFoundError:
            self.note("missing_image", line, "%s", f_path)
            return False
        except self.unreadable as err:  # a bad file: all of these mean "unreadable"
            self.note("unreadable_image", line, "%s: %s", f_path, err)
            return False
        self.p.add_size(size)
        return True


#: What PIL's Image.open raises on a bad file: UnidentifiedImageError / OSError (unknown format,
#: truncation), ValueError and TypeError (bad header fields), SyntaxError, EOFError and
#: struct.error (a plugin parsing junk); and PIL's DecompressionBombError (added where PIL is imported).
UNREADABLE_IMAGE = (OSError, ValueError, TypeError, SyntaxError, EOFError, struct.error)

# box_problem names FG-CLIP's loader may raise on (NaN: only when another pair is inverted); it
# hands zero-area and out-of-range boxes to RoIAlign without a word (checks/data.py CRASH, SILENT)
CRASHY = ("malformed", "nonfinite", "inverted")
_NUMBER = (int, float, bool)


def fgclip_raises(entry, i: int) -> str | None:
    """What FG-CLIP's __getitem__ raises on bbox_info[i] (one of the first max_anns), or None.

    It reads entry["bbox"], copies torch.tensor(box[:4]) into a 4-vector, then raises when
    box[0] > box[2] or box[1] > box[3]: a NaN compares False and passes, a 5th number is cut.
    """
    if type(entry) is not dict:
        return f"box {i}: TypeError (the entry is a {type(entry).__name__})"
    box = entry.get("bbox")
    if "bbox" not in entry:
        return f"box {i}: KeyError 'bbox'"
    if type(box) not in (list, tuple) or len(box) < 4 or not all(type(v) in _NUMBER for v in box[:4]):
        return f"box {i}: no 4-number tensor from {str(box)[:60]}"
    if box[0] > box[2] or box[1] > box[3]:
        return f'box {i} {str(box)[:60]}: ValueError("Box coordinates are invalid.")'
    return None


def _field_problem(rec: dict, key: str) -> str:
    if key not in rec:
        return f"no {key}"
    return f"{key} empty" if rec[key] == "" else f"{key} is {type(rec[key]).__name__}"


_json_decode = json.JSONDecoder().decode  # = json.loads(str) without its per-call type checks
try:  # orjson parses a record ~3x faster; it rejects what Python's json (FG-CLIP's loader) accepts
    import orjson  # (NaN, Infinity, huge ints), so those lines fall back to json and count as it does

    def decode(text: str, _fast=orjson.loads, _slow=_json_decode, _err=orjson.JSONDecodeError):
        try:
            return _fast(text)
        except _err:
            return _slow(text)
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    decode = _json_decode
