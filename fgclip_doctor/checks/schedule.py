"""Schedule rules (FGD3xx): step units, the LR state a resume continues from, and whether the
launch's flags reach training at all (unknown-flag: its parser rejects them). Also the
warmup timing shared with the bank rules, and the LR schedule transformers would follow,
recomputed in pure Python (`lr_factor`).

Two units count a run: forward calls (micro-steps, one per batch per process) and optimizer
steps (one per `grad_accum` forward calls). A warmup counted in forward calls ends at optimizer
step ceil(warmup / accum); every message states both units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fgclip_doctor.checks.bank_presence import skip_without_bank
from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts
from fgclip_doctor.units import forward_calls, forward_calls_text, optimizer_step, switch_on_step, warmup_reached

#: facts the timing below may read, in provenance order
TIMING_FACTS = (
    "bank.warmup_forward_calls",
    "train.grad_accum",
    "bank.switch_on_step",
    "train.optimizer_steps",
    "train.forward_calls",
)
RUN_LENGTH_UNKNOWN = (
    "not known: train.optimizer_steps: give max_steps, or readable annotations / --dataset-size with num_train_epochs"
)


@dataclass
class WarmupTiming:
    """When a forward-call warmup is reached, against the run's length (None = not known)."""

    warmup: int | None  # forward calls
    accum: int | None
    switch_on_step: int | None  # optimizer step the warmup is reached in
    steps: int | None  # optimizer steps in the run
    calls: int | None  # forward calls in the run (per process)

    @property
    def reached(self) -> bool | None:
        """True when the run's last forward call is the switch-on call or later (the subject's own
        test, fgclip.warmup: warmup 320 in 320 calls switches on at the last one), else False.
        In calls when both are known, else in optimizer steps: the same answer, since call W falls
        in step ceil(W / accum), which is <= S exactly when W <= S x accum."""
        if self.warmup is not None and self.calls is not None:
            return warmup_reached(self.warmup, self.calls)
        if self.switch_on_step is not None and self.steps is not None:
            return warmup_reached(self.switch_on_step, self.steps)
        return None

    def warmup_text(self) -> str:
        """'400 forward calls = optimizer step 50 at gradient accumulation 8'."""
        if self.warmup is None:
            return f"optimizer step {self.switch_on_step}"
        if self.switch_on_step is None:
            return f"{self.warmup} forward calls"
        return (
            f"{self.warmup} forward calls = optimizer step {self.switch_on_step} at gradient accumulation {self.accum}"
        )

    def run_text(self) -> str:
        """'the run ends at optimizer step 40 (320 forward calls)'."""
        calls = f" ({self.calls} forward calls)" if self.calls is not None else ""
        return f"the run ends at optimizer step {self.steps}{calls}"


def warmup_timing(facts: Facts) -> WarmupTiming:
    """The bank warmup vs the run, from whichever of TIMING_FACTS are known."""
    warmup = facts.value("bank.warmup_forward_calls")
    accum = facts.value("train.grad_accum")
    steps = facts.value("train.optimizer_steps")
    calls = facts.value("train.forward_calls")
    switch = facts.value("bank.switch_on_step")
    if switch is None and warmup is not None and accum:
        switch = switch_on_step(warmup, accum)
    if calls is None and steps is not None and accum:
        calls = forward_calls(int(steps), int(accum))
    if steps is None and calls is not None and accum:
        steps = optimizer_step(calls, accum)
    return WarmupTiming(*(None if v is None else int(v) for v in (warmup, accum, switch, steps, calls)))


