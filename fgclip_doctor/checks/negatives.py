"""Negatives rules (FGD2xx): how many candidates each contrastive loss sees, gathered across
ranks with the right targets, not multiplied by gradient accumulation, and counted over the
launch's world (world-size: a loss that takes its world from a flag).

A loss row with N candidates has chance level ln N; the candidates are the in-batch ones
(global: per_device x world when features are gathered; region: the boxes on the rank) plus,
for the region loss, the memory bank's queue once its warmup is over (checks/bank.py).
"""

from __future__ import annotations

from fgclip_doctor.checks.bank_presence import NO_BANK
from fgclip_doctor.checks.observed import observed_terms, pct
from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.checks.schedule import RUN_LENGTH_UNKNOWN, TIMING_FACTS, warmup_timing
from fgclip_doctor.facts import Facts
from fgclip_doctor.units import warmup_reached
from fgclip_doctor.vocabulary import TERMS, observed_fact


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
    src = (
        *src,
        *ctx.sources_of(
            facts,
            "observed.candidates.region",
            "observed.extra_columns.region",
            "train.optimizer_steps_done",
            "bank.fill",
        ),
    )
    if extra is None or done is None:
        return ctx.skip("not measured: observed.extra_columns.region / train.optimizer_steps_done", src, "region")
    due = t.switch_on_step is not None and warmup_reached(t.switch_on_step, done)
    expected = min(q, fill) if due else 0
    when = (
        f"bank due at optimizer step {t.switch_on_step}, {done} steps done"
        if t.switch_on_step is not None
        else f"{done} steps done"
    )
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
        return ctx.skip("not known: candidates.global (or train.per_device_batch and run.world_size)", src, "global")
    if "observed.candidates.global" in facts:
        return _live(ctx, facts, "global", expected, src)
    if facts.value("loss.global.keys_queued") and "loss.global.queue" not in facts:
        return ctx.skip(f"not known: loss.global.queue ({''.join(facts.why('loss.global.queue')[:1])})", src, "global")
    if (queue := facts.value("loss.global.queue")) is not None and per is not None:
        n = per + queue
        src = (*src, *ctx.sources_of(facts, "loss.global.queue"))
        return ctx.passed(n, n, f"global: {per} in-batch + {queue} queued keys = {n} candidates per row", src, "global")
    if world is not None and world > 1 and gathered is None:  # never a PASS on assumed gathering
        return ctx.skip(
            f"not known: features.gathered (whether the loss gathers features across the {world} ranks: "
            f"{per} or {expected} candidates per row)",
            src,
            "global",
        )
    if world is not None and world > 1 and gathered is False:
        return ctx.problem(
            per,
            expected,
            f"global: each rank only sees its own batch: {per} candidates per row "
            f"instead of {per} x {world} = {expected} (features not gathered across "
            f"ranks, as in transformers#22252)",
            src,
            "global",
            fix="all_gather the image and text features across ranks (with gradient: "
            "torch.distributed.nn.all_gather) before the global logits, and offset the targets by "
            "rank x batch; or accept the local batch as the negatives and raise the per-device batch",
        )
    how = f" ({per} per device x world {world})" if per is not None and world is not None else ""
    return ctx.passed(expected, expected, f"global: {expected} candidates per row{how}", src, "global")


def _region(facts: Facts, ctx: RuleContext) -> Finding:
    names = ("candidates.region.in_batch", "candidates.region.with_bank", "bank.enabled", "bank.size", *TIMING_FACTS)
    src = ctx.sources_of(facts, *names)
    k = facts.value("candidates.region.in_batch")
    if k is None:
        return ctx.skip("not known: candidates.region.in_batch (boxes per rank: batch x max_boxes)", src, "region")
    if k == 0:  # --max_boxes 0 (or below): the loader keeps no box, the region term never gets a row
        return ctx.problem(0, ">= 1 box", "region: no box reaches the region term: it never trains", src, "region")
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
        return ctx.skip(RUN_LENGTH_UNKNOWN + " (needed to know whether the bank switches on)", src, "region")
    if not t.reached:
        return ctx.problem(
            f"<= {k}",
            with_bank,
            f"region: in-batch candidates only (<= {k}) for the whole run, where "
            f"{k} + {q} = {with_bank} was intended: the bank switches on at "
            f"{t.warmup_text()}; {t.run_text()}",
            src,
            "region",
        )
    return ctx.passed(
        f"{k} -> {with_bank}",
        f"{k} -> {with_bank}",
        f"region: {k} -> {k} + {q} = {with_bank} candidates from optimizer step {t.switch_on_step}",
        src,
        "region",
    )


