"""Checkpoint rules (K): bank persistence, losses against chance and milestones, NaN / Inf, and
whether the saved LR state matches the schedule a resume will continue.

Facts come from `fgclip_doctor.sources.checkpoint.weights` (weights) and `...history` (trainer_state,
training_args, optimizer / scheduler state); see the vocabulary for their meaning.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fgclip_doctor.checks.negatives import skip_without_bank
from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.errors import DoctorUsageError
from fgclip_doctor.facts import Facts
from fgclip_doctor.sources.checkpoint.history import TERM_KEYS, lr_factor, value_at

_EXPECT = re.compile(r"^\s*(?P<key>[A-Za-z_][\w.]*)\s*@\s*(?P<step>\d+)\s*(?P<op><=|<|>=|>)\s*"
                     r"(?P<value>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b}


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
        raise DoctorUsageError(f"--expect {text!r}: expected KEY@STEP<VALUE, e.g. region_loss@500<0.5 "
                               "(operators < <= > >=)")
    return Expectation(text.strip(), m["key"], int(m["step"]), m["op"], float(m["value"]))


def _series(facts: Facts, key: str) -> list[tuple[int, float]]:
    return [(int(s), float(v)) for s, v in (facts.value("history.series") or {}).get(key, [])]


def _last_finite(points: list[tuple[int, float]]) -> tuple[int, float] | None:
    finite = [p for p in points if math.isfinite(p[1])]
    return finite[-1] if finite else None


@rule("FGD206", "bank-persist", title="the memory bank is saved in the checkpoint, and filled",
      severity="fail", where="K",
      fix="register the queue and its pointer as persistent buffers (register_buffer(..., "
          "persistent=True)) and check that enqueue runs in training",
      what="A model with a memory bank saves its queue and pointer in the checkpoint, and the "
           "saved queue is not its random init: the pairwise cosine of queued rows is compared "
           "with that of random unit vectors (mean 0, spread 1/sqrt(D)).",
      why="A non-persistent queue is not saved: a resume restarts it random and the bank adds "
          "noise columns; a queue still random after training was never filled.",
      example="memory_bank.queue missing from model.safetensors -> FAIL; queue cosine 0.00 ± "
              "0.125 at D 64 after 40 steps -> FAIL (never filled)",
      evidence="lightly PR #993 (non-persistent queue buffers are not saved); "
               "facebookresearch/moco moco/builder.py (queue and queue_ptr are registered buffers).")
def bank_persist(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the saved bank."""
    if skip := skip_without_bank(facts, ctx):
        return skip
    saved = facts.value("bank.persisted") or {}
    src = ctx.sources_of(facts, "bank.persisted", "bank.queue_random", "bank.fill",
                         "train.optimizer_steps_done")
    missing = [b for b in ("queue", "ptr") if not saved.get(b)]
    if missing:
        return ctx.problem("missing: " + ", ".join(missing), "queue and ptr saved",
                           "the checkpoint holds no memory_bank." + " / memory_bank.".join(missing)
                           + ": a resume restarts the bank from a random queue", src)
    if "bank.queue_random" not in facts:
        return ctx.skip("queue not readable (dtype or shape)", src)
    spread = facts.value("bank.queue_cosine") or {}
    shown = (f"cosine {spread.get('mean', math.nan):.3f} ± {spread.get('std', math.nan):.3f} "
             f"(random: 0 ± {spread.get('random_std', math.nan):.3f})")
    if facts.value("bank.queue_random"):
        calls, steps = facts.value("bank.forward_calls"), facts.value("train.optimizer_steps_done")
        if calls == 0 or (calls is None and steps == 0):
            return ctx.passed("not filled yet", "filled", f"no forward call yet: {shown}", src)
        fill = facts.value("bank.fill")
        claim = f"; its fill counter says {fill}" if fill else ""
        return ctx.problem("random", "filled", f"queue still random after {steps} optimizer steps: "
                           f"{shown}{claim}: never filled", src)
    return ctx.passed("saved, filled", "saved, filled", f"queue and pointer saved; {shown}", src)


