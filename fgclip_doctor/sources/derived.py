"""Derived facts: batch x world x accumulation, run length in both step units, the bank's
switch-on step, candidates per loss row, each term's chance level and floor, temperatures.

The one place every command derives them: check-config and live from the launch's facts
(`derive_run`, and `derive_world` for `live --nproc`), inspect-ckpt from a checkpoint's
(`derive_checkpoint_candidates`); all three then `derive_levels` (chance, floor, temperatures).
The step arithmetic is `fgclip_doctor.units`; the loss levels' formulas are here (below); what differs
between commands is only which facts they start from, and so the provenance each value cites.
Imports only the ground floor.
"""

from __future__ import annotations

import math
from fractions import Fraction

from fgclip_doctor.facts import Facts
from fgclip_doctor.units import (
    forward_calls,
    global_batch,
    global_candidates,
    steps_for_epochs,
    switch_on_step,
    temperature,
)

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
        if steps is None:  # nan, inf or an overflowing count of epochs: no run has that many steps
            epochs = facts.value("train.epochs")
            facts.mark_unknown("train.optimizer_steps", f"num_train_epochs {epochs:g} counts no finite run")
    else:
        steps = None
        for why in facts.why("train.max_steps") + facts.why("train.dataset_size") + facts.why("train.epochs"):
            facts.mark_unknown("train.optimizer_steps", why)  # the run's length: why its parts are not known
    if steps is not None:
        facts.set("train.optimizer_steps", steps, src)
        facts.set("train.forward_calls", forward_calls(steps, accum), "optimizer_steps × accumulation")
    # Candidates per loss row: unknown when the world is > 1 and gathering is unknown.
    gathered, queue = facts.value("features.gathered"), facts.value("loss.global.queue")
    if queue is not None:  # the local keys and the queue (ALBEF's ITC): the queue holds the other ranks'
        src = f"per_device ({ps}) + the queue ({facts.source('loss.global.queue')})"
        facts.set("candidates.global", per_device + queue, src)
    elif gathered or world == 1:
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
        # exact (a Fraction of the mean): a batch past float range (10**400) must not overflow
        k = max(1, round(Fraction(per_image) * per_device)) if per_image > 0 else 0  # max_boxes <= 0 keeps no box
        how = "mean boxes per image" if "data.boxes_per_image" in facts else "max_boxes (upper bound)"
        if k == 0:
            how = f"max_boxes {facts.value('data.max_boxes')} ({facts.source('data.max_boxes')}), which keeps no box"
        facts.set("candidates.region.in_batch", k, f"per_device × {how}, this rank's boxes")
        if facts.value("bank.enabled"):
            facts.set("candidates.region.with_bank", k + facts.value("bank.size"), "in-batch + bank.size")
    if "bank.warmup_forward_calls" in facts:
        facts.set(
            "bank.switch_on_step",
            switch_on_step(facts.value("bank.warmup_forward_calls"), accum),
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
    if not batch:
        _why_no_chance(facts, "train.per_device_batch")
    if batch:
        gathered = facts.value("features.gathered")
        n = global_candidates(int(batch), world, bool(gathered))
        how = f"train_batch_size {batch}" + (f" x world {world}" if gathered else " (not gathered)")
        facts.set("candidates.global", n, f"{facts.source('train.per_device_batch')}; {wsrc}")
        parts, why = (2, "FG-CLIP sums the long- and short-caption losses") if subject else (1, "")
        set_levels(facts, "global", [(parts, n)], f"{parts} x level({n}) ({how}" + (f"; {why})" if why else ")"))
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
            set_levels(
                facts,
                "region",
                [(0.5, k + queue), (0.5, k)],
                f"(level({k + queue:.4g}) box->caption + level({k:.4g}) caption->box) / 2; {ksrc}",
            )
    hard = facts.value("data.num_hard_negatives")
    if subject and "hardneg" in terms and hard:
        facts.set("candidates.hardneg", 1 + int(hard), facts.source("data.num_hard_negatives"))
        set_levels(facts, "hardneg", [(1, 1 + int(hard))], f"level(1 + {hard} rewrites)")
    derive_temperatures(facts)


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


# ---- loss levels: chance and floor of one row of N candidates ------------------------------------
# Logits are cosine similarities times the temperature T = e^s (s the ln-scale), so every logit
# lies in [-T, T] (plus a bias b for sigmoid losses).
#
# softmax cross-entropy, loss = ln(1 + sum_j e^(l_j - l_pos)):
#   chance = ln N (all logits equal: the model tells nothing apart);
#   floor  = ln(1 + (N - 1) e^(-2T)): the positive at +T, every negative at -T. With s = 0
#            (T 1) and N = 64 the floor is 2.25 = 0.54 x ln 64; at CLIP's 2.6592 (T 14.3) ~ 0.
# sigmoid (SigLIP, FG-CLIP 2), loss per row = -sum_j ln sigmoid(z_j (T cos_j + b)), z = +1 for the
# positive and -1 for the N - 1 negatives (SigLIP sums over the row and averages over rows):
#   chance = the best a constant logit c can do: sigmoid(c) = 1/N, which gives
#            ln N + (N - 1) ln(N / (N - 1))   (about ln N + 1; 5.15 for N = 64);
#   floor  = min over b of softplus(-T - b) + (N - 1) softplus(b - T): the positive at +T, the
#            negatives at -T, with the best bias (the learned one can only do worse).

LOSS_KINDS = ("softmax", "sigmoid")


def _softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def chance_level(n: float, kind: str = "softmax") -> float:
    """The loss of a row of `n` candidates when the model tells nothing apart (nats)."""
    if n <= 1:
        return 0.0
    if kind == "sigmoid":  # (n - 1) ln(n / (n - 1)) -> 1 as n grows (and n may be past float range)
        return math.log(n) + ((n - 1) * math.log(n / (n - 1)) if n < 2**53 else 1.0)
    return math.log(n)


def loss_floor(n: float, scale: float, kind: str = "softmax") -> float:
    """The lowest loss a row of `n` candidates can reach with cosine logits at ln-scale `scale`."""
    t = math.exp(min(scale, 50.0))
    if n <= 1:
        return 0.0
    if kind == "sigmoid":
        m = float(min(n - 1, 1e300))  # candidates past float range: the floor is astronomically large anyway
        f = lambda b: _softplus(-t - b) + m * _softplus(b - t)  # convex in b
        lo, hi = -t - 60.0, t + 60.0
        for _ in range(200):  # ternary search on a convex function
            m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
            lo, hi = (lo, m2) if f(m1) < f(m2) else (m1, hi)
        return f((lo + hi) / 2)
    return _softplus(math.log(n - 1) - 2 * t)  # ln(1 + (n - 1) e^-2t), in logs: n may be past float range


#: loss term (or its `/reverse` direction in live) -> the scale its logits use
TERM_SCALE = {"global": "global", "region": "finegrained", "hardneg": "hardneg"}


def term_scale(facts: Facts, term: str) -> str | None:
    """The scale fact (`scale.<scale>.value`, else `.init`) of a term's logits; for code the doctor
    does not know (terms named by call site), the one scale the model has."""
    scale = TERM_SCALE.get(term.split("/")[0])
    if scale is None:
        known = {n.split(".")[1] for n in facts if n.startswith("scale.") and n.endswith((".value", ".init"))}
        known.discard("clamp")
        scale = next(iter(known)) if len(known) == 1 else None
    if scale is None:
        return None
    for kind in ("value", "init"):
        if f"scale.{scale}.{kind}" in facts:
            return f"scale.{scale}.{kind}"
    return None


def term_kind(facts: Facts, term: str) -> str:
    """softmax or sigmoid: what the code reader, the weights (a logit_bias) or the probe said."""
    kind = facts.value(f"loss.{term.split('/')[0]}.kind") or facts.value(f"loss.{term}.kind")
    return "sigmoid" if kind == "sigmoid" else "softmax"


def set_levels(facts: Facts, term: str, parts: list[tuple[float, float]], how: str) -> None:
    """`loss.chance.<term>` and, with the term's scale known, `loss.floor.<term>`: the sum over
    the loss's parts of weight x level(candidates), e.g. FG-CLIP's global term [(2, N)]."""
    kind = term_kind(facts, term)
    facts.set(f"loss.chance.{term}", sum(w * chance_level(n, kind) for w, n in parts), f"{kind} chance: {how}")
    name = term_scale(facts, term)
    if name is not None:
        s = float(facts.value(name))
        facts.set(
            f"loss.floor.{term}",
            sum(w * loss_floor(n, s, kind) for w, n in parts),
            f"{kind} floor at {name} = {s:.4g} (T {temperature(s):.3g}): {how}",
        )
    elif (scale := TERM_SCALE.get(term.split("/")[0])) is not None:  # why the floor is absent
        for why in facts.why(f"scale.{scale}.init"):
            facts.mark_unknown(f"loss.floor.{term}", why)


def _why_no_chance(facts: Facts, *names: str) -> None:
    """Why the global term has no chance level: why the facts its candidates come from are absent."""
    for name in names:
        for why in facts.why(name):
            facts.mark_unknown("loss.chance.global", why)


def derive_temperatures(facts: Facts) -> None:
    """`scale.<scale>.<kind>.temperature` = e^value for every known init, value and base."""
    for name in [n for n in facts if n.startswith("scale.") and n.endswith((".init", ".value", ".base"))]:
        v = facts.value(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            facts.set(f"{name}.temperature", math.exp(min(float(v), 700.0)), f"exp({name}) ({facts.source(name)})")


def derive_config_levels(facts: Facts) -> None:
    """check-config: each term's chance and floor at the scales' start, from the derived candidates
    (FG-CLIP's global term sums the long- and short-caption losses: twice the one-loss level)."""
    subject = bool(facts.value("run.subject_known"))
    n = facts.value("candidates.global")
    if not n:
        _why_no_chance(facts, "candidates.global", "run.world_size", "train.per_device_batch")
    if n:
        parts = 2 if subject else 1
        set_levels(facts, "global", [(parts, n)], f"{parts} x level({n} candidates)")
    terms = facts.value("loss.terms") or []
    k = facts.value("candidates.region.in_batch")
    if "region" in terms and k:
        set_levels(facts, "region", [(0.5, k), (0.5, k)], f"({k} box->caption + {k} caption->box) / 2, before the bank")
    h = facts.value("candidates.hardneg")
    if "hardneg" in terms and h:
        set_levels(facts, "hardneg", [(1, h)], f"level({h} candidates: 1 + rewrites)")
    derive_temperatures(facts)
