"""The rule registry: registration, statuses, SKIP reasons, select / ignore, thresholds."""

from __future__ import annotations

import sys

import pytest

from fgclip_doctor import checks
from fgclip_doctor.checks import registry
from fgclip_doctor.checks.registry import (
    Finding,
    RuleContext,
    Status,
    all_rules,
    get_rule,
    rule,
    run_rules,
    scratch_registry,
)
from fgclip_doctor.errors import DoctorUsageError
from fgclip_doctor.facts import Facts
from fgclip_doctor.settings import Settings

DOCS = dict(fix="set the scale", what="Checks x.", why="Because.", example="x = 1", evidence="open_clip model.py")


@pytest.fixture(autouse=True)
def scratch():
    with scratch_registry():
        yield


def register_pair():
    @rule(
        "FGD901",
        "scale-max",
        title="the scale stays below a maximum",
        severity="fail",
        where="CL",
        thresholds={"max": 4.6052},
        **DOCS,
    )
    def scale_max(facts: Facts, ctx: RuleContext) -> Finding:
        if skip := ctx.require(facts, "scale"):
            return skip
        value = facts.value("scale")
        src = ctx.sources_of(facts, "scale")
        if value > ctx.threshold("max"):
            return ctx.problem(value, f"<= {ctx.threshold('max')}", "too high", src)
        return ctx.passed(value, f"<= {ctx.threshold('max')}", "fine", src)

    @rule("FGD902", "accum-warn", title="no gradient accumulation", severity="warn", where="K", **DOCS)
    def accum(facts: Facts, ctx: RuleContext) -> list[Finding]:
        out = []
        for term in ("global", "region"):
            if facts.value(f"accum.{term}", 1) > 1:
                out.append(ctx.problem(facts.value(f"accum.{term}"), 1, "shrinks", subject=term))
            else:
                out.append(ctx.passed(1, 1, subject=term))
        return out


def facts_with(**values) -> Facts:
    facts = Facts()
    for name, value in values.items():
        facts.set(name.replace("_", "."), value, f"train.sh:{len(name)} --{name}")
    return facts


def test_statuses_and_provenance():
    register_pair()
    [ok] = run_rules(facts_with(scale=2.0), "C")
    assert (ok.status, ok.code, ok.rule, ok.severity) == (Status.PASS, "FGD901", "scale-max", "fail")
    assert ok.measured == "2" and ok.expected == "<= 4.6052" and ok.sources == ("train.sh:5 --scale",)
    [bad] = run_rules(facts_with(scale=9.5), "C")
    assert bad.status is Status.FAIL and bad.fix == "set the scale" and bad.message == "too high"


def test_missing_facts_skip_with_reason():
    register_pair()
    [skipped] = run_rules(Facts(), "L")
    assert skipped.status is Status.SKIP
    assert skipped.message == "not known: scale"
    assert skipped.fix == "" and skipped.measured == ""


def test_where_filters_and_subjects():
    register_pair()
    found = run_rules(facts_with(accum_region=4), "K")
    assert [(f.code, f.subject, f.status) for f in found] == [
        ("FGD902", "global", Status.PASS),
        ("FGD902", "region", Status.WARN),
    ]
    assert found[1].severity == "warn"
    assert run_rules(Facts(), "D") == []


def test_warned_on_a_fail_rule_and_failed_on_a_warn_rule():
    @rule("FGD903", "two-level", title="t", severity="fail", where="C", **DOCS)
    def two(facts, ctx):
        return [ctx.warned("no clamp", "clamp", "m"), ctx.failed(5, 4, "m", fix="other fix")]

    warn, fail = run_rules(Facts(), "C")
    assert (warn.status, warn.severity, warn.fix) == (Status.WARN, "warn", "set the scale")
    assert (fail.status, fail.severity, fail.fix) == (Status.FAIL, "fail", "other fix")


def test_select_and_ignore_by_name_code_and_prefix():
    register_pair()

    @rule("FGD911", "other-c", title="t", severity="warn", where="C", **DOCS)
    def other(facts, ctx):
        return ctx.skip("nothing")

    codes = lambda s: [f.code for f in run_rules(Facts(), "C", s)]
    assert codes(Settings()) == ["FGD901", "FGD911"]
    assert codes(Settings(select=["scale-max"])) == ["FGD901"]
    assert codes(Settings(select=["fgd911"])) == ["FGD911"]
    assert codes(Settings(select=["FGD91"])) == ["FGD911"]
    assert codes(Settings(ignore=["FGD901"])) == ["FGD911"]
    assert codes(Settings(select=["FGD9"], ignore=["other-c"])) == ["FGD901"]


