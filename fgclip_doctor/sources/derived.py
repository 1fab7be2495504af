"""Derived facts: batch x world x accumulation, run length in both step units, the bank's
switch-on step, and candidates per loss row (with chance levels for checkpoints).

The one place every command derives them: check-config and live from the launch's facts
(`derive_run`, and `derive_world` for `live --nproc`), inspect-ckpt from a checkpoint's
(`derive_checkpoint_candidates`). The arithmetic itself is `fgclip_doctor.units`; what differs
between commands is only which facts they start from, and so the provenance each value cites.
Imports only the ground floor.
"""

from __future__ import annotations

import math

from fgclip_doctor.facts import Facts
from fgclip_doctor.units import forward_calls, global_batch, global_candidates, optimizer_step, steps_for_epochs

MAX_BOXES = 4  # the subject's DataArguments.max_boxes default: an upper bound on boxes per image


def derive_run(facts: Facts) -> None:
    """From world size, per-device batch and accumulation (all three needed): the global batch,
    optimizer steps and forward calls, candidates per loss row, and the bank's switch-on step."""
    world = facts.value("run.world_size")
    per_device, accum = facts.value("train.per_device_batch"), facts.value("train.grad_accum")
    if None in (world, per_device, accum):
        return
    ws, ps, acs = (facts.source(n) for n in ("run.world_size", "train.per_device_batch", "train.grad_accum"))
    facts.set("train.global_batch", global_batch(per_device, world, accum), "per_device × world × accumulation")
    if "train.max_steps" in facts:
        steps, src = facts.value("train.max_steps"), facts.source("train.max_steps")
    elif "train.dataset_size" in facts and "train.epochs" in facts:
        steps = steps_for_epochs(
            facts.value("train.dataset_size"), facts.value("train.epochs"), per_device, world, accum
        )
        src = "num_train_epochs × ceil(dataset_size ÷ (per_device × world)) ÷ accumulation"
    else:
        steps = None
    if steps is not None:
        facts.set("train.optimizer_steps", steps, src)
        facts.set("train.forward_calls", forward_calls(steps, accum), "optimizer_steps × accumulation")
    # Candidates per loss row: unknown when the world is > 1 and gathering is unknown.
    gathered = facts.value("features.gathered")
    if gathered or world == 1:
        facts.set("candidates.global", global_candidates(per_device, world, True), f"per_device ({ps}) × world ({ws})")
    elif gathered is False:
        facts.set(
            "candidates.global",
            global_candidates(per_device, world, False),
            f"per_device ({ps}); features not gathered across ranks ({facts.source('features.gathered')})",
        )
    else:
        facts.mark_unknown(
            "candidates.global",
            f"not known whether the loss gathers features across the {world} ranks: "
            f"{per_device} or {per_device * world} candidates",
        )
    if "data.max_boxes" in facts and "region" in facts.value("loss.terms", ()):
        per_image = min(
            facts.value("data.boxes_per_image", facts.value("data.max_boxes")), facts.value("data.max_boxes")
        )
        k = max(1, round(per_device * per_image))
        how = "mean boxes per image" if "data.boxes_per_image" in facts else "max_boxes (upper bound)"
        facts.set("candidates.region.in_batch", k, f"per_device × {how}, this rank's boxes")
        if facts.value("bank.enabled"):
            facts.set("candidates.region.with_bank", k + facts.value("bank.size"), "in-batch + bank.size")
    if "bank.warmup_forward_calls" in facts:
        facts.set(
            "bank.switch_on_step",
            optimizer_step(facts.value("bank.warmup_forward_calls"), accum),
            f"{facts.source('bank.warmup_forward_calls')} ÷ accumulation ({acs})",
        )


