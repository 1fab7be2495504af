"""The tiny base CLIP: stage 1 of the offline two-stage pipeline (a stand-in for OpenAI's CLIP).

Random-init tiny towers pretrained on the synthetic images with the global contrastive loss only,
the global scale held at the ln 100 clamp as OpenAI's released CLIP has it. Saved in HF format
(`CLIPModel.save_pretrained` + tokenizer + preprocessor_config.json) so that the default run
fine-tunes from it exactly as a GPU run fine-tunes from `openai/clip-vit-base-patch16`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from fgclip.config import LN_100
from fgclip.data import FGCLIPDataset, collate
from fgclip.losses import GlobalContrastiveLoss
from fgclip.synthetic import PRETRAIN_STEPS

IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_clip_config(
    tokenizer, image_size: int = 64, width: int = 64, layers: int = 2, projection_dim: int = 64
) -> CLIPConfig:
    """CPU-sized CLIP towers whose vocabulary and special ids match `tokenizer`."""
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=8,
    )
    return CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=projection_dim, logit_scale_init_value=LN_100
    )


def pretrain_base(
    data_dir: Path,
    out_dir: Path,
    steps: int = PRETRAIN_STEPS,
    batch_size: int = 32,
    lr: float = 2e-3,
    image_size: int = 64,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Pretrain the tiny base on `data_dir/train.jsonl` and save it to `out_dir`; returns a summary.
    `progress(1)` is called after each optimizer step."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(data_dir / "tokenizer")
    data = FGCLIPDataset(
        data_dir / "train.jsonl",
        data_dir,
        tokenizer,
        image_size=image_size,
        max_seq_length=77,
        add_box_loss=False,
        use_hard_neg=False,
    )
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )
    model = CLIPModel(tiny_clip_config(tokenizer, image_size))
    model.logit_scale.requires_grad_(False)  # held at the ln 100 clamp, like OpenAI's released CLIP
    head = GlobalContrastiveLoss()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    step, losses, start = 0, [], time.time()
    model.train()
    while step < steps:
        for batch in loader:
            # Alternate short ("a photo of ...") and long captions (truncated to 77) as the text side.
            texts = batch["text_short"] if step % 2 == 0 else batch["text_long"]
            image = model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
            text = model.get_text_features(input_ids=texts).pooler_output
            out = head(
                torch.nn.functional.normalize(image, dim=-1),
                torch.nn.functional.normalize(text, dim=-1),
                model.logit_scale,
            )
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            sched.step()
            losses.append(float(out.loss.detach()))
            step += 1
            if progress is not None:
                progress(1)
            if step >= steps:
                break
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "image_mean": list(IMAGE_MEAN),
                "image_std": list(IMAGE_STD),
                "size": {"shortest_edge": image_size},
                "crop_size": {"height": image_size, "width": image_size},
            },
            indent=2,
        )
    )
    summary = {
        "steps": steps,
        "batch_size": batch_size,
        "first_loss": losses[0],
        "last_loss": sum(losses[-10:]) / 10,
        "chance": float(torch.log(torch.tensor(float(batch_size)))),
        "seconds": round(time.time() - start, 1),
        "logit_scale": float(model.logit_scale),
    }
    (out_dir / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
