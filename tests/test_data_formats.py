"""FG-CLIP's data layouts: check-data and the subject's loader read a JSON array (in .json or
.jsonl), a .txt list of files and a folder of them exactly as the same records in JSON Lines;
array examples cite file:index; FG-CLIP's loader crashes are told apart from silent defects."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_check_data import DEFECTS, entry, rec, subject_data
from typer.testing import CliRunner

import fgclip.boxes
from fgclip_doctor.cli import app
from fgclip_doctor.commands.check_data import build_report
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.data import bulk, formats
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


# --- the JSON Lines fast path (sources/data/bulk.py) against the reference path ---------------
# Every record below is written as JSON text by hand, so that what json.dumps never writes (NaN,
# Infinity, duplicate keys, huge ints, escapes, lone surrogates, odd whitespace) is generated too.

GOOD = st.floats(0, 0.4)  # with a width drawn below: most boxes valid, some tiny
NUMBERS = st.one_of(
    GOOD,
    st.sampled_from([0, 1, -0.0, 1e-6, -1e-6, 1 + 1e-6, -2e-6, 1 + 2e-6, 1 / 14, 0.5 + 1 / 14, 12, 300.5]),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "1e-400", "true", "null", '"0.5"', str(2**70)]),
)


def number(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def obj(pairs) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in pairs) + "}"


def mostly(good, *bad):
    """A strategy that draws `good` most of the time, else one of `bad`: records stay clean
    often enough that the fast path's "no defect" verdict is what gets tested."""
    return st.one_of(st.just(good), st.just(good), st.just(good), st.sampled_from(bad)) if bad else st.just(good)


TEXTS = ("", "  ", "\\u00a0", "\\t", 'say \\"hi\\"', "caf\\u00e9", "\\ud800", "a\\u0000", "\u00e9t\u00e9")


@st.composite
def box_text(draw) -> str:
    """One bbox_info entry as JSON text (or something that is not an entry)."""
    shape = draw(mostly("box", "3 numbers", "string", "null", "5 numbers"))
    if shape != "box":
        return {
            "3 numbers": "[0.1, 0.2, 0.3]",
            "string": '"not a box"',
            "null": "null",
            "5 numbers": "[0.1, 0.1, 0.5, 0.5, 0.9]",
        }[shape]
    x1, y1 = draw(st.one_of(GOOD, NUMBERS)), draw(st.one_of(GOOD, NUMBERS))
    widths = st.one_of(st.floats(0.05, 0.6), st.sampled_from([1 / 14, 1 / 14 - 1e-17, 0.0, -0.1]))
    x2 = draw(st.one_of(widths.map(lambda d: x1 + d if isinstance(x1, float) else d), NUMBERS))
    y2 = draw(st.one_of(widths.map(lambda d: y1 + d if isinstance(y1, float) else d), NUMBERS))
    pairs = [("bbox", "[" + ", ".join(number(v) for v in (x1, y1, x2, y2)) + "]")]
    short = draw(mostly('"red circle"', *(f'"{t}"' for t in TEXTS), "3", "null", None))
    if short is not None:
        pairs.append(("short_expr", short))
    if draw(st.booleans()):
        pairs.append(("long_expr", draw(mostly('"a red circle"', '""', "  ", "7"))))
    flag = draw(mostly("1", "0", "null", "true", "1.0", None))
    if flag is not None:
        pairs.append(("flag_short_neg", flag))
    n = draw(mostly(10, 9, 11, 12, 0, 3))
    values = [draw(mostly(f"rewrite {i}", *TEXTS)) for i in range(n)]
    negs = draw(mostly("dict", "list", "duplicate key", "string", "missing", "numbers", "other keys", "null"))
    if negs == "dict":
        pairs.append(("short_expr_negs", obj((str(i), f'"{v}"') for i, v in enumerate(values))))
    elif negs == "list":
        pairs.append(("short_expr_negs", "[" + ", ".join(f'"{v}"' for v in values) + "]"))
    elif negs == "duplicate key":  # json keeps the last: 10 keys, 9 distinct
        pairs.append(("short_expr_negs", obj([("1", '"x"')] + [(str(i), f'"{v}"') for i, v in enumerate(values)])))
    elif negs == "other keys":
        pairs.append(("short_expr_negs", obj((f"neg{i}", f'"{v}"') for i, v in enumerate(values))))
    elif negs in ("string", "numbers", "null"):
        text = obj((str(i), str(i)) for i in range(n)) if negs == "numbers" else '"ten letters"'
        pairs.append(("short_expr_negs", "null" if negs == "null" else text))
    dup = draw(mostly(None, "first", "last"))
    if dup == "first":  # a duplicate key: json keeps the last value
        pairs = [("bbox", "[0.5, 0.2, 0.3, 0.4]")] + pairs
    elif dup == "last":
        pairs = pairs + [("bbox", "[0.1, 0.1, 0.5, 0.5]")]
    return obj(pairs)


