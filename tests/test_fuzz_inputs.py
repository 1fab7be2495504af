"""Fuzz the remaining readers: FG-CLIP annotation records and files (`check-data`), the
`[tool.fgclip-doctor]` settings of a pyproject.toml in the working folder, and `--expect` strings.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fuzz_cli import Blob, fuzz_settings, run_cli
from hypothesis import example, given
from hypothesis import strategies as st
from test_fuzz_checkpoint import write_checkpoint

NESTED = "[" * 10_000 + "]" * 10_000
numbers = st.floats() | st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, 0.5, 1.5, 640, -0.1])
scalars = st.none() | st.booleans() | numbers | st.text(max_size=8)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)

boxes = st.fixed_dictionaries(
    {},
    optional={
        "bbox": st.lists(numbers, min_size=0, max_size=5) | anything,
        "short_expr": st.text(max_size=10) | anything,
        "long_expr": st.text(max_size=10) | anything,
        "flag_short_neg": st.sampled_from([0, 1, True, "1", None]),
        "short_expr_negs": st.dictionaries(
            st.sampled_from(["0", "1", "2", "x"]), st.text(max_size=6) | anything, max_size=11
        )
        | st.lists(st.text(max_size=5), max_size=11)
        | anything,
    },
)
records = (
    st.fixed_dictionaries(
        {},
        optional={
            "f_path": st.sampled_from(["images/a.png", "../../etc/passwd", "", "/abs.png", "a\0b.png"]) | anything,
            "caption": st.text(max_size=20) | anything,
            "short_caption": st.text(max_size=10) | anything,
            "bbox_info": st.lists(boxes | anything, max_size=6) | anything,
        },
    )
    | anything
)


@st.composite
def data_files(draw) -> tuple[str, Blob]:
    """(file name, bytes): JSON Lines, a JSON array, or mutated bytes."""
    recs = draw(st.lists(records, max_size=6))
    kind = draw(st.sampled_from(["jsonl", "jsonl", "array", "bytes", "mixed", "deep", "huge"]))
    if kind == "jsonl":
        return "train.jsonl", Blob("".join(json.dumps(r, allow_nan=True) + "\n" for r in recs).encode())
    if kind == "array":
        return draw(st.sampled_from(["train.json", "train.jsonl"])), Blob(json.dumps(recs, allow_nan=True).encode())
    if kind == "deep":
        return "train.jsonl", Blob((NESTED + "\n" + '{"bbox_info": ' + NESTED + "}\n").encode())
    if kind == "huge":
        return "train.jsonl", Blob(b'{"caption": "' + b"a" * 1_100_000 + b'"}\n')
    lines = [json.dumps(r, allow_nan=True).encode() for r in recs]
    lines += draw(st.lists(st.binary(max_size=40), max_size=3))
    name = draw(st.sampled_from(["train.jsonl", "train.json", "train.txt", "data"]))
    return name, Blob(b"\n".join(draw(st.permutations(lines))) if kind == "mixed" else draw(st.binary(max_size=200)))


def check_data(name: str, data: bytes, *extra: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ann"
        root.mkdir()
        (root / name).write_bytes(data)
        (root / "images").mkdir()
        (root / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        run_cli(["check-data", root / name, "-j", "1", "--format", "json", *extra], inspected=[root], cwd=root.parent)
        run_cli(["check-data", root, "-j", "1", "--image-root", root, "--grid", "8"], inspected=[root], cwd=root.parent)


@fuzz_settings(100)
@given(case=data_files())
@example(case=("train.jsonl", Blob((NESTED + "\n").encode())))
@example(case=("train.json", Blob(NESTED.encode())))
def test_data_files(case):
    name, blob = case
    check_data(name, blob.data)


@fuzz_settings(10)
@given(records_=st.lists(records, min_size=1, max_size=4))
def test_write_clean_never_writes_into_the_input(records_):
    data = "".join(json.dumps(r, allow_nan=True) + "\n" for r in records_).encode()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ann"
        root.mkdir()
        (root / "train.jsonl").write_bytes(data)
        for target in (root / "train.jsonl", root / "clean.jsonl", Path(tmp) / "clean.jsonl"):
            run_cli(
                ["check-data", root / "train.jsonl", "-j", "1", "--write-clean", target],
                inspected=[root / "train.jsonl"],
                cwd=Path(tmp),
            )


# ---- [tool.fgclip-doctor] in a pyproject.toml in the working folder ---------------------------
toml_values = st.sampled_from(
    [
        '["FGD1"]',
        '["nonexistent-rule"]',
        '"FGD2"',
        "true",
        "1",
        '"yes"',
        '["region_loss@5<1.0"]',
        '["x@y<z"]',
        '"json"',
        '"xml"',
        "{ min_ratio = 0.5 }",
        "{ nope = 1 }",
        "[[1]]",
        "nan",
        "inf",
        "1979-05-27",
        '"\\u0000"',
        "[" * 50 + "]" * 50,
        "[" * 5000 + "]" * 5000,
    ]
)
keys = st.sampled_from(["select", "ignore", "strict", "expect", "format", "thresholds", "other"])


@st.composite
def pyprojects(draw) -> Blob:
    lines = ["[tool.fgclip-doctor]"]
    for key in draw(st.lists(keys, max_size=4)):
        lines.append(f"{key} = {draw(toml_values)}")
    if draw(st.booleans()):
        rule = draw(st.sampled_from(["logit-scale-init", "FGD101", "nope", "loss-chance"]))
        lines.append(f"[tool.fgclip-doctor.thresholds.{rule}]")
        lines.append(f"{draw(st.sampled_from(['min_ratio', 'max', 'x']))} = {draw(toml_values)}")
    text = "\n".join(lines) + "\n"
    kind = draw(st.sampled_from(["toml", "toml", "toml", "bytes", "latin1"]))
    if kind == "bytes":
        return Blob(b"[tool.fgclip-doctor]\n" + draw(st.binary(max_size=60)))
    return Blob(text.encode("latin-1", "replace") + (b"# caf\xe9\n" if kind == "latin1" else b""))


@fuzz_settings(80)
@given(pyproject=pyprojects())
def test_pyproject_settings(pyproject):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_bytes(pyproject.data)
        ann = root / "train.jsonl"
        ann.write_text(
            json.dumps(
                {
                    "f_path": "a.png",
                    "caption": "c",
                    "short_caption": "s",
                    "bbox_info": [{"bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": "x"}],
                }
            )
            + "\n"
        )
        run_cli(["check-data", ann, "-j", "1"], inspected=[root], cwd=root)
        ckpt = write_checkpoint(root, {})
        run_cli(["inspect-ckpt", ckpt], inspected=[root], cwd=root)


# ---- --expect strings -------------------------------------------------------------------------
expects = st.text(alphabet="region_los@<>=.0123456789-+eEnaifNI ,;$\\'\"\u00e9", max_size=24) | st.sampled_from(
    [
        "region_loss@5<1.0",
        "loss@10<2",
        "loss@-1<1",
        "loss@1e99<1",
        "loss@5<nan",
        "loss@5<inf",
        "@<",
        "loss@5<<1",
        "loss@@5<1",
        "loss@5",
        "loss<1",
        "x" * 5000 + "@5<1",
        "loss@999999999999999999999<1",
    ]
)


@fuzz_settings(80)
@given(expect=st.lists(expects, min_size=1, max_size=3))
def test_expect_strings(expect):
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_checkpoint(Path(tmp), {})
        args = [a for e in expect for a in ("--expect", e)]
        run_cli(["inspect-ckpt", ckpt, *args], inspected=[ckpt])


# ---- hypothesis itself writes nothing into the checkout ---------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def _checkout() -> tuple[list[str], str]:
    """What lies in the checkout: the repo's and tests/ top-level names, and git's view of every file
    not committed (untracked and ignored, bytecode caches aside) where the checkout is a git one."""
    names = sorted(p.name for p in REPO.iterdir()) + sorted(p.name for p in (REPO / "tests").iterdir())
    status = ""
    if (REPO / ".git").exists():
        import subprocess

        out = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        status = "\n".join(line for line in out.splitlines() if "__pycache__" not in line)
    return names, status


def test_hypothesis_leaves_nothing_in_the_checkout(monkeypatch):
    """Issue 20: a hypothesis run from the repo root writes no `.hypothesis/` (example database, mined
    constants) and no other file into the checkout; every test is derandomized with no database."""
    from hypothesis import configuration, settings

    monkeypatch.chdir(REPO)
    before = _checkout()

    @settings(max_examples=30)  # the profile's derandomize and database=None are inherited
    @given(st.binary(), numbers)
    def prop(data, number):
        assert len(data) >= 0 and number == number or number != number

    prop()
    assert settings.default.derandomize and settings.default.database is None
    home = Path(configuration.storage_directory(intent_to_write=False).path).resolve()
    assert REPO not in home.parents and home != REPO, home
    assert not (REPO / ".hypothesis").exists() and not (REPO / "tests" / ".hypothesis").exists()
    assert _checkout() == before
