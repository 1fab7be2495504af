"""What a resume would restore: the checkpoints in a run's output_dir, the one an explicit
`--resume_from_checkpoint` or the code's auto-resume picks, its step, and its logit scales."""

from __future__ import annotations

from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.facts import Facts
from fgclip_doctor.sources.checkpoint.layout import read_scalars
from fgclip_doctor.sources.checkpoint.run_folder import checkpoint_step, latest_checkpoint, list_checkpoints
from fgclip_doctor.vocabulary import SCALE_ALIASES, SCALE_PARAMS


def resume_facts(facts: Facts, directory: Path | None, directory_source: str) -> None:
    """What a resume would restore: checkpoint-* in output_dir, the one the run (or its auto-resume)
    would pick, its step and its scales (read lazily). Relative paths are the launch's: from
    `directory`, the folder it runs in (None: unknown, `directory_source` says why)."""
    out = facts.value("train.output_dir")
    if not out:
        return
    out_dir = _from(directory, out)
    if out_dir is None:
        why = f"{out} is relative to the launch's directory, which is unknown ({directory_source})"
        facts.mark_unknown("resume.", why)
        return
    if not out_dir.is_dir():
        facts.set("resume.checkpoints", [], f"{out} does not exist yet (relative to {directory})")
        return
    found = list_checkpoints(out_dir)
    facts.set("resume.checkpoints", [str(p) for p in found], f"{out} (listed)")
    explicit = facts.value("train.resume_from_checkpoint")
    target = None
    if explicit and str(explicit).lower() not in ("true", "false", "none"):
        target = _from(directory, explicit)
        if target is None:
            why = f"{explicit} is relative to the launch's directory, which is unknown ({directory_source})"
            facts.mark_unknown("resume.checkpoint", why)
            facts.mark_unknown("resume.step", why)
            facts.mark_unknown("resume.scale.", why)
            return
        if not target.is_dir():
            raise DoctorInputError(explicit, f"--resume_from_checkpoint names no checkpoint dir (from {directory})")
    elif facts.value("train.auto_resume") or str(explicit).lower() == "true":
        target = latest_checkpoint(out_dir)
    if target is None:
        return
    facts.set(
        "resume.checkpoint",
        str(target),
        facts.source("train.auto_resume") or facts.source("train.resume_from_checkpoint"),
    )
    step = checkpoint_step(target)
    if step is not None:
        facts.set("resume.step", step, f"{target}/trainer_state.json")
    names = list(SCALE_PARAMS.values()) + list(SCALE_ALIASES)
    scalars = read_scalars(target, names)
    for scale, param in SCALE_PARAMS.items():
        for key in [param] + [a for a, p in SCALE_ALIASES.items() if p == param]:
            if key in scalars:
                value, source = scalars[key]
                facts.set(f"resume.scale.{scale}", float(value), source)
                break


def _from(directory: Path | None, text: object) -> Path | None:
    """`text` as the launch opens it: absolute as written, else from `directory` (None: unknown)."""
    path = Path(str(text))
    return path if path.is_absolute() else None if directory is None else directory / path
