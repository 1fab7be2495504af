"""check-data: a corpus with known defects -> exactly those counts; rules, exit codes, inputs."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from schema import exit_of, validate
from typer.testing import CliRunner

import fgclip.boxes
from fgclip_doctor.checks.registry import Status, get_rule
from fgclip_doctor.cli import app
from fgclip_doctor.commands.check_data import build_report
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.data import formats
from fgclip_doctor.sources.data import scan as data_scan
from fgclip_doctor.sources.data.scan import CATEGORIES, ScanOptions, scan

runner = CliRunner()
NEGS = {str(i): f"rewrite {i}" for i in range(10)}
DATA_RULES = (
    "box-valid",
    "box-tiny",
    "boxes-over-max",
    "box-caption",
    "hard-negatives",
    "record-malformed",
    "data-missing-images",
)


def subject_data():
    """The subject's loader `fgclip.data` (it imports torch), or a skip where torch is not installed
    (the core install: `-m core` in .ci/run's third venv)."""
    return pytest.importorskip("fgclip.data", reason="the subject's loader fgclip.data needs torch, not installed here")


def entry(bbox, caption="red circle", negs=NEGS, flag=1):
    return {"bbox": bbox, "short_expr": caption, "long_expr": caption, "flag_short_neg": flag, "short_expr_negs": negs}


def rec(i: int, boxes=None, **fields):
    r = {
        "f_path": f"images/{i}.png",
        "caption": "a long caption",
        "short_caption": "shapes",
        "bbox_info": [entry([0.1, 0.1, 0.5, 0.5]), entry([0.2, 0.3, 0.9, 0.8])] if boxes is None else boxes,
    }
    r.update(fields)
    return r


def good(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps(rec(start + i)).encode() for i in range(n)]


# (line content, category it adds to or None). Counts below are what these lines must give.
DEFECTS: list[tuple[bytes, str | None]] = [
    (b'{"f_path": "images/x.png", "caption": ', "not_json"),  # truncated write
    (b"this is not json", "not_json"),
    (b"\xff\xfe not utf-8", "not_json"),
    (b"[1, 2]", "not_object"),
    (json.dumps(rec(900, caption=3)).encode(), "missing_fields"),
    (json.dumps({k: v for k, v in rec(901).items() if k != "bbox_info"}).encode(), "missing_fields"),
    (json.dumps(rec(902, [entry([0.5, 0.2, 0.3, 0.4]), entry([0.1, 0.6, 0.3, 0.4])])).encode(), "inverted"),
    (json.dumps(rec(903, [entry([0.3, 0.2, 0.3, 0.4])])).encode(), "zero_area"),
    (json.dumps(rec(904, [entry([-0.1, 0.2, 0.3, 0.4])])).encode(), "out_of_range"),
    (json.dumps(rec(905, [entry([10, 20, 300, 400])])).encode(), "pixel_coords"),
    (json.dumps(rec(906, [entry([math.nan, 0.2, 0.3, 0.4])])).encode(), "nonfinite"),
    (json.dumps(rec(907, [entry([0.1, 0.2, 0.3]), "not a box"])).encode(), "malformed"),
    (json.dumps(rec(908, [entry([0.5, 0.5, 0.52, 0.9])])).encode(), "tiny"),
    (json.dumps(rec(909, [entry([0.1, 0.1, 0.5, 0.5], caption="")])).encode(), "empty_caption"),
    (json.dumps(rec(910, [entry([0.1, 0.1, 0.5, 0.5], negs={"0": "a", "1": "b"})])).encode(), "negatives_short"),
    (json.dumps(rec(911, [entry([0.1, 0.1, 0.5, 0.5], negs="ten letters")])).encode(), "negatives_malformed"),
    (
        json.dumps(
            rec(912, [entry([0.1, 0.1, 0.5, 0.5], negs=[])] * 1 + [entry([0.1, 0.1, 0.5, 0.5], flag=0, negs=None)])
        ).encode(),
        "negatives_short",
    ),
    (json.dumps(rec(913, [entry([0.1, 0.1, 0.5, 0.5])] * 6)).encode(), "over_max"),
    (b"", None),
    (b"   ", None),  # blank lines: skipped, like the loader does
]
EXPECTED = Counter(
    {
        "not_json": 3,
        "not_object": 1,
        "missing_fields": 2,
        "inverted": 2,
        "zero_area": 1,
        "out_of_range": 1,
        "pixel_coords": 1,
        "nonfinite": 1,
        "malformed": 2,
        "tiny": 1,
        "empty_caption": 1,
        "negatives_short": 2,
        "negatives_malformed": 1,
        "over_max": 1,
        # FG-CLIP's loader raises on: not_object, 2 missing_fields, the inverted and
        # the 3-number box (the NaN box compares False and passes)
        "loader_crash": 5,
    }
)


def corpus(path: Path, n_good: int = 40) -> tuple[Path, dict[str, list[int]]]:
    """Good records with the DEFECTS spread between them; returns the 1-based lines per category."""
    lines, where = good(n_good // 2), {}
    for raw, cat in DEFECTS:
        lines.append(raw)
        if cat:
            where.setdefault(cat, []).append(len(lines))
    lines += good(n_good - n_good // 2, start=n_good)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, where


def run(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["check-data", *map(str, args), "--format", "json"])
    assert result.exit_code in (0, 1), result.output + str(result.exception)
    doc = json.loads(result.stdout)
    validate(doc, extra={"data"})
    assert doc["exit_code"] == result.exit_code == exit_of(doc)
    return result.exit_code, doc


def counts(doc: dict) -> Counter:
    return Counter({c: v["count"] for c, v in doc["data"]["categories"].items() if v["count"]})


def status(doc: dict, rule: str, subject: str | None = None) -> str:
    found = [f["status"] for f in doc["findings"] if f["rule"] == rule and (subject is None or f["subject"] == subject)]
    assert len(found) == 1, (rule, subject, doc["findings"])
    return found[0]


@pytest.fixture
def defects(tmp_path) -> tuple[Path, dict[str, list[int]]]:
    return corpus(tmp_path / "train.jsonl")


def test_known_defects_give_exactly_those_counts(defects):
    path, where = defects
    code, doc = run(path)
    assert code == 1
    assert counts(doc) == EXPECTED
    facts = doc["facts"]
    assert facts["data.records"]["value"] == 40 + len(DEFECTS) - 2  # blank lines are not records
    assert facts["data.box.inverted"]["value"] == 2 and facts["data.record.not_json"]["value"] == 3
    assert facts["data.over_max_boxes"]["value"] == 2
    assert facts["data.invalid_boxes"]["value"] == 8
    assert "data.record.missing_image" not in facts  # not checked: unknown, not zero
    ratio = doc["data"]["categories"]["inverted"]["ratio"]
    assert ratio == pytest.approx(2 / facts["data.boxes"]["value"])


def test_examples_carry_file_and_line(defects):
    path, where = defects
    _, doc = run(path)
    for cat, lines in where.items():
        got = [int(e.split(":")[1]) for e in doc["data"]["categories"][cat]["examples"]]
        assert sorted(set(got)) == lines and len(got) == EXPECTED[cat], cat  # one example per box
        assert all(e.startswith(f"{path}:") for e in doc["data"]["categories"][cat]["examples"])
    pixel = next(f for f in doc["findings"] if f["subject"] == "pixel coordinates")
    assert pixel["sources"] == [f"{path}:{where['pixel_coords'][0]}: box 0 [10, 20, 300, 400]"]


def test_examples_are_bounded(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text("oops\n" * 50)
    code, doc = run(path, "--examples", "3")
    assert code == 1 and doc["data"]["categories"]["not_json"]["count"] == 50
    assert [e.split(":")[1] for e in doc["data"]["categories"]["not_json"]["examples"]] == ["1", "2", "3"]


def test_worker_counts_identical_across_ranges(defects):
    path, where = defects
    one = scan(path, ScanOptions(), workers=1, chunk_bytes=700)
    two = scan(path, ScanOptions(), workers=2, chunk_bytes=700)
    whole = scan(path, ScanOptions(), workers=2)
    assert one.workers == 1 and two.workers == 2
    for r in (two, whole):
        assert (r.records, r.boxes, r.valid_boxes, r.counts, r.examples) == (
            one.records,
            one.boxes,
            one.valid_boxes,
            one.counts,
            one.examples,
        )
    assert Counter({k: v for k, v in one.counts.items() if v}) == EXPECTED
    assert int(one.examples["over_max"][0].split(":")[1]) == where["over_max"][0]


def test_progress_counts_every_byte(defects):
    path, _ = defects
    seen = []
    scan(path, ScanOptions(), workers=2, chunk_bytes=500, progress=seen.append)
    assert sum(seen) == path.stat().st_size and len(seen) > 3
    report = build_report(path, Settings(), workers=2, progress=True)  # a rich bar on stderr
    assert report.extra["data"]["records"] == 58


def test_ranges_own_each_line_once(tmp_path):
    # every cut position: a line is scanned by exactly one range, line numbers stay absolute
    lines = [json.dumps(rec(i)) if i % 3 else "x" * (i % 7) for i in range(30)]
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(lines))  # no trailing newline on the last line
    bad = [i + 1 for i, ln in enumerate(lines) if ln.startswith("x")]
    for chunk in (1, 2, 17, 100, 333, 10**6):
        r = scan(path, ScanOptions(examples=100), workers=1, chunk_bytes=chunk)
        assert r.records == sum(1 for ln in lines if ln.strip()) and r.counts["not_json"] == len(bad), chunk
        assert [int(e.split(":")[1]) for e in r.examples["not_json"]] == bad, chunk


def test_folder_and_json_list_inputs(tmp_path, defects):
    path, _ = defects
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(path.read_bytes())
    records = [rec(i) for i in range(5)] + [rec(5, [entry([0.5, 0.2, 0.3, 0.4])]), [1]]
    (folder / "b.json").write_text("[\n" + ",\n".join(json.dumps(r, indent=1) for r in records) + "\n]\n")
    (folder / "notes.txt").write_text("ignored, as by the loader")
    _, doc = run(folder)
    assert counts(doc) == EXPECTED + Counter(inverted=1, not_object=1, loader_crash=2)
    # FG-CLIP's loader order: the folder's *.json, then its *.jsonl
    assert doc["facts"]["data.files"]["value"] == [str(folder / "b.json"), str(folder / "a.jsonl")]
    inverted = doc["data"]["categories"]["inverted"]["examples"]
    # an array item's example cites its index in the array
    assert f"{folder / 'b.json'}:5: box 0 [0.5, 0.2, 0.3, 0.4]" in inverted, inverted


def test_json_list_streams_and_matches_the_loader(tmp_path):
    records = [rec(i) for i in range(20)] + [rec(20, [entry([0.3, 0.2, 0.3, 0.4])])]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(records))
    r = scan(path, ScanOptions(), workers=2)
    assert r.records == 21 and r.counts["zero_area"] == 1
    assert r.records == len(subject_data().read_annotations(path))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(records)[:-40])
    r = scan(broken, ScanOptions(), workers=1)
    assert r.counts["not_json"] == 1 and "the loader cannot read this file" in r.examples["not_json"][0]
    single = tmp_path / "one.json"
    single.write_text(json.dumps(rec(0)))  # one object: the loader wraps it in a list
    assert scan(single).records == 1


@pytest.mark.parametrize("nan", [False, True], ids=["ijson", "exact-after-NaN"])
def test_json_list_items_across_read_blocks(tmp_path, monkeypatch, nan):
    monkeypatch.setattr(formats, "BUF_BYTES", 64)  # every item spans several reads
    records = [rec(i) for i in range(10)] + [rec(10, [entry([10, 20, 30, 40])])]
    if nan:  # yajl stops at NaN; the exact reader (Python's json, as the loader) takes over
        records.append(rec(11, [entry([math.nan, 0.2, 0.3, 0.4])]))
    path = tmp_path / "train.json"
    path.write_text(json.dumps(records, indent=2))
    r = scan(path, ScanOptions(), workers=1)
    assert r.records == 11 + nan and r.counts["pixel_coords"] == 1 and r.boxes == 21 + nan
    assert r.counts["nonfinite"] == nan and r.counts["not_json"] == 0
    assert r.examples["pixel_coords"] == [f"{path}:10: box 0 [10, 20, 30, 40]"]


def test_clean_corpus_exits_0_and_every_rule_silent(tmp_path):
    path = tmp_path / "clean.jsonl"
    path.write_bytes(b"\n".join(good(12)) + b"\n")
    code, doc = run(path)
    assert code == 0 and counts(doc) == Counter()
    for rule in DATA_RULES[:-1]:
        assert {f["status"] for f in doc["findings"] if f["rule"] == rule} == {"PASS"}, rule
    assert {f["status"] for f in doc["findings"] if f["rule"] == "data-missing-images"} == {"SKIP"}
    skip = next(f for f in doc["findings"] if f["rule"] == "data-missing-images")
    assert "--image-root" in skip["message"]


def test_every_rule_fires_on_the_defects(defects):
    path, _ = defects
    _, doc = run(path)
    assert status(doc, "box-valid", "invalid boxes") == "FAIL"
    assert status(doc, "box-valid", "pixel coordinates") == "FAIL"
    for rule in ("box-tiny", "boxes-over-max", "box-caption", "hard-negatives"):
        assert status(doc, rule) == "WARN", rule
    assert status(doc, "record-malformed") == "FAIL"


def test_thresholds_and_pixel_coordinates(tmp_path):
    lines = good(99) + [json.dumps(rec(99, [entry([0.5, 0.2, 0.3, 0.4])])).encode()]
    path = tmp_path / "few.jsonl"
    path.write_bytes(b"\n".join(lines))
    report = build_report(path, Settings(thresholds={"box-valid": {"max_invalid_ratio": 0.01}}), workers=1)
    found = {(f.rule, f.subject): f.status for f in report.findings}
    assert found[("box-valid", "invalid boxes")] is Status.PASS  # 1 of 199 boxes < 1 %
    pixels = tmp_path / "pixels.jsonl"
    pixels.write_bytes(b"\n".join(good(99) + [json.dumps(rec(99, [entry([1, 2, 30, 40])])).encode()]))
    report = build_report(pixels, Settings(thresholds={"box-valid": {"max_invalid_ratio": 0.5}}), workers=1)
    found = {(f.rule, f.subject): f.status for f in report.findings}
    assert found[("box-valid", "invalid boxes")] is Status.PASS
    assert found[("box-valid", "pixel coordinates")] is Status.FAIL  # pixels fail at any ratio
    assert get_rule("box-tiny").thresholds == {"max_ratio": 0.01}


def test_grid_changes_what_is_tiny(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(rec(0, [entry([0.1, 0.1, 0.2, 0.2])])) + "\n")
    assert status(run(path, "--grid", "14")[1], "box-tiny") == "PASS"  # 0.1 >= 1/14
    _, doc = run(path, "--grid", "9")
    assert status(doc, "box-tiny") == "WARN" and doc["facts"]["data.grid"]["value"] == 9  # 0.1 < 1/9


def images(root: Path, n: int, missing: set[int] = frozenset(), corrupt: set[int] = frozenset()) -> None:
    (root / "images").mkdir(parents=True)
    for i in range(n):
        if i in missing:
            continue
        if i in corrupt:
            (root / "images" / f"{i}.png").write_bytes(b"not a png")
        else:
            Image.new("RGB", (32, 16) if i % 2 else (64, 64)).save(root / "images" / f"{i}.png")


def test_image_root_counts_missing_images(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(good(6)) + b"\n")
    images(tmp_path / "img", 6, missing={1, 4})
    code, doc = run(path, "--image-root", tmp_path / "img")
    assert code == 1 and counts(doc) == Counter(missing_image=2)
    assert status(doc, "data-missing-images", "missing") == "FAIL"
    assert status(doc, "data-missing-images", "unreadable") == "SKIP"
    assert [e.split(":")[1] for e in doc["data"]["categories"]["missing_image"]["examples"]] == ["2", "5"]
    images(tmp_path / "all", 6)
    code, doc = run(path, "--image-root", tmp_path / "all")
    assert code == 0 and status(doc, "data-missing-images", "missing") == "PASS"


def test_check_images_reports_sizes_and_unreadable(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(good(6)) + b"\n")
    images(tmp_path / "img", 6, corrupt={2})
    code, doc = run(path, "--image-root", tmp_path / "img", "--check-images", "-j", "2")
    assert code == 1 and counts(doc) == Counter(unreadable_image=1)
    sizes = doc["facts"]["data.images.sizes"]["value"]
    assert sizes == {"min": "32x16", "max": "64x64", "common": {"32x16": 3, "64x64": 2}}
    assert status(doc, "data-missing-images", "unreadable") == "FAIL"
    result = runner.invoke(app, ["check-data", str(path), "--check-images"])
    assert result.exit_code == 2 and "--check-images needs --image-root" in result.stderr


def test_write_clean_passes_and_never_writes_in_place(tmp_path, defects):
    path, _ = defects
    before = path.read_bytes()
    out = tmp_path / "out" / "clean.jsonl"
    out.parent.mkdir()
    code, doc = run(path, "--write-clean", out, "-j", "2")
    assert code == 1 and path.read_bytes() == before
    clean = doc["facts"]["data.clean"]["value"]
    assert clean["records"] == 40 + 12  # 18 defect lines - 3 not JSON - 1 not object - 2 missing fields
    code, doc = run(out)
    assert code == 0
    assert all(doc["data"]["categories"][c]["count"] == 0 for c in data_scan.INVALID)
    assert doc["facts"]["data.records"]["value"] == clean["records"]
    assert doc["facts"]["data.boxes"]["value"] == clean["boxes"]
    assert not list(out.parent.glob(".fgclip-clean-*")) and not list(out.parent.glob("*.part"))
    link = tmp_path / "link.jsonl"
    link.symlink_to(path)
    for target in (path, link):
        result = runner.invoke(app, ["check-data", str(path), "--write-clean", str(target)])
        assert result.exit_code == 2 and "would write into the inspected" in result.stderr
    assert path.read_bytes() == before
    folder = tmp_path / "out"
    result = runner.invoke(app, ["check-data", str(folder), "--write-clean", str(folder / "again.jsonl")])
    assert result.exit_code == 2 and not (folder / "again.jsonl").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["missing.jsonl"],
            "missing.jsonl: no such file or directory (synthetic FG-CLIP annotations to try: "
            "python -m fgclip.synthetic --out data/synthetic --no-base)",
        ),
        (["empty_dir"], "holds no .json or .jsonl"),
        (["ok.jsonl", "--image-root", "nowhere"], "nowhere"),
        (["ok.jsonl", "--select", "box-vlid"], "unknown rule"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "ok.jsonl").write_bytes(b"\n".join(good(2)))
    result = runner.invoke(app, ["check-data", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fgclip-doctor: error: ") and needle in lines[0]
    assert "Traceback" not in result.output


def test_loader_and_check_data_share_one_box_function(tmp_path, monkeypatch):
    loader_module = subject_data()
    # by identity: the loader imported the very function check-data calls
    assert loader_module.box_problem is fgclip.boxes.box_problem
    records = [rec(i) for i in range(4)] + [
        rec(4, [entry([0.5, 0.2, 0.3, 0.4]), entry([10, 20, 30, 40]), entry([0.1, 0.1, 0.5, 0.5])] * 2),
        rec(5, [entry([math.inf, 0, 1, 1]), entry([0.2, 0.2, 0.2, 0.5]), {"short_expr": "no box"}]),
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    loader = loader_module.FGCLIPDataset(path, tmp_path, tokenizer=object())
    r = scan(path, ScanOptions(), workers=1)
    doctor = Counter({c: r.counts[c] for c in data_scan.INVALID if r.counts[c]})
    doctor["out_of_range"] += doctor.pop("pixel_coords", 0)  # the loader does not split pixels out
    assert doctor == Counter({k: v for k, v in loader.dropped_boxes.items() if k != "over_max"})
    assert r.over_max_boxes == loader.dropped_boxes["over_max"]
    # and by behaviour: change the shared function, check-data follows
    original = fgclip.boxes.box_problem
    monkeypatch.setattr(
        fgclip.boxes, "box_problem", lambda b, tol=1e-6: "zero_area" if b == [0.1, 0.1, 0.5, 0.5] else original(b, tol)
    )
    r = scan(path, ScanOptions(), workers=1)
    assert r.counts["zero_area"] == 4 + 2 + 1


def test_table_output_lists_defects(defects):
    path, _ = defects
    result = runner.invoke(app, ["check-data", str(path), "--format", "table"])
    assert result.exit_code == 1
    assert "Defects" in result.stdout and "pixel_coords" in result.stdout
    assert f"{path.name}:" in result.stdout and "records/s" in result.stdout


def test_categories_documented():
    assert set(EXPECTED) | {"missing_image", "unreadable_image"} == set(CATEGORIES)
    for name in DATA_RULES:
        r = get_rule(name)
        assert r.where == "D" and r.code.startswith("FGD5") and r.thresholds
        assert all([r.title, r.fix, r.what, r.why, r.example, r.evidence])
