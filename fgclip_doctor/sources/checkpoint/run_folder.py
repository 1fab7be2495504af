"""A run's output_dir: its checkpoint-N folders, the newest (as transformers picks it), and a
checkpoint's step (from its name, else its trainer_state.json)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.checkpoint.layout import read_trainer_state

# transformers.trainer_utils.PREFIX_CHECKPOINT_DIR / _re_checkpoint, copied (not imported) so
# that reading a run dir does not import transformers; a test keeps the two in step.
_RE_CHECKPOINT = re.compile(r"^checkpoint\-(\d+)$")


def list_checkpoints(output_dir: object) -> list[Path]:
    """`checkpoint-N` sub-folders of a run's output_dir, by step (ties by name).

    Same match as transformers: exactly `checkpoint-<digits>` and a directory. A missing
    output_dir has no checkpoints (a run would start fresh), so it gives [].
    """
    d = Path(str(output_dir))
    if not d.exists():
        return []
    if not d.is_dir():
        raise DoctorInputError(output_dir, "not a directory")
    found = [
        (int(m.group(1)), name) for name in os.listdir(d) if (m := _RE_CHECKPOINT.search(name)) and (d / name).is_dir()
    ]
    return [d / name for _, name in sorted(found)]


def latest_checkpoint(output_dir: object) -> Path | None:
    """The checkpoint `Trainer.train(resume_from_checkpoint=True)` would restore, or None.

    Mirrors transformers.trainer_utils.get_last_checkpoint step for step (same regex, same
    directory test, `max` over os.listdir order, so even equal steps like checkpoint-07 /
    checkpoint-7 resolve the same way); a missing output_dir gives None instead of raising.
    """
    folder = str(output_dir)
    if not os.path.exists(folder):
        return None
    if not os.path.isdir(folder):
        raise DoctorInputError(output_dir, "not a directory")
    found = [
        n for n in os.listdir(folder) if _RE_CHECKPOINT.search(n) is not None and os.path.isdir(os.path.join(folder, n))
    ]
    if not found:
        return None
    return Path(os.path.join(folder, max(found, key=lambda x: int(_RE_CHECKPOINT.search(x).groups()[0]))))


def checkpoint_step(folder: object) -> int | None:
    """Step of a checkpoint folder: from its `checkpoint-N` name, else trainer_state's global_step."""
    m = _RE_CHECKPOINT.search(Path(str(folder)).name)
    if m:
        return int(m.group(1))
    state = read_trainer_state(folder)
    step = state.get("global_step") if state else None
    return step if type(step) is int else None
