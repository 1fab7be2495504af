"""inspect-ckpt's source: targets -> checkpoints, oldest first; one checkpoint -> its Facts and
its row of the trajectory (scales, bank, losses and LR at its step); the across-checkpoint facts.

A target is a checkpoint folder (HF Trainer / DeepSpeed), a run folder holding checkpoint-*
(expanded to its checkpoints, oldest first), or a bare weights file. Files are only ever opened
for reading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.facts import Facts
from fgclip_doctor.series import value_at
from fgclip_doctor.sources.checkpoint.history import history_facts
from fgclip_doctor.sources.checkpoint.layout import find_weights
from fgclip_doctor.sources.checkpoint.run_folder import checkpoint_step, list_checkpoints
from fgclip_doctor.sources.checkpoint.weights import open_weights, read_config, scan_facts, weight_facts
from fgclip_doctor.sources.derived import derive_checkpoint_candidates
from fgclip_doctor.sources.files import display_path
from fgclip_doctor.vocabulary import SCALE_PARAMS

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass
class Checkpoint:
    """One inspected checkpoint: its facts and its row of the trajectory."""

    path: Path
    step: int | None
    facts: Facts
    row: dict


def expand(paths: list[Path]) -> list[Path]:
    """Run folders -> their checkpoint-* (oldest first); checkpoint folders and files as given."""
    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise DoctorInputError(p, "no such file or directory")
        if p.is_dir() and not any(p.iterdir()):
            raise DoctorInputError(p, "empty directory: no checkpoint to inspect")
        found = list_checkpoints(p) if p.is_dir() else []
        out += found or [p]
    unique = list(dict.fromkeys(q.resolve() for q in out))
    steps = {q: checkpoint_step(q) if q.is_dir() else None for q in unique}
    if all(s is not None for s in steps.values()):
        unique.sort(key=lambda q: steps[q])
    return unique


def read_checkpoint(path: Path, scan: bool = False, progress: Progress | None = None) -> Checkpoint:
    """Facts of one checkpoint folder or weights file."""
    facts = Facts()
    config, csrc, history = None, "", None
    if path.is_dir():
        ds = find_weights(path).deepspeed
        ds_files = (ds.model_states, ds.optim_states) if ds else ([], [])
        config = read_config(path)
        csrc = display_path(path / "config.json")
        history = history_facts(path, facts, ds_files)
    weights = open_weights(path)
    row = weight_facts(weights, config, csrc, facts)
    if scan:
        done, total = [0], weights.data_bytes

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        row["nonfinite"] = sum(scan_facts(weights, facts, tick).values())
    for scale in SCALE_PARAMS:  # a layout without the scale: the most precise reason, said first
        for kind in ("init", "value") if scale not in row["scales"] else ():
            why = f"{display_path(path)} holds no {SCALE_PARAMS[scale]} ({row['layout']})"
            facts.mark_unknown(f"scale.{scale}.{kind}", why)
    _why_absent(path, config is None, history is None, facts)
    derive_checkpoint_candidates(facts)
    step = checkpoint_step(path) if path.is_dir() else None
    step = facts.value("train.optimizer_steps_done", step)
    row.update(
        checkpoint=display_path(path),
        step=step,
        losses={
            t: v for t, k in (facts.value("history.loss_keys") or {}).items() if (v := _at(facts, k, step)) is not None
        },
        lr=_at(facts, "learning_rate", step),
        groups=len(facts.value("optim.group_lrs") or []),
    )
    if history is None and path.is_dir():
        row["note"] = "no trainer_state.json"
    return Checkpoint(path, step, facts, row)


#: What a checkpoint's config.json and trainer_state.json (with the optimizer state) would give.
FROM_CONFIG = ("scale.global.init", "scale.finegrained.init", "scale.hardneg.init", "scale.global.base", "model.")
FROM_STATE = (
    "history.",
    "train.optimizer_steps_done",
    "train.learning_rate",
    "train.per_device_batch",
    "optim.",
    "schedule.",
)


def _why_absent(path: Path, no_config: bool, no_state: bool, facts: Facts) -> None:
    """Why the facts of a missing config.json / trainer_state.json are absent (for SKIP reasons)."""
    label = display_path(path)
    bare = f"{label} is a bare weights file, with no config.json or trainer_state.json beside it"
    for absent, names, file in ((no_config, FROM_CONFIG, "config.json"), (no_state, FROM_STATE, "trainer_state.json")):
        for name in names if absent else ():
            facts.mark_unknown(name, bare if not path.is_dir() else f"{label} has no {file}")


def _at(facts: Facts, key: str, step: int | None) -> float | None:
    points = [(int(s), float(v)) for s, v in (facts.value("history.series") or {}).get(key, [])]
    if step is None:
        return points[-1][1] if points else None
    hit = value_at([p for p in points if p[0] <= step], step)
    return hit[1] if hit else None


def trajectory_facts(ckpts: list[Checkpoint], facts: Facts) -> None:
    """Across checkpoints: names, optimizer group counts, and (for layouts whose config does not
    give the true init) the earliest checkpoint's scales as the baseline of logit-scale-frozen."""
    facts.set("ckpt.checkpoints", [c.row["checkpoint"] for c in ckpts], "the targets given")
    counts = {c.row["checkpoint"]: c.row["groups"] for c in ckpts if c.row["groups"]}
    if len(counts) > 1:
        facts.set("optim.group_counts", counts, "optimizer.pt of each checkpoint")
    first, last = ckpts[0], ckpts[-1]
    if len(ckpts) < 2 or first.step is None or last.step is None:
        return
    for scale, value in first.row["scales"].items():
        if f"scale.{scale}.init" not in facts and f"scale.{scale}.value" in facts:
            facts.set(
                f"scale.{scale}.init",
                value,
                f"{first.facts.source(f'scale.{scale}.value')} (step {first.step}, the earliest checkpoint)",
            )
