"""Temperature rules (FGD1xx): where the learnable logit scales start, stay, decay and move.

Scales are ln-values (CLIP stores ln of the inverse temperature): temperature T = exp(value).
ln(1/0.07) = 2.6592 (T 14.3) is CLIP's from-scratch init; ln 100 = 4.6052 (T 100) is the clamp
and where a pretrained CLIP sits. The helpers here format scales for every rule family.
FGD105, the precision of the logits those scales multiply, is in checks/logits.py.
"""

from __future__ import annotations

import math

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts
from fgclip_doctor.units import temperature as exp_scale
from fgclip_doctor.vocabulary import SCALE_PARAMS, SCALES, scale_fact

CLIP_INIT = 2.6592  # ln(1/0.07): open_clip model.py / HF CLIPConfig default
LN100 = math.log(100.0)  # 4.6052: the clamp, and a trained CLIP's scale


def temperature(ln_value: float) -> str:
    """exp(ln_value) to 3 significant digits: 14.3, 100, 148."""
    t = exp_scale(ln_value)
    return f"{t:.0f}" if t >= 99.95 else f"{t:.3g}"


def fmt_scale(ln_value: float) -> str:
    """An ln-scale with its temperature: '2.6592 (T 14.3)'; '1e+20 (T inf)' past a million, not 21 digits."""
    shown = f"{ln_value:.4f}" if abs(ln_value) < 1e6 else f"{ln_value:.4g}"
    return f"{shown} (T {temperature(ln_value)})"


def is_scale_param(param: str, scale: str) -> bool:
    """True when parameter name `param` is the parameter of `scale` (module prefixes allowed)."""
    name = SCALE_PARAMS[scale]
    return param == name or param.endswith("." + name)


