"""fgclip.boxes: the shared box-validity definition."""

import math

import numpy as np
import pytest

from fgclip.boxes import BOX_PROBLEMS, box_problem, is_valid_box, looks_like_pixels, smaller_than_cell


@pytest.mark.parametrize(
    "box",
    [
        [0.1, 0.2, 0.3, 0.4],
        (0, 0, 1, 1),
        [0.0, 0.0, 1.0, 1.0],
        [False, False, True, True],
        np.array([0.1, 0.1, 0.5, 0.5]),
        [np.float32(0.1), 0.1, 0.5, np.int64(1)],
    ],
)
def test_valid_boxes_pass(box):
    assert box_problem(box) is None
    assert is_valid_box(box)


@pytest.mark.parametrize(
    "box,problem",
    [
        (None, "malformed"),
        ("abcd", "malformed"),
        ([0.1, 0.2, 0.3], "malformed"),
        ([0.1, 0.2, 0.3, 0.4, 0.5], "malformed"),
        ([0.1, "0.2", 0.3, 0.4], "malformed"),
        ({"x1": 0}, "malformed"),
        (3.0, "malformed"),
        ([0.1, None, 0.3, 0.4], "malformed"),
        ([math.nan, 0.2, 0.3, 0.4], "nonfinite"),
        ([0.1, 0.2, math.inf, 0.4], "nonfinite"),
        ([0.1, -math.inf, 0.3, 0.4], "nonfinite"),
        ([0.5, 0.2, 0.3, 0.4], "inverted"),
        ([0.1, 0.6, 0.3, 0.4], "inverted"),
        ([0.3, 0.2, 0.3, 0.4], "zero_area"),
        ([0.1, 0.4, 0.3, 0.4], "zero_area"),
        ([-0.1, 0.2, 0.3, 0.4], "out_of_range"),
        ([0.1, 0.2, 0.3, 1.2], "out_of_range"),
        ([10, 20, 300, 400], "out_of_range"),
        # order matters: the first applicable problem is reported
        ([math.nan, 0.5, 0.1, 0.1], "nonfinite"),
        ([2.0, 0.5, 1.5, 0.6], "inverted"),
        ([1.5, 0.5, 1.5, 0.6], "zero_area"),
    ],
)
def test_each_problem_fires(box, problem):
    assert problem in BOX_PROBLEMS
    assert box_problem(box) == problem
    assert not is_valid_box(box)


def test_every_category_is_covered():
    boxes = {
        "malformed": [1, 2],
        "nonfinite": [0, 0, math.nan, 1],
        "inverted": [0.5, 0, 0.4, 1],
        "zero_area": [0.5, 0, 0.5, 1],
        "out_of_range": [0, 0, 1.01, 1],
    }
    assert set(boxes) == set(BOX_PROBLEMS)
    assert all(box_problem(b) == p for p, b in boxes.items())


def test_tolerance():
    assert box_problem([-1e-7, 0, 1 + 1e-7, 1]) is None  # within default tol 1e-6
    assert box_problem([-1e-5, 0, 1, 1]) == "out_of_range"
    assert box_problem([-1e-5, 0, 1, 1], tol=1e-4) is None
    assert box_problem([0, 0, 1 + 1e-7, 1], tol=0.0) == "out_of_range"


def test_looks_like_pixels():
    assert looks_like_pixels([10, 20, 300, 400])
    assert looks_like_pixels([0, 0, 1.6, 0.5])
    assert not looks_like_pixels([0, 0, 1.2, 1.0])  # slightly out of range, not pixels
    assert not looks_like_pixels([0.1, 0.2, 0.3, 0.4])
    assert not looks_like_pixels(None) and not looks_like_pixels([0, math.nan, 1, 1])


def test_smaller_than_cell():
    assert smaller_than_cell([0.0, 0.0, 0.05, 0.5], grid=14)  # width 0.05 < 1/14
    assert smaller_than_cell([0.0, 0.0, 0.5, 0.05], grid=14)  # height too
    assert not smaller_than_cell([0.0, 0.0, 0.1, 0.1], grid=14)
    assert smaller_than_cell([0.0, 0.0, 0.1, 0.1], grid=7)
