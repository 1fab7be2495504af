"""Args files load like HfArgumentParser's parse_json_file / parse_yaml_file, with lines."""

from __future__ import annotations

import textwrap

import pytest

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.launch.args import coerce, load_args_file


def test_json_values_keep_types_and_lines(tmp_path, monkeypatch):
    path = tmp_path / "args.json"
    path.write_text(
        textwrap.dedent("""\
        {
          "model_name_or_path": "openai/clip-vit-base-patch16",
          "per_device_train_batch_size": 512,
          "learning_rate": 1e-6,
          "bf16": true,
          "report_to": ["none"],
          "gradient_accumulation_steps": 1,
          "deepspeed": {"zero_optimization": {"stage": 2}},
          "gradient_accumulation_steps": 8
        }
    """)
    )
    monkeypatch.chdir(tmp_path)
    args = load_args_file(path)
    assert args["per_device_train_batch_size"] == (512, "args.json:3 per_device_train_batch_size")
    assert args["learning_rate"][0] == 1e-6 and args["bf16"][0] is True
    assert args["report_to"][0] == ["none"]
    assert args["deepspeed"][0] == {"zero_optimization": {"stage": 2}}
    # A duplicate key: the last value and the last line, as json.load keeps the last one.
    assert args["gradient_accumulation_steps"] == (8, "args.json:9 gradient_accumulation_steps")


def test_compact_json_lines(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"a": 1, "b": "x,}"}')
    args = load_args_file(path)
    assert args["a"][1].endswith("a.json:1 a") and args["b"][0] == "x,}"


def test_yaml_values_and_lines(tmp_path, monkeypatch):
    path = tmp_path / "args.yaml"
    path.write_text(
        textwrap.dedent("""\
        # stage 2
        model_name_or_path: openai/clip-vit-base-patch16

        learning_rate: 1.0e-6
        bf16: true
        per_device_train_batch_size: 64
    """)
    )
    monkeypatch.chdir(tmp_path)
    args = load_args_file(path)
    assert args["model_name_or_path"] == ("openai/clip-vit-base-patch16", "args.yaml:2 model_name_or_path")
    assert args["learning_rate"] == (1e-6, "args.yaml:4 learning_rate")
    assert args["bf16"][0] is True and args["per_device_train_batch_size"][0] == 64


def test_broken_json_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "a": 1,\n  "b": 2,\n}\n')
    with pytest.raises(DoctorInputError) as err:
        load_args_file(path)
    assert str(err.value).startswith(f"{path}: invalid JSON at line 4 column 1: ")


def test_broken_yaml_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(DoctorInputError, match=r"invalid YAML at line \d+ column \d+: "):
        load_args_file(path)
    path.write_text("a: 1\n  b: 2\n")
    with pytest.raises(DoctorInputError, match=r"invalid YAML at line 2 column 4: "):
        load_args_file(path)


@pytest.mark.parametrize(
    "name,text,needle",
    [
        ("list.json", "[1, 2]", "got a list"),
        ("str.yaml", "just text\n", "got a string"),
        ("empty.yaml", "", "empty file"),
    ],
)
def test_not_a_mapping(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DoctorInputError, match=needle):
        load_args_file(path)


def test_missing_binary_and_wrong_suffix(tmp_path):
    with pytest.raises(DoctorInputError, match="no such file"):
        load_args_file(tmp_path / "nope.json")
    blob = tmp_path / "weights.json"
    blob.write_bytes(b"\x00\x01\x02")
    with pytest.raises(DoctorInputError, match="binary"):
        load_args_file(blob)
    txt = tmp_path / "args.txt"
    txt.write_text("{}")
    with pytest.raises(DoctorInputError, match=r"\.json, \.yaml or \.yml"):
        load_args_file(txt)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("true", True),
        ("True", True),
        ("YES", True),
        ("1", True),
        ("t", True),
        ("y", True),
        ("false", False),
        ("No", False),
        ("0", False),
        ("F", False),
        ("n", False),
    ],
)
def test_coerce_bool_like_hf(text, expected):
    assert coerce(text, bool) is expected


def test_coerce_numbers_and_errors():
    assert coerce("8", int) == 8 and coerce("-1", int) == -1
    assert coerce("1e-6", float) == 1e-6 and coerce("2", float) == 2.0
    assert coerce("cosine", str) == "cosine"
    assert coerce(None, int) is None  # unresolved stays unknown
    assert coerce(8, int) == 8 and coerce(True, bool) is True  # JSON values pass through
    with pytest.raises(ValueError, match="expected an integer, got '8.0'"):
        coerce("8.0", int)
    with pytest.raises(ValueError, match="expected a number, got 'fast'"):
        coerce("fast", float)
    with pytest.raises(ValueError, match="expected a boolean"):
        coerce("maybe", bool)
    with pytest.raises(ValueError, match="expected an integer"):
        coerce(True, int)


def test_coerce_bool_matches_transformers():
    hf_argparser = pytest.importorskip("transformers.hf_argparser")
    for text in ["yes", "No", "TRUE", "f", "1", "0", "Y"]:
        assert coerce(text, bool) is hf_argparser.string_to_bool(text)
    for text in ["maybe", " true", "2"]:
        with pytest.raises(ValueError):
            coerce(text, bool)
        with pytest.raises(Exception):
            hf_argparser.string_to_bool(text)