@st.composite
def line_text(draw) -> bytes:
    """One line of a JSON Lines file: mostly records, and every way a line goes wrong."""
    kind = draw(st.sampled_from(["record"] * 12 + ["blank", "broken", "not utf-8", "array", "deep", "bom"]))
    if kind != "record":
        return {
            "blank": b"  \r",
            "broken": b'{"f_path": "a.png", "caption": ',
            "not utf-8": b'{"f_path": "\xff.png"}',
            "array": b"[1, 2]",
            "deep": b'{"x": ' + b"[" * 990 + b"]" * 990 + b"}",
            "bom": b'\xef\xbb\xbf{"f_path": "a.png"}',
        }[kind]
    pairs = [
        ("f_path", draw(mostly('"images/1.png"', '""', "7", '"\\u00e9.png"'))),
        ("caption", draw(mostly('"a long caption"', "null", '""'))),
        ("short_caption", draw(mostly('"shapes"', "[]"))),
        ("bbox_info", draw(mostly("[" + ", ".join(draw(st.lists(box_text(), max_size=6))) + "]", '"none"', "{}"))),
        ("extra", draw(mostly('{"nested": [1, {"a": null}]}', '"caf\\u00e9"', "NaN", "1e999", '"\\x"'))),
    ]
    pairs = draw(st.permutations(pairs))
    if draw(st.integers(0, 9)) == 0:
        pairs = pairs[:-1]  # a field missing
    return obj(pairs).encode("utf-8", "surrogatepass") + draw(st.sampled_from([b"", b"\r", b"  "]))


def both_paths(path: Path, **kw) -> list:
    """The scan through the fast path and through the reference path, every example kept."""
    out, opts = [], kw.pop("opts", {})
    for fast in (True, False):
        r = scan(path, ScanOptions(examples=10**6, bulk=fast, **opts), workers=1, chunk_bytes=4096, **kw)
        out.append((r.records, r.boxes, r.valid_boxes, r.over_max_boxes, r.counts, r.examples, r.images_checked))
    return out


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_text(), min_size=1, max_size=40))
def test_fast_path_counts_and_examples_equal_the_reference(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("bulk") / "train.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    fast, reference = both_paths(path)
    assert fast == reference


@pytest.mark.parametrize("layout", ["jsonl", "txt-list", "folder", "array"])
def test_fast_path_agrees_in_every_layout_and_mode(tmp_path, monkeypatch, layout):
    lines = [json.dumps(r).encode() for r in records()] + [raw for raw, _ in DEFECTS]
    lines = lines * 3
    if layout == "array":
        path = as_array(tmp_path / "train.json", records() * 3)  # arrays: the reference path only
    elif layout == "jsonl":
        (path := tmp_path / "train.jsonl").write_bytes(b"\n".join(lines))
    else:
        (tmp_path / "data").mkdir()
        for i in range(3):
            (tmp_path / "data" / f"{i}.jsonl").write_bytes(b"\n".join(lines[i::3]) + b"\n")
        (tmp_path / "list.txt").write_text("data/0.jsonl\ndata/2.jsonl\ndata/0.jsonl\n")
        monkeypatch.chdir(tmp_path)
        path = Path("list.txt") if layout == "txt-list" else Path("data")
    fast, reference = both_paths(path)
    assert fast == reference and fast[4]["inverted"] > 0
    # the ordered modes: image checks (records in line order) and the clean copy
    root = tmp_path / "img"
    (root / "images").mkdir(parents=True)
    for i in range(0, 120, 2):
        (root / "images" / f"{i}.png").write_bytes(b"")
    fast, reference = both_paths(path, opts={"image_root": str(root)})
    assert fast == reference and fast[4]["missing_image"] > 0
    copies = []
    for fast in (True, False):
        out = tmp_path / f"clean-{fast}.jsonl"
        r = scan(path, ScanOptions(bulk=fast), workers=2, chunk_bytes=4096, clean_out=out)
        copies.append((out.read_bytes(), r.clean[1:]))
    assert copies[0] == copies[1] and copies[0][1][0] > 0


EDGES = [0.0, -0.0, 1.0, -1e-6, 1 + 1e-6, 1 / 14, math.nan, math.inf]


@settings(max_examples=300, deadline=None, derandomize=True)
@example([0.0, 0.0, 1 / 14, 1 / 14], 14)  # exactly one cell: not tiny
@example([-1e-6, 0.0, 1 + 1e-6, 1.0], 3)  # the tolerance's edges: valid
@given(
    st.lists(st.one_of(st.floats(), st.floats(-0.01, 1.01), st.sampled_from(EDGES)), min_size=4, max_size=4),
    st.integers(1, 40),
)
def test_clean_boxes_is_box_problem_and_smaller_than_cell(box, grid):
    coords = np.array([box, [0.1, 0.1, 0.9, 0.9]], dtype=np.float64)  # and a clean one beside it
    clean = bulk.clean_boxes(coords, 1e-6, grid)[0]
    assert clean == (fgclip.boxes.box_problem(box) is None and not fgclip.boxes.smaller_than_cell(box, grid))
    with np.errstate(invalid="ignore"):
        assert bulk.all_clean(coords, 1e-6, grid) == bool(bulk.clean_boxes(coords, 1e-6, grid).all())


def test_fast_path_off_when_the_subject_box_rule_changes(monkeypatch):
    assert bulk.enabled(ScanOptions()) and not bulk.enabled(ScanOptions(bulk=False))
    monkeypatch.setattr(fgclip.boxes, "box_problem", lambda b, tol=1e-6: None)
    assert not bulk.enabled(ScanOptions())  # the scan then calls the replacement for every box


def test_a_file_listed_twice_cites_its_own_lines(tmp_path, monkeypatch):
    lines = [json.dumps(rec(i)).encode() for i in range(30)]
    lines[20] = json.dumps(rec(20, [entry([0.5, 0.2, 0.3, 0.4])])).encode()
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "list.txt").write_text("a.jsonl\na.jsonl\n")
    monkeypatch.chdir(tmp_path)
    r = scan(Path("list.txt"), ScanOptions(), workers=2, chunk_bytes=1000)
    assert r.records == 60 and r.examples["inverted"] == ["a.jsonl:21: box 0 [0.5, 0.2, 0.3, 0.4]"] * 2


