"""Step units and batch arithmetic: the one place forward calls become optimizer steps.

Two units count a run: forward calls (micro-steps, one per batch per process) and optimizer
steps (one per `accum` forward calls). A count in forward calls is reached at optimizer step
ceil(calls / accum). Ground floor: pure functions, imports nothing of ours; sources derive
facts with them (sources/derived.py), checks and commands say both units with them.
"""

from __future__ import annotations

import math


def optimizer_step(forward_calls: int, accum: int) -> int:
    """The optimizer step in which forward call `forward_calls` happens: ceil(calls / accum)."""
    return -(-int(forward_calls) // int(accum))


def forward_calls(optimizer_steps: int, accum: int) -> int:
    """Forward calls per process in `optimizer_steps` steps."""
    return optimizer_steps * accum


def global_batch(per_device: int, world: int, accum: int) -> int:
    """Samples per optimizer step over all processes."""
    return per_device * world * accum


def global_candidates(per_device: int, world: int, gathered: bool) -> int:
    """Candidates per global-loss row: the batch of every rank when features are gathered."""
    return per_device * world if gathered else per_device


def steps_for_epochs(dataset_size: int, epochs: float, per_device: int, world: int, accum: int) -> int:
    """Optimizer steps of `epochs` epochs, as HF Trainer counts them: batches per epoch per
    process, then optimizer steps per epoch (at least one)."""
    batches = math.ceil(dataset_size / (per_device * world))
    return math.ceil(epochs * max(batches // accum, 1))


def forward_calls_text(calls: int, step: int | None) -> str:
    """'400 forward calls = optimizer step 50' (just the calls when the step is unknown)."""
    return f"{calls} forward calls" + (f" = optimizer step {step}" if step is not None else "")


def forward_call_text(call: int, accum: int) -> str:
    """'forward call 48 = optimizer step 6': when one forward call happens."""
    return f"forward call {call} = optimizer step {optimizer_step(call, accum)}"
