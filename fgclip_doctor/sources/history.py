"""What a checkpoint folder says about its run, besides the weights: loss history, schedule, batch.

- `trainer_state.json` (HF Trainer): log_history -> one series per logged key (loss terms,
  logit scales, bank fill, grad_norm, learning_rate), its trend, last value, value at a step,
  NaN / Inf; train_batch_size; global_step / max_steps.
- `training_args.bin`, `optimizer.pt`, `scheduler.pt` (and DeepSpeed's `*_model_states.pt` /
  `*_optim_states.pt`): read by `read_pickle_data`, an unpickler that maps an allow-list of
  globals to inert data stand-ins. Nothing inside is ever called (not even torch's own rebuild
  functions), torch is not imported, and tensors come back as `TensorRef` (dtype, shape) only.
- the LR schedule transformers would follow, recomputed in pure Python (`lr_factor`).
"""
from __future__ import annotations

import collections
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.args import display_path
from fgclip_doctor.sources.checkpoint import read_trainer_state

#: loss term -> its key in the subject's (FG-CLIP's) log_history
TERM_KEYS = {"global": "global_loss", "region": "region_loss", "hardneg": "hardneg_loss"}
_SUMMARY_KEYS = ("train_runtime", "train_loss")  # the end-of-training entry, not a training log


# ---- data-only pickles ------------------------------------------------------------------------

class Stub:
    """A pickled object rebuilt as data: its class name, constructor args and state; never code."""

    args: tuple = ()  # class defaults: NEWOBJ builds instances without calling __init__
    state: object = None

    def __init__(self, *args: object) -> None:
        self.args = args

    def __setstate__(self, state: object) -> None:
        self.state = state

    def get(self, key: str, default: object = None) -> object:
        """A field of the pickled object (its __dict__ / dataclass fields)."""
        s = self.state[1] if isinstance(self.state, tuple) and len(self.state) == 2 else self.state
        if isinstance(s, tuple):  # (dict, slots) from __reduce_ex__ of slotted classes
            s = next((x for x in s if isinstance(x, dict)), None)
        return s.get(key, default) if isinstance(s, dict) else default

    @property
    def value(self) -> object:
        """An enum / device member: the value it was built from."""
        return self.args[0] if len(self.args) == 1 else None


@dataclass(frozen=True)
class TensorRef:
    """A tensor inside a torch pickle, as dtype and shape only (its bytes are never read)."""

    dtype: str
    shape: tuple[int, ...]


def _stub_class(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[-1], (Stub,), {"qualname": qualname})


def _rebuild_tensor(storage, offset, size, *_rest) -> TensorRef:
    return TensorRef(storage if isinstance(storage, str) else "?", tuple(size))


def _reconstructor(cls, base, state=None):  # copyreg._reconstructor, without calling base
    return cls() if isinstance(cls, type) and issubclass(cls, Stub) else Stub(cls, state)


_EXACT = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
    ("builtins", "complex"): complex, ("builtins", "tuple"): tuple, ("builtins", "list"): list,
    ("builtins", "dict"): dict, ("copyreg", "_reconstructor"): _reconstructor,
    ("copyreg", "__newobj__"): lambda cls, *_: _reconstructor(cls, None),
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
    ("torch._tensor", "_rebuild_from_type_v2"): lambda func, _type, args, _state: func(*args),
    ("torch", "Size"): tuple,
}
#: modules whose classes (enums, dataclasses, loss scalers) become stubs; their code never runs
_STUB_MODULES = ("transformers.", "accelerate.", "deepspeed.", "peft.", "trl.")
_STUB_NAMES = re.compile(r"\w*(Arguments|Args)")  # a project's own TrainingArguments subclass


