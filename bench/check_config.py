"""Benchmark: cold `fgclip-doctor check-config` vs the import floor, and tiny vs ViT-L/14 models.

Prints medians of interleaved cold runs (a new process each) and the ratios the issue targets:
  doctor (tiny launch) / floor (`python -c "import torch, transformers; from transformers import CLIPModel"`)  <= 1.3
  doctor (ViT-L/14-sized base) / doctor (tiny base)                                                        <= 1.10
  doctor (FG-CLIP-v1-style tree, code read as text) / doctor (the bundled default run)                    <= 1.00
and the FG-CLIP-v1-style tree's cost against `fgclip-doctor rules` (the CLI's own start-up).
The base dirs hold a real config.json and a safetensors file with the logit scale only: the
doctor builds the model on the meta device and reads scalars lazily, so weights never matter.

    python bench/check_config.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR = [sys.executable, "-c", "import torch, transformers; from transformers import CLIPModel"]

TINY = dict(
    text=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
    vision=dict(
        hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, image_size=64, patch_size=8
    ),
    projection_dim=64,
)
VIT_L14 = dict(
    text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    vision=dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
    ),
    projection_dim=768,
)


def make_base(root: Path, spec: dict, tokenizer: Path) -> Path:
    """A CLIP model dir: config.json (model_type clip), tokenizer, and the learned scale only."""
    import numpy as np
    from safetensors.numpy import save_file

    root.mkdir(parents=True)
    text = dict(spec["text"], vocab_size=49408, max_position_embeddings=77, eos_token_id=49407, bos_token_id=49406)
    cfg = {
        "model_type": "clip",
        "architectures": ["CLIPModel"],
        "projection_dim": spec["projection_dim"],
        "logit_scale_init_value": 2.6592,
        "text_config": text,
        "vision_config": spec["vision"],
    }
    (root / "config.json").write_text(json.dumps(cfg))
    save_file({"logit_scale": np.array(math.log(100), dtype=np.float32)}, str(root / "model.safetensors"))
    for f in tokenizer.iterdir():
        shutil.copy(f, root / f.name)
    return root


def launch(path: Path, base: Path) -> Path:
    path.write_text(f"""#!/usr/bin/env bash
python -m fgclip.train --model_name_or_path {base} --base_model {base} --from_openai True \\
    --add_box_loss True --use_hard_neg True --per_device_train_batch_size 32 \\
    --gradient_accumulation_steps 4 --max_steps 1000 --output_dir {path.parent / "out"}
""")
    return path


def cold(cmd: list[str], cwd: Path = ROOT) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from fgclip.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok = generate(tmp / "data", n_train=4, n_val=1, images=False)["tokenizer"]
        doctor = [sys.executable, "-m", "fgclip_doctor", "check-config", "--format", "json"]
        v1 = tmp / "fgclip_v1"  # FG-CLIP's checkout as the working directory, its own `fgclip` first
        shutil.copytree(ROOT / "tests" / "trees" / "fgclip_v1", v1)
        cmds = {
            "floor": FLOOR,
            "doctor tiny": doctor + [str(launch(tmp / "tiny.sh", make_base(tmp / "tiny", TINY, tok)))],
            "doctor ViT-L/14": doctor + [str(launch(tmp / "l14.sh", make_base(tmp / "l14", VIT_L14, tok)))],
            "doctor default": doctor,
            "doctor v1 tree": doctor + ["scripts/train.sh"],
            "rules": [sys.executable, "-m", "fgclip_doctor", "rules"],
        }
        cwd = {"doctor v1 tree": v1}
        for name in ("doctor tiny", "doctor v1 tree"):
            check = subprocess.run(cmds[name], cwd=cwd.get(name, ROOT), capture_output=True, text=True)
            assert check.returncode in (0, 1), check.stderr
        times = {k: [] for k in cmds}
        cold(FLOOR)  # warm the file cache once; every measured run is still a new process
        for _ in range(args.runs):
            for name, cmd in cmds.items():  # interleaved, so drift hits all alike
                times[name].append(cold(cmd, cwd.get(name, ROOT)))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:16s} median {med[k]:.2f}s  runs {' '.join(f'{x:.2f}' for x in v)}")
    r1 = med["doctor tiny"] / med["floor"]
    r2 = med["doctor ViT-L/14"] / med["doctor tiny"]
    print(f"doctor / import floor      = {r1:.2f}x  (target <= 1.30)  {'OK' if r1 <= 1.3 else 'MISS'}")
    print(f"ViT-L/14 / tiny            = {r2:.2f}x  (target <= 1.10)  {'OK' if r2 <= 1.1 else 'MISS'}")
    r3 = med["doctor v1 tree"] / med["doctor default"]
    r4 = med["doctor v1 tree"] / med["rules"]
    print(f"v1 tree / default run      = {r3:.2f}x  (target <= 1.00)  {'OK' if r3 <= 1.0 else 'MISS'}")
    print(f"v1 tree / `rules`          = {r4:.2f}x")


if __name__ == "__main__":
    main()
