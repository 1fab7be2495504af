"""Write tests/trees/fgclip_v1_live/base/: the tiny "pretrained" CLIP that the v1-style tree fine-tunes.

A transformers CLIPModel of the tree's tiny shapes (fgclip/train/train_fgclip.py tiny_config:
32-wide towers, 32 px images, patch 8, vocabulary 100, end token 99), random weights (seed 0) and
its learned scale where a pretrained CLIP sits: logit_scale = ln 100 = 4.6052 (OpenAI's CLIP is
clamped there), its config keeping CLIP's default logit_scale_init_value 2.6592, as OpenAI's
config.json does. Saved with save_pretrained (config.json + model.safetensors, ~120 KB), once,
offline; the casebook's seed case on the tree (new scales started at 2.6592 next to this 4.6052)
fine-tunes it.

    python tools/make_v1_base.py
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

OUT = Path(__file__).resolve().parents[1] / "tests" / "trees" / "fgclip_v1_live" / "base"


def main() -> None:
    torch.manual_seed(0)
    text = dict(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        eos_token_id=99,
        bos_token_id=98,
        pad_token_id=0,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100))
    model.save_pretrained(OUT)
    print(f"wrote {OUT} (logit_scale {float(model.logit_scale.detach()):.4f})")


if __name__ == "__main__":
    main()