class _DataUnpickler(pickle.Unpickler):
    """Resolves globals to the stand-ins above; anything else is refused before it is called."""

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle's hook
        module = "builtins" if module == "__builtin__" else module
        if (module, name) in _EXACT:
            return _EXACT[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return name[:-len("Storage")] or "Untyped"  # a dtype label for TensorRef
        if module == "torch" and name in ("device", "dtype"):
            return _stub_class(f"torch.{name}")
        if module == "torch":  # torch.float32 and friends: a dtype object, kept as its name
            if re.fullmatch(r"(b?float|u?int|complex|bool)\w*", name):
                return f"torch.{name}"
        if module.startswith(_STUB_MODULES) or _STUB_NAMES.fullmatch(name):
            return _stub_class(f"{module}.{name}")
        raise pickle.UnpicklingError(f"global {module}.{name}")

    def persistent_load(self, pid):  # torch.save's storages: ('storage', type, key, location, n)
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "storage":
            return pid[1]
        raise pickle.UnpicklingError("unsupported persistent id")


def read_pickle_data(path: object) -> object:
    """A torch.save file (zip) or plain pickle, as data: dicts, lists, numbers, Stub, TensorRef.

    Raises DoctorInputError for a pickle naming any global outside the allow-list ("refused:
    the pickle wants to run code (os.system)") and for files that are not pickles.
    """
    p = Path(str(path))
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    raise DoctorInputError(path, "not a torch checkpoint (zip without data.pkl)")
                with zf.open(member) as fh:
                    return _DataUnpickler(fh).load()
        with p.open("rb") as fh:
            return _DataUnpickler(fh).load()
    except DoctorInputError:
        raise
    except pickle.UnpicklingError as err:
        m = re.match(r"global (\S+)", str(err))
        if m:
            raise DoctorInputError(path, f"refused: the pickle wants to run code ({m.group(1)}); "
                                         "only data is read from it") from None
        raise DoctorInputError(path, f"not a readable pickle ({str(err)[:120]})") from None
    except FileNotFoundError:
        raise DoctorInputError(path, "no such file") from None
    except OSError as err:
        raise DoctorInputError(path, f"cannot read: {err.strerror or err}") from None
    except Exception as err:  # noqa: BLE001 - truncated / junk: one line, never a traceback
        raise DoctorInputError(path, f"not a readable pickle ({type(err).__name__}: "
                                     f"{str(err)[:120]})") from None


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
        return [{"key": k, "step": s, "value": v} for k, pts in self.series.items()
                for s, v in pts if not math.isfinite(v)]


def _int(v: object) -> int | None:
    return v if type(v) is int else None


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
    h = RunHistory(path, _int(state.get("global_step")), _int(state.get("max_steps")),
                   float(epoch) if isinstance(epoch, (int, float)) else None,
                   _int(state.get("train_batch_size")), _int(state.get("logging_steps")))
    for entry in logs:
        step = entry.get("step")
        if type(step) is not int or any(k in entry for k in _SUMMARY_KEYS):
            continue
        for key, value in entry.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                h.series.setdefault(key, []).append((step, float(value)))
    for pts in h.series.values():
        pts.sort(key=lambda p: p[0])
    return h


def value_at(points: list[tuple[int, float]], step: int,
             interval: int | None = None) -> tuple[int, float] | None:
    """(logged step, value) of the log nearest to `step` (earlier wins a tie), or None when the
    run has not reached `step` (the last log is more than one logging interval before it)."""
    if not points:
        return None
    gap = interval or (points[-1][0] - points[-2][0] if len(points) > 1 else 0)
    if step > points[-1][0] + max(gap, 0) // 2:
        return None
    return min(points, key=lambda p: (abs(p[0] - step), p[0]))


def trend(points: list[tuple[int, float]]) -> str:
    """falling / flat / rising: mean of the last third against the first third (5 % band)."""
    vals = [v for _, v in points if math.isfinite(v)]
    if len(vals) < 3:
        return "too short"
    third = max(1, len(vals) // 3)
    a, b = sum(vals[:third]) / third, sum(vals[-third:]) / third
    if abs(b - a) <= 0.05 * max(abs(a), 1e-12):
        return "flat"
    return "falling" if b < a else "rising"


# ---- learning-rate schedule ---------------------------------------------------------------------

def lr_factor(kind: str, step: int, warmup: int, total: int, kwargs: dict | None = None) -> float | None:
    """The multiplier transformers' `get_scheduler(kind)` applies to each group's initial LR at
    `step` (transformers/optimization.py, re-derived); None for schedules it cannot recompute."""
    kw = kwargs or {}
    if kind == "constant":
        return 1.0
    if kind not in ("constant_with_warmup", "linear", "cosine", "cosine_with_min_lr",
                    "cosine_with_restarts"):
        return None
    if step < warmup:  # every schedule above warms up linearly from 0
        return float(step) / float(max(1, warmup))
    if kind == "constant_with_warmup":
        return 1.0
    progress = float(step - warmup) / float(max(1, total - warmup))
    if kind == "linear":
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    if kind in ("cosine", "cosine_with_min_lr"):
        cycles = float(kw.get("num_cycles", 0.5))
        f = 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
        rate = kw.get("min_lr_rate", 0.0) if kind == "cosine_with_min_lr" else 0.0
        return max(0.0, f * (1 - float(rate or 0.0)) + float(rate or 0.0))
    if kind == "cosine_with_restarts":
        if progress >= 1.0:
            return 0.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(kw.get("num_cycles", 1)) * progress) % 1.0))))
    return None


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
    return Schedule(str(kind), float(lr) if isinstance(lr, (int, float)) else None, warmup, total,
                    kwargs if isinstance(kwargs, dict) else {}, display_path(path))


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
        if (h.train_batch_size or 0) > 0:  # a batch of 0 or -1 is no batch (and ln of it no chance level)
            facts.set("train.per_device_batch", h.train_batch_size, f"{src}: train_batch_size")
        facts.set("history.series", {k: [list(p) for p in v] for k, v in h.series.items()},
                  f"{src}: log_history")
        facts.set("history.loss_keys", h.loss_keys(), f"{src}: log_history keys")
        facts.set("history.nonfinite", h.nonfinite(), f"{src}: log_history")
        facts.set("history.logging_steps", h.logging_steps, f"{src}: logging_steps")
    args = read_training_args(folder)
    accum = args.get("gradient_accumulation_steps") if args is not None else None
    if type(accum) is int:
        facts.set("train.grad_accum", accum, f"{display_path(folder / 'training_args.bin')}: "
                                             "gradient_accumulation_steps")
    world = world_size(folder, ds_files)
    if world:
        facts.set("run.world_size", *world)
    sched = read_schedule(folder, h.max_steps if h else None, args)
    if sched is not None:
        for name, value in (("type", sched.kind), ("base_lr", sched.base_lr),
                            ("warmup_steps", sched.warmup), ("total_steps", sched.total),
                            ("kwargs", sched.kwargs)):
            facts.set(f"schedule.{name}", value, f"{sched.source}"
                      + (" + trainer_state.json: max_steps" if name == "total_steps" else ""))
    st = read_optim_state(folder, ds_files)
    base_src = st.sched_source
    if st.base_lrs is None and st.group_initial_lrs is not None:  # no scheduler state saved
        st.base_lrs, base_src = st.group_initial_lrs, f"{st.optim_source}: initial_lr"
    for name, value, src in (("schedule.last_epoch", st.last_epoch, st.sched_source),
                             ("schedule.base_lrs", st.base_lrs, base_src),
                             ("schedule.last_lrs", st.last_lrs, st.sched_source),
                             ("optim.group_lrs", st.group_lrs, st.optim_source),
                             ("optim.group_names", st.group_names, st.optim_source),
                             ("optim.group_sizes", st.group_sizes, st.optim_source)):
        facts.set(name, value, src)
    return h
