"""Negatives and memory-bank rules (FGD2xx): how many candidates each contrastive loss sees.

A loss row with N candidates has chance level ln N; the candidates are the in-batch ones
(global: per_device x world when features are gathered; region: the boxes on the rank) plus,
for the region loss, the memory bank's queue once its warmup is over.
"""
from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.checks.schedule import RUN_LENGTH_UNKNOWN, TIMING_FACTS, warmup_timing
from fgclip_doctor.facts import Facts
from fgclip_doctor.vocabulary import TERMS

NO_BANK = "no memory bank in this model"


def skip_without_bank(facts: Facts, ctx: RuleContext) -> Finding | None:
    """SKIP when it is unknown whether the model has a memory bank, or it has none; else None."""
    if skip := ctx.require(facts, "bank.enabled"):
        return skip
    if not facts.value("bank.enabled"):
        return ctx.skip(NO_BANK, ctx.sources_of(facts, "bank.enabled"))
    return None


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


def _observed(facts: Facts, term: str) -> int | None:
    """Candidates the live probe saw for `term` (the largest, if it reports several)."""
    seen = facts.value(f"observed.candidates.{term}")
    if isinstance(seen, (list, tuple, set)):
        seen = max(seen) if seen else None
    return None if seen is None else int(seen)


def _live(ctx: RuleContext, facts: Facts, term: str, expected: int, src, note: str = "") -> Finding:
    seen = _observed(facts, term)
    src = (*src, *ctx.sources_of(facts, f"observed.candidates.{term}"))
    msg = f"{term}: observed {seen} candidates per row, expected {expected}{note}"
    if seen != expected:
        return ctx.problem(seen, expected, msg, src, term)
    return ctx.passed(seen, expected, msg, src, term)


def _live_region(ctx: RuleContext, facts: Facts, src, t, q: int) -> Finding:
    """Live: the queue columns the region logits really had at the end vs what is due by then."""
    extra = facts.value("observed.extra_columns.region")
    done = facts.value("train.optimizer_steps_done")
    fill = facts.value("bank.fill", q)
    src = (*src, *ctx.sources_of(facts, "observed.candidates.region", "observed.extra_columns.region",
                                 "train.optimizer_steps_done", "bank.fill"))
    if extra is None or done is None:
        return ctx.skip("not measured: observed.extra_columns.region / train.optimizer_steps_done", src, "region")
    due = t.switch_on_step is not None and done >= t.switch_on_step
    expected = min(q, fill) if due else 0
    when = (f"bank due at optimizer step {t.switch_on_step}, {done} steps done" if t.switch_on_step is not None
            else f"{done} steps done")
    msg = f"region: in-batch boxes + {extra} queue columns at the end ({when}); expected + {expected}"
    if extra != expected:
        return ctx.problem(f"+{extra} queue", f"+{expected} queue", msg, src, "region")
    return ctx.passed(f"+{extra} queue", f"+{expected} queue", msg, src, "region")


def _global(facts: Facts, ctx: RuleContext) -> Finding:
    names = ("candidates.global", "train.per_device_batch", "run.world_size", "features.gathered")
    src = ctx.sources_of(facts, *names)
    per, world = facts.value("train.per_device_batch"), facts.value("run.world_size")
    gathered = facts.value("features.gathered")
    expected = per * world if per is not None and world is not None else facts.value("candidates.global")
    if expected is None:
        return ctx.skip("not known: candidates.global (or train.per_device_batch and run.world_size)",
                        src, "global")
    if "observed.candidates.global" in facts:
        return _live(ctx, facts, "global", expected, src)
    if world is not None and world > 1 and gathered is False:
        return ctx.problem(per, expected,
                           f"global: each rank only sees its own batch: {per} candidates per row "
                           f"instead of {per} x {world} = {expected} (features not gathered across "
                           f"ranks, as in transformers#22252)", src, "global")
    how = f" ({per} per device x world {world})" if per is not None and world is not None else ""
    return ctx.passed(expected, expected, f"global: {expected} candidates per row{how}", src, "global")


