"""Checkpoints as the doctor reads them: which files hold the weights, small tensors, run state.

Never loads a checkpoint whole and never runs anything inside one. safetensors files are read
lazily (header + the few tensors needed, see `safetensors_lazy`); `.bin` / `.pt` pickles only
through `torch.load(weights_only=True, mmap=True)`, whose unpickler builds tensors and plain
containers but refuses every other global; torch is imported only on that path. Every file is
opened read-only: the doctor never writes into what it inspects.
"""

from __future__ import annotations

import enum
import io
import json
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fgclip_doctor.environment import require_torch
from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.checkpoint import safetensors_lazy as stl
from fgclip_doctor.sources.checkpoint.pickles import UNREADABLE_PICKLE
from fgclip_doctor.sources.files import display_path, read_text_file

_NO_WEIGHTS = (
    "no model weights (looked for model.safetensors, model-*-of-*.safetensors + index, "
    "pytorch_model.bin, DeepSpeed global_step*/)"
)
_DS_FILE = re.compile(r"_(model|optim)_states\.pt$")


@dataclass
class DeepSpeedLayout:
    """A DeepSpeed tag folder: `latest` names it (`global_step500`), it holds per-rank states."""

    tag: str
    tag_dir: Path
    model_states: list[Path]  # mp_rank_00_model_states.pt first (ZeRO-3: zero_pp_rank_*_...)
    optim_states: list[Path]  # [bf16_]zero_pp_rank_*_mp_rank_*_optim_states.pt


@dataclass
class WeightsLayout:
    """Where a checkpoint folder keeps its weights.

    kind: "safetensors", "safetensors-sharded", "bin", "bin-sharded" or "deepspeed" (only the
    DeepSpeed states, no HF weights file). `files` in shard order; `weight_map` key -> shard for
    sharded kinds (else empty). `deepspeed` is set whenever the folder has a DeepSpeed tag, also
    next to HF weights (HF Trainer + DeepSpeed writes both; a resume restores the DeepSpeed one).
    """

    dir: Path
    kind: str
    files: list[Path]
    weight_map: dict[str, Path] = field(default_factory=dict)
    index: Path | None = None
    deepspeed: DeepSpeedLayout | None = None


def _plain_name(name: object) -> bool:
    # Index files and `latest` come from strangers: only bare names in this folder, no paths.
    return isinstance(name, str) and name not in ("", ".", "..") and "\\" not in name and Path(name).name == name


def _load_json(path: Path) -> object:
    try:
        return json.loads(read_text_file(path))
    except json.JSONDecodeError as err:
        raise DoctorInputError(path, f"broken JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except RecursionError:  # valid JSON nested deeper than the parser's stack (`[[[[...]]]]`)
        raise DoctorInputError(path, "JSON nested too deeply to read") from None


def _sharded(folder: Path, index_name: str) -> tuple[list[Path], dict[str, Path], Path]:
    index = folder / index_name
    doc = _load_json(index)
    wmap = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wmap, dict) or not wmap:
        raise DoctorInputError(index, "no weight_map object in the shard index")
    files: dict[str, Path] = {}
    out: dict[str, Path] = {}
    for key, shard in wmap.items():
        if not _plain_name(shard):
            raise DoctorInputError(
                index, f"weight_map sends {key!r} to {shard!r}, which is not a file name in this folder"
            )
        files.setdefault(shard, folder / shard)
        out[key] = files[shard]
    for shard, path in sorted(files.items()):
        if not path.is_file():
            keys = [k for k, v in out.items() if v == path]
            raise DoctorInputError(
                index, f"names shard {shard}, which is missing ({len(keys)} tensors, e.g. {keys[0]!r})"
            )
    return [files[s] for s in sorted(files)], out, index


