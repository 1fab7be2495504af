"""Every temperature threshold verdict is monotonic: no special value (the seed's 2.6592 included)
FAILs where a worse one PASSes, and a stricter threshold never turns a FAIL into a PASS."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from rule_check import by_subject, check_rule

from fgclip_doctor.checks.registry import Status
from fgclip_doctor.facts import Facts

SCALE = st.floats(min_value=0.0, max_value=6.0, allow_nan=False)
RATIO = st.floats(min_value=0.01, max_value=1.0, allow_nan=False)


def init_fails(init: float, base: float, min_ratio: float) -> bool:
    facts = Facts()
    facts.set("model.fine_tuning", True, "test")
    facts.set("scale.global.base", base, "test")
    facts.set("scale.finegrained.init", init, "test")
    found = by_subject(check_rule("logit-scale-init", facts, "check-config", min_ratio=min_ratio))
    return found["finegrained"].status is Status.FAIL


def clamp_fails(value: float, limit: float) -> bool:
    facts = Facts()
    facts.set("scale.clamp", True, "test")
    facts.set("scale.clamp_max", math.log(100), "test")
    facts.set("scale.global.value", value, "test")
    found = by_subject(check_rule("logit-scale-clamp", facts, "inspect-ckpt", max=limit))
    return found["global"].status is Status.FAIL


def test_the_seeds_value_is_judged_by_the_ratio_alone():
    ln100 = math.log(100)
    assert init_fails(2.6592, ln100, 0.5)  # T ratio 0.143 < 0.5
    assert not init_fails(2.6592, ln100, 0.1)  # 0.143 >= 0.1: the counterexample now PASSes
    assert not init_fails(2.6, ln100, 0.1) and init_fails(2.6, ln100, 0.2)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(SCALE, SCALE, SCALE, RATIO, RATIO)
def test_logit_scale_init_is_monotonic(a, b, base, r1, r2):
    low, high = sorted((a, b))
    loose, strict = sorted((r1, r2))
    for init in (low, high):
        assert not (init_fails(init, base, loose) and not init_fails(init, base, strict))
    for ratio in (loose, strict):
        assert not (init_fails(high, base, ratio) and not init_fails(low, base, ratio))
    assert not init_fails(2.6592, base, loose) or init_fails(2.6592, base, strict)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(SCALE, SCALE, SCALE, SCALE)
def test_logit_scale_clamp_is_monotonic(a, b, m1, m2):
    # Two sides: at or below 0 (temperature <= 1) always fails; above 0 the verdict is monotonic
    # in the value (higher never passes where lower fails) and in the limit.
    low, high = sorted((a, b))
    tight, loose = sorted((m1, m2))
    for limit in (tight, loose):
        if low > 0:
            assert not (clamp_fails(low, limit) and not clamp_fails(high, limit))
        for value in (low, high):
            assert clamp_fails(value, limit) or value > 0
    for value in (low, high):
        assert not (clamp_fails(value, loose) and not clamp_fails(value, tight))
