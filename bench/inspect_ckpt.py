"""Benchmark: `fgclip-doctor inspect-ckpt` vs loading the whole state dict, at 600 MB and 6 GB.

Generates two fp32 safetensors checkpoints with ViT-B/16-like key names (transformers
CLIPModel: vision_model.encoder.layers.N..., text_model..., logit_scale): one ViT-B/16-sized
(~600 MB) and one with the same 398 keys and every width 3.4x (~6 GB). Files are written in
chunks (header first, then the tensor bytes from a reused random buffer), so memory stays flat.

Then, in the same run and interleaved (A B C D, B C D A, ...), each a fresh process:
  inspect   python -m fgclip_doctor inspect-ckpt DIR --format json
  load      python -c "from safetensors.torch import load_file; load_file(FILE)"
  load-np   python -c "from safetensors.numpy import load_file; load_file(FILE)" (no torch import)
  floor     python -m fgclip_doctor rules logit-scale-init: the cheapest command that takes an
            argument, i.e. the CLI's own start-up (typer builds pydantic adapters for every argument,
            rich, the rule registry); inspect's own work is what it takes above this floor
and prints medians and the ratios: load / inspect at 600 MB (target >= 5x) and inspect 6 GB /
inspect 600 MB (target <= 1.2x). Every process runs with PYTHONDONTWRITEBYTECODE unset, so the
untimed first pass leaves the doctor's modules byte-compiled, as a `pip install` leaves both
libraries (an editable install under PYTHONDONTWRITEBYTECODE=1 recompiles the doctor's ~40
modules on every start: +0.1 s that no installed user pays). Pages cannot be dropped from the cache here (no root / no
/proc/sys/vm/drop_caches), so every load is warm-cache: the file bytes are in RAM after the
write; "cold" means a fresh interpreter each time. Warm cache flatters the full load, so the
ratios are lower bounds of what a cold disk gives.

    python bench/inspect_ckpt.py [--dir DIR] [--runs 5] [--keep]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 4 * 1024 * 1024  # floats per write (16 MB)


def vit_b16_shapes(m: float = 1.0) -> dict[str, list[int]]:
    """HF CLIPModel ViT-B/16 tensor names and shapes; widths times `m` (m=1: ~150 M params)."""

    def w(x: int) -> int:
        return int(round(x * m / 64)) * 64

    vw, tw, pd = w(768), w(512), w(512)
    shapes: dict[str, list[int]] = {
        "logit_scale": [],
        "visual_projection.weight": [pd, vw],
        "text_projection.weight": [pd, tw],
        "vision_model.embeddings.class_embedding": [vw],
        "vision_model.embeddings.patch_embedding.weight": [vw, 3, 16, 16],
        "vision_model.embeddings.position_embedding.weight": [197, vw],
        "vision_model.pre_layrnorm.weight": [vw],
        "vision_model.pre_layrnorm.bias": [vw],
        "vision_model.post_layernorm.weight": [vw],
        "vision_model.post_layernorm.bias": [vw],
        "text_model.embeddings.token_embedding.weight": [49408, tw],
        "text_model.embeddings.position_embedding.weight": [77, tw],
        "text_model.final_layer_norm.weight": [tw],
        "text_model.final_layer_norm.bias": [tw],
    }
    for tower, width in (("vision_model", vw), ("text_model", tw)):
        for i in range(12):
            p = f"{tower}.encoder.layers.{i}."
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                shapes[p + f"self_attn.{proj}.weight"] = [width, width]
                shapes[p + f"self_attn.{proj}.bias"] = [width]
            for ln in ("layer_norm1", "layer_norm2"):
                shapes[p + f"{ln}.weight"] = [width]
                shapes[p + f"{ln}.bias"] = [width]
            shapes[p + "mlp.fc1.weight"] = [4 * width, width]
            shapes[p + "mlp.fc1.bias"] = [4 * width]
            shapes[p + "mlp.fc2.weight"] = [width, 4 * width]
            shapes[p + "mlp.fc2.bias"] = [width]
    return shapes


def nbytes(shapes: dict[str, list[int]]) -> int:
    return sum(4 * math.prod(s) for s in shapes.values())


def write_checkpoint(folder: Path, shapes: dict[str, list[int]]) -> Path:
    """folder/model.safetensors (fp32) + a CLIP config.json, written chunk by chunk."""
    folder.mkdir(parents=True, exist_ok=True)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the library pads the header to 8 bytes
    noise = (np.random.default_rng(0).standard_normal(CHUNK) * 0.02).astype("<f4")
    path = folder / "model.safetensors"
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in shapes.items():
            n = math.prod(shape)
            if name == "logit_scale":
                fh.write(np.array([math.log(100.0)], "<f4").tobytes())  # a trained CLIP's ln 100
                continue
            while n > 0:
                k = min(n, CHUNK)
                fh.write(noise[:k].tobytes())
                n -= k
    (folder / "config.json").write_text(json.dumps({"model_type": "clip", "logit_scale_init_value": 2.6592}))
    return path


#: the environment of every timed process: bytecode caches written and used, as after `pip install`
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    elapsed = time.perf_counter() - t
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="where to write (~7 GB free needed)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.gettempdir())
    small, big = vit_b16_shapes(1.0), vit_b16_shapes(3.4)  # 3.4x widths: ~10x the bytes
    need = nbytes(small) + nbytes(big)
    free = shutil.disk_usage(base).free
    print(f"disk: {free / 1e9:.1f} GB free in {base}; need {need / 1e9:.1f} GB")
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("typer", "safetensors", "torch"))
    print(f"python {sys.version.split()[0]}; {versions}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    if free < need * 1.1:
        raise SystemExit(f"not enough space in {base}: use --dir on a disk with {need / 1e9:.1f} GB free")
    work = Path(tempfile.mkdtemp(prefix="fgclip-bench-", dir=base))
    try:
        sizes = {}
        for label, shapes in (("600MB", small), ("6GB", big)):
            t = time.perf_counter()
            path = write_checkpoint(work / label, shapes)
            sizes[label] = path
            print(
                f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB, {len(shapes)} tensors) "
                f"in {time.perf_counter() - t:.1f} s"
            )
        py = sys.executable
        cmds = {}
        for label, path in sizes.items():
            cmds[f"inspect {label}"] = [py, "-m", "fgclip_doctor", "inspect-ckpt", str(path.parent), "--format", "json"]
            cmds[f"load {label}"] = [
                py,
                "-c",
                f"from safetensors.torch import load_file; print(len(load_file({str(path)!r})))",
            ]
            cmds[f"load-np {label}"] = [
                py,
                "-c",
                f"from safetensors.numpy import load_file; print(len(load_file({str(path)!r})))",
            ]
        cmds["floor (rules X)"] = [py, "-m", "fgclip_doctor", "rules", "logit-scale-init"]
        names = list(cmds)
        times: dict[str, list[float]] = {n: [] for n in names}
        for n in names:  # one untimed pass: imports compiled, file pages in the cache
            timed(cmds[n])
        for r in range(args.runs):
            order = names[r % len(names) :] + names[: r % len(names)]  # interleaved, rotated
            for n in order:
                times[n].append(timed(cmds[n]))
        med = {n: statistics.median(v) for n, v in times.items()}
        print(f"\nmedian wall time of {args.runs} interleaved runs (fresh process each; warm page cache):")
        for n in names:
            print(f"  {n:16s} {med[n]:7.3f} s   (runs: {', '.join(f'{x:.2f}' for x in times[n])})")
        r1 = med["load 600MB"] / med["inspect 600MB"]
        r1np = med["load-np 600MB"] / med["inspect 600MB"]
        r2 = med["inspect 6GB"] / med["inspect 600MB"]
        r3 = med["load 6GB"] / med["inspect 6GB"]
        print(f"\nload / inspect at 600 MB:        {r1:5.1f}x  (target >= 5x) {'OK' if r1 >= 5 else 'MISSED'}")
        print(f"load-np / inspect at 600 MB:     {r1np:5.1f}x  (numpy load, no torch import)")
        print(f"load / inspect at 6 GB:          {r3:5.1f}x")
        print(f"inspect 6 GB / inspect 600 MB:   {r2:5.2f}x  (target <= 1.2x) {'OK' if r2 <= 1.2 else 'MISSED'}")
        floor = med["floor (rules X)"]
        print(
            f"inspect above the CLI floor:     {med['inspect 600MB'] - floor:.3f} s (600 MB), "
            f"{med['inspect 6GB'] - floor:.3f} s (6 GB); floor {floor:.3f} s"
        )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            print(f"deleted {work}")


if __name__ == "__main__":
    main()
