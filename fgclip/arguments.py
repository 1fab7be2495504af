"""Values fgclip.train refuses, and why: one definition for its own start-up and the doctor.

Each refusal is an `ArgumentError` (a ValueError) naming the flag. The checks that need only the
flags run at start-up (`refused`, called by `fgclip.train.parse`); the ones that need the model's
shapes run where the model is built (`long_positions_problem`, `bank_size_problem`). The doctor's
check-config calls `refused` before it builds the model on the meta device and catches
ArgumentError around that build, so a refused value is a finding there, never a crash.
Imports nothing: the doctor reads it before any model exists.
"""

from __future__ import annotations

from collections.abc import Mapping

#: torch sizes and element counts are int64
INDEX_LIMIT = 2**63 - 1
#: the largest finite float32: the logit scales are float32 parameters (torch's fill_ raises past it)
FLOAT32_MAX = 3.4028234663852886e38


class ArgumentError(ValueError):
    """A flag value fgclip.train cannot run with (`flag` without dashes, its `value`, the `reason`)."""

    def __init__(self, flag: str, value: object, reason: str) -> None:
        super().__init__(f"--{flag} {value}: {reason}")
        self.flag, self.value, self.reason = flag, value, reason


#: flag -> why it must be at least 1 (what the code does with it)
AT_LEAST_ONE = {
    "gradient_accumulation_steps": "the optimizer steps once every this many forward calls",
    "per_device_train_batch_size": "each forward call needs at least one sample",
}

#: Learning rates the subject hands to its optimizer's groups (AdamW raises ValueError below 0).
NON_NEGATIVE_LR = ("learning_rate", "text_model_lr", "roi_projection_lr")


def long_positions_problem(long_rows: int, base_rows: int, keep: int) -> str | None:
    """Why the long text position table cannot have `long_rows` rows (None when it can): FG-CLIP
    copies the first `keep` rows of the base's `base_rows`-row table and interpolates the rest 4x."""
    want = keep + 4 * (base_rows - keep)
    if long_rows == want:
        return None
    return (
        f"FG-CLIP stretches the {base_rows}-row text position table 4x after its first {keep} rows, "
        f"to exactly {want} rows (max_seq_length {want})"
    )


def bank_size_problem(size: int, dim: int = 1) -> str | None:
    """Why a memory bank of `size` rows of `dim` features cannot be built (None when it can)."""
    if size < 1:
        return "the memory bank's queue needs at least one row (enqueue writes at ptr modulo its size)"
    if size * max(int(dim), 1) > INDEX_LIMIT:
        return f"a queue of {size} x {dim} features is more elements than a tensor can hold (2**63 - 1)"
    return None


def scale_init_problem(value: object) -> str | None:
    """Why a logit-scale init of `value` (an ln-scale) cannot be stored (None when it can): the scales
    are float32 parameters, filled with it at build; nan and inf start no temperature either."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if not abs(value) <= FLOAT32_MAX:  # also nan
        return f"the logit scales are float32 parameters: an ln-scale must be finite, within +-{FLOAT32_MAX:.4g}"
    return None


def refused(values: Mapping[str, object]) -> list[ArgumentError]:
    """The flag values (`values`: flag name -> typed value, None when not known) fgclip.train
    refuses before it builds anything."""
    out = []
    for flag, why in AT_LEAST_ONE.items():
        v = values.get(flag)
        if isinstance(v, int) and v < 1:
            out.append(ArgumentError(flag, v, f"must be at least 1: {why}"))
    for flag in NON_NEGATIVE_LR:
        v = values.get(flag)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            out.append(ArgumentError(flag, v, "must not be negative: torch's optimizers refuse it"))
    init = values.get("logit_scale_init_value")
    if why := scale_init_problem(init):
        out.append(ArgumentError("logit_scale_init_value", init, why))
    size = values.get("memory_bank_size")
    if values.get("use_memory_bank", True) and isinstance(size, int) and (why := bank_size_problem(size)):
        out.append(ArgumentError("memory_bank_size", size, why))
    return out
