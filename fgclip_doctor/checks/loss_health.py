"""Loss-health rules (FGD7xx): losses against chance and milestones, NaN / Inf, loss terms whose
errors a bare `except` swallows (from the static reading of the code). Floors and plateaus, the
other FGD7xx rules, are in loss_levels.py.

Facts come from a checkpoint's trainer_state.json (sources/checkpoint/history.py) or from the
live probes (sources/live.py) in the same form; see the vocabulary for their meaning.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.errors import DoctorUsageError
from fgclip_doctor.facts import Facts
from fgclip_doctor.series import recent_fall, value_at
from fgclip_doctor.vocabulary import TERM_KEYS, TERMS

_EXPECT = re.compile(
    r"^\s*(?P<key>[A-Za-z_][\w.]*)\s*@\s*(?P<step>\d+)\s*(?P<op><=|<|>=|>)\s*"
    r"(?P<value>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$"
)
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


@dataclass(frozen=True)
class Expectation:
    """`region_loss@500<0.5`: the logged `key` at optimizer step `step` compared with `value`."""

    text: str
    key: str
    step: int
    op: str
    value: float

    def keys(self) -> list[str]:
        """Series names to look up, in order: `region` and `region_loss` name the same term
        (trainer_state logs `region_loss`; a live run's series are named by term)."""
        back = {v: k for k, v in TERM_KEYS.items()}
        return list(dict.fromkeys([self.key, TERM_KEYS.get(self.key, self.key), back.get(self.key, self.key)]))


def parse_expectation(text: str) -> Expectation:
    """Parse `KEY@STEP<VALUE` (also <=, >, >=); DoctorUsageError (exit 2) when malformed."""
    m = _EXPECT.match(text)
    if not m:
        raise DoctorUsageError(
            f"--expect {text!r}: expected KEY@STEP<VALUE, e.g. region_loss@500<0.5 (operators < <= > >=)"
        )
    return Expectation(text.strip(), m["key"], int(m["step"]), m["op"], float(m["value"]))


def _series(facts: Facts, key: str) -> list[tuple[int, float]]:
    return [(int(s), float(v)) for s, v in (facts.value("history.series") or {}).get(key, [])]


def _last_finite(points: list[tuple[int, float]]) -> tuple[int, float] | None:
    finite = [p for p in points if math.isfinite(p[1])]
    return finite[-1] if finite else None


#: the runs `scratch_steps` is calibrated on (bench/from_scratch.py, bench/results/)
SCRATCH_CALIBRATION = (
    "bench/from_scratch.py, the tiny towers from random weights at batch 8, LR 5e-4: the global term "
    "sits at 0.98-1.00 x chance from step 15 to 40 and is below 0.9 x from step 45; the ViT-B/16-shaped "
    "towers at batch 32, LR 5e-4, bf16 (bench/results/, H100): every term still at 1.00 x chance at step "
    "60; 100 steps covers both with a margin"
)


@rule(
    "FGD701",
    "loss-chance",
    title="each loss term is clearly below its chance level",
    severity="fail",
    where="KL",
    fix="find what keeps the term at chance: temperature (logit-scale-init), negatives "
    "(bank-active, negatives-count), box scaling (region-collapse); run `live` to measure",
    what="Each loss term's last logged value divided by its chance level, the loss of a model "
    "that tells nothing apart: softmax ln(candidates): global ln(batch x world) per direction "
    "(FG-CLIP sums the long and short caption losses), region (ln(boxes + queue) + ln(boxes)) "
    "/ 2, hard negatives ln(1 + rewrites); sigmoid (SigLIP, FG-CLIP 2) ln N + (N - 1) ln(N / (N "
    "- 1)), about ln N + 1 (see loss-floor). Judged after `min_steps` (or the warmup) on the "
    "trend, not one point: a term above `max_ratio` x chance that is still falling (its last "
    "`window` logs drop by more than `noise_k` x their own noise and by `min_drop` x chance) is "
    "too early to judge (SKIP, with the slope); flat at or above it FAILs. A run from random "
    "weights (model.fine_tuning False: no base model in the launch, or a model built from its "
    "config, measured) that has not left chance is too early to judge before `scratch_steps` "
    "optimizer steps (SKIP: from random weights a term starts at or above chance, 1.0-1.5 x in the "
    "runs below, and stays there a while); after them, and for a fine-tune at any step, the "
    f"same verdicts. Calibration: {SCRATCH_CALIBRATION}.",
    why="A contrastive loss at ln(N) means the model cannot tell the positive from N - 1 "
    "negatives: the run trains nothing, however long it goes. Fresh heads at scale 100 start "
    "far above chance and fall through it in a few dozen steps: a short look is not a verdict.",
    example="plain CLIPModel, learning rate 0, batch 64: loss 4.16 = 1.00 x ln 64, flat -> FAIL; "
    "the tiny run at step 20: region/reverse 3.53 = 1.11 x chance, falling 0.2 per step -> SKIP",
    evidence="open_clip#17 (loss stuck at about 4.8 = ln 128, chance); the seed incident "
    "(region loss at 1.4 = ln 4 for hundreds of steps); SigLIP (Zhai et al. 2023) for the "
    "sigmoid loss, summed over a row's candidates.",
    thresholds={
        "max_ratio": 0.9,
        "min_steps": 20,
        "window": 5,
        "noise_k": 2.0,
        "min_drop": 0.05,
        "scratch_steps": 100,
    },
)
def loss_chance(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per logged loss term."""
    keys = facts.value("history.loss_keys")
    if not keys:
        return [
            ctx.skip(
                "no loss history: trainer_state.json log_history is absent or has no loss terms",
                ctx.sources_of(facts, "history.series"),
            )
        ]
    warm = max(ctx.threshold("min_steps"), float(facts.value("schedule.warmup_steps") or 0))
    out = []
    for term, key in keys.items():
        chance_n = f"loss.chance.{term}"
        src = ctx.sources_of(facts, "history.series", chance_n)
        last = _last_finite(_series(facts, key))
        if last is None:
            out.append(ctx.skip(f"no finite {key} in the history", src, term))
            continue
        if chance_n not in facts:
            out.append(
                ctx.skip(
                    f"chance level unknown for {term}: candidates not known (train_batch_size, world size, boxes)",
                    src,
                    term,
                )
            )
            continue
        step, value = last
        chance = float(facts.value(chance_n))
        if chance <= 1e-9:  # ln 1: one candidate per row, the positive alone
            out.append(
                ctx.problem(
                    "1 candidate",
                    "> 1 candidate",
                    f"{key} has one candidate per "
                    f"row (chance ln 1 = 0): it is {value:.4g} whatever the model "
                    "does and trains nothing; raise the batch or gather across "
                    "ranks",
                    src,
                    term,
                )
            )
            continue
        if step < warm:
            out.append(ctx.skip(f"too early: last log at step {step} < {warm:g} (warmup / min_steps)", src, term))
            continue
        ratio = value / chance
        points = _series(facts, key)
        first = points[0][1]
        msg = f"{key} {value:.4g} at step {step} = {ratio:.2f} x chance {chance:.4g} (first {first:.4g})"
        expected = f"<= {ctx.threshold('max_ratio'):g} x chance"
        if ratio > ctx.threshold("max_ratio"):
            fall = recent_fall(points, int(ctx.threshold("window")))
            if fall is not None and _still_falling(ctx, fall, chance):
                drop, noise = fall
                span = points[-1][0] - points[-min(len(points), int(ctx.threshold("window")))][0]
                out.append(
                    ctx.skip(
                        f"too early to judge: {msg}, still falling {drop / max(span, 1):.3g} per step "
                        f"(down {drop:.3g} over its last logs, noise {noise:.2g})",
                        src,
                        term,
                    )
                )
                continue
            scratch = int(ctx.threshold("scratch_steps"))
            if facts.value("model.fine_tuning") is False and step < scratch:
                out.append(
                    ctx.skip(
                        f"too early for a run from random weights: {msg}; from scratch a term stays at or above chance "
                        f"for its first steps ({SCRATCH_CALIBRATION}): judged from step {scratch} on "
                        f"(live --steps {scratch})",
                        ctx.sources_of(facts, "history.series", chance_n, "model.fine_tuning"),
                        term,
                    )
                )
                continue
            out.append(ctx.problem(f"{ratio:.2f} x chance", expected, msg + ": at chance, not falling", src, term))
        else:
            out.append(ctx.passed(f"{ratio:.2f} x chance", expected, msg, src, term))
    return out


def _still_falling(ctx: RuleContext, fall: tuple[float, float], chance: float) -> bool:
    """A drop beyond the series' own noise and beyond `min_drop` x chance (steep, not drift)."""
    drop, noise = fall
    return drop > ctx.threshold("noise_k") * noise and drop > ctx.threshold("min_drop") * chance


@rule(
    "FGD702",
    "loss-milestones",
    title="loss terms reach the values asked for, by the steps asked for",
    severity="fail",
    where="KL",
    fix="investigate the term that misses its milestone (loss-chance, the temperature and bank "
    "rules); or adjust the expectation if it was too strict",
    what="Opt-in: each `--expect KEY@STEP<VALUE` (repeatable; or `expect = [...]` in "
    "[tool.fgclip-doctor]) compares the logged KEY nearest to optimizer STEP with VALUE. "
    "KEY is a log_history key (region_loss, loss, grad_norm) or a term (region).",
    why="A team's own targets turn a manual checklist into a gate: the seed's verification "
    "table expected region loss < 1.0 at step 50, < 0.7 at 200, < 0.5 at 500.",
    example="--expect region_loss@50<1.0 --expect region_loss@200<0.7 --expect "
    "region_loss@500<0.5: region_loss 1.38 at step 500 -> FAIL",
    evidence="the seed incident's expected table (docs/seed-incident.md).",
)
def loss_milestones(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per expectation."""
    if not ctx.expect:
        return [ctx.skip("opt-in: no expectations (--expect region_loss@500<0.5, or expect in [tool.fgclip-doctor])")]
    out = []
    interval = facts.value("history.logging_steps")
    for exp in map(parse_expectation, ctx.expect):
        series = facts.value("history.series") or {}
        key = next((k for k in exp.keys() if k in series), TERM_KEYS.get(exp.key, exp.key))
        src = ctx.sources_of(facts, "history.series")
        points = _series(facts, key)
        if not points:
            known = ", ".join(sorted(facts.value("history.series") or {})) or "none"
            out.append(ctx.skip(f"no {key} in the history (logged: {known})", src, exp.text))
            continue
        hit = value_at(points, exp.step, interval)
        if hit is None:
            out.append(
                ctx.skip(
                    f"the run has not reached step {exp.step} (last {key} log at step {points[-1][0]})", src, exp.text
                )
            )
            continue
        step, value = hit
        at = f"at step {step}" + ("" if step == exp.step else f" (nearest log to {exp.step})")
        msg = f"{key} {value:.4g} {at}"
        if math.isfinite(value) and _OPS[exp.op](value, exp.value):
            out.append(ctx.passed(f"{value:.4g}", f"{exp.op} {exp.value:g}", msg, src, exp.text))
        else:
            out.append(
                ctx.problem(
                    f"{value:.4g}", f"{exp.op} {exp.value:g}", f"{msg}: misses {exp.op} {exp.value:g}", src, exp.text
                )
            )
    return out


@rule(
    "FGD703",
    "nonfinite",
    title="no NaN / Inf in the logged history or the weights",
    severity="fail",
    where="KL",
    fix="resume from the last checkpoint before the first NaN, with a lower LR, gradient "
    "clipping, fp32 logits; never fp16 for the contrastive towers",
    what="NaN / Inf in every numeric value of trainer_state.json's log_history (loss terms, "
    "grad_norm, scales), and in the tensors read (every tensor with --scan, streamed).",
    why="A NaN loss or weight poisons every later step; resuming from such a checkpoint carries it on.",
    example="grad_norm inf at step 120, region_loss nan from step 125 -> FAIL",
    evidence="FG-CLIP: fp16 training gives NaN losses; open_clip_train/train.py stops on a non-finite loss.",
)
def nonfinite(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding for the history, one for the weights."""
    out = []
    if "history.nonfinite" not in facts:
        out.append(ctx.skip("no trainer_state.json log_history", subject="history"))
    else:
        bad = facts.value("history.nonfinite")
        src = ctx.sources_of(facts, "history.nonfinite")
        if bad:
            shown = ", ".join(f"{b['key']}={b['value']} at step {b['step']}" for b in bad[:4])
            out.append(
                ctx.problem(f"{len(bad)} non-finite", "none", shown + (" ..." if len(bad) > 4 else ""), src, "history")
            )
        else:
            n = sum(len(v) for v in (facts.value("history.series") or {}).values())
            out.append(ctx.passed("none", "none", f"{n} logged values, all finite", src, "history"))
    if "weights.nonfinite" not in facts:
        out.append(ctx.skip("weights not read", subject="weights"))
        return out
    bad = facts.value("weights.nonfinite")
    src = ctx.sources_of(facts, "weights.nonfinite")
    scope = (
        "every tensor (--scan)"
        if facts.value("weights.scanned")
        else "the tensors read (scales, bank, roi_projection; --scan checks every tensor)"
    )
    if bad:
        shown = ", ".join(f"{k}: {n}" for k, n in list(bad.items())[:4])
        out.append(
            ctx.problem(
                f"{sum(bad.values())} non-finite",
                "none",
                f"NaN/Inf in {len(bad)} tensors ({shown}) of {scope}",
                src,
                "weights",
            )
        )
    else:
        out.append(ctx.passed("none", "none", f"all finite in {scope}", src, "weights"))
    return out


# --- FGD704 loss-errors-swallowed -----------------------------------------------------------------


@rule(
    "FGD704",
    "loss-errors-swallowed",
    title="errors in a loss term are not silently swallowed",
    severity="warn",
    where="C",
    fix="catch only the exception you expect (and log it), or let it raise",
    what="A bare `except:` or `except Exception:` without a re-raise around code that computes a loss term, per term.",
    why="A region or hard-negative loss that raises (a shape mismatch, an empty box list) then "
    "silently becomes no loss at all: the run trains the global term only and looks healthy.",
    example="try: loss += region_loss(...) except: pass -> WARN on region",
    evidence="FG-CLIP 2 fgclip2/model: the region and hard-negative losses sit inside `except: pass`.",
)
def loss_errors_swallowed(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per loss term whose handling is known."""
    out = []
    for term in [*TERMS, *sorted(set(facts.value("loss.terms") or ()) - set(TERMS))]:
        name = f"loss.{term}.errors_swallowed"
        if name not in facts:
            continue
        src = ctx.sources_of(facts, name)
        if facts.value(name):
            out.append(
                ctx.warned(
                    "swallowed",
                    "errors raise",
                    f"{term}: a bare except without re-raise wraps the loss at {facts.source(name)}: "
                    f"an error there silently drops the {term} loss",
                    src,
                    term,
                )
            )
        else:
            out.append(ctx.passed("raise", "errors raise", f"{term}: no except swallows its errors", src, term))
    return out or [ctx.skip("not known: loss.<term>.errors_swallowed (the training code's losses were not read)")]
