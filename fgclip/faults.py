"""Fault injection for the casebook and the tests: `FGCLIP_FAULT=name[,name]` turns on known faults.

Off by default: with FGCLIP_FAULT unset (every normal run) `active()` is False everywhere and the
subject trains exactly as written. Each fault is one silent mistake from a real codebase, injected
at the one line where that codebase makes it, so a casebook case can run the subject with exactly
one fault and its healthy twin without it. Read at the call, never cached: the casebook turns a
fault on for one in-process run and off again.
"""

from __future__ import annotations

import os

ENV = "FGCLIP_FAULT"

FAULTS = {
    "bank-unnormalised": "the bank queues the projected caption features un-normalised (MoCo normalises keys)",
    "bf16-weights": "the model cast to bfloat16 (DeepSpeed's bf16 mode): logits reach cross-entropy in bf16",
    "bank-unused": "the bank switches on and fills, but its queue never reaches the region head's logits",
    "bank-not-persistent": "memory bank buffers registered persistent=False: not in checkpoints (lightly#993)",
    "pixel-boxes": "box_features feeds pixel-coordinate boxes (x image size) to RoIAlign on the patch grid",
    "roi-spatial-scale": "RoIAlign spatial_scale 1/16 (a detector's stride) on boxes already on the patch grid",
    "eos-cut": "captions cut to the text length after tokenising, dropping EOS from long rows",
    "roi-outside-optimizer": "parameter_groups leaves roi_projection out of the optimizer",
    "scales-outside-optimizer": "parameter_groups leaves the (trainable) logit scales out of the optimizer",
    "frozen-scales": "the logit scales are built with requires_grad=False",
    "scheduler-per-call": "the LR scheduler stepped on every forward call (micro-batch), not per optimizer step",
    "region-image-mix": "each box feature mixed with the whole image's (dose = the image's weight, name:0.9)",
}


def _named() -> dict[str, float]:
    """FGCLIP_FAULT as {name: dose}: `name` has dose 1.0, `name:0.8` dose 0.8."""
    out = {}
    for item in filter(None, os.environ.get(ENV, "").split(",")):
        name, _, value = item.partition(":")
        out[name] = float(value) if value else 1.0
    return out


def active(name: str) -> bool:
    """True when fault `name` is named in FGCLIP_FAULT (comma separated, each `name` or `name:dose`)."""
    return dose(name) > 0


def dose(name: str) -> float:
    """How much of fault `name` FGCLIP_FAULT asks for: 0.0 when it is not named, 1.0 when named
    without a dose, else the number after the colon (`region-image-mix:0.9`)."""
    if name not in FAULTS:
        raise KeyError(f"unknown fault {name!r}; known: {sorted(FAULTS)}")
    return _named().get(name, 0.0)