def _hardneg(facts: Facts, ctx: RuleContext) -> Finding:
    src = ctx.sources_of(facts, "candidates.hardneg", "data.num_hard_negatives")
    n = facts.value("candidates.hardneg")
    if n is None:
        return ctx.skip("not known: candidates.hardneg (1 + data.num_hard_negatives)", src, "hardneg")
    if "observed.candidates.hardneg" in facts:
        return _live(ctx, facts, "hardneg", n, src)
    return ctx.passed(n, n, f"hardneg: {n} candidates per row (the box caption + {n - 1} rewrites)", src, "hardneg")


@rule(
    "FGD201",
    "negatives-count",
    title="each loss sees the candidates it was meant to",
    severity="fail",
    where="CL",
    fix="gather global features across ranks; make the region bank switch on within the run",
    what="Per loss term, the candidates per row: global = per-device batch x world (features "
    "gathered), region = in-batch boxes + the memory bank's queue once warm, hardneg = 1 + "
    "rewrites. Live runs compare the observed logits' columns with that expectation.",
    why="Chance level is ln(candidates): a loss stuck near ln 4 = 1.39 is a 4-way guess. Too few "
    "negatives make the task easy and the features weak, and hide a silent config error.",
    example="region: bank warmup never reached in a 40-step run -> 32 candidates instead of 32 + 128 = 160 -> FAIL",
    evidence="open_clip#17 (loss stuck at ln 128 = chance); transformers#22252 (HF CLIP does "
    "not gather features across GPUs); CLIP4Clip#69 (31 negatives instead of 127); "
    "the seed incident (4 candidates instead of 132).",
)
def negatives_count(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per loss term (loss.terms when known, else the terms with known counts)."""
    terms = facts.value("loss.terms")
    if terms is None:
        terms = [t for t in TERMS if any(n.startswith(("candidates." + t, "observed.candidates." + t)) for n in facts)]
    if not terms and facts.value("loss.region.present") is False:
        return [ctx.skip(f"no region term in this code ({facts.source('loss.region.present')})")]
    if not terms:
        return [
            ctx.skip(
                "not known: candidates.<term> (per-device batch, world size, max boxes "
                "and bank size give them) and loss.terms"
            )
        ]
    judge = {"global": _global, "region": _region, "hardneg": _hardneg}
    found = [judge[t](facts, ctx) for t in TERMS if t in terms]  # + ssl (NT-Xent); distill has no negatives
    found += [ctx.skip("not known: candidates.ssl (the augmented views per row)", (), "ssl")] if "ssl" in terms else []
    return found or [ctx.skip(f"not known: the candidates of the loss terms {', '.join(terms)}")]


def _how_global(n: int, per: int | None, world: int | None) -> str:
    """How `n` global candidates arise from the facts: ' (per_device 8 x world 14)' or the like."""
    if per is None or world is None:
        return ""
    if n == per * world:
        return f" (per_device {per} x world {world})"
    if n == per:
        return f" (per_device {per}; features not gathered across world {world})"
    return ""


@rule(
    "FGD208",
    "grad-accum-negatives",
    title="gradient accumulation does not add negatives",
    severity="warn",
    where="C",
    fix="raise the per-device batch or the world size (or gather / queue) instead of accumulating",
    what="With gradient accumulation > 1 the batch per optimizer step grows, but each "
    "contrastive loss still only sees the candidates of one forward call.",
    why="InfoNCE's negatives come from the forward call, not from the optimizer step: "
    "accumulation 8 over batch 8 is not a batch of 64 for the loss.",
    example="per_device 8 x world 1, accumulation 8 -> WARN: 8 candidates per forward, global batch 64",
    evidence="CLIP4Clip#69 (31 negatives instead of 127 with accumulation); the seed incident.",
)
def grad_accum_negatives(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the accumulation."""
    if skip := ctx.require(facts, "train.grad_accum"):
        return skip
    accum = int(facts.value("train.grad_accum"))
    per, world = facts.value("train.per_device_batch"), facts.value("run.world_size")
    n = facts.value("candidates.global")
    gathered = facts.value("features.gathered")
    if n is None and per is not None and world is not None and (gathered or world == 1):
        n = per * world
    total = facts.value("train.global_batch")
    if total is None and per is not None and world is not None:
        total = per * world * accum
    src = ctx.sources_of(
        facts, "train.grad_accum", "train.per_device_batch", "run.world_size", "candidates.global", "train.global_batch"
    )
    if accum <= 1:
        return ctx.passed(accum, 1, "no gradient accumulation: the loss sees the whole batch", src)
    g = f" (global batch {total})" if total is not None else ""
    each = (
        f"{n} candidates per forward{_how_global(n, per, world)}"
        if n is not None
        else "only the candidates of one forward call"
        + (
            f" ({per} or {per * world}: not known whether the loss gathers features across ranks)"
            if per is not None and world is not None
            else ""
        )
    )
    return ctx.problem(
        accum,
        1,
        f"accumulation {accum} multiplies the batch per optimizer step{g} but not the negatives: each loss sees {each}",
        src,
    )


# --- FGD207 ddp-targets -------------------------------------------------------------------------


@rule(
    "FGD207",
    "ddp-targets",
    title="gathered logits have their targets offset by rank",
    severity="fail",
    where="L",
    fix="offset the targets when the columns hold every rank's features: labels = torch.arange(rows) + rank * rows",
    what="For each loss whose logits have world x rows columns (features gathered across "
    "ranks), every rank's targets point at rank x rows + i (at least 99 % of its rows).",
    why="After an all-gather, rank r's own positives sit in columns r x batch .. r x batch + "
    "batch - 1. Targets left at 0..batch-1 point every row of ranks > 0 at another rank's "
    "sample: those ranks learn to match the wrong pairs while rank 0 looks fine, and the "
    "loss stays high.",
    example="world 2, batch 8, labels = arange(8) on both ranks -> rank 1: 0 % of targets at rank × batch + i -> FAIL",
    evidence="open_clip src/open_clip/loss.py ClipLoss.get_ground_truth (labels + num_logits * "
    "rank when world_size > 1 and local_loss); transformers#22252 (HF CLIP does not "
    "gather across GPUs, so gathering is added by hand, and the labels with it).",
    thresholds={"min_fraction": 0.99},
)
def ddp_targets(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per observed term (a single SKIP in a one-process run)."""
    world = facts.value("run.world_size")
    wsrc = ctx.sources_of(facts, "run.world_size")
    if world is not None and int(world) <= 1:
        return [ctx.skip("single process: nothing gathered", wsrc)]
    terms = observed_terms(facts, "ddp", ("gathered", "target_offset_ok"))
    if world is None:
        seen = [facts.value(observed_fact("ddp", t, "target_offset_ok")) or [] for t in terms]
        if max((len(s) for s in seen), default=0) <= 1:
            return [ctx.skip("not known: run.world_size")]
    if not terms and facts.value("loss.region.present") is False:
        return [ctx.skip(f"no region term in this code ({facts.source('loss.region.present')})")]
    if not terms:
        return [
            ctx.skip(
                "not known: observed.terms / observed.ddp.<term>.gathered (a live run with --nproc > 1 records them)",
                wsrc,
            )
        ]
    return [_ddp_term(facts, ctx, term, world, wsrc) for term in terms]


def _ddp_term(facts: Facts, ctx: RuleContext, term: str, world, wsrc) -> Finding:
    gathered_n = observed_fact("ddp", term, "gathered")
    offsets_n = observed_fact("ddp", term, "target_offset_ok")
    src = (*wsrc, *ctx.sources_of(facts, gathered_n, offsets_n))
    gathered = facts.value(gathered_n)
    limit = ctx.threshold("min_fraction")
    expected = f">= {pct(limit)} on every rank"
    if gathered is None:
        return ctx.skip(f"not known: {gathered_n}", src, term)
    if not gathered:
        on = f" on world {world}" if world is not None else ""
        return ctx.passed(
            "not gathered",
            "local targets",
            f"{term}: columns are not world × rows{on}: targets need no rank offset "
            f"(whether each row sees every rank's candidates: negatives-count)",
            src,
            term,
        )
    offsets = facts.value(offsets_n)
    if offsets is None:
        return ctx.skip(f"{term}: gathered across ranks, but not known: {offsets_n}", src, term)
    offsets = [float(v) for v in offsets]
    bad = [(r, v) for r, v in enumerate(offsets) if not v >= limit]
    if bad:
        where = "; ".join(f"rank {r}: {pct(v)} of targets at rank × batch + i" for r, v in bad)
        measured = "; ".join(f"rank {r}: {pct(v)}" for r, v in bad)
        return ctx.problem(
            measured,
            expected,
            f"{term}: {where}: labels not offset; positives sit in another rank's columns",
            src,
            term,
        )
    lowest = min(offsets) if offsets else 1.0
    return ctx.passed(
        f"min {pct(lowest)}",
        expected,
        f"{term}: targets at rank × batch + i on all {len(offsets)} ranks (lowest {pct(lowest)})",
        src,
        term,
    )


# --- FGD209 world-size: the world the loss counts is the launch's -----------------------------------


@rule(
    "FGD209",
    "world-size",
    title="the loss gathers from the world the launch starts",
    severity="fail",
    where="C",
    fix="take the loss's world size from torch.distributed.get_world_size(), or set the flag to the launch's "
    "nproc x nnodes",
    what="When the loss takes its world size from a flag or config value (FG-CLIP 2's "
    "`--train_use_word_size`, default 8) instead of torch.distributed, that value equals the "
    "launch's world (nproc_per_node x nnodes). FAIL when they differ, WARN when the launch's "
    "world is unknown here (deepspeed without --num_gpus uses every visible GPU).",
    why="The loss loops over `range(world_size)` to build labels and gather features: with a "
    "different world the labels point at the wrong rank's rows (or the gather hangs), and the "
    "loss trains on wrong positives without any error.",
    example="deepspeed --num_gpus 4 ... --train_use_word_size 8 -> FAIL: the loss assumes 8 ranks, the launch starts 4",
    evidence="FG-CLIP 2 fgclip2/train/train.py sets model.world_size from "
    "--train_use_word_size; its loss iterates over model.world_size, not dist.get_world_size().",
)
def world_size(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the loss's world size against the launch's."""
    src_from = facts.value("loss.world_size_from")
    src = ctx.sources_of(facts, "loss.world_size_from", "loss.world_size", "run.world_size")
    if src_from is None:
        return ctx.skip("not known: loss.world_size_from (where the loss takes its world size)", src)
    if not str(src_from).startswith("flag "):
        return ctx.passed(str(src_from), "the launch's world", f"the loss takes its world size from {src_from}", src)
    loss_world = facts.value("loss.world_size")
    if loss_world is None:
        return ctx.skip(f"not known: loss.world_size (the value of {src_from[5:]} in this launch)", src)
    world = facts.value("run.world_size")
    if world is None:
        return ctx.warned(
            f"{loss_world} ({src_from})",
            "the launch's world",
            f"the loss assumes {loss_world} ranks ({src_from}), and the launch's world size is not known here: "
            "they must match",
            src,
        )
    if int(loss_world) != int(world):
        return ctx.problem(
            f"{loss_world} ({src_from})",
            str(world),
            f"the loss assumes {loss_world} ranks ({src_from}); the launch starts {world}",
            src,
        )
    return ctx.passed(str(loss_world), str(world), f"the loss's {src_from} = {loss_world} = the launch's world", src)