def _region(facts: Facts, ctx: RuleContext) -> Finding:
    names = ("candidates.region.in_batch", "candidates.region.with_bank", "bank.enabled",
             "bank.size", *TIMING_FACTS)
    src = ctx.sources_of(facts, *names)
    k = facts.value("candidates.region.in_batch")
    if k is None:
        return ctx.skip("not known: candidates.region.in_batch (boxes per rank: per-device "
                        "batch x data.max_boxes)", src, "region")
    bank = facts.value("bank.enabled")
    if bank is None:
        return ctx.skip("not known: bank.enabled (whether the model has a memory bank)", src, "region")
    with_bank = facts.value("candidates.region.with_bank")
    if with_bank is None and bank and facts.value("bank.size") is not None:
        with_bank = k + facts.value("bank.size")
    if not bank:
        if "observed.candidates.region" in facts:
            return _live(ctx, facts, "region", k, src, f" ({NO_BANK})")
        return ctx.passed(k, k, f"region: {k} in-batch candidates per row ({NO_BANK})", src, "region")
    if with_bank is None:
        return ctx.skip("not known: bank.size / candidates.region.with_bank", src, "region")
    q = with_bank - k
    t = warmup_timing(facts)
    if "observed.candidates.region" in facts:
        return _live_region(ctx, facts, src, t, q)
    if t.reached is None:
        return ctx.skip(RUN_LENGTH_UNKNOWN + " (needed to know whether the bank switches on)",
                        src, "region")
    if not t.reached:
        return ctx.problem(f"<= {k}", with_bank,
                           f"region: in-batch candidates only (<= {k}) for the whole run, where "
                           f"{k} + {q} = {with_bank} was intended: the bank switches on at "
                           f"{t.warmup_text()}; {t.run_text()}", src, "region")
    return ctx.passed(f"{k} -> {with_bank}", f"{k} -> {with_bank}",
                      f"region: {k} -> {k} + {q} = {with_bank} candidates from optimizer step "
                      f"{t.switch_on_step}", src, "region")


def _hardneg(facts: Facts, ctx: RuleContext) -> Finding:
    src = ctx.sources_of(facts, "candidates.hardneg", "data.num_hard_negatives")
    n = facts.value("candidates.hardneg")
    if n is None:
        return ctx.skip("not known: candidates.hardneg (1 + data.num_hard_negatives)", src, "hardneg")
    if "observed.candidates.hardneg" in facts:
        return _live(ctx, facts, "hardneg", n, src)
    return ctx.passed(n, n, f"hardneg: {n} candidates per row (the box caption + {n - 1} rewrites)",
                      src, "hardneg")


@rule("FGD201", "negatives-count", title="each loss sees the candidates it was meant to",
      severity="fail", where="CL",
      fix="gather global features across ranks; make the region bank switch on within the run",
      what="Per loss term, the candidates per row: global = per-device batch x world (features "
           "gathered), region = in-batch boxes + the memory bank's queue once warm, hardneg = 1 + "
           "rewrites. Live runs compare the observed logits' columns with that expectation.",
      why="Chance level is ln(candidates): a loss stuck near ln 4 = 1.39 is a 4-way guess. Too few "
          "negatives make the task easy and the features weak, and hide a silent config error.",
      example="region: bank warmup never reached in a 40-step run -> 32 candidates instead of "
              "32 + 128 = 160 -> FAIL",
      evidence="open_clip#17 (loss stuck at ln 128 = chance); transformers#22252 (HF CLIP does "
               "not gather features across GPUs); CLIP4Clip#69 (31 negatives instead of 127); "
               "the seed incident (4 candidates instead of 132).")