@rule(
    "FGD301",
    "step-units",
    title="forward-call warmups end before the run does",
    severity="fail",
    where="CL",
    fix="count the warmup in optimizer steps, or divide it by the gradient accumulation "
    "(the seed: 400 -> 50 forward calls, about optimizer step 7)",
    what="A warmup counted in forward calls (micro-steps), such as the memory bank's, is "
    "converted to optimizer steps (ceil(warmup / accumulation)) and compared with the "
    "run's length; both units are reported.",
    why="Trainer logs, max_steps and save_steps count optimizer steps; code that counts its "
    "own forward calls runs `accumulation` times faster. With accumulation 8, a warmup of "
    "400 forward calls is optimizer step 50: a 40-step run never reaches it and the bank "
    "never switches on, silently.",
    example="memory_bank_warmup_steps 400, gradient_accumulation_steps 8, max_steps 40 -> "
    "FAIL: 400 forward calls = optimizer step 50; the run ends at step 40",
    evidence="the seed incident (region-loss-fix-summary: bank 'never' enabled, fixed with "
    "warmup 50 = step 6-7); transformers #18070 / #23099 on step accounting under "
    "gradient accumulation and resume.",
)
def step_units(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding: the bank warmup against the run's end."""
    if facts.value("bank.enabled") is False:  # none, or a queue of keys with no warmup (ALBEF)
        return skip_without_bank(facts, ctx)
    if skip := ctx.require(facts, "bank.warmup_forward_calls", "train.grad_accum"):
        return skip
    t = warmup_timing(facts)
    src = ctx.sources_of(facts, *TIMING_FACTS, "train.max_steps")
    if t.calls is None:
        return ctx.skip(RUN_LENGTH_UNKNOWN, src, "bank warmup")
    measured = forward_calls_text(t.warmup, t.switch_on_step)
    expected = f"<= {t.calls} forward calls (optimizer step {t.steps})"  # the last call may switch it on
    if not t.reached:
        return ctx.problem(
            measured, expected, f"bank warmup {t.warmup_text()}; {t.run_text()}: never reached", src, "bank warmup"
        )
    return ctx.passed(
        measured,
        expected,
        f"bank warmup {t.warmup_text()}; reached within the run ({t.run_text()})",
        src,
        "bank warmup",
    )


# --- FGD302 resume-schedule: the LR a resume continues from ----------------------------------


def lr_factor(kind: str, step: int, warmup: int, total: int, kwargs: dict | None = None) -> float | None:
    """The multiplier transformers' `get_scheduler(kind)` applies to each group's initial LR at
    `step` (transformers/optimization.py, re-derived); None for schedules it cannot recompute."""
    kw = kwargs or {}
    if kind == "constant":
        return 1.0
    if kind not in ("constant_with_warmup", "linear", "cosine", "cosine_with_min_lr", "cosine_with_restarts"):
        return None
    if step < warmup:  # every schedule above warms up linearly from 0
        return float(step) / float(max(1, warmup))
    if kind == "constant_with_warmup":
        return 1.0
    progress = float(step - warmup) / float(max(1, total - warmup))
    if kind == "linear":
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    if kind in ("cosine", "cosine_with_min_lr"):
        cycles = float(kw.get("num_cycles", 0.5))
        f = 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
        rate = kw.get("min_lr_rate", 0.0) if kind == "cosine_with_min_lr" else 0.0
        return max(0.0, f * (1 - float(rate or 0.0)) + float(rate or 0.0))
    if kind == "cosine_with_restarts":
        if progress >= 1.0:
            return 0.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(kw.get("num_cycles", 1)) * progress) % 1.0))))
    return None


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(abs(a), abs(b)) + 1e-12


