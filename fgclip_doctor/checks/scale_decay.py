"""FGD103 logit-scale-decay: the learnable logit scales get no weight decay.

Read from the optimizer groups (a built optimizer, a checkpoint's or live run's groups), else from
the code's grouping (no-decay name lists, create_optimizer overrides: `scale.<scale>.decayed`).
Where the code decides the grouping from something not read (a config file that is not there, a
flag with no value), the finding says which and where, never a generic "groups not known".
"""

from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts
from fgclip_doctor.vocabulary import SCALE_OF_PARAM, SCALE_PARAMS, SCALES, scale_fact


@rule(
    "FGD103",
    "logit-scale-decay",
    title="logit scales get no weight decay",
    severity="warn",
    where="CL",
    fix="put the logit scales in a group with weight_decay 0",
    what="Every parameter whose name contains 'logit_scale' sits in an optimizer group with weight decay 0.",
    why="Weight decay pulls the ln-scale toward 0 (T 1): the temperature drifts down all run "
    "long and the logits shrink toward chance.",
    example="group 'other' (weight_decay 0.1) holds logit_scale_finegrained -> WARN",
    evidence="open_clip src/open_clip_train/optim.py / legacy_main.py exclude logit_scale "
    "(and gains, biases) from weight decay.",
)
def logit_scale_decay(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per logit_scale parameter found in the optimizer groups."""
    if "optim.groups" not in facts:
        decayed = [s for s in SCALES if scale_fact(s, "decayed") in facts]
        # a scale whose grouping the code hides (its no-decay names come from a config not read): say so, per scale
        hidden = [s for s in SCALES if s not in decayed and scale_fact(s, "decayed") in facts.unknowns()]
        if decayed or hidden:
            return [_decayed_in_code(facts, ctx, s) for s in decayed] + [_hidden(facts, ctx, s) for s in hidden]
        return [ctx.skip("not known: optim.groups (the optimizer's parameter groups, read from the trainer)")]
    src = ctx.sources_of(facts, "optim.groups", "train.weight_decay")
    out = []
    for group in facts.value("optim.groups") or []:
        wd = group.get("weight_decay")
        wd = facts.value("train.weight_decay") if wd is None else wd
        gname = group.get("name", "?")
        for p in group.get("params", []):
            if "logit_scale" not in p:
                continue
            if wd is None:
                out.append(
                    ctx.skip(
                        f"weight decay of group {gname!r} not known (neither the group nor train.weight_decay says)",
                        src,
                        p,
                    )
                )
            elif float(wd) > 0:
                out.append(
                    ctx.problem(
                        f"weight_decay {float(wd):g}",
                        "weight_decay 0",
                        f"{p} is in group {gname!r} with weight_decay {float(wd):g}",
                        src,
                        p,
                    )
                )
            else:
                out.append(
                    ctx.passed(
                        "weight_decay 0", "weight_decay 0", f"{p} is in group {gname!r} without weight decay", src, p
                    )
                )
    return out or [
        ctx.passed(
            "no logit_scale in the optimizer",
            "weight_decay 0",
            "no parameter named *logit_scale* in any optimizer group: nothing "
            "decays (whether they train at all: logit-scale-frozen)",
            src,
        )
    ]


def _decayed_in_code(facts: Facts, ctx: RuleContext, scale: str) -> Finding:
    """From the code's optimizer grouping (no-decay name lists, create_optimizer overrides)."""
    name = scale_fact(scale, "decayed")
    src = ctx.sources_of(facts, name, "train.weight_decay")
    spelled = [p for p in facts.value("code.logit_params") or {} if SCALE_OF_PARAM.get(p) == scale]
    param = spelled[0] if spelled else SCALE_PARAMS[scale]
    wd = facts.value("train.weight_decay")
    if not facts.value(name):
        return ctx.passed("weight_decay 0", "weight_decay 0", f"{param} is in the code's no-decay group", src, param)
    if wd is not None and float(wd) == 0:
        return ctx.passed("weight_decay 0", "weight_decay 0", f"{param} is decayed, at weight_decay 0", src, param)
    shown = f"weight_decay {float(wd):g}" if wd is not None else "weight decay"
    return ctx.problem(shown, "weight_decay 0", f"{param} is in the code's decayed group ({shown})", src, param)


def _hidden(facts: Facts, ctx: RuleContext, scale: str) -> Finding:
    """A scale whose no-decay test the code read depends on values not known here: SKIP, citing
    the test's file:line and why its names are unknown (in_words adds the recorded reason)."""
    spelled = [p for p in facts.value("code.logit_params") or {} if SCALE_OF_PARAM.get(p) == scale]
    param = spelled[0] if spelled else SCALE_PARAMS[scale]
    return ctx.skip(f"not known: {scale_fact(scale, 'decayed')}", ctx.sources_of(facts, "code.logit_params"), param)