@rule(
    "FGD101",
    "logit-scale-init",
    title="new loss scales start at the base model's scale",
    severity="fail",
    where="CKL",
    fix="start new scales at the base's scale (drop --logit_scale_init_value, or set 4.6052)",
    what="When fine-tuning, each loss scale (finegrained, hardneg, and global) must start near "
    "the base model's learned global scale (FG-CLIP v1 copies it). From scratch, 2.6592 "
    "is CLIP's own init and passes.",
    why="A region head that starts at T 14.3 next to a base trained at T 100 squeezes its "
    "logits into about ±1: the loss sits at chance (ln of the candidates) for hundreds of "
    "steps. From scratch the init matters only for the first ~15 steps (docs/experiment.md).",
    example="CLIPConfig(logit_scale_init_value=2.6592) while fine-tuning a CLIP at 4.6052: "
    "finegrained starts at 2.6592 (T 14.3); base global 4.6052 (T 100) -> FAIL",
    evidence="open_clip src/open_clip/model.py inits logit_scale at ln(1/0.07) for training "
    "from scratch; a pretrained CLIP sits at the ln 100 clamp (open_clip_train/train.py); "
    "the seed incident (region loss stuck at ln 4).",
    thresholds={"min_ratio": 0.5, "init_tol": 1e-3},
)
def logit_scale_init(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per scale with a known init."""
    base_name = scale_fact("global", "base")
    scales = [s for s in ("finegrained", "hardneg") if scale_fact(s, "init") in facts]
    if scale_fact("global", "init") in facts and base_name in facts:
        scales.append("global")
    tuning = facts.value("model.fine_tuning")
    copies = [s for s in SCALES if s not in scales and facts.value(scale_fact(s, "init_from")) == COPY]
    out = [_copied(facts, ctx, s, tuning) for s in copies]
    if not scales:
        held = facts.value("model.scales")
        if not out and held is not None and not {"finegrained", "hardneg"} & set(held):  # absent, not unknown
            why = f"no new scales in this code (the model holds {', '.join(held) or 'none'}): none to start at"
            return [ctx.skip(f"{why} the base's scale", ctx.sources_of(facts, "model.scales"))]
        hint = _init_hint(facts) if ctx.command == "check-config" else "(a checkpoint's config.json gives them)"
        return out or [ctx.skip("not known: scale.finegrained.init, scale.hardneg.init " + hint)]
    base = facts.value(base_name)
    for s in scales:
        init_name = scale_fact(s, "init")
        init = float(facts.value(init_name))
        src = ctx.sources_of(facts, init_name, "model.fine_tuning", base_name)
        if tuning is None:
            out.append(
                ctx.skip(
                    "not known: model.fine_tuning (whether the run starts from "
                    "pretrained weights: --model_name_or_path / the model source)",
                    src,
                    s,
                )
            )
        elif not tuning:
            note = (
                "2.6592 is CLIP's own init"
                if abs(init - CLIP_INIT) < ctx.threshold("init_tol")
                else "no base scale to match"
            )
            out.append(
                ctx.passed(
                    fmt_scale(init),
                    "any (from scratch)",
                    f"from scratch: {s} starts at {fmt_scale(init)}; {note} "
                    f"(the init matters only for the first ~15 steps)",
                    src,
                    s,
                )
            )
        elif base is None:
            out.append(
                ctx.skip(
                    f"not known: {base_name} (the base model's learned scale, read "
                    f"from its weights: give a readable --model_name_or_path)",
                    src,
                    s,
                )
            )
        else:
            out.append(_judge_init(ctx, s, init, float(base), src))
    return out


COPY = "copy of logit_scale"  # scale.<scale>.init_from of a scale that starts as the base's global scale


def _init_hint(facts: Facts) -> str:
    """Where a scale's init would come from: never a flag the training code lacks."""
    known = facts.value("code.flags_known")
    foreign = facts.value("run.subject_known") is False and known is None
    if foreign or (known is not None and "logit_scale_init_value" not in known):
        return "(the code's scale parameters or a readable base model give them)"
    return "(the launch's --logit_scale_init_value or the model's effective values give them)"


def _copied(facts: Facts, ctx: RuleContext, scale: str, tuning) -> Finding:
    """A scale the code starts as a copy of the model's global scale: the base's value, whatever it is."""
    src = ctx.sources_of(facts, scale_fact(scale, "init_from"), "model.fine_tuning")
    if not tuning:
        return ctx.skip("not known: model.fine_tuning (a copy of logit_scale is the base's only when fine-tuning)")
    return ctx.passed(
        "= base global",
        "the base's scale",
        f"{scale} starts as a copy of the base's logit_scale (after from_pretrained): T ratio 1",
        src,
        scale,
    )


def _judge_init(ctx: RuleContext, scale: str, init: float, base: float, src: tuple[str, ...]) -> Finding:
    ratio = ctx.threshold("min_ratio")
    floor = base + math.log(ratio) if ratio > 0 else float("-inf")
    expected = f"{fmt_scale(base)}; at least {ratio:g} x the base temperature"
    verb = "starts at" if scale != "global" else "is set to"
    msg = f"{scale} {verb} {fmt_scale(init)}; base global {fmt_scale(base)}"
    # One line, no special values: the verdict depends on init - base vs ln(min_ratio) only, so it
    # is monotonic in the threshold and in the init (the seed's 2.6592 on ln 100 FAILs by ratio 0.143).
    if init < floor:
        what = ": CLIP's from-scratch init" if abs(init - CLIP_INIT) < ctx.threshold("init_tol") else ""
        return ctx.problem(
            fmt_scale(init), expected, msg + f"{what}: T ratio {exp_scale(init - base):.3g} < {ratio:g}", src, scale
        )
    return ctx.passed(fmt_scale(init), expected, msg, src, scale)


@rule(
    "FGD102",
    "logit-scale-clamp",
    title="scales clamped to [0, ln 100] and inside it",
    severity="fail",
    where="CKL",
    fix="clamp the scales to [0, 4.6052] after every optimizer step, start them inside it (2.6592 from "
    "scratch, the base's when fine-tuning) and keep weight decay off them",
    what="A clamp of the logit scales at ln 100 exists (warn if not; a clamp whose bound was not read, "
    "or that runs only in a branch on a value not known, SKIPs saying which), and every known scale "
    "(value in a checkpoint or live run, init in a config) is at or below it, and above `min` "
    "(0: temperature 1).",
    why="Above T 100 the softmax saturates and training becomes unstable; CLIP relies on the "
    "clamp to keep the learnable temperature in range. At or below 0 (T <= 1) cosine logits span "
    "at most [-1, 1]: the loss cannot leave the neighbourhood of chance (loss-floor), and a scale "
    "pulled there by weight decay never comes back by itself.",
    example="logit_scale_finegrained = 5.3 (T 200) -> FAIL; logit_scale 0.0 (T 1) -> FAIL; no "
    "clamp in the trainer -> WARN",
    evidence="open_clip src/open_clip_train/train.py and legacy_train.py clamp logit_scale to "
    "[0, ln 100] after each optimizer step.",
    thresholds={"max": LN100, "min": 0.0, "tol": 1e-3},
)
def logit_scale_clamp(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding for the clamp itself, one per scale with a known value or init."""
    limit = ctx.threshold("max")
    clamp_max = facts.value("scale.clamp_max")
    if clamp_max is not None:
        limit = min(limit, float(clamp_max))
    out = []
    clamp = facts.value("scale.clamp")
    csrc = ctx.sources_of(facts, "scale.clamp", "scale.clamp_max")
    if clamp is None and "scale.clamp" in facts.unknowns():  # a clamp in a branch the launch may not take
        out.append(ctx.skip("not known: scale.clamp (the clamp the code has may not run in this launch)", (), "clamp"))
    if clamp is False:
        out.append(
            ctx.warned(
                "no clamp",
                f"clamp at {fmt_scale(ctx.threshold('max'))}",
                "scales are not clamped after the optimizer step: nothing stops them from growing past ln 100",
                csrc,
                "clamp",
            )
        )
    elif clamp:
        top = float(clamp_max) if clamp_max is not None else None
        if top is None:  # a clamp whose bound was not read is no PASS: which bound, where, and why
            why = "not known: scale.clamp_max (the code clamps the scales, to a bound it does not show here)"
            out.append(ctx.skip(why, csrc, "clamp"))
        elif top > ctx.threshold("max") + ctx.threshold("tol"):
            out.append(
                ctx.warned(
                    f"clamp at {fmt_scale(top)}",
                    f"<= {fmt_scale(ctx.threshold('max'))}",
                    f"the clamp lets scales reach {fmt_scale(top)}",
                    csrc,
                    "clamp",
                )
            )
        else:
            out.append(
                ctx.passed("clamp", "clamp", f"scales clamped at {fmt_scale(top)} after each step", csrc, "clamp")
            )
    for s in SCALES:
        name = scale_fact(s, "value") if scale_fact(s, "value") in facts else scale_fact(s, "init")
        if name not in facts:
            continue
        v = float(facts.value(name))
        what = "is at" if name.endswith(".value") else "starts at"
        src = ctx.sources_of(facts, name, "scale.clamp_max")
        low = ctx.threshold("min")
        expected = f"in ({fmt_scale(low)}, {fmt_scale(limit)}]"
        if v > limit + ctx.threshold("tol"):
            out.append(
                ctx.problem(
                    fmt_scale(v), expected, f"{s} {what} {fmt_scale(v)}, above the clamp {fmt_scale(limit)}", src, s
                )
            )
        elif v <= low:
            out.append(
                ctx.problem(
                    fmt_scale(v),
                    expected,
                    f"{s} {what} {fmt_scale(v)}: temperature <= {exp_scale(low):.3g}, cosine logits within "
                    f"[-{exp_scale(v):.3g}, {exp_scale(v):.3g}]: the loss stays near chance (loss-floor)",
                    src,
                    s,
                )
            )
        else:
            out.append(ctx.passed(fmt_scale(v), expected, f"{s} {what} {fmt_scale(v)}", src, s))
    return out or [
        ctx.skip(
            "not known: scale.clamp, scale.<scale>.value / scale.<scale>.init "
            "(the model source or a checkpoint gives them)"
        )
    ]


@rule(
    "FGD104",
    "logit-scale-frozen",
    title="logit scales move while the weights train",
    severity="warn",
    where="KL",
    fix="make the scales trainable (requires_grad) and put them in an optimizer group",
    what="Each scale parameter requires grad and (live) receives a gradient before the optimizer steps, "
    "whatever its value; after optimizer steps it differs from its init by at least 1e-6, and every "
    "trainable scale parameter is in some optimizer group. An unchanged value proves nothing after "
    "fewer than `min_steps` steps (a warmup schedule's first step has LR 0) or while the scale sits "
    "at the clamp ceiling (the clamp, not a missing gradient, holds it there).",
    why="A scale with no gradient, left out of the optimizer, or rounded away in bf16 stays at "
    "its init: a wrong init is then never corrected by training.",
    example="finegrained still 2.6592 (T 14.3) after 40 optimizer steps -> WARN",
    evidence="open_clip model.py makes logit_scale an nn.Parameter trained with the rest "
    "(src/open_clip_train/optim.py puts it in the no-decay group, not outside the optimizer).",
    thresholds={"tol": 1e-6, "min_steps": 2},
)
def logit_scale_frozen(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per scale that could be checked."""
    steps, mins = facts.value("train.optimizer_steps_done"), ctx.threshold("min_steps")
    groups, params = facts.value("optim.groups"), facts.value("model.parameters")
    in_groups = {p for g in groups or [] for p in g.get("params", [])}
    clamp_max = facts.value("scale.clamp_max") if facts.value("scale.clamp") else None
    out = []
    for s in SCALES:
        problems, checked, unproven, src, measured = [], [], [], [], "not in the optimizer"
        init_n, value_n = scale_fact(s, "init"), scale_fact(s, "value")
        grad_n, seen_n = scale_fact(s, "requires_grad"), f"observed.scale.{s}.grad_seen"
        if facts.value(grad_n) is False:  # whatever its value (at the clamp ceiling too): no training
            src, measured = [*src, *ctx.sources_of(facts, grad_n)], "requires_grad False"
            problems.append(f"{s} has requires_grad False: no gradient, it never moves")
        elif facts.value(seen_n) is False and steps and steps >= mins:
            src, measured = [*src, *ctx.sources_of(facts, grad_n, seen_n)], "no gradient"
            problems.append(f"{s} got no gradient (.grad None) before any of {steps} optimizer steps")
        elif facts.value(seen_n):
            src, checked = [*src, *ctx.sources_of(facts, seen_n)], [f"{s} gets a gradient"]
        if not problems and init_n in facts and value_n in facts:
            init, value = float(facts.value(init_n)), float(facts.value(value_n))
            src += ctx.sources_of(facts, init_n, value_n, "train.optimizer_steps_done")
            if abs(value - init) < ctx.threshold("tol"):
                if clamp_max is not None and abs(value - float(clamp_max)) < ctx.threshold("tol"):
                    src += ctx.sources_of(facts, "scale.clamp", "scale.clamp_max")
                    unproven.append(f"{s} at the clamp ceiling {fmt_scale(value)}: the clamp holds it")
                elif steps and steps >= mins:
                    problems.append(f"{s} still at {fmt_scale(value)} after {steps} optimizer steps")
                    measured = f"unchanged after {steps} steps"
                elif steps:  # the first step of a warmup schedule runs at LR 0
                    unproven.append(f"{s} unchanged after only {steps} optimizer step(s) (< {mins:g})")
            else:
                during = f" in {steps} steps" if steps else ""
                checked.append(f"{s} moved {fmt_scale(init)} -> {fmt_scale(value)}{during}")
        if groups is not None and params is not None:
            for p in (p for p in params if is_scale_param(p, s)):
                src += ctx.sources_of(facts, "optim.groups", "model.parameters")
                if p in in_groups:
                    checked.append(f"{p} is in the optimizer")
                else:
                    problems.append(f"{p} is trainable but in no optimizer group")
        if problems:
            out.append(ctx.problem(measured, "moves", "; ".join(problems), src, s))
        elif checked:
            out.append(ctx.passed("moves", "moves", "; ".join(checked + unproven), src, s))
        elif unproven:
            out.append(ctx.skip("; ".join(unproven), src, s))
    known = "not known: scale.<scale>.init / scale.<scale>.value (a checkpoint's config.json and weights, or"
    return out or [ctx.skip(known + " a live run, give them)")]