def _find_deepspeed(folder: Path) -> DeepSpeedLayout | None:
    latest = folder / "latest"
    if latest.is_file():
        tag = read_text_file(latest).strip()
        if not _plain_name(tag) or not (folder / tag).is_dir():
            raise DoctorInputError(latest, f"names DeepSpeed tag {tag!r}, but there is no such folder here")
    else:  # no `latest`: DeepSpeed would not resume by itself; report the newest tag anyway
        steps = [
            (int(m.group(1)), p.name)
            for p in folder.glob("global_step*")
            if p.is_dir() and (m := re.fullmatch(r"global_step(\d+)", p.name))
        ]
        if not steps:
            return None
        tag = max(steps)[1]
    tag_dir = folder / tag
    model = sorted(tag_dir.glob("*model_states.pt"), key=lambda p: (not p.name.startswith("mp_rank_00"), p.name))
    if not model:
        raise DoctorInputError(tag_dir, "DeepSpeed tag folder without *_model_states.pt")
    return DeepSpeedLayout(tag, tag_dir, model, sorted(tag_dir.glob("*optim_states.pt")))


def find_weights(folder: object) -> WeightsLayout:
    """Locate the weights of a checkpoint folder, in transformers' order of preference.

    model.safetensors; model.safetensors.index.json + shards; pytorch_model.bin (+ index);
    else a DeepSpeed tag (`latest` -> global_stepN/mp_rank_00_model_states.pt). Raises
    DoctorInputError for a missing folder, a broken index, a missing shard, or no weights.
    """
    d = Path(str(folder))
    if not d.is_dir():
        raise DoctorInputError(folder, "no such directory" if not d.exists() else "not a directory")
    ds = _find_deepspeed(d)
    if (d / "model.safetensors").is_file():
        return WeightsLayout(d, "safetensors", [d / "model.safetensors"], deepspeed=ds)
    if (d / "model.safetensors.index.json").is_file():
        files, wmap, index = _sharded(d, "model.safetensors.index.json")
        return WeightsLayout(d, "safetensors-sharded", files, wmap, index, ds)
    if list(d.glob("model-*-of-*.safetensors")):
        raise DoctorInputError(
            folder,
            "model-*-of-*.safetensors shards without model.safetensors.index.json (transformers cannot load them)",
        )
    if (d / "pytorch_model.bin").is_file():
        return WeightsLayout(d, "bin", [d / "pytorch_model.bin"], deepspeed=ds)
    if (d / "pytorch_model.bin.index.json").is_file():
        files, wmap, index = _sharded(d, "pytorch_model.bin.index.json")
        return WeightsLayout(d, "bin-sharded", files, wmap, index, ds)
    if ds is not None:
        return WeightsLayout(d, "deepspeed", ds.model_states[:1], deepspeed=ds)
    raise DoctorInputError(folder, _NO_WEIGHTS)


# ---- pickles (.bin / .pt): weights-only, never executed ------------------------------------


# Data-only stand-ins for the DeepSpeed classes its optimizer states pickle, so they load without
# importing DeepSpeed: the unpickler creates a bare object and fills its __dict__ (or, for the
# enum, looks a member up by value); there is no DeepSpeed code in the process to run.
class _DSLossScaler:
    """deepspeed.runtime.fp16.loss_scaler.LossScaler: cur_scale, dynamic."""


class _DSDynamicLossScaler(_DSLossScaler):
    """deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler (fp16 runs): cur_scale, cur_iter..."""


class _DSFragmentAddress:
    """deepspeed.utils.tensor_fragment.fragment_address: numel, start."""


class _DSZeroStageEnum(int, enum.Enum):
    """deepspeed.runtime.zero.config.ZeroStageEnum (pickled as a call with the int)."""

    disabled, optimizer_states, gradients, weights = 0, 1, 2, 3


# What DeepSpeed 0.19.7 pickles beyond torch's default allow-list. *_model_states.pt needs none
# (module state dict, param_shapes of torch.Size, a set, ds_config as a plain dict); ZeRO 1-3
# *_optim_states.pt needs these (fp16 adds DynamicLossScaler). Only for DeepSpeed file names.
DEEPSPEED_SAFE_GLOBALS = [
    (_DSLossScaler, "deepspeed.runtime.fp16.loss_scaler.LossScaler"),
    (_DSDynamicLossScaler, "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler"),
    (_DSFragmentAddress, "deepspeed.utils.tensor_fragment.fragment_address"),
    (_DSZeroStageEnum, "deepspeed.runtime.zero.config.ZeroStageEnum"),
]


