"""From-scratch runs under `live`: when does each loss term leave its chance level?

Calibrates loss-chance's `scratch_steps` (a from-scratch run at chance before it is too early to
judge, not a FAIL). It rewrites scripts/train_tiny.sh into a from-scratch launch (no base weights:
`--model_config` instead of `--model_name_or_path` / `--from_openai`), runs `fgclip-doctor live` on
it and prints, per term, the loss / chance ratio at each read-back and the first step at or below
loss-chance's `max_ratio` (0.9).

    python bench/from_scratch.py --size tiny --steps 120               # tiny towers (CPU, minutes)
    python bench/from_scratch.py --size tiny --steps 120 --lr 5e-6     # the same, too slow to leave chance
    python bench/from_scratch.py --size b16 --steps 3 --batch 2        # ViT-B/16-shaped towers, 224 px (CPU)
    python bench/from_scratch.py --size b16 --steps 60 --batch 32 --device cuda --bf16   # the recorded H100 case

--size b16 is the case recorded in bench/results/ (ViT-B/16-shaped towers from random weights,
224 px, batch 32, bf16, LR 5e-4, 60 steps: every term still at 1.00 x chance at step 60).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MAX_RATIO = 0.9  # loss-chance's threshold


def launch(size: str, batch: int, lr: float, bf16: bool, folder: Path) -> Path:
    """scripts/train_tiny.sh rewritten to start from random weights."""
    from fgclip.presets import ensure_synthetic

    data = ensure_synthetic()
    text = (ROOT / "scripts" / "train_tiny.sh").read_text()
    text = re.sub(r"^DATA=.*$", f"DATA={data}", text, flags=re.M)
    text = re.sub(r"^\s*--(model_name_or_path|from_openai) .*\n", "", text, flags=re.M)
    config = data / "base" / "config.json"
    if size == "b16":
        from transformers import AutoTokenizer

        from bench.live_overhead import vit_b16_config

        config = folder / "b16_config.json"
        config.write_text(json.dumps(vit_b16_config(AutoTokenizer.from_pretrained(str(data / "base")))))
        text = text.replace("--base_image_size 64", "--base_image_size 224")
    text = text.replace("--base_image_size", f"--model_config {config} \\\n    --base_image_size")
    text = text.replace("--per_device_train_batch_size 8", f"--per_device_train_batch_size {batch}")
    text = text.replace("--learning_rate 5e-4", f"--learning_rate {lr:g}")
    if bf16:
        text = text.replace("--seed 0", "--seed 0 --bf16 True")
    script = folder / f"{size}_scratch.sh"
    script.write_text(text)
    return script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "b16"), default="tiny")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--constant-lr", action="store_true", help="no cosine decay to 0 at the last step")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fgclip-bench-scratch-") as tmp:
        script = launch(args.size, args.batch, args.lr, args.bf16, Path(tmp))
        if args.constant_lr:
            script.write_text(script.read_text().replace("--lr_scheduler_type cosine", "--lr_scheduler_type constant"))
        out = Path(tmp) / "live.json"
        cmd = [sys.executable, "-m", "fgclip_doctor", "live", str(script), "--steps", str(args.steps)]
        cmd += ["--interval", str(args.interval), "--device", args.device, "--format", "json", "-o", str(out)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        doc = json.loads(out.read_text())
    print(f"{args.size} from scratch · batch {args.batch} · lr {args.lr:g} · {args.steps} steps · exit {code}")
    for term, t in doc["live"]["terms"].items():
        ratios = [(r["step"], r["loss"] / r["chance"]) for r in t["series"] if r["chance"] > 0]
        left = next((step for step, ratio in ratios if ratio <= MAX_RATIO), None)
        where = f"at or below {MAX_RATIO} x chance from step {left}" if left else "never below 0.9 x chance"
        shown = " ".join(f"{step}:{ratio:.2f}" for step, ratio in ratios)
        print(f"  {term:16s} {where:38s} {shown}")
    for f in doc["findings"]:
        if f["rule"] == "loss-chance":
            print(f"  {f['status']:4s} loss-chance {f['subject']}: {f['message']}")


if __name__ == "__main__":
    main()
