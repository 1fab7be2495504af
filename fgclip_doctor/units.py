"""Step units and batch arithmetic: the one place forward calls become optimizer steps.

Two units count a run: forward calls (micro-steps, one per batch per process) and optimizer
steps (one per `accum` forward calls). A count in forward calls is reached at optimizer step
ceil(calls / accum). Ground floor: pure functions; sources derive facts with them
(sources/derived.py), checks and commands say both units with them.

When a warmup counted in forward calls switches on is the subject's own definition
(fgclip/warmup.py, which its memory bank uses: calls count from 1, call c is on when c >= warmup),
loaded here by its file location, never restated: it imports nothing (no torch), and the subject
never imports the doctor (pyproject.toml's contracts), so the one truth lives on the subject's side.
By file location, not `import fgclip.warmup`: inside FG-CLIP's own training process (DoctorCallback
there) `fgclip` is the user's package, which has no `warmup` module.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path


def _subject_warmup():
    """The bundled fgclip/warmup.py as a private module (never `sys.modules["fgclip"]`'s)."""
    path = Path(__file__).resolve().parent.parent / "fgclip" / "warmup.py"
    spec = importlib.util.spec_from_file_location("fgclip_doctor._subject_warmup", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_WARMUP = _subject_warmup()
switch_on_at, reached = _WARMUP.switch_on_at, _WARMUP.reached


def optimizer_step(forward_calls: int, accum: int) -> int:
    """The optimizer step in which forward call `forward_calls` happens: ceil(calls / accum)."""
    return -(-int(forward_calls) // int(accum))


def switch_on_step(warmup: int, accum: int) -> int:
    """The optimizer step in which a warmup of `warmup` forward calls switches on: the step of
    call max(warmup, 1) (fgclip.warmup), so a warmup of 0 is on in step 1, not "step 0"."""
    return optimizer_step(switch_on_at(warmup), accum)


def warmup_reached(warmup: int, run_length: int) -> bool:
    """True when a run of `run_length` events reaches a warmup of `warmup` events (both in forward
    calls, or both in optimizer steps): its last event is the switch-on one or later (fgclip.warmup)."""
    return reached(run_length, warmup)


def forward_calls(optimizer_steps: int, accum: int) -> int:
    """Forward calls per process in `optimizer_steps` steps."""
    return optimizer_steps * accum


def global_batch(per_device: int, world: int, accum: int) -> int:
    """Samples per optimizer step over all processes."""
    return per_device * world * accum


def global_candidates(per_device: int, world: int, gathered: bool) -> int:
    """Candidates per global-loss row: the batch of every rank when features are gathered."""
    return per_device * world if gathered else per_device


def steps_for_epochs(dataset_size: int, epochs: float, per_device: int, world: int, accum: int) -> int | None:
    """Optimizer steps of `epochs` epochs, as HF Trainer counts them: batches per epoch per
    process, then optimizer steps per epoch (at least one). None (unknown) where no run has that
    many: epochs nan or inf, or so many that the count is not a finite float."""
    batches = math.ceil(dataset_size / (per_device * world))
    steps = float(epochs) * max(batches // accum, 1)
    return math.ceil(steps) if math.isfinite(steps) else None


def temperature(ln_scale: float) -> float:
    """e^ln_scale, the inverse temperature a logit scale stands for; inf where a float overflows
    (an ln-scale above 709.78, such as --logit_scale_init_value 1e20), nan for nan."""
    try:
        return math.exp(ln_scale)
    except OverflowError:
        return math.inf


def forward_calls_text(calls: int, step: int | None) -> str:
    """'400 forward calls = optimizer step 50' (just the calls when the step is unknown)."""
    return f"{calls} forward calls" + (f" = optimizer step {step}" if step is not None else "")


def forward_call_text(call: int, accum: int) -> str:
    """'forward call 48 = optimizer step 6': when one forward call happens."""
    return f"forward call {call} = optimizer step {optimizer_step(call, accum)}"


#: below this a loss level is shown as "< 1e-4": float32 cross-entropy reaches no smaller loss in
#: practice, so a floor of 9.9e-86 (T 100 over 4 candidates) would name a level no run can show
LEVEL_SHOWN_MIN = 1e-4


def level_text(value: float | None) -> str:
    """A chance level or loss floor for a table: 3 significant digits, "< 1e-4" below what a loss can show."""
    if value is None:
        return "?"
    return "< 1e-4" if 0 <= value < LEVEL_SHOWN_MIN else f"{value:.3g}"
