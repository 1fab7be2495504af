"""Optimizer and precision rules (FGD6xx).

Optimizer groups are `optim.groups`: a list of {name, lr, weight_decay, params: [names]}.
"""

from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts

HEAD = "roi_projection"


def fmt_lr(lr: float) -> str:
    """A learning rate as people write it: 2e-5, 0.001."""
    lr = float(lr)
    if lr == 0 or abs(lr) >= 1e-2:
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
    what="fp16 mixed precision is off.",
    why="At T 100 the logits reach ±100 and their exp overflows fp16's range; FG-CLIP's "
    "training gives NaN losses in fp16 and refuses to start.",
    example="--fp16 True -> FAIL",
    evidence="FG-CLIP fgclip/train/train_fgclip.py: `assert training_args.fp16 == False`.",
)
def fp16(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the precision."""
    if skip := ctx.require(facts, "train.fp16"):
        return skip
    src = ctx.sources_of(facts, "train.fp16", "train.bf16")
    if facts.value("train.fp16"):
        return ctx.problem(
            "fp16",
            "bf16 or fp32",
            "fp16 mixed precision is on: FG-CLIP asserts training_args.fp16 == False (fp16 gives NaN losses); use bf16",
            src,
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