def negatives_count(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per loss term (loss.terms when known, else the terms with known counts)."""
    terms = facts.value("loss.terms")
    if terms is None:
        terms = [t for t in TERMS if any(n.startswith(("candidates." + t, "observed.candidates." + t))
                                         for n in facts)]
    if not terms:
        return [ctx.skip("not known: candidates.<term> (per-device batch, world size, max boxes "
                         "and bank size give them) and loss.terms")]
    judge = {"global": _global, "region": _region, "hardneg": _hardneg}
    return [judge[t](facts, ctx) for t in TERMS if t in terms]


@rule("FGD202", "bank-active", title="the memory bank switches on within the run",
      severity="fail", where="CKL",
      fix="lower the bank warmup below the run's forward calls (the seed: 400 -> 50)",
      what="The region memory bank's warmup ends before the run does (config), and a checkpoint "
           "or live run shows it enabled (its enabled_at_call buffer >= 0).",
      why="A bank that never switches on adds no columns: the region loss competes only among "
          "the boxes on the rank, its chance level stays ln(k), and nothing says so.",
      example="warmup 400 forward calls = optimizer step 50 at accumulation 8; the run has 40 "
              "optimizer steps (320 forward calls) -> FAIL",
      evidence="facebookresearch/moco moco/builder.py (the queue is part of every forward once "
               "built); the seed incident (bank never enabled, region loss at ln 4).")
def bank_active(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding: the enabled_at_call buffer if known (K/L), else the config arithmetic."""
    if skip := skip_without_bank(facts, ctx):
        return skip
    t = warmup_timing(facts)
    src = ctx.sources_of(facts, "bank.enabled", *TIMING_FACTS)
    if "bank.enabled_at_call" in facts:
        at, fill, size = (facts.value(n) for n in ("bank.enabled_at_call", "bank.fill", "bank.size"))
        done = facts.value("train.optimizer_steps_done")
        src = (*src, *ctx.sources_of(facts, "bank.enabled_at_call", "bank.fill",
                                     "train.optimizer_steps_done"))
        filled = f"; fill {fill}/{size}" if fill is not None and size is not None else ""
        if int(at) >= 0:
            step = f" = optimizer step {-(-int(at) // t.accum)}" if t.accum else ""
            if t.reached is False:  # a live run longer than the configured one saw it switch on
                return ctx.problem(f"on at call {at}", f"<= optimizer step {t.steps}",
                                   f"bank enabled at forward call {at}{step} in this run, but the configured "
                                   f"run never gets there: warmup {t.warmup_text()}; {t.run_text()}", src)
            return ctx.passed(f"on at call {at}", "on", f"bank enabled at forward call {at}{step}"
                              f"{filled}", src)
        if done is not None and t.switch_on_step is not None and done < t.switch_on_step \
                and t.reached:
            return ctx.passed("not yet on", "on", f"bank not yet enabled after {done} optimizer "
                              f"steps; due at {t.warmup_text()}{filled}", src)
        return ctx.problem("never on", "on", f"bank never enabled (enabled_at_call {at}){filled}",
                           src)
    if t.switch_on_step is None:
        return ctx.skip("not known: bank.warmup_forward_calls / bank.switch_on_step (the bank's "
                        "warmup)", src)
    if t.reached is None:
        return ctx.skip(RUN_LENGTH_UNKNOWN, src)
    measured = f"optimizer step {t.switch_on_step}"
    expected = f"<= optimizer step {t.steps}"
    if not t.reached:
        calls = f" ({t.calls} forward calls)" if t.calls is not None else ""
        return ctx.problem(measured, expected, f"never enabled within the run: warmup "
                           f"{t.warmup_text()}; the run has {t.steps} optimizer steps{calls}", src)
    return ctx.passed(measured, expected,
                      f"bank on from warmup {t.warmup_text()}, within the {t.steps}-step run", src)


@rule("FGD203", "bank-size", title="the queue holds whole batches of keys", severity="fail",
      where="C", fix="make bank.size a multiple of the keys enqueued per forward, at least one batch",
      what="The memory bank's queue length is at least the keys enqueued per forward "
           "(candidates.region.in_batch) and a multiple of it, unless the enqueue wraps around.",
      why="A queue smaller than one batch overwrites its own keys in the same enqueue; a size "
          "that is not a multiple makes a non-wrapping enqueue write past the end or skip slots.",
      example="bank 100 with 32 keys per forward and no wrap-around -> FAIL",
      evidence="facebookresearch/moco moco/builder.py `assert self.K % batch_size == 0` in "
               "_dequeue_and_enqueue.")
def bank_size(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the queue length."""
    if skip := skip_without_bank(facts, ctx):
        return skip
    if skip := ctx.require(facts, "bank.size", "candidates.region.in_batch"):
        return skip
    size, k = int(facts.value("bank.size")), int(facts.value("candidates.region.in_batch"))
    wraps = facts.value("bank.wraps")
    src = ctx.sources_of(facts, "bank.size", "candidates.region.in_batch", "bank.wraps")
    expected = f">= {k}, a multiple of {k} or wrap-around"
    if size < k:
        return ctx.problem(size, expected, f"queue of {size} is smaller than the {k} keys "
                           f"enqueued per forward: one enqueue overwrites itself", src)
    if size % k and not wraps:
        how = "does not handle" if wraps is False else "is not known to handle"
        make = ctx.problem if wraps is False else ctx.warned
        return make(size, expected, f"queue of {size} is not a multiple of {k} keys per forward "
                    f"and the enqueue {how} wrap-around", src)
    note = "a multiple of" if size % k == 0 else "wrap-around handles"
    return ctx.passed(size, expected, f"queue of {size}: {note} {k} keys per forward", src)


def _how_global(n: int, per: int | None, world: int | None) -> str:
    """How `n` global candidates arise from the facts: ' (per_device 8 x world 14)' or the like."""
    if per is None or world is None:
        return ""
    if n == per * world:
        return f" (per_device {per} x world {world})"
    if n == per:
        return f" (per_device {per}; features not gathered across world {world})"
    return ""


@rule("FGD208", "grad-accum-negatives", title="gradient accumulation does not add negatives",
      severity="warn", where="C",
      fix="raise the per-device batch or the world size (or gather / queue) instead of accumulating",
      what="With gradient accumulation > 1 the batch per optimizer step grows, but each "
           "contrastive loss still only sees the candidates of one forward call.",
      why="InfoNCE's negatives come from the forward call, not from the optimizer step: "
          "accumulation 8 over batch 8 is not a batch of 64 for the loss.",
      example="per_device 8 x world 1, accumulation 8 -> WARN: 8 candidates per forward, "
              "global batch 64",
      evidence="CLIP4Clip#69 (31 negatives instead of 127 with accumulation); the seed incident.")
def grad_accum_negatives(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the accumulation."""
    if skip := ctx.require(facts, "train.grad_accum"):
        return skip
    accum = int(facts.value("train.grad_accum"))
    per, world = facts.value("train.per_device_batch"), facts.value("run.world_size")
    n = facts.value("candidates.global")
    if n is None and per is not None and world is not None:
        n = per * world
    total = facts.value("train.global_batch")
    if total is None and per is not None and world is not None:
        total = per * world * accum
    src = ctx.sources_of(facts, "train.grad_accum", "train.per_device_batch", "run.world_size",
                         "candidates.global", "train.global_batch")
    if accum <= 1:
        return ctx.passed(accum, 1, "no gradient accumulation: the loss sees the whole batch", src)
    g = f" (global batch {total})" if total is not None else ""
    each = f"{n} candidates per forward{_how_global(n, per, world)}" if n is not None else \
        "only the candidates of one forward call"
    return ctx.problem(accum, 1, f"accumulation {accum} multiplies the batch per optimizer step"
                       f"{g} but not the negatives: each loss sees {each}", src)
