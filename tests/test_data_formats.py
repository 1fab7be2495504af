"""FG-CLIP's data layouts: check-data and the subject's loader read a JSON array (in .json or
.jsonl), a .txt list of files and a folder of them exactly as the same records in JSON Lines;
array examples cite file:index; FG-CLIP's loader crashes are told apart from silent defects."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from test_check_data import DEFECTS, entry, rec, subject_data
from typer.testing import CliRunner

from fgclip_doctor.cli import app
from fgclip_doctor.commands.check_data import build_report
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.data import formats
from fgclip_doctor.sources.data.scan import ScanOptions, scan

runner = CliRunner()
INVERTED = 'ValueError("Box coordinates are invalid.")'


def records() -> list:
    """Good records around every JSON-valid defect of test_check_data (arrays hold values, so
    the broken-JSON lines are left out), NaN included: valid to json.load, stops yajl."""
    bad = [json.loads(raw) for raw, cat in DEFECTS if cat not in (None, "not_json")]
    return [rec(i) for i in range(12)] + bad + [rec(100 + i) for i in range(9)]


def as_lines(path: Path, recs: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def as_array(path: Path, recs: list, indent=None) -> Path:
    path.write_text(json.dumps(recs, indent=indent))
    return path


def lay_out(kind: str, tmp: Path, recs: list, monkeypatch) -> Path:
    """`recs` written in one of FG-CLIP's layouts; returns the --data_path."""
    a, b, c = recs[:10], recs[10:25], recs[25:]
    if kind == "jsonl":
        return as_lines(tmp / "train.jsonl", recs)
    if kind == "array-in-jsonl":  # what FG-CLIP json.load()s whatever the suffix
        return as_array(tmp / "train.jsonl", recs, indent=2)
    if kind == "folder-of-arrays":  # FineHARD-style jsonfiles/: *.json, then *.jsonl, sorted
        folder = tmp / "jsonfiles"
        folder.mkdir()
        as_array(folder / "part-0.json", a)
        as_array(folder / "part-1.json", b, indent=1)
        as_array(folder / "extra.jsonl", c)  # read after every *.json
        (folder / ".hidden.json").write_text("not read: glob skips hidden files")
        return folder
    if kind == "txt-list":  # paths relative to the folder training runs in
        (tmp / "data").mkdir()
        as_array(tmp / "data" / "a.json", a)
        as_lines(tmp / "data" / "b.jsonl", b)
        as_array(tmp / "data" / "c.jsonl", c)
        (tmp / "list.txt").write_text("data/a.json\ndata/b.jsonl\n\ndata/c.jsonl\n")
        monkeypatch.chdir(tmp)
        return Path("list.txt")
    raise ValueError(kind)


LAYOUTS = ("array-in-jsonl", "folder-of-arrays", "txt-list")


@pytest.mark.parametrize("kind", LAYOUTS)
def test_every_layout_counts_what_json_lines_count(tmp_path, monkeypatch, kind):
    recs = records()
    (tmp_path / "ref").mkdir()
    reference = scan(as_lines(tmp_path / "ref" / "train.jsonl", recs), ScanOptions(), workers=1)
    assert reference.counts["nonfinite"] == 1 and reference.counts["loader_crash"] == 5
    path = lay_out(kind, tmp_path, recs, monkeypatch)
    for workers in (1, 2):
        r = scan(path, ScanOptions(), workers=workers)
        assert (r.records, r.boxes, r.valid_boxes) == (reference.records, reference.boxes, reference.valid_boxes)
        assert r.counts == reference.counts, kind
        assert r.counts["not_json"] == 0  # the NaN box made yajl stop: read again, exactly


def test_array_examples_cite_file_and_index(tmp_path, monkeypatch):
    recs = records()
    folder = lay_out("folder-of-arrays", tmp_path, recs, monkeypatch)
    r = scan(folder, ScanOptions(), workers=2)
    assert r.files == [str(folder / n) for n in ("part-0.json", "part-1.json", "extra.jsonl")]
    # the inverted record is recs[15]: item 5 of part-1.json (items 10..24), line 16 of a .jsonl
    index = next(i for i, x in enumerate(recs) if isinstance(x, dict) and x.get("f_path") == "images/902.png")
    assert index == 15
    assert r.examples["inverted"][0] == f"{folder / 'part-1.json'}:5: box 0 [0.5, 0.2, 0.3, 0.4]"
    lines = scan(as_lines(tmp_path / "train.jsonl", recs), ScanOptions(), workers=1)
    assert lines.examples["inverted"][0] == f"{tmp_path / 'train.jsonl'}:16: box 0 [0.5, 0.2, 0.3, 0.4]"