def test_unknown_selector_names_close_matches():
    register_pair()
    with pytest.raises(DoctorUsageError, match=r"unknown rule in select 'scale-mx'.*scale-max"):
        run_rules(Facts(), "C", Settings(select=["scale-mx"]))
    with pytest.raises(DoctorUsageError, match="unknown rule in ignore"):
        run_rules(Facts(), "C", Settings(ignore=["nope"]))


def test_thresholds_merge_by_slug_or_code_and_are_validated():
    register_pair()
    facts = facts_with(scale=4.0)
    assert run_rules(facts, "C", Settings())[0].status is Status.PASS
    strict = Settings(thresholds={"scale-max": {"max": 3.0}})
    assert run_rules(facts, "C", strict)[0].status is Status.FAIL
    assert run_rules(facts, "C", Settings(thresholds={"FGD901": {"max": 3.0}}))[0].expected == "<= 3.0"
    with pytest.raises(DoctorUsageError, match="unknown key 'maxx'"):
        run_rules(facts, "C", Settings(thresholds={"scale-max": {"maxx": 3.0}}))
    with pytest.raises(DoctorUsageError, match="unknown rule in thresholds 'scale-mix'"):
        run_rules(facts, "C", Settings(thresholds={"scale-mix": {"max": 3.0}}))


def test_opt_in_rule_accepts_any_threshold_keys_and_sees_expect():
    @rule("FGD920", "milestones", title="t", severity="fail", where="L", **DOCS)
    def milestones(facts, ctx):
        return ctx.passed(ctx.threshold("region@50"), ",".join(ctx.expect), subject=ctx.command)

    s = Settings(thresholds={"milestones": {"region@50": 1.0}}, expect=["region@50<1"])
    [f] = run_rules(Facts(), "L", s, command="live")
    assert (f.measured, f.expected, f.subject) == ("1", "region@50<1", "live")


def test_registration_errors():
    register_pair()
    with pytest.raises(ValueError, match="duplicate rule code"):
        rule("FGD901", "fresh-name", title="t", severity="fail", where="C", **DOCS)(lambda f, c: None)
    with pytest.raises(ValueError, match="duplicate rule name"):
        rule("FGD999", "scale-max", title="t", severity="fail", where="C", **DOCS)(lambda f, c: None)
    for bad in (dict(code="X1"), dict(name="Bad Name"), dict(severity="error"), dict(where="CX"), dict(where="")):
        args = dict(code="FGD998", name="ok-name", title="t", severity="warn", where="C", **DOCS)
        args.update(bad)
        with pytest.raises(ValueError):
            rule(args.pop("code"), args.pop("name"), **args)


def test_rule_must_return_findings():
    @rule("FGD930", "empty", title="t", severity="fail", where="C", **DOCS)
    def empty(facts, ctx):
        return []

    with pytest.raises(TypeError, match="ctx.skip"):
        run_rules(Facts(), "C")


def test_get_rule_and_all_rules():
    register_pair()
    assert get_rule("fgd902").name == "accum-warn"
    assert get_rule("scale-max").code == "FGD901"
    assert get_rule("scale-max").thresholds == {"max": 4.6052}
    assert [r.code for r in all_rules()] == ["FGD901", "FGD902"]
    with pytest.raises(DoctorUsageError, match=r"did you mean: scale-max"):
        get_rule("scale-mxa")
    with pytest.raises(ValueError):
        run_rules(Facts(), "CK")


def test_scratch_registry_restores():
    with scratch_registry():
        register_pair()
        assert len(registry._RULES) >= 2
    assert "FGD901" not in registry._RULES


def test_rule_modules_are_imported(tmp_path, monkeypatch):
    (tmp_path / "fake_family.py").write_text(
        "from fgclip_doctor.checks.registry import rule\n"
        "@rule('FGD950', 'from-module', title='t', severity='warn', where='D', fix='f',\n"
        "      what='w', why='y', example='e', evidence='v')\n"
        "def f(facts, ctx):\n    return ctx.skip('no data')\n"
    )
    monkeypatch.setattr(checks, "__path__", [*checks.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "RULE_MODULES", ["fake_family"])
    monkeypatch.delitem(sys.modules, "fgclip_doctor.checks.fake_family", raising=False)
    try:
        assert [f.rule for f in run_rules(Facts(), "D")] == ["from-module"]
        assert get_rule("FGD950").where == "D"
    finally:
        sys.modules.pop("fgclip_doctor.checks.fake_family", None)
