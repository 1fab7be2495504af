"""A launch's `--deepspeed CONFIG` in a live run: kept where DeepSpeed can start its engine, else
left out with one line saying what was dropped and what that changes in the measurement.

DeepSpeed's engine needs an accelerator (and the package): on a CPU-only box, or without
deepspeed installed, `live` runs the Trainer's own loop instead. ZeRO shards optimizer state,
gradients (stage 2) and parameters (stage 3) across ranks, and offload moves them to the CPU or
NVMe: none of that changes a batch, the candidates of a loss or its logits, which is what the
probes measure. What does change: the optimizer step is the Trainer's (torch AdamW), not
DeepSpeed's fused one, and a DeepSpeed bf16 / fp16 section casts the whole model, where without
it only `--bf16` / `--fp16` of the launch apply (autocast): logits measured in bf16 under the
engine may be fp32 here (bf16-logits judges what is measured).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


def engine_missing(device: str) -> str | None:
    """Why DeepSpeed's engine cannot start here (None: it can)."""
    if importlib.util.find_spec("deepspeed") is None:  # not imported: it prints on import
        return "DeepSpeed is not installed here"
    if device != "cuda":
        return "DeepSpeed's engine needs a GPU and this run is on the CPU"
    return None


def _enabled(section) -> bool:
    """A precision section that casts the model ("auto" follows the launch's --bf16 / --fp16: not a cast of its own)."""
    return isinstance(section, dict) and section.get("enabled") in (True, "true")


def dropped_parts(config: dict) -> list[str]:
    """What the config asks of the engine: `ZeRO stage 2`, `optimizer offload to cpu`, `bf16 cast`."""
    parts = []
    zero = config.get("zero_optimization")
    if isinstance(zero, dict):
        stage = zero.get("stage")
        if stage is not None:
            parts.append(f"ZeRO stage {stage}")
        for what in ("optimizer", "param"):
            offload = zero.get(f"offload_{what}")
            if isinstance(offload, dict) and offload.get("device") not in (None, "none"):
                parts.append(f"{'optimizer' if what == 'optimizer' else 'parameter'} offload to {offload['device']}")
    for dtype in ("bf16", "fp16"):
        if _enabled(config.get(dtype)):
            parts.append(f"its {dtype} cast of the whole model")
    return parts


def deepspeed_note(value: str, directory: Path | None, device: str) -> str | None:
    """None when the launch's DeepSpeed runs as given; else the one line for leaving it out."""
    why = engine_missing(device)
    if why is None:
        return None
    path = Path(value)
    if not path.is_absolute() and directory is not None:
        path = directory / path
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        config, unread = {}, f" (its config {value} is not readable here: {getattr(err, 'strerror', None) or err})"
    else:
        unread = ""
    parts = dropped_parts(config if isinstance(config, dict) else {})
    what = ", ".join(parts) if parts else "its engine"
    return (
        f"--deepspeed {value} left out: {why}; dropped {what}{unread}. The batches, candidates and logits "
        "the probes measure are the same (ZeRO and offload split where state lives, not what a loss "
        "sees); the optimizer step is the Trainer's AdamW, and precision follows the launch's "
        "--bf16 / --fp16 under autocast"
    )
