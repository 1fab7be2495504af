"""FGCLIPConfig: CLIP's config plus what FG-CLIP fine-tuning and the team's extensions add.

Every value here is a *default*; the training entry (fgclip/train.py) overrides them from flags.
The doctor reads these defaults (on the meta device) to know what a launch will really use.
"""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig

LN_100 = math.log(100.0)  # 4.6052: OpenAI CLIP's learned (and clamped) logit scale
CLIP_INIT = math.log(1 / 0.07)  # 2.6592: CLIP's from-scratch init (temperature 14.3)


@strict
class FGCLIPConfig(CLIPConfig):
    """Config of `FGCLIPModel`; `logit_scale_init_value` is the global scale's init (from scratch)."""

    model_type = "fgclip"

    # Long captions: the 77-row text position table is stretched to this many rows
    # (first `keep_positions` rows copied, the rest interpolated 4x, as FG-CLIP / Long-CLIP).
    long_text_positions: int = 248
    keep_positions: int = 20
    # Init of the two new scales; None = start where the global scale is (FG-CLIP v1 copies it).
    logit_scale_finegrained_init: float | None = None
    logit_scale_hardneg_init: float | None = None
    clamp_logit_scale: bool = True  # clamp every scale to [0, max_logit_scale] after each step
    max_logit_scale: float = LN_100
    # Loss weights, as in FG-CLIP v1: loss = long + short + 0.1 * region + 0.5 * hardneg.
    box_loss_weight: float = 0.1
    hardneg_loss_weight: float = 0.5
    add_box_loss: bool = True
    use_hard_neg: bool = True
    num_hard_negatives: int = 10
    # RoIAlign of box features on the patch grid (output 1x1, aligned).
    roi_sampling_ratio: int = 2
    region_pool: str = "box"  # "box"; "image" pools the whole image (a control that ignores boxes)
    # The team's memory bank of region text features (warmup counted in FORWARD CALLS).
    use_memory_bank: bool = True
    memory_bank_size: int = 128
    memory_bank_warmup_steps: int = 50
    memory_bank_mask_same_caption: bool = True


def tiny_config(
    vocab_size: int,
    eos_token_id: int,
    bos_token_id: int,
    pad_token_id: int = 0,
    image_size: int = 64,
    patch_size: int = 8,
    width: int = 64,
    layers: int = 2,
    projection_dim: int = 64,
    **overrides,
) -> FGCLIPConfig:
    """The CPU-sized towers used by the offline synthetic runs (seconds per step)."""
    text = dict(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=width * 4,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        eos_token_id=eos_token_id,
        bos_token_id=bos_token_id,
        pad_token_id=pad_token_id,
        projection_dim=projection_dim,
    )
    vision = dict(
        hidden_size=width,
        intermediate_size=width * 4,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=projection_dim,
    )
    return FGCLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim, **overrides)
