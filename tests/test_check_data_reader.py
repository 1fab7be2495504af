"""check-data's JSON Lines reader (sources/data/tasks.py, bulk.py) against the reference path: the
file mapped in windows (or read, where it cannot be mapped), lines longer than a block or a window,
the one-call block decode only where each line is one object, box coordinates read in bulk."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_check_data import DEFECTS, entry, rec
from test_data_formats import both_paths

from fgclip_doctor.sources.data import bulk, tasks


@pytest.mark.parametrize("n", [1, 15, 16, 65536])  # msgpack array headers of 1, 3 and 5 bytes
def test_coordinates_read_every_number_exactly(n):
    rng = np.random.default_rng(n)
    bboxes = [tuple(map(float, row)) for row in rng.normal(size=(n, 4))]
    bboxes[0] = (math.inf, -0.0, 1e-300, 2.0**70)
    assert np.array_equal(bulk.coordinates(bboxes), np.array(bboxes))


def test_lines_longer_than_a_block_or_a_mapped_window(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "BLOCK_BYTES", 64)  # every line spans several blocks
    monkeypatch.setattr(tasks, "WINDOW_BYTES", tasks.mmap.ALLOCATIONGRANULARITY)  # the smallest window
    lines = [json.dumps(rec(i)).encode() for i in range(40)]
    lines[7] = json.dumps(rec(7, [entry([0.5, 0.2, 0.3, 0.4])])).encode()
    lines[20] = json.dumps(rec(20, caption="x" * 3 * tasks.WINDOW_BYTES)).encode()  # a window is doubled twice
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(lines))  # and no newline at the end
    fast, reference = both_paths(path)
    assert fast == reference and fast[0] == 40 and fast[5]["inverted"] == [f"{path}:8: box 0 [0.5, 0.2, 0.3, 0.4]"]


def test_a_file_that_cannot_be_mapped_is_read(tmp_path, monkeypatch):
    lines = [json.dumps(rec(i)).encode() for i in range(30)] + [raw for raw, _ in DEFECTS]
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    mapped = both_paths(path)

    def no_mmap(*args, **kwargs):
        raise OSError(19, "No such device")  # what mmap says on a file system that cannot map

    monkeypatch.setattr(tasks.mmap, "mmap", no_mmap)
    assert both_paths(path) == mapped and mapped[0] == mapped[1] and mapped[0][0] >= 30


def test_one_call_decode_only_of_one_object_per_line(tmp_path):
    """A record split over two lines and two records on one line: each line is not JSON, whatever a
    lenient JSON Lines reader (msgspec's decode_lines: a newline is whitespace) makes of them."""
    whole = json.dumps(rec(1))
    cut = whole.index('{"bbox"', whole.index('{"bbox"') + 1)  # before the second box
    odd = [whole[:cut], whole[cut:], whole + " " + whole, whole + "\r", " " + whole, ""]
    lines = [json.dumps(rec(i)) for i in range(6)]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines[:3] + odd + lines[3:]) + "\n")
    fast, reference = both_paths(path)
    assert fast == reference and fast[0] == 11 and fast[4]["not_json"] == 3