@rule("FGD701", "loss-chance", title="each loss term is clearly below its chance level",
      severity="fail", where="KL",
      fix="find what keeps the term at chance: temperature (logit-scale-init), negatives "
          "(bank-active, negatives-count), box scaling (region-collapse); run `live` to measure",
      what="Each loss term's last logged value divided by its chance level, ln(candidates): "
           "global ln(batch x world) per direction (FG-CLIP sums the long and short caption "
           "losses), region (ln(boxes + queue) + ln(boxes)) / 2, hard negatives ln(1 + rewrites).",
      why="A contrastive loss at ln(N) means the model cannot tell the positive from N - 1 "
          "negatives: the run trains nothing, however long it goes.",
      example="plain CLIPModel, learning rate 0, batch 64: loss 4.16 = 1.00 x ln 64 -> FAIL",
      evidence="open_clip#17 (loss stuck at about 4.8 = ln 128, chance); the seed incident "
               "(region loss at 1.4 = ln 4 for hundreds of steps).",
      thresholds={"max_ratio": 0.9, "min_steps": 20})
def loss_chance(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per logged loss term."""
    keys = facts.value("history.loss_keys")
    if not keys:
        return [ctx.skip("no loss history: trainer_state.json log_history is absent or has no "
                         "loss terms", ctx.sources_of(facts, "history.series"))]
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
            out.append(ctx.skip(f"chance level unknown for {term}: candidates not known "
                                "(train_batch_size, world size, boxes)", src, term))
            continue
        step, value = last
        chance = float(facts.value(chance_n))
        if chance <= 1e-9:  # ln 1: one candidate per row, the positive alone
            out.append(ctx.problem("1 candidate", "> 1 candidate", f"{key} has one candidate per "
                                   f"row (chance ln 1 = 0): it is {value:.4g} whatever the model "
                                   "does and trains nothing; raise the batch or gather across "
                                   "ranks", src, term))
            continue
        if step < warm:
            out.append(ctx.skip(f"too early: last log at step {step} < {warm:g} (warmup / "
                                "min_steps)", src, term))
            continue
        ratio = value / chance
        first = _series(facts, key)[0][1]
        msg = (f"{key} {value:.4g} at step {step} = {ratio:.2f} x chance {chance:.4g} "
               f"(first {first:.4g})")
        expected = f"<= {ctx.threshold('max_ratio'):g} x chance"
        if ratio > ctx.threshold("max_ratio"):
            out.append(ctx.problem(f"{ratio:.2f} x chance", expected, msg + ": at chance", src, term))
        else:
            out.append(ctx.passed(f"{ratio:.2f} x chance", expected, msg, src, term))
    return out


@rule("FGD702", "loss-milestones", title="loss terms reach the values asked for, by the steps "
      "asked for", severity="fail", where="KL",
      fix="investigate the term that misses its milestone (loss-chance, the temperature and bank "
          "rules); or adjust the expectation if it was too strict",
      what="Opt-in: each `--expect KEY@STEP<VALUE` (repeatable; or `expect = [...]` in "
           "[tool.fgclip-doctor]) compares the logged KEY nearest to optimizer STEP with VALUE. "
           "KEY is a log_history key (region_loss, loss, grad_norm) or a term (region).",
      why="A team's own targets turn a manual checklist into a gate: the seed's verification "
          "table expected region loss < 1.0 at step 50, < 0.7 at 200, < 0.5 at 500.",
      example="--expect region_loss@50<1.0 --expect region_loss@200<0.7 --expect "
              "region_loss@500<0.5: region_loss 1.38 at step 500 -> FAIL",
      evidence="the seed incident's expected table (seed/region-loss-fix-summary.zh.md).")
def loss_milestones(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per expectation."""
    if not ctx.expect:
        return [ctx.skip("opt-in: no expectations (--expect region_loss@500<0.5, or expect in "
                         "[tool.fgclip-doctor])")]
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
            out.append(ctx.skip(f"the run has not reached step {exp.step} (last {key} log at step "
                                f"{points[-1][0]})", src, exp.text))
            continue
        step, value = hit
        at = f"at step {step}" + ("" if step == exp.step else f" (nearest log to {exp.step})")
        msg = f"{key} {value:.4g} {at}"
        if math.isfinite(value) and _OPS[exp.op](value, exp.value):
            out.append(ctx.passed(f"{value:.4g}", f"{exp.op} {exp.value:g}", msg, src, exp.text))
        else:
            out.append(ctx.problem(f"{value:.4g}", f"{exp.op} {exp.value:g}",
                                   f"{msg}: misses {exp.op} {exp.value:g}", src, exp.text))
    return out


@rule("FGD703", "nonfinite", title="no NaN / Inf in the logged history or the weights",
      severity="fail", where="KL",
      fix="resume from the last checkpoint before the first NaN, with a lower LR, gradient "
          "clipping, fp32 logits; never fp16 for the contrastive towers",
      what="NaN / Inf in every numeric value of trainer_state.json's log_history (loss terms, "
           "grad_norm, scales), and in the tensors read (every tensor with --scan, streamed).",
      why="A NaN loss or weight poisons every later step; resuming from such a checkpoint "
          "carries it on.",
      example="grad_norm inf at step 120, region_loss nan from step 125 -> FAIL",
      evidence="FG-CLIP: fp16 training gives NaN losses; open_clip_train/train.py stops on a "
               "non-finite loss.")
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
            out.append(ctx.problem(f"{len(bad)} non-finite", "none", shown
                                   + (" ..." if len(bad) > 4 else ""), src, "history"))
        else:
            n = sum(len(v) for v in (facts.value("history.series") or {}).values())
            out.append(ctx.passed("none", "none", f"{n} logged values, all finite", src, "history"))
    if "weights.nonfinite" not in facts:
        out.append(ctx.skip("weights not read", subject="weights"))
        return out
    bad = facts.value("weights.nonfinite")
    src = ctx.sources_of(facts, "weights.nonfinite")
    scope = "every tensor (--scan)" if facts.value("weights.scanned") else \
        "the tensors read (scales, bank, roi_projection; --scan checks every tensor)"
    if bad:
        shown = ", ".join(f"{k}: {n}" for k, n in list(bad.items())[:4])
        out.append(ctx.problem(f"{sum(bad.values())} non-finite", "none",
                               f"NaN/Inf in {len(bad)} tensors ({shown}) of {scope}", src, "weights"))
    else:
        out.append(ctx.passed("none", "none", f"all finite in {scope}", src, "weights"))
    return out


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(abs(a), abs(b)) + 1e-12


@rule("FGD302", "resume-schedule", title="the saved LR state continues the schedule at the "
      "checkpoint's step", severity="fail", where="K",
      fix="resume with the same lr_scheduler_type / warmup / max_steps / optimizer groups as the "
          "run that saved the checkpoint, or restart the schedule deliberately",
      what="The saved scheduler's step equals the trainer's global_step; each group's LR in "
           "scheduler.pt and optimizer.pt equals its initial LR times the schedule recomputed "
           "from training_args (type, warmup) and trainer_state (max_steps) at that step; the "
           "number of optimizer groups agrees between optimizer, scheduler and checkpoints.",
      why="A resume continues from the saved state: a scheduler stepped per forward call, a "
          "changed max_steps or warmup, or a different group layout gives an LR the schedule "
          "never meant (or a load error) without any message.",
      example="scheduler at step 480 while global_step is 60 (stepped per micro-batch) -> FAIL",
      evidence="transformers #18070 / #23099 (resume pitfalls: restored schedule and groups).",
      thresholds={"tol": 0.01})
def resume_schedule(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding for the LR, one for the parameter groups."""
    if "schedule.last_epoch" not in facts and "optim.group_lrs" not in facts:
        return [ctx.skip("no saved scheduler / optimizer state (scheduler.pt, optimizer.pt or "
                         "DeepSpeed states) in the checkpoint")]
    return [_lr_finding(facts, ctx), _groups_finding(facts, ctx)]


def _lr_finding(facts: Facts, ctx: RuleContext) -> Finding:
    tol = ctx.threshold("tol")
    src = ctx.sources_of(facts, "schedule.last_epoch", "optim.group_lrs", "schedule.type",
                         "schedule.total_steps", "train.optimizer_steps_done")
    step, at = facts.value("train.optimizer_steps_done"), facts.value("schedule.last_epoch")
    if step is not None and at is not None and int(at) != int(step):
        return ctx.problem(f"scheduler at step {at}", f"step {step}", f"the saved scheduler is at "
                           f"step {at} but global_step is {step}: a resume continues the "
                           f"schedule from the wrong point", src, "lr")
    kind, total = facts.value("schedule.type"), facts.value("schedule.total_steps")
    base = facts.value("schedule.base_lrs")
    if base is None and facts.value("optim.group_lrs") is not None and facts.value("schedule.base_lr"):
        base = [float(facts.value("schedule.base_lr"))] * len(facts.value("optim.group_lrs"))
    at = step if at is None else at
    if kind is None or total is None or base is None or at is None:
        missing = [n for n, v in (("schedule.type", kind), ("schedule.total_steps", total),
                                  ("schedule.base_lrs", base), ("global step", at)) if v is None]
        return ctx.skip("schedule not recomputable: not known " + ", ".join(missing), src, "lr")
    factor = lr_factor(str(kind), int(at), int(facts.value("schedule.warmup_steps") or 0),
                       int(total), facts.value("schedule.kwargs") or {})
    if factor is None:
        return ctx.skip(f"lr_scheduler_type {kind!r} is not recomputed", src, "lr")
    expected = [b * factor for b in base]
    wrong = []
    for what in ("schedule.last_lrs", "optim.group_lrs"):
        for i, (got, want) in enumerate(zip(facts.value(what) or [], expected)):
            if not _close(float(got), want, tol):
                names = facts.value("optim.group_names") or []
                name = names[i] if i < len(names) else i
                wrong.append(f"{what.split('.')[0]} group {name}: {got:.4g}")
    shown = f"{kind} at step {at}: factor {factor:.4g} x initial {base[0]:.4g} = {expected[0]:.4g}"
    if wrong:
        return ctx.problem("; ".join(wrong[:3]), f"{expected[0]:.4g} (±{tol:.0%})",
                           f"saved LRs differ from the schedule ({shown})", src, "lr")
    return ctx.passed(f"{expected[0]:.4g}", f"{expected[0]:.4g} (±{tol:.0%})",
                      f"saved LRs follow the schedule ({shown})", src, "lr")


def _groups_finding(facts: Facts, ctx: RuleContext) -> Finding:
    src = ctx.sources_of(facts, "optim.group_lrs", "schedule.last_lrs", "optim.group_counts")
    counts = {}
    if facts.value("optim.group_lrs") is not None:
        counts["optimizer"] = len(facts.value("optim.group_lrs"))
    if facts.value("schedule.last_lrs") is not None:  # only a saved scheduler has last LRs
        counts["scheduler"] = len(facts.value("schedule.last_lrs"))
    per_ckpt = facts.value("optim.group_counts") or {}
    for name, n in per_ckpt.items():
        counts[name] = n
    if not counts:
        return ctx.skip("no optimizer groups saved", src, "param groups")
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    names = facts.value("optim.group_names")
    if len(set(counts.values())) > 1:
        return ctx.problem(shown, "the same count everywhere", f"optimizer group counts differ "
                           f"({shown}): a resume fails to load or maps LRs to the wrong "
                           "parameters", src, "param groups")
    named = f": {', '.join(map(str, names))}" if names else ""
    return ctx.passed(f"{next(iter(counts.values()))} groups", "the same count everywhere",
                      f"{shown}{named}", src, "param groups")
