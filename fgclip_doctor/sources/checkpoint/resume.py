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
    if facts.value("train.auto_resume") and "train.auto_resume_path" in facts:
        _auto_path(facts, directory, directory_source)
        return
    out = facts.value("train.output_dir")
    if not out:
        _explicit_file(facts, directory, directory_source)
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
        if not target.exists():
            raise DoctorInputError(explicit, f"--resume_from_checkpoint names no checkpoint (from {directory})")
    elif facts.value("train.auto_resume") or str(explicit).lower() == "true":
        target = latest_checkpoint(out_dir)
    if target is None:
        return
    _restored(facts, target)


def _auto_path(facts: Facts, directory: Path | None, directory_source: str) -> None:
    """The code's own auto-resume (`--resume latest`): the file it loads, when it is there."""
    text = facts.value("train.auto_resume_path")
    path = _from(directory, text)
    if path is None:
        facts.mark_unknown("resume.", _relative(text, directory_source))
        return
    if not path.exists():
        facts.set("resume.checkpoints", [], f"{text} does not exist yet (from {directory})")
        return
    weights = (".pt", ".pth", ".bin", ".safetensors")
    found = sorted(p for p in path.glob("*") if p.suffix in weights) if path.is_dir() else [path]
    facts.set("resume.checkpoints", [str(p) for p in found], f"{text} (listed)")
    if found:
        _restored(facts, found[-1])


def _explicit_file(facts: Facts, directory: Path | None, directory_source: str) -> None:
    """An explicit resume without an output_dir (open_clip's `--resume PATH`): what it restores."""
    explicit = facts.value("train.resume_from_checkpoint")
    if not explicit or str(explicit).lower() in ("true", "false", "none"):
        return
    target = _from(directory, explicit)
    if target is None:
        facts.mark_unknown("resume.", _relative(explicit, directory_source))
    elif not target.exists():
        facts.mark_unknown("resume.", f"{explicit} is not on this machine (from {directory}): its content is unknown")
    else:
        _restored(facts, target)


def _restored(facts: Facts, target: Path) -> None:
    """resume.checkpoint, its step and its scales (read lazily); a folder without weights (a save
    killed half way) is resume.unusable: the resume would crash loading it."""
    facts.set(
        "resume.checkpoint",
        str(target),
        facts.source("train.auto_resume") or facts.source("train.resume_from_checkpoint"),
    )
    names = list(SCALE_PARAMS.values()) + list(SCALE_ALIASES)
    try:
        scalars = read_scalars(target, names)
    except DoctorInputError as err:
        if not (target.is_dir() and "no model weights" in str(err)):
            raise
        held = ", ".join(sorted(p.name for p in target.iterdir())[:4]) or "nothing"
        facts.set("resume.unusable", f"{target.name} holds no model weights (only {held})", f"{target} (listed)")
        return
    step = checkpoint_step(target)
    if step is not None:
        facts.set("resume.step", step, f"{target}/trainer_state.json")
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


def _relative(text: object, directory_source: str) -> str:
    return f"{text} is relative to the launch's directory, which is unknown ({directory_source})"