def test_the_first_record_fgclip_crashes_on_is_reported(tmp_path):
    recs = [rec(i) for i in range(10)]
    five = [entry([0.1, 0.1, 0.5, 0.5])] * 4 + [entry([0.9, 0.1, 0.5, 0.5])]
    recs[2] = rec(2, five)  # inverted, but 5th: FG-CLIP reads the first 4 only
    recs[3] = rec(3, [entry([math.nan, 0.6, 0.3, 0.4])])  # NaN: '>' is False for x, True for y
    recs[4] = rec(4, [entry([0.3, 0.2, 0.3, 0.4]), entry([0.5, 0.5, 1.5, 0.9])])  # zero area, out of range
    recs[7] = rec(7, [entry([0.1, 0.1, 0.5, 0.5]), entry([0.7, 0.2, 0.3, 0.4])])  # inverted: crash
    path = as_array(tmp_path / "train.json", recs)
    report = build_report(path, Settings(), workers=1, progress=False)
    facts = report.facts
    assert facts.value("data.box.inverted") == 2 and facts.value("data.record.loader_crash") == 2
    assert facts.value("data.crash.first") == f"{path}:3: box 0 [nan, 0.6, 0.3, 0.4]: {INVERTED}"
    assert facts.value("data.examples.loader_crash")[1] == f"{path}:7: box 1 [0.7, 0.2, 0.3, 0.4]: {INVERTED}"
    crash = next(f for f in report.findings if f.subject == "FG-CLIP loader crash")
    assert crash.status.value == "FAIL" and f"the run stops at record {path}:3:" in crash.message
    invalid = next(f for f in report.findings if f.subject == "invalid boxes")
    assert "raises on 2 inverted" in invalid.message
    assert "passes 1 nonfinite, 1 zero area, 1 out of range silently into RoIAlign" in invalid.message

    silent = [rec(0, [entry([0.3, 0.2, 0.3, 0.4])]), rec(1, [entry([math.nan, 0.2, 0.3, 0.4])])]
    report = build_report(as_array(tmp_path / "silent.json", silent), Settings(), workers=1, progress=False)
    crash = next(f for f in report.findings if f.subject == "FG-CLIP loader crash")
    assert crash.status.value == "PASS" and report.facts.value("data.crash.first") is None
    assert "2 invalid boxes pass it silently into RoIAlign" in crash.message


@pytest.mark.parametrize("kind", ("jsonl", *LAYOUTS))
def test_the_subject_loader_reads_every_layout(tmp_path, monkeypatch, kind):
    recs = [r for r in records() if isinstance(r, dict)]  # the subject indexes records as dicts
    path = lay_out(kind, tmp_path, recs, monkeypatch)
    loader = subject_data()
    assert loader.read_annotations(path) == json.loads(json.dumps(recs))  # same records, same order
    data = loader.FGCLIPDataset(path, tmp_path, tokenizer=None)
    assert len(data) == len(recs)
    assert data.dropped_boxes == Counter(malformed=2, inverted=2, zero_area=1, out_of_range=2, nonfinite=1, over_max=2)


def test_a_list_naming_a_missing_file_is_an_input_error(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    as_array(tmp_path / "data" / "a.json", [rec(0)])
    (tmp_path / "data" / "list.txt").write_text("a.json\n")  # relative to the list: FG-CLIP can't
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check-data", "data/list.txt"])
    assert result.exit_code == 2
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgclip-doctor: error: ")
    assert "lists a.json, which is not a file" in err[0] and "run check-data from there" in err[0]


def test_arrays_stream_with_ijson_c_backend():
    assert formats.ijson.backend == "yajl2_c"  # the pure-Python backends are ~20x slower