def _negs(pairs: str) -> str:
    return '{"bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": "red", "flag_short_neg": 1, "short_expr_negs": ' + pairs + "}"


TEN = ", ".join(f'"{i}": "rewrite {i}"' for i in range(10))
SUBTLE = {  # one record among clean ones, each a defect (or not) the fast path must not miss
    "blank short_expr": '{"bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": "  ", "long_expr": "red"}',
    "nbsp short_expr": '{"bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": "\\u00a0"}',
    "empty short_expr": '{"bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": ""}',
    "empty short, long": '{"bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": "", "long_expr": "red"}',
    "flag without negs": '{"bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": "red", "flag_short_neg": 1}',
    "flag, negs null": _negs("null"),
    "flag true": _negs("null").replace('"flag_short_neg": 1', '"flag_short_neg": true'),
    "11th rewrite empty": _negs("{" + TEN + ', "10": ""}'),
    "11th rewrite a number": _negs("{" + TEN + ', "10": 5}'),
    "11 rewrites": _negs("{" + TEN + ', "10": "more"}'),
    "duplicate key: 9 distinct": _negs('{"1": "x", ' + TEN.replace('"0": "rewrite 0", ', "") + "}"),
    "other keys": _negs("{" + TEN.replace('"', "'").replace("'", '"k', 1) + "}"),
    "list of 9": _negs("[" + ", ".join(f'"r{i}"' for i in range(9)) + "]"),
    "list with an empty": _negs('["", ' + ", ".join(f'"r{i}"' for i in range(9)) + "]"),
    "one cell": '{"bbox": [0.0, 0.0, 0.07142857142857142, 0.5], "short_expr": "red"}',
    "under one cell": '{"bbox": [0.0, 0.0, 0.0714285714285714, 0.5], "short_expr": "red"}',
    "tolerance edges": '{"bbox": [-1e-06, 0.0, 1.000001, 1], "short_expr": "red"}',
    "beyond tolerance": '{"bbox": [-2e-06, 0.0, 0.5, 1], "short_expr": "red"}',
    "bool coordinate": '{"bbox": [false, 0.0, 0.5, true], "short_expr": "red"}',
    "duplicate bbox": '{"bbox": [0.5, 0.2, 0.3, 0.4], "bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": "red"}',
}


@pytest.mark.parametrize("case", SUBTLE)
def test_fast_path_sees_each_subtle_defect(tmp_path, case):
    clean = '{"f_path": "a.png", "caption": "c", "short_caption": "s", "bbox_info": [' + _negs("{" + TEN + "}") + "]}"
    odd = clean.replace(_negs("{" + TEN + "}"), SUBTLE[case])
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([clean] * 3 + [odd] + [clean] * 3) + "\n")
    fast, reference = both_paths(path)
    assert fast == reference
    five = odd.replace("[" + SUBTLE[case] + "]", "[" + ", ".join([SUBTLE[case]] * 5) + "]")
    path.write_text("\n".join([clean, five, clean]) + "\n")  # and five of them: over max_boxes
    assert both_paths(path)[0] == both_paths(path)[1]
