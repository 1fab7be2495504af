"""The CLI core: run_report (settings, options, formats, exit codes, errors) and `rules`."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from fgclip_doctor.checks.registry import RuleContext, rule, run_rules, scratch_registry
from fgclip_doctor.cli import (
    CommonOptions,
    DebugOpt,
    FormatOpt,
    IgnoreOpt,
    OutputOpt,
    SelectOpt,
    StrictOpt,
    app,
    run_report,
)
from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.facts import Facts
from fgclip_doctor.report import Report
from fgclip_doctor.settings import Settings

runner = CliRunner()
DOCS = dict(
    what="Checks that the scale is below the clamp.",
    why="Above ln 100 logits saturate.",
    example="logit_scale = 5.0  # fails",
    evidence="open_clip train.py clamp",
)


@pytest.fixture(autouse=True)
def rules_and_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with scratch_registry():

        @rule(
            "FGD901",
            "scale-max",
            title="scale within clamp",
            severity="fail",
            where="C",
            fix="clamp the scale",
            thresholds={"max": 4.6052},
            **DOCS,
        )
        def scale_max(facts: Facts, ctx: RuleContext):
            if skip := ctx.require(facts, "scale"):
                return skip
            v = facts.value("scale")
            make = ctx.problem if v > ctx.threshold("max") else ctx.passed
            return make(v, f"<= {ctx.threshold('max')}", "checked", ctx.sources_of(facts, "scale"))

        @rule("FGD902", "accum", title="no accumulation", severity="warn", where="C", fix="drop accumulation", **DOCS)
        def accum(facts: Facts, ctx: RuleContext):
            return ctx.problem(facts.value("accum", 1), 1, "shrinks negatives")

        yield


demo = typer.Typer()


@demo.callback()
def _group() -> None:
    """Test app."""


@demo.command("check")
def check(
    target: Annotated[str | None, typer.Argument()] = None,
    scale: float = 4.0,
    format: FormatOpt = None,
    output: OutputOpt = None,
    strict: StrictOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """A command as real ones are written: a build function handed to run_report."""

    def build(settings: Settings) -> Report:
        if target == "broken.json":
            raise DoctorInputError(target, "line 3: expected ':'")
        facts = Facts()
        facts.set("scale", scale, "train.sh:4 --scale")
        return Report(
            "check",
            target,
            facts,
            run_rules(facts, "C", settings, command="check"),
            title_lines=[f"fgclip-doctor check · {target}"],
        )

    run_report("check", target, build, CommonOptions(format, output, strict, select, ignore, debug))


def call(*args):
    return runner.invoke(demo, ["check", *args])


def test_exit_codes_and_strict():
    assert call().exit_code == 0
    assert call("--strict").exit_code == 1  # the accum WARN fails
    assert call("--scale", "5").exit_code == 1
    assert call("--scale", "5", "--ignore", "scale-max").exit_code == 0


def test_table_output():
    result = call("train.sh", "--scale", "5")
    assert result.stdout.splitlines()[0] == "fgclip-doctor check · train.sh"
    assert "train.sh:4 --scale" in result.stdout and "clamp the scale" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1] == "0 PASS · 1 WARN · 1 FAIL · 0 SKIP · exit 1"


def test_json_select_comma_and_repeat():
    result = call("-f", "json", "--select", "FGD901,FGD902")
    doc = json.loads(result.stdout)
    assert [f["code"] for f in doc["findings"]] == ["FGD901", "FGD902"]
    assert doc["command"] == "check" and doc["summary"]["warn"] == 1 and doc["exit_code"] == 0
    doc = json.loads(call("-f", "json", "--select", "accum", "--select", "scale-max").stdout)
    assert len(doc["findings"]) == 2
    doc = json.loads(call("--format", "json", "--select", "accum").stdout)
    assert [f["rule"] for f in doc["findings"]] == ["accum"]


def test_output_file_junit(tmp_path):
    result = call("--format", "junit", "--output", "out.xml", "--strict")
    assert result.exit_code == 1 and result.stdout == ""
    suite = ET.parse(tmp_path / "out.xml").getroot().find("testsuite")
    assert suite.get("name") == "fgclip-doctor.check" and suite.get("failures") == "1"


def test_pyproject_settings_and_cli_override(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.fgclip-doctor]\nstrict = true\nformat = "json"\n[tool.fgclip-doctor.thresholds.scale-max]\nmax = 3.0\n'
    )
    result = call()
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and doc["findings"][0]["status"] == "FAIL"
    assert doc["findings"][0]["expected"] == "<= 3.0"
    result = call("--no-strict", "--ignore", "FGD901", "-f", "table")
    assert result.exit_code == 0 and "exit 0" in result.stdout


def assert_one_error_line(result, *needles):
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fgclip-doctor: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.output


def test_broken_pyproject_exits_2_with_one_line(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.fgclip-doctor]\nstrict = 'sometimes'\n")
    assert_one_error_line(call(), str((tmp_path / "pyproject.toml").resolve()), "strict")
    (tmp_path / "pyproject.toml").write_text("[tool.fgclip-doctor\n")
    assert_one_error_line(call(), "pyproject.toml", "not valid TOML")


def test_input_and_usage_errors_exit_2():
    assert_one_error_line(call("broken.json"), "broken.json: line 3: expected ':'")
    assert_one_error_line(call("--select", "scale-mx"), "unknown rule in select", "scale-max")
    assert_one_error_line(call("--output", "missing/dir/out.json", "-f", "json"), "missing/dir/out.json")


def test_debug_shows_traceback():
    result = call("broken.json", "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("fgclip-doctor: error: broken.json")


def test_never_writes_into_the_inspected_folder(tmp_path):
    (tmp_path / "ckpt").mkdir()
    assert_one_error_line(call("ckpt", "-o", "ckpt/report.json"), "inspected")


def test_typer_usage_errors_exit_2():
    assert call("--format", "xml").exit_code == 2


def test_rules_list():
    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0
    for word in (
        "code",
        "rule",
        "where",
        "severity",
        "FGD901",
        "scale-max",
        "C",
        "fail",
        "scale within clamp",
        "FGD902",
        "accum",
        "warn",
    ):
        assert word in result.stdout, word


@pytest.mark.parametrize("name", ["scale-max", "fgd901"])
def test_rules_explain(name):
    result = runner.invoke(app, ["rules", name])
    assert result.exit_code == 0
    out = result.stdout
    for heading in ("What it does", "Why it matters", "Example", "Evidence", "Fix", "Default thresholds"):
        assert heading in out, heading
    assert out.index("What it does") < out.index("Why it matters") < out.index("Example")
    for text in (
        "FGD901 scale-max",
        DOCS["what"],
        DOCS["why"],
        DOCS["example"],
        DOCS["evidence"],
        "clamp the scale",
        "max = 4.6052",
        "[tool.fgclip-doctor.thresholds.scale-max]",
    ):
        assert text in out, text


def test_rules_unknown_exits_2_with_close_matches():
    assert_one_error_line(runner.invoke(app, ["rules", "scale-mac"]), "unknown rule", "scale-max")


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip().startswith("fgclip-doctor ")
