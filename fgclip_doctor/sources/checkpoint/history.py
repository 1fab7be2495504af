"""What a checkpoint folder says about its run, besides the weights: loss history, schedule, batch.

- `trainer_state.json` (HF Trainer): log_history -> one series per logged key (loss terms,
  logit scales, bank fill, grad_norm, learning_rate) and its NaN / Inf; train_batch_size;
  global_step / max_steps.
- `training_args.bin`, `optimizer.pt`, `scheduler.pt` (and DeepSpeed's `*_model_states.pt` /
  `*_optim_states.pt`): read as data only (sources/checkpoint/pickles.py): the schedule the
  training arguments ask for, and the LR state the optimizer and scheduler saved.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.checkpoint.layout import read_trainer_state
from fgclip_doctor.sources.checkpoint.pickles import Stub, read_pickle_data
from fgclip_doctor.sources.files import display_path
from fgclip_doctor.vocabulary import TERM_KEYS

_SUMMARY_KEYS = ("train_runtime", "train_loss")  # the end-of-training entry, not a training log


# ---- trainer_state.json -------------------------------------------------------------------------


@dataclass
class RunHistory:
    """trainer_state.json as series: {key: [(step, value), ...]} in step order."""

    path: Path
    global_step: int | None = None
    max_steps: int | None = None
    epoch: float | None = None
    train_batch_size: int | None = None
    logging_steps: int | None = None
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return display_path(self.path)

    def loss_keys(self) -> dict[str, str]:
        """Loss term -> log key: the subject's per-term keys, else `loss` as the global term
        (a plain CLIP's loss is its one contrastive loss)."""
        keys = {t: k for t, k in TERM_KEYS.items() if k in self.series}
        return keys or ({"global": "loss"} if "loss" in self.series else {})

    def nonfinite(self) -> list[dict]:
        """Every logged NaN / Inf: [{key, step, value}]."""
        return [
            {"key": k, "step": s, "value": v} for k, pts in self.series.items() for s, v in pts if not math.isfinite(v)
        ]


def _int(v: object) -> int | None:
    return v if type(v) is int else None


def _positive(v: int | None) -> int | None:
    """A count the Trainer writes as >= 1; anything else is not a batch / interval: unknown."""
    return v if v is not None and v >= 1 else None


def load_history(folder: object) -> RunHistory | None:
    """The history of a checkpoint folder, or None without trainer_state.json (DoctorInputError
    for broken JSON or a log_history that is not a list of objects)."""
    state = read_trainer_state(folder)
    if state is None:
        return None
    path = Path(str(folder)) / "trainer_state.json"
    logs = state.get("log_history", [])
    if not isinstance(logs, list) or not all(isinstance(e, dict) for e in logs):
        raise DoctorInputError(path, "log_history is not a list of objects")
    epoch = state.get("epoch")
    h = RunHistory(
        path,
        _int(state.get("global_step")),
        _int(state.get("max_steps")),
        float(epoch) if isinstance(epoch, (int, float)) else None,
        _positive(_int(state.get("train_batch_size"))),
        _positive(_int(state.get("logging_steps"))),
    )
    for entry in logs:
        step = entry.get("step")
        if type(step) is not int or any(k in entry for k in _SUMMARY_KEYS):
            continue
        for key, value in entry.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                h.series.setdefault(key, []).append((step, float(value)))
    for pts in h.series.values():
        pts.sort(key=lambda p: p[0])
    return h


# ---- learning-rate schedule ---------------------------------------------------------------------


@dataclass
class Schedule:
    """What the training arguments ask of the LR: kind, base LR, warmup and total steps."""

    kind: str
    base_lr: float | None
    warmup: int
    total: int | None
    kwargs: dict
    source: str


def read_training_args(folder: Path) -> Stub | None:
    """training_args.bin as a data stub (None when absent or not an object)."""
    path = folder / "training_args.bin"
    args = read_pickle_data(path) if path.is_file() else None
    return args if isinstance(args, Stub) else None


def read_schedule(folder: Path, total: int | None, args: Stub | None = None) -> Schedule | None:
    """The schedule from training_args.bin (warmup_steps < 1 is a ratio, as transformers reads it)."""
    path = folder / "training_args.bin"
    args = args if args is not None else read_training_args(folder)
    if args is None:
        return None
    kind = args.get("lr_scheduler_type")
    kind = kind.value if isinstance(kind, Stub) else kind
    warm = args.get("warmup_steps") or 0
    ratio = args.get("warmup_ratio") or 0
    if isinstance(warm, float) and warm < 1:
        ratio, warm = warm, 0
    warmup = int(warm) if warm else (math.ceil(total * ratio) if total and ratio else 0)
    lr = args.get("learning_rate")
    kwargs = args.get("lr_scheduler_kwargs")
    return Schedule(
        str(kind),
        float(lr) if isinstance(lr, (int, float)) else None,
        warmup,
        total,
        kwargs if isinstance(kwargs, dict) else {},
        display_path(path),
    )


@dataclass
class OptimState:
    """LR state saved with a checkpoint: the scheduler's and the optimizer's view of it."""

    last_epoch: int | None = None
    base_lrs: list[float] | None = None
    last_lrs: list[float] | None = None
    group_lrs: list[float] | None = None
    group_names: list[str] | None = None
    group_initial_lrs: list[float] | None = None
    group_sizes: list[int] | None = None
    sched_source: str = ""
    optim_source: str = ""


def _groups(opt: object) -> list[dict] | None:
    if isinstance(opt, dict):
        if isinstance(opt.get("param_groups"), list):
            return opt["param_groups"]
        for key in ("optimizer_state_dict", "base_optimizer_state", "optimizer"):
            if key in opt:
                found = _groups(opt[key])
                if found is not None:
                    return found
    return None


def read_optim_state(folder: Path, ds_files: tuple[list[Path], list[Path]] = ([], [])) -> OptimState:
    """scheduler.pt + optimizer.pt (HF Trainer), else DeepSpeed's lr_scheduler (model states) and
    base optimizer groups (rank-0 optimizer states)."""
    st = OptimState()
    model_states, optim_states = ds_files
    sched_path = folder / "scheduler.pt"
    sched = read_pickle_data(sched_path) if sched_path.is_file() else None
    if sched is None and model_states:
        sched = (read_pickle_data(model_states[0]) or {}).get("lr_scheduler")
        sched_path = model_states[0]
    if isinstance(sched, dict):
        st.last_epoch = _int(sched.get("last_epoch"))
        st.base_lrs = [float(x) for x in sched.get("base_lrs") or []] or None
        st.last_lrs = [float(x) for x in sched.get("_last_lr") or []] or None
        st.sched_source = display_path(sched_path)
    opt_path = folder / "optimizer.pt"
    if not opt_path.is_file() and optim_states:
        opt_path = optim_states[0]
    groups = _groups(read_pickle_data(opt_path)) if opt_path.is_file() else None
    if groups:
        st.group_lrs = [float(g.get("lr", math.nan)) for g in groups]
        st.group_names = [str(g.get("name", i)) for i, g in enumerate(groups)]
        st.group_sizes = [len(g.get("params", [])) for g in groups]
        initial = [g.get("initial_lr") for g in groups]
        if all(isinstance(x, (int, float)) for x in initial):
            st.group_initial_lrs = [float(x) for x in initial]
        st.optim_source = display_path(opt_path)
    return st


def world_size(folder: Path, ds_files: tuple[list[Path], list[Path]] = ([], [])) -> tuple[int, str] | None:
    """Processes of the run that wrote `folder`: Trainer saves one rng_state_<rank>.pth per
    process when there are several; DeepSpeed one zero_pp_rank_<r>_* optimizer file per rank."""
    ranks = list(folder.glob("rng_state_*.pth"))
    if ranks:
        return len(ranks), f"{display_path(folder)}/rng_state_*.pth ({len(ranks)} files)"
    if (folder / "rng_state.pth").is_file():
        return 1, f"{display_path(folder / 'rng_state.pth')} (one process)"
    optim = [p for p in ds_files[1] if re.search(r"zero_pp_rank_\d+_mp_rank_00_", p.name)]
    if optim:
        return len(optim), f"{display_path(optim[0].parent)}/*zero_pp_rank_*_optim_states.pt"
    return None


def history_facts(folder: Path, facts, ds_files: tuple[list[Path], list[Path]] = ([], [])) -> RunHistory | None:
    """Facts from trainer_state.json, training_args.bin and the saved optimizer / scheduler."""
    h = load_history(folder)
    if h is not None:
        src = h.source
        facts.set("train.optimizer_steps_done", h.global_step, f"{src}: global_step")
        facts.set("train.epoch", h.epoch, f"{src}: epoch")
        facts.set("train.max_steps", h.max_steps, f"{src}: max_steps")
        facts.set("train.optimizer_steps", h.max_steps, f"{src}: max_steps")
        facts.set("train.per_device_batch", h.train_batch_size, f"{src}: train_batch_size")
        facts.set("history.series", {k: [list(p) for p in v] for k, v in h.series.items()}, f"{src}: log_history")
        facts.set("history.loss_keys", h.loss_keys(), f"{src}: log_history keys")
        facts.set("history.nonfinite", h.nonfinite(), f"{src}: log_history")
        facts.set("history.logging_steps", h.logging_steps, f"{src}: logging_steps")
    args = read_training_args(folder)
    accum = args.get("gradient_accumulation_steps") if args is not None else None
    if type(accum) is int:
        facts.set(
            "train.grad_accum", accum, f"{display_path(folder / 'training_args.bin')}: gradient_accumulation_steps"
        )
    world = world_size(folder, ds_files)
    if world:
        facts.set("run.world_size", *world)
    sched = read_schedule(folder, h.max_steps if h else None, args)
    if sched is not None:
        for name, value in (
            ("type", sched.kind),
            ("base_lr", sched.base_lr),
            ("warmup_steps", sched.warmup),
            ("total_steps", sched.total),
            ("kwargs", sched.kwargs),
        ):
            facts.set(
                f"schedule.{name}",
                value,
                f"{sched.source}" + (" + trainer_state.json: max_steps" if name == "total_steps" else ""),
            )
    st = read_optim_state(folder, ds_files)
    base_src = st.sched_source
    if st.base_lrs is None and st.group_initial_lrs is not None:  # no scheduler state saved
        st.base_lrs, base_src = st.group_initial_lrs, f"{st.optim_source}: initial_lr"
    for name, value, src in (
        ("schedule.last_epoch", st.last_epoch, st.sched_source),
        ("schedule.base_lrs", st.base_lrs, base_src),
        ("schedule.last_lrs", st.last_lrs, st.sched_source),
        ("optim.group_lrs", st.group_lrs, st.optim_source),
        ("optim.group_names", st.group_names, st.optim_source),
        ("optim.group_sizes", st.group_sizes, st.optim_source),
    ):
        facts.set(name, value, src)
    return h
