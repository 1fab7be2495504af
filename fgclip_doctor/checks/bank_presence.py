"""Whether the model has a memory bank the bank rules can judge: SKIP when that is unknown, when
there is none, or when its negatives come from a queue of keys used from the first step (ALBEF /
BLIP / MoCo: nothing switches on, so there is no warmup to check)."""

from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, RuleContext
from fgclip_doctor.facts import Facts

NO_BANK = "no memory bank in this model"
#: ALBEF / BLIP / MoCo: a queue of keys in the loss from the first step, no switch-on to check
QUEUE_NOT_BANK = "no memory bank with a warmup in this model: its queue of keys is in the loss from the first step"


def skip_without_bank(facts: Facts, ctx: RuleContext) -> Finding | None:
    """SKIP when it is unknown whether the model has a memory bank, or it has none; else None."""
    if skip := ctx.require(facts, "bank.enabled"):
        return skip
    if not facts.value("bank.enabled"):
        queued = [n for n in facts if n.startswith("loss.") and n.endswith(".keys_queued") and facts.value(n)]
        if queued:
            return ctx.skip(QUEUE_NOT_BANK, ctx.sources_of(facts, *queued))
        return ctx.skip(NO_BANK, ctx.sources_of(facts, "bank.enabled"))
    return None