@rule(
    "FGD302",
    "resume-schedule",
    title="the saved LR state continues the schedule at the checkpoint's step",
    severity="fail",
    where="K",
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
    thresholds={"tol": 0.01},
)
def resume_schedule(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding for the LR, one for the parameter groups."""
    if "schedule.last_epoch" not in facts and "optim.group_lrs" not in facts:
        return [
            ctx.skip(
                "no saved scheduler / optimizer state (scheduler.pt, optimizer.pt or "
                "DeepSpeed states) in the checkpoint"
            )
        ]
    return [_lr_finding(facts, ctx), _groups_finding(facts, ctx)]


def _lr_finding(facts: Facts, ctx: RuleContext) -> Finding:
    tol = ctx.threshold("tol")
    src = ctx.sources_of(
        facts,
        "schedule.last_epoch",
        "optim.group_lrs",
        "schedule.type",
        "schedule.total_steps",
        "train.optimizer_steps_done",
    )
    step, at = facts.value("train.optimizer_steps_done"), facts.value("schedule.last_epoch")
    if step is not None and at is not None and int(at) != int(step):
        return ctx.problem(
            f"scheduler at step {at}",
            f"step {step}",
            f"the saved scheduler is at "
            f"step {at} but global_step is {step}: a resume continues the "
            f"schedule from the wrong point",
            src,
            "lr",
        )
    kind, total = facts.value("schedule.type"), facts.value("schedule.total_steps")
    base = facts.value("schedule.base_lrs")
    if base is None and facts.value("optim.group_lrs") is not None and facts.value("schedule.base_lr"):
        base = [float(facts.value("schedule.base_lr"))] * len(facts.value("optim.group_lrs"))
    at = step if at is None else at
    if kind is None or total is None or base is None or at is None:
        missing = [
            n
            for n, v in (
                ("schedule.type", kind),
                ("schedule.total_steps", total),
                ("schedule.base_lrs", base),
                ("global step", at),
            )
            if v is None
        ]
        return ctx.skip("schedule not recomputable: not known " + ", ".join(missing), src, "lr")
    factor = lr_factor(
        str(kind),
        int(at),
        int(facts.value("schedule.warmup_steps") or 0),
        int(total),
        facts.value("schedule.kwargs") or {},
    )
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
        return ctx.problem(
            "; ".join(wrong[:3]),
            f"{expected[0]:.4g} (±{tol:.0%})",
            f"saved LRs differ from the schedule ({shown})",
            src,
            "lr",
        )
    return ctx.passed(
        f"{expected[0]:.4g}", f"{expected[0]:.4g} (±{tol:.0%})", f"saved LRs follow the schedule ({shown})", src, "lr"
    )


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
        return ctx.problem(
            shown,
            "the same count everywhere",
            f"optimizer group counts differ ({shown}): a resume fails to load or maps LRs to the wrong parameters",
            src,
            "param groups",
        )
    named = f": {', '.join(map(str, names))}" if names else ""
    return ctx.passed(
        f"{next(iter(counts.values()))} groups", "the same count everywhere", f"{shown}{named}", src, "param groups"
    )


# --- FGD303 unknown-flag: the launch reaches training at all ---------------------------------------

PARSER = "the training's parser"  # who rejects a flag, unless the item says (`by`: the subject at start-up)


@rule(
    "FGD303",
    "unknown-flag",
    title="every flag of the launch is one the training's parser accepts",
    severity="fail",
    where="C",
    fix="spell the flag as the code's parser declares it (or drop it); give values of its type",
    what="Each flag of the launch is parsed by a parser built from the training code's own "
    "HfArgumentParser dataclasses or argparse options (argparse's abbreviation rules, types and "
    "choices included). A flag it rejects, or a value of the wrong type, FAILs naming the flag "
    "and the launch line.",
    why="The real parser exits at start-up on an unknown or ambiguous option (`--warmup` matches "
    "both warmup_steps and warmup_ratio in HF's TrainingArguments): a multi-node job dies after "
    "queueing, or, with parse_args_into_dataclasses(return_remaining_strings=True), the value is "
    "silently ignored.",
    example="deepspeed fgclip/train/train_mem.py ... --warmup 200 -> FAIL: ambiguous option: "
    "--warmup could match --warmup_ratio, --warmup_steps (scripts/train.sh:25)",
    evidence="argparse allow_abbrev (Python docs: prefix matching, `ambiguous option`); "
    "transformers hf_argparser.HfArgumentParser.parse_args_into_dataclasses raises on "
    "remaining strings.",
)
def unknown_flag(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One FAIL per rejected flag; one PASS when the parser accepts them all."""
    if "code.flags_rejected" not in facts:
        return [
            ctx.skip(
                "not known: code.flags_rejected (the training code's parser was not read, "
                "or it inherits a TrainingArguments that is not installed here)"
            )
        ]
    rejected = facts.value("code.flags_rejected") or []
    where = ctx.sources_of(facts, "code.parser")
    if not rejected:
        accepted = facts.value("code.flags_accepted") or {}
        return [
            ctx.passed(
                f"{len(accepted)} flags accepted",
                "all accepted",
                f"{facts.value('code.parser', 'the parser')} accepts every flag of the launch",
                where,
            )
        ]
    out = []
    for r in rejected:
        value = "" if r.get("value") is None else f" {r['value']}"
        out.append(
            ctx.problem(
                f"{r['flag']}{value}",
                "a value it accepts" if "by" in r else "a flag the parser accepts",
                f"{r['source']}: {r['flag']}{value} is rejected by {r.get('by', PARSER)}: {r['reason']}",
                (r["source"], *where),
                r["flag"],
            )
        )
    return out
