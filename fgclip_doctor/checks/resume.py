"""Resume rules (FGD4xx): checkpoints a run will restore, and what they would overwrite.

FG-CLIP's train script resumes by itself whenever `output_dir` holds `checkpoint-*`; the
restored state then overrides whatever the new config set before `trainer.train()`.
"""

from __future__ import annotations

from pathlib import PurePath

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.checks.temperature import fmt_scale
from fgclip_doctor.facts import Facts
from fgclip_doctor.vocabulary import SCALES, scale_fact

RESUME_FACTS = (
    "train.resume_from_checkpoint",
    "train.auto_resume",
    "resume.checkpoint",
    "resume.checkpoints",
    "resume.step",
    "train.output_dir",
    "train.auto_resume_path",
    "resume.unusable",
    "code.resume_restores",
)


def _explicit(facts: Facts):
    """The --resume_from_checkpoint value when it asks for a resume (a path or True), else None."""
    value = facts.value("train.resume_from_checkpoint")
    if value in (None, False, "", "False", "false", "None", "none"):
        return None
    return value


def _name(checkpoint) -> str:
    return PurePath(str(checkpoint)).name or str(checkpoint)


def restored_checkpoint(facts: Facts) -> tuple[bool | None, str]:
    """(will a checkpoint be restored?, its name): None when it cannot be told."""
    explicit = _explicit(facts)
    found = facts.value("resume.checkpoint")
    if explicit is not None:
        if isinstance(explicit, str) and explicit.lower() != "true":
            return True, _name(explicit)
        return True, _name(found) if found else "the last checkpoint"
    auto = facts.value("train.auto_resume")
    if auto is False:
        return False, ""
    if found:
        return (True, _name(found)) if auto else (None, _name(found))
    if "resume.checkpoints" in facts and not facts.value("resume.checkpoints"):
        return False, ""
    return None, ""


@rule(
    "FGD401",
    "resume-auto",
    title="no silent resume from an old checkpoint",
    severity="warn",
    where="C",
    fix="delete or move output_dir's checkpoint-* (or use a fresh output_dir) unless "
    "you mean to resume; then say so with --resume_from_checkpoint",
    what="Whether the train script will resume by itself from a checkpoint-* already in output_dir.",
    why="An automatic resume restores the old weights, logit scales, bank and schedule over "
    "the new config, so a fix appears not to work (the seed's third mistake).",
    example="output_dir holds checkpoint-500 and the script auto-resumes -> WARN",
    evidence="transformers #18070 / #23099 (resume pitfalls: restored state and schedule); "
    "the seed incident ('必须删除旧 checkpoint': delete old checkpoints first).",
)
def resume_auto(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on output_dir's checkpoints."""
    src = ctx.sources_of(facts, *RESUME_FACTS)
    explicit = _explicit(facts)
    unusable = facts.value("resume.unusable")
    if unusable and (explicit is not None or facts.value("train.auto_resume")):
        return ctx.failed(
            "no weights",
            "a loadable checkpoint",
            f"the resume would crash: {unusable} (a save killed half way); delete it or resume from an earlier one",
            src,
        )
    restores = facts.value("code.resume_restores")
    into = f"; it restores {', '.join(restores)}" if restores else ""
    if explicit is not None:
        return ctx.passed(
            f"--resume_from_checkpoint {explicit}",
            "deliberate resume",
            f"explicit resume from {explicit}: a deliberate resume{into}",
            src,
        )
    auto = facts.value("train.auto_resume")
    if auto is None:
        return ctx.skip(
            "not known: train.auto_resume (whether the training code resumes by "
            "itself; known for recognised train scripts)",
            src,
        )
    if not auto:
        return ctx.passed("no auto-resume", "no silent resume", "the train script does not resume by itself", src)
    found = facts.value("resume.checkpoint")
    if found:
        step = facts.value("resume.step")
        at = f" (step {step})" if step is not None else ""
        where = f"output_dir {facts.value('train.output_dir')}" if "train.output_dir" in facts else "output_dir"
        if "train.auto_resume_path" in facts:
            where = str(PurePath(str(found)).parent)
        return ctx.problem(
            _name(found),
            "no checkpoint-*",
            f"{where} holds {_name(found)}; the train script resumes from it automatically{at}{into}",
            src,
        )
    if "train.auto_resume_path" in facts and "resume.checkpoints" in facts:
        where = facts.value("train.auto_resume_path")
        return ctx.passed("nothing there", "nothing there", f"{where} does not exist yet: a fresh start", src)
    if "resume.checkpoints" in facts:
        return ctx.passed("no checkpoint-*", "no checkpoint-*", "output_dir holds no checkpoint-*: a fresh start", src)
    return ctx.skip("not known: resume.checkpoints (output_dir was not read)", src)


@rule(
    "FGD402",
    "resume-override",
    title="a restored checkpoint does not undo the new scales",
    severity="fail",
    where="CK",
    fix="start from a fresh output_dir, or resume deliberately and set the scales after loading",
    what="For a checkpoint that will be restored (auto-resume or --resume_from_checkpoint), "
    "each logit scale it holds against the init the new run sets: more than `tol` apart in ln "
    "(0.05: the temperature about 5 % off) FAILs. Closer is the drift training makes (the tiny "
    "run's own checkpoint-60 holds 4.5970 against its init 4.6052, 0.008), not another init "
    "(the seed: 2.6562 against 4.6052, 1.95).",
    why="Values set before trainer.train() are overwritten by the restored state: the fixed "
    "init of the new config is silently replaced by the old, wrong scale.",
    example="checkpoint-500 restores finegrained 2.6562 (T 14.2) over the new init 4.6052 (T 100) -> FAIL",
    evidence="transformers #18070 / #23099 (resume restores state over the new arguments); "
    "the seed incident (restarting after the fix restored logit_scale 2.6562).",
    thresholds={"tol": 0.05},
)
def resume_override(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per scale known both in the checkpoint and in the new config."""
    restores, name = restored_checkpoint(facts)
    src = ctx.sources_of(facts, *RESUME_FACTS)
    if restores is False:
        return [ctx.passed("no restore", "no restore", "nothing to resume: no checkpoint will be restored", src)]
    if restores is None:
        return [
            ctx.skip("not known whether a checkpoint will be restored (train.auto_resume, resume.checkpoints)", src)
        ]
    out = []
    tol = ctx.threshold("tol")
    for s in SCALES:
        old_n, new_n = f"resume.scale.{s}", scale_fact(s, "init")
        if old_n not in facts or new_n not in facts:
            continue
        old, new = float(facts.value(old_n)), float(facts.value(new_n))
        fsrc = (*ctx.sources_of(facts, old_n, new_n), *src)
        msg = f"{name} restores {s} {fmt_scale(old)} over the new init {fmt_scale(new)}"
        expected = f"{fmt_scale(new)} ± {tol:g}"
        if abs(old - new) > tol:
            out.append(ctx.problem(fmt_scale(old), expected, msg, fsrc, s))
        elif old == new:
            out.append(ctx.passed(fmt_scale(old), expected, msg + " (the same)", fsrc, s))
        else:
            drift = f" ({abs(old - new):.4f} apart, within {tol:g}: a drift training makes, not another init)"
            out.append(ctx.passed(fmt_scale(old), expected, msg + drift, fsrc, s))
    return out or [
        ctx.skip(
            f"scale values unknown: resume.scale.<scale> of {name} (its weights "
            f"are read by inspect-ckpt) and scale.<scale>.init",
            src,
        )
    ]
