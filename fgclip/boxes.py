"""The one definition of a valid FG-CLIP box.

FG-CLIP stores each region as ``bbox: [x1, y1, x2, y2]`` normalised to [0, 1].
The dataset loader (``fgclip.data``) and the doctor's data checker both call
``box_problem`` so that "dropped by the loader" and "flagged by the doctor"
always mean the same thing.

Pure Python on plain lists/tuples on purpose: the checker runs this over tens
of millions of boxes, and building a numpy array or tensor per box would cost
far more than the comparisons themselves.
"""

from __future__ import annotations

import math
from numbers import Real

# Checked in this order; box_problem returns the first that applies.
BOX_PROBLEMS = ("malformed", "nonfinite", "inverted", "zero_area", "out_of_range")

_FAST_NUM = frozenset((float, int, bool))  # exact types that skip the slower ABC check
_isfinite = math.isfinite


def _is_number(v) -> bool:
    return type(v) in _FAST_NUM or isinstance(v, Real)  # Real: numpy scalars, fractions, ...


def box_problem(box, tol: float = 1e-6) -> str | None:
    """Return the first problem with ``box`` (a name from BOX_PROBLEMS), or None if valid.

    - malformed:    not a sequence of exactly 4 real numbers (bools count as numbers)
    - nonfinite:    a coordinate is NaN or +-Inf
    - inverted:     x1 > x2 or y1 > y2
    - zero_area:    x1 == x2 or y1 == y2
    - out_of_range: a coordinate is < -tol or > 1 + tol
    """
    t = type(box)
    if t is not list and t is not tuple:
        # Accept other sequences (numpy arrays, ...) but never strings/bytes/dicts.
        if isinstance(box, (str, bytes, bytearray, dict)) or not hasattr(box, "__len__"):
            return "malformed"
        try:
            box = list(box)
        except TypeError:
            return "malformed"
    if len(box) != 4:
        return "malformed"
    x1, y1, x2, y2 = box
    fast = _FAST_NUM
    if not (type(x1) in fast and type(y1) in fast and type(x2) in fast and type(y2) in fast):
        # slow path only for unusual element types (numpy scalars, None, strings, ...)
        if not (_is_number(x1) and _is_number(y1) and _is_number(x2) and _is_number(y2)):
            return "malformed"
    if not (_isfinite(x1) and _isfinite(y1) and _isfinite(x2) and _isfinite(y2)):
        return "nonfinite"
    if x1 > x2 or y1 > y2:
        return "inverted"
    if x1 == x2 or y1 == y2:
        return "zero_area"
    lo, hi = -tol, 1.0 + tol
    # Boxes are ordered now, so only the two corners need the range check.
    if x1 < lo or y1 < lo or x2 > hi or y2 > hi:
        return "out_of_range"
    return None


def is_valid_box(box, tol: float = 1e-6) -> bool:
    """True when ``box_problem(box, tol)`` finds nothing."""
    return box_problem(box, tol) is None


def looks_like_pixels(box) -> bool:
    """True when the box seems to be in pixel units rather than [0, 1] (max coord > 1.5).

    Meant for explaining out_of_range boxes; malformed/non-finite boxes return False.
    """
    try:
        m = max(box)
    except (TypeError, ValueError):
        return False
    try:
        return bool(m > 1.5) and _isfinite(m)
    except TypeError:
        return False


def smaller_than_cell(box, grid: int) -> bool:
    """True when the box's width or height is below one cell of a grid x grid patch grid.

    Such a box may fall inside a single ViT patch (e.g. grid=14 for 224px / 16px),
    so RoIAlign on the feature map sees almost nothing of it.
    """
    x1, y1, x2, y2 = box
    cell = 1.0 / grid
    return (x2 - x1) < cell or (y2 - y1) < cell
