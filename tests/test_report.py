"""The report: summary, exit codes, the public JSON schema, JUnit XML, the table, sparklines."""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console
from rich.text import Text
from schema import validate

from fgclip_doctor.checks.registry import Finding, Status, rule, scratch_registry
from fgclip_doctor.facts import Facts
from fgclip_doctor.report import Report, emit, exit_code, render_table, sparkline, summary, to_json, to_junit


@pytest.fixture(autouse=True)
def scratch():
    with scratch_registry():
        rule(
            "FGD901",
            "scale-max",
            title="logit scale within its clamp",
            severity="fail",
            where="C",
            fix="clamp",
            what="w",
            why="y",
            example="e",
            evidence="v",
        )(lambda f, c: [])
        yield


def finding(status: Status, subject: str = "", severity: str = "fail") -> Finding:
    return Finding(
        "FGD901",
        "scale-max",
        status,
        severity,
        "4.9",
        "<= 4.6052",
        f"{status.value.lower()} message",
        "clamp it",
        ("train.sh:3 --scale",),
        subject,
    )


ALL = [
    finding(Status.PASS),
    finding(Status.WARN, "region", "warn"),
    finding(Status.FAIL, "global"),
    finding(Status.SKIP),
]


def make_report(findings=ALL, strict=False, **kw) -> Report:
    facts = Facts()
    facts.set("model.logit_scale", 4.9, "train.sh:3 --scale")
    facts.set("loss.history", [1.0, float("nan")], "trainer_state.json")
    return Report("check-config", "train.sh", facts, list(findings), strict=strict, **kw)


def test_summary_and_exit_codes():
    assert summary(ALL) == {"pass": 1, "warn": 1, "fail": 1, "skip": 1}
    assert exit_code([]) == 0
    assert exit_code([finding(Status.PASS), finding(Status.SKIP)], strict=True) == 0
    assert exit_code([finding(Status.WARN)]) == 0
    assert exit_code([finding(Status.WARN)], strict=True) == 1
    assert exit_code([finding(Status.FAIL)]) == 1


def test_json_schema():
    doc = to_json(make_report(extra={"trajectory": [{"step": 1, "loss": math.inf}]}))
    validate(doc, {"trajectory"})
    assert doc["command"] == "check-config" and doc["target"] == "train.sh"
    assert doc["facts"]["model.logit_scale"] == {"value": 4.9, "source": "train.sh:3 --scale"}
    assert doc["facts"]["loss.history"]["value"] == [1.0, "nan"]
    assert doc["trajectory"] == [{"step": 1, "loss": "inf"}]
    assert doc["summary"] == {"pass": 1, "warn": 1, "fail": 1, "skip": 1}
    assert doc["exit_code"] == 1
    fail = doc["findings"][2]
    assert fail == {
        "code": "FGD901",
        "rule": "scale-max",
        "status": "FAIL",
        "severity": "fail",
        "measured": "4.9",
        "expected": "<= 4.6052",
        "message": "fail message",
        "fix": "clamp it",
        "sources": ["train.sh:3 --scale"],
        "subject": "global",
        "missing": [],
    }
    empty = to_json(Report("check-data", None, Facts(), []))
    validate(empty)
    assert empty["target"] is None and empty["findings"] == [] and empty["exit_code"] == 0


def test_json_extra_cannot_replace_schema_keys():
    with pytest.raises(ValueError, match="summary"):
        to_json(make_report(extra={"summary": {}}))


@pytest.mark.parametrize("strict", [False, True])
def test_junit(strict):
    root = ET.fromstring(to_junit(make_report(strict=strict)))
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "fgclip-doctor.check-config"
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == 4
    assert int(suite.get("failures")) == (2 if strict else 1)
    assert int(suite.get("skipped")) == 1 and suite.get("errors") == "0"
    assert [c.get("classname") for c in cases] == ["FGD901"] * 4
    assert [c.get("name") for c in cases] == ["scale-max", "scale-max [region]", "scale-max [global]", "scale-max"]
    passed, warn, fail, skip = cases
    assert list(passed) == []
    assert fail.find("failure").get("message") == "fail message"
    assert "train.sh:3 --scale" in fail.find("failure").text
    assert skip.find("skipped").get("message") == "skip message"
    if strict:
        assert warn.find("failure") is not None
    else:
        assert warn.find("failure") is None
        assert warn.find("system-out").text.startswith("WARN: warn message")
    assert root.get("failures") == suite.get("failures")


def test_sparkline():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([3.0, float("nan"), 1.0]) == "█!▁"
    assert sparkline([2, 2, 2]) == "▁▁▁"
    assert sparkline([]) == ""
    assert sparkline([math.inf]) == "!"
    assert len(sparkline(range(100), width=10)) == 10
    assert sparkline([1.0, float("nan"), 2.0, 3.0, 5.0, 7.0], width=3) == "!▁█"


def recording_console() -> Console:
    return Console(record=True, width=200, file=io.StringIO(), color_system=None)


def test_render_table():
    console = recording_console()
    report = make_report(
        title_lines=["fgclip-doctor check-config · train.sh"], sections=[("Loss terms", Text("global 4.1 → 0.9 ▇▅▃▂▁"))]
    )
    render_table(report, console)
    text = console.export_text()
    lines = text.splitlines()
    assert lines[0] == "fgclip-doctor check-config · train.sh"
    # sections, then the problems (FAIL before WARN) as blocks, then passes and skips one line each
    assert (
        text.index("Loss terms")
        < text.index("global 4.1 → 0.9")
        < text.index("FAIL FGD901")
        < text.index("WARN FGD901")
        < text.index("PASS FGD901")
        < text.index("SKIP FGD901")
    )
    for word in (
        "scale-max · global",
        "fail message",
        "measured: 4.9",
        "expected: <= 4.6052",
        "from: train.sh:3 --scale",
        "fix: clamp it",
        "SKIP FGD901 scale-max  skip message",
    ):
        assert word in text, word
    assert lines[-1] == "1 PASS · 1 WARN · 1 FAIL · 1 SKIP · exit 1"


def test_emit_formats(tmp_path):
    report = make_report([finding(Status.WARN, severity="warn")])
    console = recording_console()
    assert emit(report, "json", None, console) == 0
    validate(json.loads(console.file.getvalue()))
    report.strict = True
    out = tmp_path / "r.xml"
    console = recording_console()
    assert emit(report, "junit", out, console) == 1
    assert console.file.getvalue() == ""
    assert ET.parse(out).getroot().find("testsuite").get("failures") == "1"
    out = tmp_path / "r.txt"
    assert emit(report, "table", out, console) == 1
    assert "0 PASS · 1 WARN · 0 FAIL · 0 SKIP · exit 1" in out.read_text(encoding="utf-8")
    assert emit(report, "table", None, console) == 1
    assert "exit 1" in console.export_text()
