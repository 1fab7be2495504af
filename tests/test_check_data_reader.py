"""check-data's JSON Lines reader (sources/data/tasks.py, bulk.py) against the reference path: the
file mapped in windows (or read, where it cannot be mapped), lines longer than a block or a window,
the one-call block decode only where each line is one object, box coordinates read in bulk."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from test_check_data import entry, rec
from test_data_formats import both_paths

from fgclip_doctor.sources.data import bulk, tasks
from fgclip_doctor.sources.data.scan import ScanOptions, scan


@pytest.mark.parametrize("n", [1, 15, 16, 65536])  # msgpack array headers of 1, 3 and 5 bytes
def test_coordinates_read_every_number_exactly(n):
    rng = np.random.default_rng(n)
    bboxes = [tuple(map(float, row)) for row in rng.normal(size=(n, 4))]
    bboxes[0] = (math.inf, -0.0, 1e-300, 2.0**70)
    assert np.array_equal(bulk.coordinates(bboxes), np.array(bboxes))


def test_lines_longer_than_a_block_or_a_window(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "BLOCK_BYTES", 64)  # every line spans several blocks
    monkeypatch.setattr(tasks, "WINDOW_BYTES", 4096)  # a small window
    lines = [json.dumps(rec(i)).encode() for i in range(40)]
    lines[7] = json.dumps(rec(7, [entry([0.5, 0.2, 0.3, 0.4])])).encode()
    lines[20] = json.dumps(rec(20, caption="x" * 3 * tasks.WINDOW_BYTES)).encode()  # a window is doubled twice
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(lines))  # and no newline at the end
    fast, reference = both_paths(path)
    assert fast == reference and fast[0] == 40 and fast[5]["inverted"] == [f"{path}:8: box 0 [0.5, 0.2, 0.3, 0.4]"]


def test_a_file_cut_short_while_it_is_read_ends_the_scan_where_it_ends(tmp_path, monkeypatch):
    """The file is truncated between two windows (it is being rewritten): the scan ends, never hangs,
    having checked the lines it could still read (a mapped window would have killed the worker)."""
    monkeypatch.setattr(tasks, "WINDOW_BYTES", 4096)
    lines = [json.dumps(rec(i)).encode() for i in range(200)]
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    whole = both_paths(path)[0][0]
    read = tasks._read

    def cut_after_first(fh, base, length):
        if base > 0:
            os.truncate(path, base + 10)  # mid-line, after the first window
        return read(fh, base, length)

    monkeypatch.setattr(tasks, "_read", cut_after_first)
    cut = scan(path, ScanOptions(bulk=True), workers=1, chunk_bytes=1 << 30)  # one task over the file
    assert whole == 200 and 0 < cut.records < 200


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