def derive_world(facts: Facts, nproc: int) -> None:
    """`live --nproc N`: the run on N processes of one node; the global batch and candidates again."""
    for name, value in (("run.nproc_per_node", nproc), ("run.nnodes", 1), ("run.world_size", nproc)):
        facts.set(name, value, f"fgclip-doctor live --nproc {nproc}")
    gb = facts.value("train.per_device_batch")
    if gb is not None:
        facts.set(
            "train.global_batch",
            global_batch(gb, nproc, facts.value("train.grad_accum") or 1),
            "per_device × world × accumulation",
        )
        if facts.value("features.gathered") is not False:
            facts.set("candidates.global", global_candidates(gb, nproc, True), f"per_device × world (--nproc {nproc})")


def derive_checkpoint_candidates(facts: Facts) -> None:
    """Candidates per loss row, and each term's chance level, from a checkpoint's batch, world,
    bank and config (the subject's layouts only for the region and hard-negative terms)."""
    batch, layout = facts.value("train.per_device_batch"), facts.value("ckpt.layout")
    world = int(facts.value("run.world_size") or 1)
    wsrc = facts.source("run.world_size") or "world size not recorded: 1 assumed"
    subject = layout in ("fgclip", "fgclip-v1")
    if subject and facts.value("history.loss_keys") == {"global": "loss"}:
        # FG-CLIP's `loss` is global + 0.1 region + 0.5 hardneg: no single chance level
        facts.set(
            "history.loss_keys",
            {"total": "loss"},
            facts.source("history.loss_keys") + " (FG-CLIP's loss is the weighted sum of its terms)",
        )
    if batch:
        gathered = facts.value("features.gathered")
        n = global_candidates(int(batch), world, bool(gathered))
        how = f"train_batch_size {batch}" + (f" x world {world}" if gathered else " (not gathered)")
        facts.set("candidates.global", n, f"{facts.source('train.per_device_batch')}; {wsrc}")
        parts, why = (2, "FG-CLIP sums the long- and short-caption losses") if subject else (1, "")
        facts.set("loss.chance.global", parts * math.log(n), f"{parts} x ln {n} ({how}" + (f"; {why})" if why else ")"))
    terms = facts.value("loss.terms") or []
    if subject and batch and "region" in terms:
        k = int(batch) * MAX_BOXES
        ksrc = f"train_batch_size {batch} x {MAX_BOXES} boxes (max_boxes default, an upper bound)"
        est = _boxes_from_fill(facts)
        if est is not None:
            k, ksrc = est
        facts.set("candidates.region.in_batch", k, ksrc)
        queue = 0.0
        at, fill = facts.value("bank.enabled_at_call"), facts.value("bank.fill")
        if at is not None and int(at) >= 0 and fill:
            same = facts.value("bank.same_caption_mean") if facts.value("bank.mask_same_caption") else 0
            queue = max(0.0, float(fill) - float(same or 0))
            facts.set(
                "candidates.region.with_bank",
                round(k + queue, 1),
                f"{ksrc} + queue fill {fill} - {same or 0:.1f} same-caption (masked)",
            )
        if k > 1:
            chance = (math.log(k + queue) + math.log(k)) / 2
            facts.set(
                "loss.chance.region", chance, f"(ln {k + queue:.4g} box->caption + ln {k:.4g} caption->box) / 2; {ksrc}"
            )
    hard = facts.value("data.num_hard_negatives")
    if subject and "hardneg" in terms and hard:
        facts.set("candidates.hardneg", 1 + int(hard), facts.source("data.num_hard_negatives"))
        facts.set("loss.chance.hardneg", math.log(1 + int(hard)), f"ln(1 + {hard} rewrites)")


def _boxes_from_fill(facts: Facts) -> tuple[float, str] | None:
    """Mean boxes per forward call, from the bank's fill before it first wrapped (fill / calls)."""
    series = (facts.value("history.series") or {}).get("memory_bank_fill", [])
    size, accum = facts.value("bank.size"), int(facts.value("train.grad_accum") or 1)
    for step, fill in series:
        if step > 0 and size and 0 < fill < size:
            calls = forward_calls(step, accum)
            k = round(fill / calls, 1)
            return k, (
                f"{k} boxes per forward call: memory_bank_fill {fill:g} after {calls} "
                "forward calls (trainer_state.json)"
            )
    return None
