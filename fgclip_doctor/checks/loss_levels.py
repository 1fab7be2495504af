"""Loss levels (FGD705-706): what the temperature lets a loss reach, and a loss parked at chance.

`loss.chance.<term>` and `loss.floor.<term>` come from sources/derived.py (the one place their
formulas live, derived there for softmax and sigmoid losses); the series from a checkpoint's
log_history or the live probes, in the form loss-chance reads.
"""

from __future__ import annotations

import math

from fgclip_doctor.checks.loss_health import parse_expectation
from fgclip_doctor.checks.optim import group_lrs, lr_is_zero
from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts
from fgclip_doctor.vocabulary import TERM_KEYS


def _nats(x: float) -> str:
    """A loss level as people read it: 2.25, 0.0123, or < 1e-4 (not 1.87e-86)."""
    return f"{x:.3g}" if x >= 1e-4 else "< 1e-4"


def _terms(facts: Facts) -> list[str]:
    return [n[len("loss.chance.") :] for n in facts if n.startswith("loss.chance.")]


@rule(
    "FGD705",
    "loss-floor",
    title="the temperature lets each loss term go well below chance",
    severity="fail",
    where="CKL",
    fix="raise the scale (start it at the base's, or at ln(1/0.07) = 2.6592 from scratch; no weight "
    "decay on it; clamp it to [0, ln 100]); a milestone below the floor can never be met",
    what="With cosine-similarity logits at temperature T = e^s, every logit lies in [-T, T]. A "
    "softmax cross-entropy over N candidates cannot go below ln(1 + (N - 1) e^(-2T)) (the "
    "positive at +T, every negative at -T); a sigmoid loss (SigLIP) summed over a row cannot go "
    "below min over b of softplus(-T - b) + (N - 1) softplus(b - T). Each term's floor (parts "
    "combined as its chance level) must stay under `max_ratio` x chance, and under every `--expect` "
    "milestone `<` for that term. In check-config the scale is its start, in a checkpoint or a "
    "live run its value now.",
    why="The temperature alone can make a target unreachable: at s = 0 (T 1) and 64 candidates the "
    "floor is 2.25 = 0.54 x ln 64, so the loss can never fall much below chance however well the "
    "features align. At CLIP's 2.6592 (T 14.3) the floor is about 0 for any batch: a run stuck at "
    "chance at such a scale is held there by something else.",
    example="plain CLIPModel, logit_scale 0 (T 1), batch 64: floor 2.25 = 0.54 x chance 4.16 -> FAIL; "
    "--expect loss@12<2 with that floor -> FAIL",
    evidence="CLIP (Radford et al. 2021) and open_clip clamp the scale at ln 100 and init it at "
    "ln(1/0.07) for this reason; issue 12 (a scale at 0 under weight decay); SigLIP (Zhai et al. "
    "2023) starts at T 10 with bias -10.",
    thresholds={"max_ratio": 0.5},
)
def loss_floor(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per term with a known chance level."""
    terms = _terms(facts)
    if not terms:
        return [ctx.skip("not known: loss.chance.global (its candidates per row are not known)")]
    expectations = [parse_expectation(e) for e in ctx.expect]
    when = "at its start" if ctx.command == "check-config" else "now"
    out = []
    for term in terms:
        chance_n, floor_n = f"loss.chance.{term}", f"loss.floor.{term}"
        src = ctx.sources_of(facts, floor_n, chance_n)
        if floor_n not in facts:
            out.append(ctx.skip(f"not known: {floor_n} (the scale of its logits is not known)", src, term))
            continue
        chance, floor = float(facts.value(chance_n)), float(facts.value(floor_n))
        ratio = floor / chance if chance > 0 else math.nan
        measured = f"floor {_nats(floor)} = {ratio:.2f} x chance"
        expected = f"<= {ctx.threshold('max_ratio'):g} x chance {chance:.3g}"
        msg = f"{term}: the temperature {when} lets the loss fall to {_nats(floor)} at best (chance {chance:.3g})"
        if ratio > ctx.threshold("max_ratio"):
            out.append(
                ctx.problem(measured, expected, msg + ": the target is out of reach whatever the features", src, term)
            )
            continue
        logged = (facts.value("history.loss_keys") or {}).get(term)  # a plain CLIP logs its term as `loss`
        names = {term, term.split("/")[0], TERM_KEYS.get(term, term)} | ({logged} if logged else set())
        blocked = [e for e in expectations if e.op in ("<", "<=") and names & set(e.keys()) and e.value < floor]
        if blocked:
            shown = ", ".join(e.text for e in blocked)
            out.append(ctx.problem(measured, f"< {blocked[0].value:g}", f"{msg}: {shown} can never be met", src, term))
        else:
            out.append(ctx.passed(measured, expected, msg, src, term))
    return out


@rule(
    "FGD706",
    "loss-plateau",
    title="no loss term parked at its chance level",
    severity="warn",
    where="KL",
    fix="at LR 0 give the run a learning rate (lr-zero); else find what holds the term at chance: "
    "temperature (loss-floor, logit-scale-init), negatives, box scaling; run `live`",
    what="A loss term whose last `min_points` (or more) logged values all lie within `band` of its "
    "chance level (softmax ln N, sigmoid about ln N + 1; see loss-chance). Judged from the first "
    "logs on, before loss-chance's `min_steps`: WARN at a positive learning rate, FAIL at LR 0 "
    "(or the LR not known: WARN).",
    why="A loss that sits exactly at chance log after log is not learning and not about to: a "
    "healthy term moves off chance within its first few logs, even while it is still above it.",
    example="plain CLIPModel at LR 0: loss 4.165 vs ln 64 = 4.159 for 12 logs -> FAIL; the same at "
    "LR 1e-4 with a frozen tower -> WARN",
    evidence="the seed incident (region loss at ln 4 for hundreds of steps); open_clip#17 (loss stuck at ln 128).",
    thresholds={"band": 0.02, "min_points": 10},
)
def loss_plateau(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per logged loss term with a known chance level."""
    keys = facts.value("history.loss_keys")
    if not keys:
        return [ctx.skip("no loss history (trainer_state.json log_history or a live run)")]
    series = facts.value("history.series") or {}
    zero = lr_is_zero(facts)
    _, lr_names = group_lrs(facts)
    out = []
    for term, key in keys.items():
        chance_n = f"loss.chance.{term}"
        src = ctx.sources_of(facts, "history.series", chance_n, *lr_names)
        if chance_n not in facts or float(facts.value(chance_n)) <= 0:
            out.append(ctx.skip(f"chance level unknown for {term}", src, term))
            continue
        chance = float(facts.value(chance_n))
        points = [(int(s), float(v)) for s, v in series.get(key, []) if math.isfinite(float(v))]
        run = 0
        for _, v in reversed(points):
            if abs(v / chance - 1) > ctx.threshold("band"):
                break
            run += 1
        need = int(ctx.threshold("min_points"))
        band = f"within {100 * ctx.threshold('band'):g} % of chance {chance:.4g}"
        if run >= need:
            first = points[-run][0]
            msg = f"{key} {band} for its last {run} logs (steps {first}..{points[-1][0]})"
            if zero:
                out.append(ctx.failed(f"{run} logs at chance", f"< {need} logs at chance", msg + " at LR 0", src, term))
            else:
                lr = "at a positive LR" if zero is False else "(LR not known)"
                out.append(ctx.warned(f"{run} logs at chance", f"< {need} logs at chance", f"{msg} {lr}", src, term))
        elif len(points) < need and run == len(points):
            out.append(ctx.skip(f"only {len(points)} logs of {key}, all {band} (< {need} to judge)", src, term))
        else:
            out.append(ctx.passed(f"{run} logs at chance", f"< {need} logs at chance", f"{key} off chance", src, term))
    return out
