"""Settings from [tool.fgclip-doctor] in the nearest pyproject.toml, and CLI overrides."""

from __future__ import annotations

import pytest

from fgclip_doctor.errors import DoctorInputError, DoctorUsageError
from fgclip_doctor.settings import Settings, load_settings

GOOD = """
[project]
name = "x"

[tool.fgclip-doctor]
select = ["FGD1", "negatives-count"]
ignore = ["grad-accum-negatives"]
strict = true
expect = ["region@50<1.0"]
format = "json"

[tool.fgclip-doctor.thresholds.logit-scale-clamp]
max = 4.6
slack = 1

[tool.fgclip-doctor.thresholds.loss-chance]
ratio = 0.8
"""


def write(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(text, encoding="utf-8")
    return folder / "pyproject.toml"


def test_defaults_without_pyproject(tmp_path):
    settings, origin = load_settings(tmp_path)
    assert origin is None
    assert settings == Settings([], [], False, {}, [], None)


def test_reads_nearest_table_from_a_subfolder(tmp_path):
    path = write(tmp_path, GOOD)
    sub = tmp_path / "scripts" / "deep"
    sub.mkdir(parents=True)
    settings, origin = load_settings(sub)
    assert origin == str(path.resolve())
    assert settings.select == ["FGD1", "negatives-count"]
    assert settings.ignore == ["grad-accum-negatives"]
    assert settings.strict is True and settings.format == "json"
    assert settings.expect == ["region@50<1.0"]
    assert settings.thresholds == {"logit-scale-clamp": {"max": 4.6, "slack": 1.0}, "loss-chance": {"ratio": 0.8}}
    assert isinstance(settings.thresholds["logit-scale-clamp"]["slack"], float)


def test_start_may_be_a_file(tmp_path):
    write(tmp_path, GOOD)
    (tmp_path / "train.sh").write_text("echo\n")
    assert load_settings(tmp_path / "train.sh")[0].strict is True


def test_pyproject_without_table_is_passed_over(tmp_path):
    outer = write(tmp_path, GOOD)
    write(tmp_path / "inner", "[project]\nname = 'inner'\n")
    settings, origin = load_settings(tmp_path / "inner")
    assert origin == str(outer.resolve()) and settings.strict


def test_nearest_table_wins(tmp_path):
    write(tmp_path, GOOD)
    inner = write(tmp_path / "inner", "[tool.fgclip-doctor]\nstrict = false\n")
    settings, origin = load_settings(tmp_path / "inner")
    assert origin == str(inner.resolve()) and settings.strict is False and settings.select == []


@pytest.mark.parametrize(
    "body, key",
    [
        ("colour = 'red'", "colour"),
        ("select = 'FGD1'", "select"),
        ("ignore = [1, 2]", "ignore"),
        ("strict = 'yes'", "strict"),
        ("format = 'xml'", "format"),
        ("thresholds = 3", "thresholds"),
        ("[tool.fgclip-doctor.thresholds]\nloss-chance = 0.9", "thresholds.loss-chance"),
        ("[tool.fgclip-doctor.thresholds.loss-chance]\nratio = true", "thresholds.loss-chance.ratio"),
        ("[tool.fgclip-doctor.thresholds.loss-chance]\nratio = 'high'", "thresholds.loss-chance.ratio"),
    ],
)
def test_bad_keys_and_types_name_file_and_key(tmp_path, body, key):
    if not body.startswith("["):
        body = "[tool.fgclip-doctor]\n" + body
    path = write(tmp_path, body + "\n")
    with pytest.raises(DoctorUsageError) as err:
        load_settings(tmp_path)
    message = str(err.value)
    assert message.startswith(str(path.resolve()) + ": [tool.fgclip-doctor] " + key + ":")
    assert "\n" not in message


def test_broken_toml_is_an_input_error(tmp_path):
    path = write(tmp_path, "[tool.fgclip-doctor\nstrict = true\n")
    with pytest.raises(DoctorInputError) as err:
        load_settings(tmp_path)
    assert err.value.path == str(path.resolve())
    assert "not valid TOML" in err.value.problem


def test_merge_cli_over_file():
    base = Settings(
        select=["FGD1"],
        ignore=["a"],
        strict=True,
        thresholds={"loss-chance": {"ratio": 0.9, "steps": 5}},
        format="json",
    )
    same = base.merge({"select": [], "ignore": None, "strict": None, "format": None})
    assert same == base and same is not base
    merged = base.merge(
        {
            "select": ["FGD2", "FGD3"],
            "strict": False,
            "format": "junit",
            "expect": ["x"],
            "thresholds": {"loss-chance": {"ratio": 0.5}},
        }
    )
    assert merged.select == ["FGD2", "FGD3"] and merged.ignore == ["a"]
    assert merged.strict is False and merged.format == "junit" and merged.expect == ["x"]
    assert merged.thresholds == {"loss-chance": {"ratio": 0.5, "steps": 5}}
    assert base.thresholds == {"loss-chance": {"ratio": 0.9, "steps": 5}}  # not mutated
    with pytest.raises(DoctorUsageError):
        base.merge({"colour": "red"})
    with pytest.raises(DoctorUsageError):
        base.merge({"format": "xml"})
