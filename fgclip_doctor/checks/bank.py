"""Memory-bank rules (FGD2xx): the bank switches on within the run, holds whole batches, keeps
its keys detached and unit-norm, masks copies of the positive, and is saved with the checkpoint.

The queue adds the region loss's negatives once its warmup (counted in forward calls) is over;
see checks/negatives.py for the candidates each loss sees and checks/schedule.py for the units.
"""

from __future__ import annotations

import math

from fgclip_doctor.checks.bank_presence import NO_BANK, skip_without_bank
from fgclip_doctor.checks.observed import pct
from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.checks.schedule import RUN_LENGTH_UNKNOWN, TIMING_FACTS, warmup_timing
from fgclip_doctor.facts import Facts
from fgclip_doctor.units import optimizer_step, warmup_reached
from fgclip_doctor.vocabulary import NEAR_COPY_COSINE


def no_bank_reason(facts: Facts) -> str:
    """Why no queue was observed: no bank in the model, a bank that never switched on, or unknown."""
    enabled, at_call = facts.value("bank.enabled"), facts.value("bank.enabled_at_call")
    if enabled is False:
        return NO_BANK
    if enabled and at_call is not None and int(at_call) < 0:
        warmup = facts.value("bank.warmup_forward_calls")
        after = f" (it switches on after {warmup} forward calls)" if warmup is not None else ""
        return f"the memory bank never switched on in this run{after}: nothing queued to inspect"
    return "no memory bank observed"


