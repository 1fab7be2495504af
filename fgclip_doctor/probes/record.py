"""What the probes measured in one process, as typed data: the record the facts are built from.

`ProbeCallback.record()` makes one; `live --nproc` ships one per rank as JSON (`to_json` /
`from_json`); sources/live.py turns it into facts. No torch here: a record is plain values.
`history` holds one read-back per interval: {"step", "forward_calls", "terms": {term: sums},
"subject": {statistic: sums}, "grads": {group: sums}, "bank": state | None, "scales"}.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple


class ColumnChange(NamedTuple):
    """A term's logits changed width: from forward call `forward_call` on, `columns` candidates."""

    forward_call: int
    columns: int


@dataclass
class ProbeRecord:
    """One process's measurements over a run."""

    history: list[dict] = field(default_factory=list)  # one read-back per interval (see above)
    forward_calls: int = 0  # the model's forward calls (micro-steps) in this process
    steps_done: int = 0  # Trainer state.global_step at the last event
    world_size: int = 1  # processes of the run (TrainingArguments.world_size at train begin)
    trainer_args: dict = field(default_factory=dict)  # the Trainer's own arguments (TRAINER_ARGS, warmup in steps)
    scale_init: dict[str, float] = field(default_factory=dict)  # ln-scales at train begin, by scale name
    scale_value: dict[str, float] = field(default_factory=dict)  # ln-scales at the last read-back
    scale_trainable: dict[str, bool] = field(default_factory=dict)  # requires_grad of each scale at train begin
    scale_grad_seen: dict[str, bool] = field(default_factory=dict)  # a gradient reached it before a step
    groups: list[dict] = field(default_factory=list)  # optimizer groups: {name, lr, weight_decay, params}
    trainable: list[str] = field(default_factory=list)  # parameters with requires_grad at install (names)
    lrs: dict[str, float] = field(default_factory=dict)  # LR of each group at the last sampled step
    terms: list[str] = field(default_factory=list)  # terms (or call sites) cross-entropy saw, first seen first
    columns: dict[str, list[ColumnChange]] = field(default_factory=dict)  # term -> width changes
    rows: dict[str, int] = field(default_factory=dict)  # term -> rows of its last logits
    dtypes: dict[str, str] = field(default_factory=dict)  # term -> dtype of its last logits
    # the model's config._name_or_path at train begin: the folder / hub name from_pretrained read,
    # "" for a model built from its config, None when the model has no HF config
    model_source: str | None = None
    # foreign code: {"placed": {term/part: module:qualname}, "missing": {term/part: why},
    # "fallback": why calls are also named by call site, or None}; {} for the bundled subject
    placement: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-able dict (column changes as [call, columns] pairs)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ProbeRecord:
        """The record `to_json` wrote."""
        fields = dict(data)
        fields["columns"] = {t: [ColumnChange(*c) for c in cs] for t, cs in data["columns"].items()}
        return cls(**fields)