def _pickle_globals(stream) -> list[str]:
    """Names of the globals a pickle refers to, found by parsing opcodes (nothing is executed)."""
    names: list[str] = []
    trail: list[object] = []  # loose model of the stack: only the last two strings matter
    memo: dict[object, object] = {}
    for op, arg, _ in pickletools.genops(stream):
        n = op.name
        if n in ("GLOBAL", "INST"):
            names.append(str(arg).replace(" ", "."))
        elif n == "STACK_GLOBAL" and len(trail) >= 2:
            names.append(f"{trail[-2]}.{trail[-1]}")
        if n in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            memo[len(memo) if n == "MEMOIZE" else arg] = trail[-1] if trail else None
        elif n not in ("PROTO", "FRAME"):
            strings = n.endswith(("UNICODE", "UNICODE8", "STRING"))
            trail.append(arg if strings else memo.get(arg) if n.endswith("GET") else None)
    return names


def _unsafe_globals(path: Path, allowed: set[str]) -> list[str]:
    """The globals of a refused pickle that torch would not allow: to name them to the user."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals  # private, so guarded

        allowed = allowed | set(_get_allowed_globals())
    except (ImportError, AttributeError, TypeError):  # gone or changed in another torch: name fewer
        pass
    found: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next(n for n in zf.namelist() if n.endswith("data.pkl"))
                with zf.open(member) as fh:
                    found = _pickle_globals(fh)
        else:  # legacy torch.save (several pickles in a row) or a plain pickle
            with path.open("rb") as fh:  # the pickles come first; 64 MB is plenty for them
                head = io.BytesIO(fh.read(64 * 1024 * 1024))
            for _ in range(4):
                found += _pickle_globals(head)
    # naming the culprit is best effort; the refusal stands anyway. Junk opcodes or truncation
    # (pickletools: ValueError), a bad zip, or a zip without data.pkl (next(): StopIteration)
    except (OSError, ValueError, EOFError, StopIteration, zipfile.BadZipFile):
        pass
    found = [re.sub(r"^__builtin__\.", "builtins.", g) for g in found]  # protocol 2 spelling
    bad = [g for g in found if g not in allowed and not re.fullmatch(r"torch\.\w*Storage", g)]
    return list(dict.fromkeys(bad))


#: What torch.load raises on a corrupt or foreign file (pickle's own refusals are handled first):
#: RuntimeError (zip reader, storages), OSError, EOFError (truncation), ValueError (bad pickle
#: bytes, UnicodeDecodeError), KeyError / IndexError / TypeError / AttributeError (the weights-only
#: unpickler on a malformed stack or memo), OverflowError and struct.error (absurd sizes).
UNREADABLE_TORCH_FILE = (RuntimeError, OSError, *UNREADABLE_PICKLE)


def load_torch_file(path: object) -> object:
    """`torch.load(path, map_location="cpu", weights_only=True, mmap=True)` with clear refusals.

    mmap keeps memory flat (zip-format files; legacy / plain pickles cannot be mapped and are
    read with weights_only alone). DeepSpeed state files get `DEEPSPEED_SAFE_GLOBALS`; nothing
    else is allow-listed. A pickle that names any other global is refused with
    DoctorInputError(path, "refused: the pickle wants to run code (<global>); ...").
    """
    import pickle

    p = Path(str(path))
    if not p.is_file():
        raise DoctorInputError(path, "no such file" if not p.exists() else "not a file")
    require_torch(f"reading {p.name} (a torch pickle)")  # the core install has none
    import torch  # lazily: only .bin / .pt inputs pay for it

    with p.open("rb") as fh:
        magic = fh.read(4)
    if not magic:
        raise DoctorInputError(path, "empty file, expected a torch checkpoint")
    is_zip = magic == b"PK\x03\x04"  # torch.save's default zip format
    extra = DEEPSPEED_SAFE_GLOBALS if _DS_FILE.search(p.name) else []
    try:
        # torch's warnings (pickle protocol, ...) would break the CLI's one-line contract.
        with torch.serialization.safe_globals(extra), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        culprits = _unsafe_globals(p, {name for _, name in extra})
        m = re.search(r"GLOBAL ([\w.]+)", str(err))
        culprits = culprits or ([m.group(1)] if m else [])
        if culprits:
            raise DoctorInputError(
                path,
                f"refused: the pickle wants to run code "
                f"({', '.join(culprits[:3])}); only weights-only "
                "pickles are read",
            ) from None
        why = re.search(r"(Unsupported[^\n]*|Trying[^\n]*)", str(err))
        raise DoctorInputError(
            path, "refused: not a weights-only torch pickle" + (f" ({why.group(1).strip()[:200]})" if why else "")
        ) from None
    except UNREADABLE_TORCH_FILE as err:  # corrupt zip, truncation, junk: one line, no trace
        text = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        detail = text if isinstance(err, RuntimeError) and text else f"{type(err).__name__}: {text}"
        if not is_zip and magic[0] != 0x80:  # pickles of protocol >= 2 start with PROTO
            detail = "neither torch.save's zip format nor a pickle"
        detail = detail.rstrip(": ")[:200]
        raise DoctorInputError(path, f"not a readable torch checkpoint ({detail})") from None


def _tensors_of(obj: object) -> dict:
    """The state dict inside a loaded pickle: flat, or under 'module' / 'state_dict' / 'model'."""
    import torch

    if isinstance(obj, dict):
        flat = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if flat:
            return flat
        for key in ("module", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                return _tensors_of(obj[key])
    return {}


# ---- small tensors ---------------------------------------------------------------------------


def _strip(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def read_scalars(
    path_or_dir: object, names: list[str] | None = None, max_numel: int = 64
) -> dict[str, tuple[float | int | list, str]]:
    """Small tensors (0 < numel <= max_numel) of a checkpoint: {key: (value, provenance)}.

    `path_or_dir`: a checkpoint folder (see find_weights; HF weights are preferred over the
    DeepSpeed module states), a .safetensors file, or a .bin / .pt / .pth file. `names`
    restricts to those keys (then only the shards holding them are opened); missing names are
    simply absent. A DDP `module.` prefix is dropped from keys. Values: Python scalars for 0-d
    tensors, nested lists otherwise. Provenance: `checkpoint-500/model.safetensors: logit_scale`.
    """
    p = Path(str(path_or_dir))
    wanted = None if names is None else {_strip(n) for n in names}
    if p.is_dir():
        layout = find_weights(p)
        files = layout.files
        if layout.weight_map and wanted is not None:
            holders = {v for k, v in layout.weight_map.items() if _strip(k) in wanted}
            files = [f for f in files if f in holders]
    elif p.exists():
        files = [p]
    else:
        raise DoctorInputError(path_or_dir, "no such file or directory")
    out: dict[str, tuple[float | int | list, str]] = {}
    for f in files:
        for key, value in _small_tensors(f, wanted, max_numel):
            name = _strip(key)
            if name not in out or not key.startswith("module."):  # unprefixed key wins
                out[name] = (value, f"{display_path(f)}: {key}")
    return out


def _small_tensors(path: Path, wanted: set[str] | None, max_numel: int):
    if path.suffix == ".safetensors":
        header = stl.read_header(path)
        for key, info in header.tensors.items():
            if (
                0 < info.numel <= max_numel
                and info.dtype in stl.DECODABLE
                and (wanted is None or _strip(key) in wanted)
            ):
                arr = stl.read_tensor(header, key)
                yield key, arr.item() if arr.ndim == 0 else arr.tolist()
    elif path.suffix in (".bin", ".pt", ".pth"):
        for key, t in _tensors_of(load_torch_file(path)).items():
            if 0 < t.numel() <= max_numel and (wanted is None or _strip(key) in wanted):
                yield key, t.tolist()  # touches only this tensor's mmapped pages
    else:
        raise DoctorInputError(path, "unsupported weights file (expected .safetensors, .bin, .pt)")


# ---- trainer_state.json -----------------------------------------------------------------------------


def read_trainer_state(folder: object) -> dict | None:
    """`trainer_state.json` of a checkpoint folder (global_step, log_history, ...), or None.

    NaN / Infinity in log_history load as floats (Python's json writes them). Broken JSON ->
    DoctorInputError naming line and column.
    """
    path = Path(str(folder)) / "trainer_state.json"
    if not path.is_file():
        return None
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise DoctorInputError(path, "expected a JSON object")
    return doc
