"""Fine-grained SigLIP training on random shapes: arguments, model, then the HF Trainer (FG-CLIP 2 style, tiny).

The model starts from a folder written by save_pretrained (--model_name_or_path) when given, else
from a tiny config (random weights); the region scales start at --region_scale_init either way.
"""
import pathlib
from dataclasses import dataclass, field
from typing import Optional

import torch
import transformers
from transformers import SiglipConfig

from fgclip2.model.fgclip2_tiny import FGCLIP2


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default=None)
    region_scale_init: float = 2.6592


@dataclass
class DataArguments:
    num_samples: int = 64
    boxes_per_image: int = 2
    hard_negatives: int = 4


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    remove_unused_columns: bool = field(default=False)


class RandomRegions(torch.utils.data.Dataset):
    def __init__(self, n, boxes, hard, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.pixels = torch.randn(n, 3, 32, 32, generator=g)
        self.long_ids = torch.randint(3, 90, (n, 12), generator=g)
        self.short_ids = torch.randint(3, 90, (n, 6), generator=g)
        corner = torch.rand(n, boxes, 2, generator=g) * 0.5
        self.boxes = torch.cat([corner, corner + 0.5], -1)  # normalised x1 y1 x2 y2
        self.box_ids = torch.randint(3, 90, (n, boxes, 6), generator=g)
        self.hard_ids = torch.randint(3, 90, (n, boxes, hard, 6), generator=g)
        for t in (self.long_ids, self.short_ids, self.box_ids, self.hard_ids):
            t[..., -1] = 2  # the end token

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixels[i], "long_ids": self.long_ids[i], "short_ids": self.short_ids[i],
                "boxes": self.boxes[i], "box_ids": self.box_ids[i], "hard_ids": self.hard_ids[i]}


def collate(rows):
    boxes = [torch.cat([torch.full((r["boxes"].shape[0], 1), float(i)), r["boxes"]], 1) for i, r in enumerate(rows)]
    batch = {key: torch.stack([r[key] for r in rows]) for key in ("pixel_values", "long_ids", "short_ids")}
    batch["boxes"] = torch.cat(boxes)
    batch["box_ids"] = torch.cat([r["box_ids"] for r in rows])
    batch["hard_ids"] = torch.cat([r["hard_ids"] for r in rows])
    return batch


def tiny_config():
    text = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    return SiglipConfig(text_config=text, vision_config=vision)


def train():
    parser = transformers.HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    torch.manual_seed(training_args.seed)
    if model_args.model_name_or_path:
        config = SiglipConfig.from_pretrained(model_args.model_name_or_path)
        config.region_scale_init = model_args.region_scale_init
        model = FGCLIP2.from_pretrained(model_args.model_name_or_path, config=config)
    else:
        config = tiny_config()
        config.region_scale_init = model_args.region_scale_init
        model = FGCLIP2(config)
    data = RandomRegions(data_args.num_samples, data_args.boxes_per_image, data_args.hard_negatives)
    trainer = transformers.Trainer(model=model, args=training_args, train_dataset=data, data_collator=collate)
    if list(pathlib.Path(training_args.output_dir).glob("checkpoint-*")):
        trainer.train(resume_from_checkpoint=True)
    else:
        trainer.train()


if __name__ == "__main__":
    train()