@rule(
    "FGD202",
    "bank-active",
    title="the memory bank switches on within the run",
    severity="fail",
    where="CKL",
    fix="lower the bank warmup below the run's forward calls (the seed: 400 -> 50)",
    what="The region memory bank's warmup ends before the run does (config), and a checkpoint "
    "or live run shows it enabled (its enabled_at_call buffer >= 0).",
    why="A bank that never switches on adds no columns: the region loss competes only among "
    "the boxes on the rank, its chance level stays ln(k), and nothing says so.",
    example="warmup 400 forward calls = optimizer step 50 at accumulation 8; the run has 40 "
    "optimizer steps (320 forward calls) -> FAIL",
    evidence="facebookresearch/moco moco/builder.py (the queue is part of every forward once "
    "built); the seed incident (bank never enabled, region loss at ln 4).",
)
def bank_active(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding: the enabled_at_call buffer if known (K/L), else the config arithmetic."""
    if skip := skip_without_bank(facts, ctx):
        return skip
    t = warmup_timing(facts)
    src = ctx.sources_of(facts, "bank.enabled", *TIMING_FACTS)
    if "bank.enabled_at_call" in facts:
        at, fill, size = (facts.value(n) for n in ("bank.enabled_at_call", "bank.fill", "bank.size"))
        done = facts.value("train.optimizer_steps_done")
        src = (*src, *ctx.sources_of(facts, "bank.enabled_at_call", "bank.fill", "train.optimizer_steps_done"))
        filled = f"; fill {fill}/{size}" if fill is not None and size is not None else ""
        if int(at) >= 0:
            step = f" = optimizer step {optimizer_step(at, t.accum)}" if t.accum else ""
            if t.reached is False:  # a live run longer than the configured one saw it switch on
                return ctx.problem(
                    f"on at call {at}",
                    f"<= optimizer step {t.steps}",
                    f"bank enabled at forward call {at}{step} in this run, but the configured "
                    f"run never gets there: warmup {t.warmup_text()}; {t.run_text()}",
                    src,
                )
            return ctx.passed(f"on at call {at}", "on", f"bank enabled at forward call {at}{step}{filled}", src)
        if (
            done is not None
            and t.switch_on_step is not None
            and not warmup_reached(t.switch_on_step, done)
            and t.reached
        ):
            return ctx.passed(
                "not yet on",
                "on",
                f"bank not yet enabled after {done} optimizer steps; due at {t.warmup_text()}{filled}",
                src,
            )
        return ctx.problem("never on", "on", f"bank never enabled (enabled_at_call {at}){filled}", src)
    if t.switch_on_step is None:
        return ctx.skip("not known: bank.warmup_forward_calls / bank.switch_on_step (the bank's warmup)", src)
    if t.reached is None:
        return ctx.skip(RUN_LENGTH_UNKNOWN, src)
    measured = f"optimizer step {t.switch_on_step}"
    expected = f"<= optimizer step {t.steps}"
    if not t.reached:
        calls = f" ({t.calls} forward calls)" if t.calls is not None else ""
        return ctx.problem(
            measured,
            expected,
            f"never enabled within the run: warmup {t.warmup_text()}; the run has {t.steps} optimizer steps{calls}",
            src,
        )
    return ctx.passed(measured, expected, f"bank on from warmup {t.warmup_text()}, within the {t.steps}-step run", src)


@rule(
    "FGD203",
    "bank-size",
    title="the queue holds whole batches of keys",
    severity="fail",
    where="C",
    fix="make bank.size a multiple of the keys enqueued per forward, at least one batch",
    what="The memory bank's queue length is at least the keys enqueued per forward "
    "(candidates.region.in_batch) and a multiple of it, unless the enqueue wraps around.",
    why="A queue smaller than one batch overwrites its own keys in the same enqueue; a size "
    "that is not a multiple makes a non-wrapping enqueue write past the end or skip slots.",
    example="bank 100 with 32 keys per forward and no wrap-around -> FAIL",
    evidence="facebookresearch/moco moco/builder.py `assert self.K % batch_size == 0` in _dequeue_and_enqueue.",
)
def bank_size(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the queue length."""
    if skip := skip_without_bank(facts, ctx):
        return skip
    if skip := ctx.require(facts, "bank.size", "candidates.region.in_batch"):
        return skip
    size, k = int(facts.value("bank.size")), int(facts.value("candidates.region.in_batch"))
    wraps = facts.value("bank.wraps")
    src = ctx.sources_of(facts, "bank.size", "candidates.region.in_batch", "bank.wraps")
    if k == 0:  # negatives-count FAILs the region term: no box, nothing enqueued
        return ctx.skip("no box reaches the region term (0 boxes per rank): nothing is enqueued", src)
    expected = f">= {k}, a multiple of {k} or wrap-around"
    if size < k:
        return ctx.problem(
            size,
            expected,
            f"queue of {size} is smaller than the {k} keys enqueued per forward: one enqueue overwrites itself",
            src,
        )
    if size % k and not wraps:
        how = "does not handle" if wraps is False else "is not known to handle"
        make = ctx.problem if wraps is False else ctx.warned
        return make(
            size,
            expected,
            f"queue of {size} is not a multiple of {k} keys per forward and the enqueue {how} wrap-around",
            src,
        )
    note = "a multiple of" if size % k == 0 else "wrap-around handles"
    return ctx.passed(size, expected, f"queue of {size}: {note} {k} keys per forward", src)


# --- FGD204 bank-hygiene ------------------------------------------------------------------------


@rule(
    "FGD204",
    "bank-hygiene",
    title="queued keys are detached and unit-norm",
    severity="fail",
    where="L",
    fix="enqueue F.normalize(keys.detach(), dim=1) under torch.no_grad() into a registered buffer",
    what="In a live run, every filled entry of the memory bank's queue has L2 norm 1 (within "
    "1e-2), and the queue tensor does not require grad.",
    why="The queue's columns join the in-batch ones in one softmax: keys that are not unit-norm "
    "give their logits another scale than the in-batch candidates. A queue that requires "
    "grad keeps the graph of every batch it holds alive (memory grows every step) and sends "
    "gradients into batches long gone.",
    example="queue written as raw text features (norm 6.2) -> max | ||key|| - 1 | = 5.2 > 0.01 "
    "-> FAIL; queue.requires_grad True -> FAIL",
    evidence="facebookresearch/moco moco/builder.py: keys computed under torch.no_grad() and "
    "normalised (nn.functional.normalize(k, dim=1)), the queue a normalised buffer "
    "updated in a @torch.no_grad() _dequeue_and_enqueue.",
    thresholds={"norm_tol": 1e-2},
)
def bank_hygiene(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding for the key norms, one for detachment (each when observed)."""
    norm_n, grad_n = "observed.bank.key_norm_error", "observed.bank.requires_grad"
    if norm_n not in facts and grad_n not in facts:
        return [ctx.skip(no_bank_reason(facts), ctx.sources_of(facts, "bank.enabled", "bank.enabled_at_call"))]
    out = []
    tol = ctx.threshold("norm_tol")
    src = ctx.sources_of(facts, norm_n, "bank.fill")
    if norm_n not in facts:
        out.append(ctx.skip(f"not known: {norm_n}", src, "key norms"))
    else:
        err = float(facts.value(norm_n))
        measured, expected = f"max | ||key|| - 1 | = {err:.3g}", f"<= {tol:g}"
        if not err <= tol:  # NaN fails too
            out.append(
                ctx.problem(
                    measured,
                    expected,
                    f"queued keys are not unit-norm: max | ||key|| - 1 | = {err:.3g} "
                    f"> {tol:g}: queue logits live on another scale than the "
                    f"in-batch ones",
                    src,
                    "key norms",
                    fix="normalise keys before enqueue: F.normalize(keys, dim=1)",
                )
            )
        else:
            out.append(
                ctx.passed(
                    measured, expected, f"queued keys unit-norm (max | ||key|| - 1 | = {err:.3g})", src, "key norms"
                )
            )
    src = ctx.sources_of(facts, grad_n)
    if grad_n not in facts:
        out.append(ctx.skip(f"not known: {grad_n}", src, "detached"))
    elif facts.value(grad_n):
        out.append(
            ctx.problem(
                "requires_grad True",
                "requires_grad False",
                "the queue tensor requires grad: it keeps the graph of every "
                "enqueued batch alive (memory grows each step) and sends gradients "
                "into old batches; MoCo enqueues detached keys",
                src,
                "detached",
                fix="enqueue keys.detach() under torch.no_grad(), into a buffer "
                "(register_buffer), not a Parameter or a graph tensor",
            )
        )
    else:
        out.append(
            ctx.passed(
                "requires_grad False",
                "requires_grad False",
                "the queue is detached (requires_grad False)",
                src,
                "detached",
            )
        )
    return out


# --- FGD205 bank-false-negatives ----------------------------------------------------------------


@rule(
    "FGD205",
    "bank-false-negatives",
    title="no copies of the positive among the negatives",
    severity="warn",
    where="L",
    fix="mask candidates with the positive's caption id (queue and batch), or deduplicate "
    "captions before they are enqueued",
    what="In a live run: the fraction of region rows whose positive caption also sits in the "
    "queue (same caption id) with a finite logit in the head's output (not masked: measured "
    "on the logits, the mask flag only where they were not seen), and the fraction of rows "
    f"with an unmasked queued candidate at cosine > {NEAR_COPY_COSINE} to the positive caption "
    "feature (features equal up to float error; text towers are anisotropic: after the "
    "tiny fine-tune 99.8 % of distinct captions have a neighbour above 0.999, which are "
    "hard negatives, not copies). Either above 1 % warns.",
    why="A copy of the positive counted as a negative is a contradiction the loss cannot "
    "resolve: it pulls the box toward its caption and pushes it away from the same caption "
    "in the queue. With a small caption vocabulary (anomaly datasets, templated captions) "
    "most of a large queue can be copies, and more negatives then hurt.",
    example="15 distinct box captions, 128-entry queue, masking off: 97 % of region rows have a "
    "queued copy of their caption -> WARN",
    evidence="docs/experiment.md: with 15 captions a 128-entry queue was mostly copies of the positive "
    "and hurt (0.63 vs 0.55 of chance); facebookresearch/moco moco/builder.py treats "
    "every queued key as a negative, which holds only when queued keys are other "
    "instances.",
    thresholds={"max_fraction": 0.01},
)
def bank_false_negatives(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding for same-caption queue entries, one for near-duplicates (each when observed)."""
    same_n, dup_n, mask_n = (
        "observed.bank.same_caption_rows",
        "observed.bank.near_duplicate_rows",
        "bank.mask_same_caption",
    )
    if same_n not in facts and dup_n not in facts:
        return [
            ctx.skip(
                f"{no_bank_reason(facts)} (not known: {same_n}, {dup_n})",
                ctx.sources_of(facts, "bank.enabled", "bank.enabled_at_call"),
            )
        ]
    limit = ctx.threshold("max_fraction")
    expected = f"<= {pct(limit)} of rows"
    out = []
    src = ctx.sources_of(facts, same_n, mask_n)
    if same_n not in facts:
        out.append(ctx.skip(f"not known: {same_n}", src, "same caption"))
    else:
        out.append(_same_caption(facts, ctx, same_n, mask_n, limit, expected))
    src = ctx.sources_of(facts, dup_n, mask_n)
    if dup_n not in facts:
        out.append(ctx.skip(f"not known: {dup_n}", src, "near duplicate"))
    else:
        dup = float(facts.value(dup_n))
        text = (
            f"{pct(dup)} of rows have an unmasked queued candidate at cosine > {NEAR_COPY_COSINE} "
            "to the positive caption"
        )
        if dup > limit:
            out.append(
                ctx.problem(
                    pct(dup),
                    expected,
                    f"{text}: near-copies of the positive act as negatives ({pct(dup)} > {pct(limit)})",
                    src,
                    "near duplicate",
                )
            )
        else:
            out.append(ctx.passed(pct(dup), expected, text, src, "near duplicate"))
    return out


@rule(
    "FGD206",
    "bank-persist",
    title="the memory bank is saved in the checkpoint, and filled",
    severity="fail",
    where="K",
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
    "facebookresearch/moco moco/builder.py (queue and queue_ptr are registered buffers).",
)
def bank_persist(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the saved bank."""
    if skip := skip_without_bank(facts, ctx):
        return skip
    saved = facts.value("bank.persisted") or {}
    src = ctx.sources_of(facts, "bank.persisted", "bank.queue_random", "bank.fill", "train.optimizer_steps_done")
    missing = [b for b in ("queue", "ptr") if not saved.get(b)]
    if missing:
        return ctx.problem(
            "missing: " + ", ".join(missing),
            "queue and ptr saved",
            "the checkpoint holds no memory_bank."
            + " / memory_bank.".join(missing)
            + ": a resume restarts the bank from a random queue",
            src,
        )
    if "bank.queue_random" not in facts:
        return ctx.skip("queue not readable (dtype or shape)", src)
    spread = facts.value("bank.queue_cosine") or {}
    shown = (
        f"cosine {spread.get('mean', math.nan):.3f} ± {spread.get('std', math.nan):.3f} "
        f"(random: 0 ± {spread.get('random_std', math.nan):.3f})"
    )
    if facts.value("bank.queue_random"):
        calls, steps = facts.value("bank.forward_calls"), facts.value("train.optimizer_steps_done")
        if calls == 0 or (calls is None and steps == 0):
            return ctx.passed("not filled yet", "filled", f"no forward call yet: {shown}", src)
        fill = facts.value("bank.fill")
        claim = f"; its fill counter says {fill}" if fill else ""
        return ctx.problem(
            "random", "filled", f"queue still random after {steps} optimizer steps: {shown}{claim}: never filled", src
        )
    return ctx.passed("saved, filled", "saved, filled", f"queue and pointer saved; {shown}", src)


def _same_caption(facts: Facts, ctx: RuleContext, same_n: str, mask_n: str, limit: float, expected: str) -> Finding:
    """Same-caption queue entries: measured on the head's logits when seen, else the mask flag."""
    unmasked_n = "observed.bank.same_caption_unmasked_rows"
    same = float(facts.value(same_n))
    text = f"{pct(same)} of region rows have a queued entry with their own caption"
    if same <= limit:
        return ctx.passed(pct(same), expected, text, ctx.sources_of(facts, same_n), "same caption")
    if unmasked_n in facts:
        src = ctx.sources_of(facts, same_n, unmasked_n)
        unmasked = float(facts.value(unmasked_n))
        if unmasked <= limit:
            shown = f"{pct(same)}, {pct(unmasked)} unmasked"
            why = f"{text}; {pct(unmasked)} keep a finite logit (masked -inf in the head's logits)"
            return ctx.passed(shown, expected, why, src, "same caption")
        why = f"{text}; {pct(unmasked)} keep a finite logit in the head's output: copies of the positive act "
        why += f"as negatives ({pct(unmasked)} > {pct(limit)})"
        return ctx.problem(f"{pct(unmasked)} unmasked", expected, why, src, "same caption")
    src = ctx.sources_of(facts, same_n, mask_n)
    mask = facts.value(mask_n)
    if mask is None:
        return ctx.skip(f"{text}, and whether they are masked is not known: {mask_n}", src, "same caption")
    if mask:
        why = f"{text}; all masked (bank.mask_same_caption), so none acts as a negative"
        return ctx.passed(f"{pct(same)} masked", expected, why, src, "same caption")
    why = f"{text}, unmasked: copies of the positive act as negatives ({pct(same)} > {pct(limit)})"
    return ctx.problem(pct(same), expected, why, src, "same caption")
