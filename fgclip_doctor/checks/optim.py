"""Optimizer and precision rules (FGD6xx).

Optimizer groups are `optim.groups`: a list of {name, lr, weight_decay, params: [names]}.
"""

from __future__ import annotations

import math

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts

HEAD = "roi_projection"
RUN_LR = "every group"  # the run's one learning rate, when the groups' own are not known
LAST_LAYER = "the last layer's group (layer-wise decay lowers the others: their LRs are not known)"


def fmt_lr(lr: float) -> str:
    """A learning rate as people write it: 2e-5, 0.001."""
    lr = float(lr)
    if lr == 0 or abs(lr) >= 1e-2 or not math.isfinite(lr):  # nan / inf: as Python writes them
        return f"{lr:.3g}"
    mantissa, exp = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


def is_head(param: str) -> bool:
    """True for parameters of the new region head (module prefixes allowed)."""
    return param.startswith(HEAD) or f".{HEAD}." in param or param.endswith(f".{HEAD}")


@rule(
    "FGD601",
    "fp16",
    title="no fp16 training of the contrastive towers",
    severity="fail",
    where="C",
    fix="train in bf16 (--bf16 True --fp16 False), or fp32",
    what="fp16 mixed precision is off: FAIL for code that refuses it (FG-CLIP's `assert "
    "training_args.fp16 == False`, the bundled subject), WARN for other code (open_clip's "
    "--precision amp is fp16 autocast with a grad scaler).",
    why="At T 100 the logits reach ±100 and their exp overflows fp16's range; FG-CLIP's "
    "training gives NaN losses in fp16 and refuses to start.",
    example="fgclip.train --fp16 True -> FAIL; open_clip --precision amp -> WARN",
    evidence="FG-CLIP fgclip/train/train_fgclip.py: `assert training_args.fp16 == False`.",
)
def fp16(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the precision."""
    if skip := ctx.require(facts, "train.fp16"):
        return skip
    src = ctx.sources_of(facts, "train.fp16", "train.bf16")
    refuses = facts.value("code.refuses_fp16")  # read from the code (the subject's too), never assumed
    if facts.value("train.fp16") and refuses:
        return ctx.problem(
            "fp16",
            "bf16 or fp32",
            "fp16 mixed precision is on: the training code refuses it, so the run stops at start "
            "(FG-CLIP: fp16 gives NaN losses); use bf16",
            (*src, *ctx.sources_of(facts, "code.refuses_fp16")),
            fix=facts.value("code.fix.fp16"),
        )
    if facts.value("train.fp16"):  # code the doctor did not write: it may scale its losses well
        return ctx.warned(
            "fp16",
            "bf16 or fp32",
            "fp16 mixed precision is on: at T 100 the logits reach ±100 and FG-CLIP-style losses go NaN "
            "in fp16 (FG-CLIP's own code refuses it); with a grad scaler plain CLIP losses usually "
            "survive: prefer bf16 where the GPU has it",
            src,
            fix=facts.value("code.fix.fp16"),  # the launch's own spelling (open_clip: --precision amp_bf16)
        )
    precision = "bf16" if facts.value("train.bf16") else "fp32" if "train.bf16" in facts else "not fp16"
    return ctx.passed(precision, "bf16 or fp32", f"fp16 off ({precision})", src)


@rule(
    "FGD602",
    "head-lr",
    title="the new region head trains, with its own learning rate",
    severity="fail",
    where="CL",
    fix="put roi_projection in its own optimizer group with its own LR (trainer roi_projection_lr)",
    what="Every roi_projection parameter is in an optimizer group, with a nonzero LR; a group "
    "shared with backbone parameters (so its LR cannot be tuned alone) warns.",
    why="A new, randomly initialised head that is not optimised never learns; at the "
    "backbone's small fine-tuning LR it learns slowly. The seed's follow-up list: give "
    "roi_projection its own learning rate.",
    example="roi_projection.weight in no optimizer group -> FAIL; in group 'other' at 2e-5 -> WARN",
    evidence="the seed incident's follow-ups (调整 roi_projection 学习率); open_clip "
    "src/open_clip_train/optim.py builds explicit parameter groups.",
)
def head_lr(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding on the head's parameters."""
    if skip := ctx.require(facts, "model.parameters"):
        return [skip]
    heads = [p for p in facts.value("model.parameters") if is_head(p)]
    if not heads:
        return [
            ctx.skip(
                f"no new head named {HEAD} among the model's trainable parameters",
                ctx.sources_of(facts, "model.parameters"),
            )
        ]
    if skip := ctx.require(facts, "optim.groups"):
        return [skip]
    src = ctx.sources_of(facts, "model.parameters", "optim.groups", "train.learning_rate")
    base = facts.value("train.learning_rate")
    groups = facts.value("optim.groups")
    missing = [p for p in heads if not any(p in g.get("params", []) for g in groups)]
    if missing:
        return [
            ctx.problem(
                "not in the optimizer",
                "own group, own LR",
                f"{', '.join(missing)} in no optimizer group: the new head never trains",
                src,
                HEAD,
            )
        ]
    out = []
    for g in groups:
        mine = [p for p in g.get("params", []) if is_head(p)]
        if not mine:
            continue
        lr, gname = g.get("lr", base), g.get("name", "?")
        others = len(g.get("params", [])) - len(mine)
        if lr is None:
            out.append(ctx.skip(f"LR of group {gname!r} not known (nor train.learning_rate)", src, HEAD))
        elif float(lr) == 0:
            out.append(
                ctx.problem(
                    "lr 0",
                    "own LR > 0",
                    f"{HEAD} is in group {gname!r} with lr 0: the new head never trains",
                    src,
                    HEAD,
                )
            )
        elif others:
            out.append(
                ctx.warned(
                    f"lr {fmt_lr(lr)} (shared)",
                    "own LR",
                    f"{HEAD} shares group {gname!r} (lr {fmt_lr(lr)}) with {others} "
                    "backbone parameters: its LR cannot be tuned on its own; the "
                    "seed's follow-up: give it its own LR",
                    src,
                    HEAD,
                )
            )
        else:
            same = (
                " (= the base LR; tune it with roi_projection_lr)"
                if base is not None and float(lr) == float(base)
                else ""
            )
            out.append(
                ctx.passed(
                    f"lr {fmt_lr(lr)}",
                    "own LR",
                    f"{HEAD} in its own group {gname!r} at lr {fmt_lr(lr)}{same}",
                    src,
                    HEAD,
                )
            )
    return out


# ---- learning rates: what every command knows of them --------------------------------------------


def group_lrs(facts: Facts) -> tuple[list[tuple[str, float | None, list[str]]], tuple[str, ...]]:
    """[(group, base LR, parameters)] and the facts they came from: the optimizer's groups (config
    of the subject, live), the saved scheduler's base LRs (checkpoint), else the run's one LR."""
    if "optim.groups" in facts:
        base = facts.value("train.learning_rate")
        groups = [
            (str(g.get("name", i)), g.get("lr", base), list(g.get("params", [])))
            for i, g in enumerate(facts.value("optim.groups") or [])
        ]
        return groups, ("optim.groups", "train.learning_rate")
    if facts.value("schedule.base_lrs"):
        names = facts.value("optim.group_names") or []
        lrs = facts.value("schedule.base_lrs")
        return [(names[i] if i < len(names) else str(i), lr, []) for i, lr in enumerate(lrs)], (
            "schedule.base_lrs",
            "optim.group_names",
        )
    if r := facts.value("optim.group_lr_range"):  # layer-wise decay: its lowest and highest groups
        return [(r["lowest"][1], r["lowest"][0], []), (r["highest"][1], r["highest"][0], [])], ("optim.group_lr_range",)
    if "optim.layer_decay" not in facts and (own := facts.value("optim.code_group_lrs")):  # some with their own lr
        base = facts.value("train.learning_rate")
        groups = [(g["group"], g["lr"] if g["lr"] is not None else base, []) for g in own]
        return groups, ("optim.code_group_lrs", "train.learning_rate")
    if "optim.code_group_lrs" in facts.unknowns():  # a group's own lr not known: never the run's one LR
        return [("with its own lr", None, [])], ("optim.code_group_lrs",)
    for name in ("schedule.base_lr", "train.learning_rate"):
        if name in facts and "optim.layer_decay" in facts:  # the decay's range is unknown: never "every group"
            return [(LAST_LAYER, facts.value(name), [])], (name, "optim.layer_decay")
        if name in facts:
            return [(RUN_LR, facts.value(name), [])], (name,)
    return [], ()


def lr_is_zero(facts: Facts) -> bool | None:
    """True when every group's base LR is 0, False when one is positive, None when unknown."""
    groups, _ = group_lrs(facts)
    lrs = [float(lr) for _, lr, _ in groups if lr is not None]
    return None if not lrs else all(lr == 0 for lr in lrs)


@rule(
    "FGD603",
    "lr-zero",
    title="every optimizer group trains: a learning rate above 0, all trainable parameters held",
    severity="fail",
    where="CKL",
    fix="give every group a learning rate > 0 (--learning_rate, the group's own LR), and put every "
    "trainable parameter in a group (or freeze it with requires_grad=False)",
    what="Each optimizer group's base learning rate (the launch's --learning_rate for code the doctor "
    "does not know; the saved scheduler's base_lrs in a checkpoint; the optimizer's groups in a live "
    "run) is above 0; in a checkpoint, the saved LR is not 0 before the schedule's end; every "
    "trainable parameter is in some group. head-lr judges the new region head on its own.",
    why="At LR 0 nothing moves: the loss stays where it started (at chance for a contrastive loss) "
    "for the whole run, and every step costs compute for nothing. A scheduler that decays to 0 is "
    "fine only at its end.",
    example="plain CLIPModel, --learning_rate 0: groups 0, 1 at lr 0 -> FAIL; the loss stays at "
    "4.16 = ln 64 for 12 steps",
    evidence="issue 12 (a 12-step CLIPModel run at LR 0 that the doctor passed); torch.optim applies "
    "p -= lr x update, nothing at lr 0; transformers' schedulers end at 0 at max_steps.",
)
def lr_zero(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding on the groups' learning rates, one on parameters no group holds."""
    groups, names = group_lrs(facts)
    if not groups:
        return [ctx.skip("not known: optim.groups, schedule.base_lrs, train.learning_rate (the run's LRs)")]
    src = ctx.sources_of(facts, *names)
    out = []
    known = [(g, float(lr), ps) for g, lr, ps in groups if lr is not None]
    zero = [(g, ps) for g, lr, ps in known if lr == 0]
    if zero:
        shown = "; ".join(f"group {g!r}" + _params_text(ps) for g, ps in zero)
        whole = "every group" if len(zero) == len(groups) else f"{len(zero)} of {len(groups)} groups"
        msg = (
            "the run's learning rate is 0: nothing trains"
            if zero[0][0] == RUN_LR
            else f"{whole} at lr 0: {shown}: nothing there trains"
        )
        out.append(ctx.problem("lr 0", "lr > 0", msg, src, "lr"))
    elif known:
        lrs = ", ".join(f"{g} {fmt_lr(lr)}" for g, lr, _ in known[:6])
        out.append(ctx.passed(f"min lr {fmt_lr(min(lr for _, lr, _ in known))}", "lr > 0", lrs, src, "lr"))
    elif names == ("optim.code_group_lrs",):
        out.append(ctx.skip("not known: optim.code_group_lrs", src, "lr"))
    else:
        out.append(ctx.skip("the groups' learning rates are not known", src, "lr"))
    out += _lr_ended_early(facts, ctx)
    params = facts.value("model.parameters")
    if params is not None and "optim.groups" in facts:
        held = {p for _, _, ps in groups for p in ps}
        loose = [p for p in params if p not in held]
        psrc = ctx.sources_of(facts, "model.parameters", "optim.groups")
        if loose:
            shown = ", ".join(loose[:4]) + (" ..." if len(loose) > 4 else "")
            out.append(
                ctx.problem(
                    f"{len(loose)} not in the optimizer",
                    "every trainable parameter in a group",
                    f"{len(loose)} trainable parameters in no optimizer group ({shown}): they never train",
                    psrc,
                    "parameters",
                )
            )
        else:
            out.append(
                ctx.passed(
                    "all in groups",
                    "every trainable parameter in a group",
                    f"{len(params)} parameters",
                    psrc,
                    "parameters",
                )
            )
    return out


def _params_text(params: list[str]) -> str:
    """' (a, b, c ...; 12 parameters)', or '' when the group's parameters are not known."""
    if not params:
        return ""
    return f" ({', '.join(params[:3])}{' ...' if len(params) > 3 else ''}; {len(params)} parameters)"


def _lr_ended_early(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """A checkpoint whose saved LRs are all 0 after the warmup and before the schedule's end."""
    last, base = facts.value("optim.group_lrs"), facts.value("schedule.base_lrs")
    step, total = facts.value("train.optimizer_steps_done"), facts.value("schedule.total_steps")
    warm = facts.value("schedule.warmup_steps") or 0
    if not last or not base or step is None or not total or any(float(b) == 0 for b in base):
        return []
    src = ctx.sources_of(facts, "optim.group_lrs", "schedule.total_steps", "train.optimizer_steps_done")
    if all(float(x) == 0 for x in last) and warm < step < total:
        return [
            ctx.problem(
                "lr 0 at the checkpoint",
                "lr > 0 until the schedule's end",
                f"the saved LR is 0 at step {step}, before the schedule's end at {total} "
                f"(warmup {warm}): the rest of the run does not train",
                src,
                "schedule",
            )
        ]
    return []
