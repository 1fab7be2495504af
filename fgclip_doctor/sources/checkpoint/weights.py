"""Weights -> facts: logit scales, memory-bank state, roi_projection, NaN / Inf.

Reads only what a check needs: the safetensors header, then the few small tensors (scales,
bank counters), a sample of the bank queue, roi_projection, so the cost does not grow with the
checkpoint. `.bin` / `.pt` / DeepSpeed states go through `load_torch_file` (weights-only,
memory-mapped). numpy is imported only for the bank queue, roi_projection and --scan: a plain
CLIP checkpoint is judged from its header and one scalar. Layouts recognised (keys with a DDP `module.` prefix too):

  fgclip     the subject / FG-CLIP with the team's extensions: logit_scale{,_finegrained,_hardneg},
             roi_projection.*, memory_bank.{queue,queue_ids,ptr,fill,forward_calls,enabled_at_call}
  fgclip-v1  FG-CLIP v1's own spelling `logit_scale_finegraind`
  hf-clip    transformers.CLIPModel: text_model.*, vision_model.*, one logit_scale
  open_clip  visual.*, transformer.*, logit_scale
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.facts import Facts
from fgclip_doctor.sources.checkpoint import safetensors_lazy as stl
from fgclip_doctor.sources.checkpoint.layout import _tensors_of, find_weights, load_torch_file
from fgclip_doctor.sources.files import display_path, read_text_file

if TYPE_CHECKING:
    import numpy as np

#: parameter names of each scale, in order of preference (FG-CLIP v1 spells `finegraind`)
SCALE_KEYS = {
    "global": ("logit_scale",),
    "finegrained": ("logit_scale_finegrained", "logit_scale_finegraind"),
    "hardneg": ("logit_scale_hardneg",),
}
BANK = "memory_bank."
BANK_BUFFERS = ("queue", "queue_ids", "ptr", "fill", "forward_calls", "enabled_at_call")
QUEUE_SAMPLE = 256  # rows of the queue read to tell random from filled
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class Weights:
    """One checkpoint's tensors, read lazily: key (without `module.`) -> where its bytes are."""

    label: str
    files: list[Path]
    dtypes: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)  # key -> key as stored (with prefix)
    _where: dict[str, object] = field(default_factory=dict)  # key -> header or torch tensor
    total_bytes: int = 0

    @property
    def data_bytes(self) -> int:
        """Bytes of tensor data (what --scan reads)."""
        return sum(
            w.tensors[self.raw[k]].end - w.tensors[self.raw[k]].begin
            if isinstance(w, stl.SafetensorsHeader)
            else w.numel() * w.element_size()
            for k, w in self._where.items()
        )

    def source(self, key: str) -> str:
        where = self._where[key]
        path = where.path if isinstance(where, stl.SafetensorsHeader) else self.files[0]
        return f"{display_path(path)}: {self.raw[key]}"

    def scalar(self, key: str) -> float:
        """A one-element tensor's value (numpy-free on the safetensors path)."""
        where = self._where[key]
        if isinstance(where, stl.SafetensorsHeader):
            return float(stl.read_scalar(where, self.raw[key]))
        return float(where.reshape(-1)[0].item())

    def read(self, key: str, rows: int | None = None) -> np.ndarray:
        """The tensor as numpy (float32 for bf16); only the first `rows` rows when given."""
        where = self._where[key]
        if isinstance(where, stl.SafetensorsHeader):
            if rows is not None and self.shapes[key]:
                return stl.read_rows(where, self.raw[key], 0, rows)
            return stl.read_tensor(where, self.raw[key])
        t = where if rows is None or not self.shapes[key] else where[:rows]
        return t.detach().float().numpy() if t.is_floating_point() else t.detach().numpy()

    def scan(self, progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """NaN / Inf count of every float tensor, streamed (safetensors) or tensor by tensor."""
        bad: dict[str, int] = {}
        for key, where in self._where.items():
            if isinstance(where, stl.SafetensorsHeader):
                n = stl.count_nonfinite(where, self.raw[key], progress)
            else:
                import torch

                n = int((~torch.isfinite(where)).sum()) if where.is_floating_point() else 0
                if progress is not None:
                    progress(where.numel() * where.element_size())
            if n:
                bad[key] = n
        return bad


def _add(w: Weights, key: str, dtype: str, shape: tuple[int, ...], where: object) -> None:
    name = key[len("module.") :] if key.startswith("module.") else key
    if name in w.raw and not w.raw[name].startswith("module."):
        return  # an unprefixed copy wins over a DDP-prefixed one
    w.raw[name], w.dtypes[name], w.shapes[name], w._where[name] = key, dtype, shape, where


def open_weights(path: Path) -> Weights:
    """The weights of a checkpoint folder (see find_weights) or of one weights file."""
    if path.is_dir():
        layout = find_weights(path)
        files = layout.files
    elif path.is_file():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise DoctorInputError(
                path, "unsupported weights file (expected .safetensors, .bin, .pt, .pth, or a checkpoint folder)"
            )
        files = [path]
    else:
        raise DoctorInputError(path, "no such file or directory")
    w = Weights(display_path(path), files)
    for f in files:
        if f.suffix == ".safetensors":
            header = stl.read_header(f)
            w.total_bytes += header.file_size
            for key, info in header.tensors.items():
                _add(w, key, info.dtype, info.shape, header)
        else:
            w.total_bytes += f.stat().st_size
            for key, t in _tensors_of(load_torch_file(f)).items():
                _add(w, key, str(t.dtype).replace("torch.", ""), tuple(t.shape), t)
    if not w.raw:
        raise DoctorInputError(path, "no tensors in the weights")
    return w


def read_config(folder: Path) -> dict | None:
    """config.json of a checkpoint folder, or None; broken JSON -> DoctorInputError."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(read_text_file(path))
    except json.JSONDecodeError as err:
        raise DoctorInputError(path, f"broken JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except RecursionError:  # valid JSON nested deeper than the parser's stack (`[[[[...]]]]`)
        raise DoctorInputError(path, "JSON nested too deeply to read") from None
    if not isinstance(doc, dict):
        raise DoctorInputError(path, "expected a JSON object")
    return doc


def detect_layout(keys: set[str]) -> str:
    """fgclip, fgclip-v1, hf-clip, open_clip or unknown, from the tensor names alone."""
    if "logit_scale_finegraind" in keys:
        return "fgclip-v1"
    if "logit_scale_finegrained" in keys or "roi_projection.weight" in keys or any(k.startswith(BANK) for k in keys):
        return "fgclip"
    if any(k.startswith("text_model.") for k in keys) and any(k.startswith("vision_model.") for k in keys):
        return "hf-clip"
    if any(k.startswith("visual.") for k in keys) and (any(k.startswith(("transformer.", "text.")) for k in keys)):
        return "open_clip"
    return "unknown"


def _note(seen: dict[str, int], key: str, arr: np.ndarray) -> np.ndarray:
    """Count NaN / Inf in what was read anyway (the nonfinite check without --scan)."""
    import numpy as np

    if arr.dtype.kind == "f":
        seen[key] = seen.get(key, 0) + int(arr.size - np.count_nonzero(np.isfinite(arr)))
    return arr


def _scalar(w: Weights, key: str, seen: dict[str, int]) -> float | None:
    if key not in w.raw or math.prod(w.shapes[key]) != 1:
        return None
    value = w.scalar(key)
    seen[key] = seen.get(key, 0) + (not math.isfinite(value))
    return value


def queue_spread(sample: np.ndarray) -> dict[str, float]:
    """Pairwise cosine of queue rows: {mean, std, random_std = 1/sqrt(D), zero_rows}.

    Random unit rows (an untouched queue) have mean ~ 0 and std ~ 1/sqrt(D); queued caption
    features are correlated (mean well above 0, duplicates at 1)."""
    import numpy as np

    x = sample.reshape(sample.shape[0], -1)
    # rows holding NaN / Inf are nonfinite's (FGD703); the spread is over the others (and casting a
    # signalling NaN would raise numpy's "invalid value" warning onto the report's stderr)
    x = x[np.isfinite(x).all(axis=1)].astype(np.float64)
    norms = np.linalg.norm(x, axis=1)
    zero = int((norms < 1e-12).sum())
    x = x[norms >= 1e-12] / norms[norms >= 1e-12, None]
    out = {
        "rows": int(sample.shape[0]),
        "dim": int(x.shape[1]) if x.ndim == 2 else 0,
        "zero_rows": zero,
        "random_std": 1.0 / math.sqrt(max(1, sample.reshape(sample.shape[0], -1).shape[1])),
    }
    if x.shape[0] < 2:
        return {**out, "mean": math.nan, "std": math.nan}
    cos = x @ x.T
    off = cos[~np.eye(cos.shape[0], dtype=bool)]
    return {**out, "mean": float(off.mean()), "std": float(off.std())}


def looks_random(spread: dict[str, float]) -> bool:
    """True for a queue that was never written: all-zero, or cosines like random unit vectors."""
    if spread["zero_rows"] == spread["rows"]:
        return True
    m, s, r = spread["mean"], spread["std"], spread["random_std"]
    return math.isfinite(m) and abs(m) < 0.5 * r and 0.6 * r < s < 1.5 * r


def weight_facts(w: Weights, config: dict | None, config_src: str, facts: Facts) -> dict:
    """Facts from the weights (+ config.json); returns the checkpoint's row for the trajectory."""
    keys = set(w.raw)
    layout = detect_layout(keys)
    facts.set("ckpt.layout", layout, w.label)
    facts.set("ckpt.tensors", len(keys), w.label)
    facts.set("ckpt.bytes", w.total_bytes, w.label)
    if any(r.startswith("module.") for r in w.raw.values()):
        facts.set("ckpt.prefix", "module.", w.label)
    row: dict = {"layout": layout, "scales": {}}
    seen: dict[str, int] = {}
    for scale, names in SCALE_KEYS.items():
        key = next((k for k in names if k in keys), None)
        value = _scalar(w, key, seen) if key else None
        if value is not None:
            facts.set(f"scale.{scale}.value", value, w.source(key))
            row["scales"][scale] = value
    bias = next((k for k in sorted(keys) if k.rsplit(".", 1)[-1] == "logit_bias"), None)
    if bias is not None:  # SigLIP-style: a learned bias on sigmoid logits
        facts.set("loss.global.kind", "sigmoid", f"{w.source(bias)} (a logit_bias: a sigmoid loss)")
    cfg = config or {}
    subject = layout in ("fgclip", "fgclip-v1") and cfg.get("model_type") in ("fgclip", None)
    if subject and cfg:
        _subject_config(cfg, config_src, facts)
    for scale, value in row["scales"].items():
        init = facts.value(f"scale.{scale}.init")
        if init is not None:
            facts.set(
                f"scale.{scale}.drift",
                value - float(init),
                f"{facts.source(f'scale.{scale}.value')} - {config_src} init",
            )
    if layout == "hf-clip":  # transformers#22252: HF CLIPModel does not gather across ranks
        facts.set("features.gathered", False, f"{w.label}: transformers CLIPModel layout")
    elif layout != "unknown":
        facts.set("features.gathered", True, f"{w.label}: {layout} layout gathers features")
    row["bank"] = _bank_facts(w, cfg, config_src, facts, seen)
    row["roi"] = _roi_facts(w, facts, seen)
    facts.set(
        "weights.nonfinite",
        {k: n for k, n in seen.items() if n},
        f"{w.label}: the {len(seen)} tensors read (scales, bank, roi_projection); --scan reads all",
    )
    facts.set("weights.scanned", False, w.label)
    return row


def _subject_config(cfg: dict, src: str, facts: Facts) -> None:
    """The subject's config.json holds the true inits (from_clip writes the base's scale into
    logit_scale_init_value and the new scales' start into *_init)."""
    base = cfg.get("logit_scale_init_value")
    for scale, key in (
        ("global", "logit_scale_init_value"),
        ("finegrained", "logit_scale_finegrained_init"),
        ("hardneg", "logit_scale_hardneg_init"),
    ):
        v = cfg.get(key)
        v = base if v is None else v
        if isinstance(v, (int, float)):
            facts.set(f"scale.{scale}.init", float(v), f"{src}: {key}")
    if cfg.get("logit_scale_finegrained_init") is not None and isinstance(base, (int, float)):
        # only FGCLIPModel.from_clip sets the new scales' init: the run fine-tuned a CLIP base
        facts.set("model.fine_tuning", True, f"{src}: logit_scale_finegrained_init set (from_clip)")
        facts.set("scale.global.base", float(base), f"{src}: logit_scale_init_value (the base's scale)")
    if "clamp_logit_scale" in cfg:
        facts.set("scale.clamp", bool(cfg["clamp_logit_scale"]), f"{src}: clamp_logit_scale")
    if isinstance(cfg.get("max_logit_scale"), (int, float)):
        facts.set("scale.clamp_max", float(cfg["max_logit_scale"]), f"{src}: max_logit_scale")
    for fact, key in (
        ("bank.warmup_forward_calls", "memory_bank_warmup_steps"),
        ("bank.mask_same_caption", "memory_bank_mask_same_caption"),
        ("data.num_hard_negatives", "num_hard_negatives"),
    ):
        if key in cfg:
            facts.set(fact, cfg[key], f"{src}: {key}")
    terms = (
        ["global"]
        + (["region"] if cfg.get("add_box_loss", True) else [])
        + (["hardneg"] if cfg.get("add_box_loss", True) and cfg.get("use_hard_neg", True) else [])
    )
    facts.set("loss.terms", terms, f"{src}: add_box_loss, use_hard_neg")


def _bank_facts(w: Weights, cfg: dict, src: str, facts: Facts, seen: dict[str, int]) -> dict:
    present = {b: BANK + b in w.raw for b in BANK_BUFFERS}
    wanted = cfg.get("use_memory_bank")
    if not any(present.values()):
        if wanted:
            facts.set("bank.enabled", True, f"{src}: use_memory_bank")
            facts.set("bank.persisted", {b: False for b in BANK_BUFFERS}, f"{w.label}: no memory_bank.* tensors")
        else:
            facts.set(
                "bank.enabled",
                False,
                f"{w.label}: no memory_bank.* tensors" + (f"; {src}: use_memory_bank false" if wanted is False else ""),
            )
        return {}
    facts.set("bank.enabled", True, f"{w.label}: memory_bank.* tensors")
    facts.set("bank.persisted", present, f"{w.label}: memory_bank.*")
    row: dict = {}
    for b, fact in (
        ("ptr", "bank.ptr"),
        ("fill", "bank.fill"),
        ("forward_calls", "bank.forward_calls"),
        ("enabled_at_call", "bank.enabled_at_call"),
    ):
        v = _scalar(w, BANK + b, seen) if present[b] else None
        if v is not None:
            facts.set(fact, int(v), w.source(BANK + b))
            row[b] = int(v)
    if present["queue"]:
        key = BANK + "queue"
        size = w.shapes[key][0] if w.shapes[key] else 0
        facts.set("bank.size", size, w.source(key))
        row["size"] = size
        fill = row.get("fill")
        n = min(QUEUE_SAMPLE, fill if fill and fill > 1 else size)
        spread = queue_spread(_note(seen, key, w.read(key, rows=n)))
        facts.set("bank.queue_cosine", spread, f"{w.source(key)} (first {n} rows)")
        facts.set("bank.queue_random", looks_random(spread), f"{w.source(key)} (first {n} rows)")
        row["queue_random"] = looks_random(spread)
    if present["queue_ids"] and row.get("fill"):
        import numpy as np

        ids = w.read(BANK + "queue_ids", rows=row["fill"]).reshape(-1)
        _, counts = np.unique(ids, return_counts=True)
        # a row shares its caption with sum(n_c^2)/F queued entries on average (masked if enabled)
        facts.set(
            "bank.same_caption_mean",
            float((counts.astype(np.float64) ** 2).sum() / ids.size),
            w.source(BANK + "queue_ids"),
        )
    return row


def _roi_facts(w: Weights, facts: Facts, seen: dict[str, int]) -> dict:
    key = "roi_projection.weight"
    if key not in w.raw or len(w.shapes[key]) != 2:
        return {}
    import numpy as np

    # NaN / Inf are nonfinite's (FGD703): here they give a nan / inf distance, without numpy's warnings
    with np.errstate(invalid="ignore", over="ignore"):
        weight = _note(seen, key, w.read(key)).astype(np.float64)
        eye = np.eye(*weight.shape)
        dist = float(np.linalg.norm(weight - eye) / np.linalg.norm(eye))
    facts.set("roi.identity_distance", dist, w.source(key))
    row = {"identity_distance": dist}
    if "roi_projection.bias" in w.raw:
        with np.errstate(invalid="ignore", over="ignore"):
            bias = float(np.linalg.norm(_note(seen, "roi_projection.bias", w.read("roi_projection.bias"))))
        facts.set("roi.bias_norm", bias, w.source("roi_projection.bias"))
        row["bias_norm"] = bias
    return row


def scan_facts(w: Weights, facts: Facts, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """--scan: NaN / Inf in every tensor (replaces the partial weights.nonfinite)."""
    bad = w.scan(progress)
    facts.set("weights.nonfinite", bad, f"{w.label}: all {len(w.raw)} tensors scanned")
    facts.set("weights.scanned", True, w.label)
    return bad
