"""Presets: flag lists prepended to the command line (argparse keeps the last value, so yours win).

`tiny`     healthy CPU fine-tune of the tiny base on the synthetic data.
`seed-bug` the same fine-tune with the team's three mistakes (docs/seed-incident.md): new scales start
           at 2.6592 (T 14.3) while the base sits at ln 100; bank warmup 400 forward calls with
           gradient accumulation 8 (optimizer step 50) in a 40-step run that never reaches it;
           and the auto-resume that FG-CLIP's train script always does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO


def default_cache() -> Path:
    """`$FGCLIP_CACHE/synthetic-v1` (default `~/.cache/fgclip-doctor`), read at each call, not at import."""
    return Path(os.environ.get("FGCLIP_CACHE", Path.home() / ".cache" / "fgclip-doctor")) / "synthetic-v1"


TINY = """
--model_name_or_path {data}/base --base_model {data}/base --from_openai True
--data_path {data}/train.jsonl --image_folder {data} --base_image_size 64
--add_box_loss True --use_hard_neg True
--memory_bank_size 128 --memory_bank_warmup_steps 50
--per_device_train_batch_size 8 --gradient_accumulation_steps 1 --max_steps 60
--learning_rate 5e-4 --warmup_steps 5 --weight_decay 0.0 --lr_scheduler_type cosine
--logging_steps 5 --save_strategy steps --save_steps 60 --report_to none
--dataloader_num_workers 0 --seed 0 --output_dir runs/tiny
"""

SEED_BUG = (
    TINY
    + """
--logit_scale_init_value 2.6592 --memory_bank_warmup_steps 400
--gradient_accumulation_steps 8 --max_steps 40 --save_steps 20 --output_dir runs/seed-bug
"""
)

PRESETS = {"tiny": TINY, "seed-bug": SEED_BUG}


#: a first use's generation on one free CPU core (measured 24 s); a busy machine takes longer
FIRST_USE_SECONDS = 30


def ensure_synthetic(root: Path | None = None, say: TextIO | None = None) -> Path:
    """The synthetic data + tiny base under `root` (default_cache()), generated on first use.

    A first use says so in one line on `say` (default stdout) before it starts, and draws a
    progress bar on a terminal's stderr while it runs (fgclip.progress; the libraries stay quiet).
    """
    root = Path(root) if root is not None else default_cache()
    if not (root / "base" / "model.safetensors").exists():
        from fgclip.base_model import pretrain_base
        from fgclip.progress import Bar, quiet_libraries, shown
        from fgclip.synthetic import N_TRAIN, N_VAL, PRETRAIN_STEPS, generate

        print(
            f"first use: generating synthetic data and a tiny base into {shown(root)}, "
            f"about {FIRST_USE_SECONDS} s on a free CPU core",
            file=say if say is not None else sys.stdout,
            flush=True,
        )
        with quiet_libraries(), Bar(N_TRAIN + N_VAL + PRETRAIN_STEPS) as bar:
            bar.stage("synthetic data")
            generate(root, N_TRAIN, N_VAL, progress=bar.advance)
            bar.stage("tiny base")
            pretrain_base(root, root / "base", steps=PRETRAIN_STEPS, progress=bar.advance)
    return root


def preset_args(name: str, data_root: Path | None = None) -> list[str]:
    """The flags of preset `name` with its data paths filled in (generating the data if needed)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    root = ensure_synthetic(data_root)
    return PRESETS[name].format(data=root).split()
