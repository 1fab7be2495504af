"""Fine-grained CLIP training on random shapes: arguments, model, then the HF Trainer (FG-CLIP v1 style, tiny).

The model starts from a folder written by save_pretrained (--model_name_or_path) when given,
else from its config (random weights). Fine-tuning keeps the base's learned logit_scale; the two
new scales start at --logit_scale_init_value, as FG-CLIP v1's training does.
"""
import pathlib
from dataclasses import dataclass, field
from typing import Optional

import torch
import transformers
from torch import nn
from transformers import CLIPConfig

from fgclip.model.fgclip_tiny import FineGrainedCLIP


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default=None)
    logit_scale_init_value: float = 2.6592


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
        self.ids = torch.randint(1, 90, (n, 8), generator=g)
        corner = torch.rand(n, boxes, 2, generator=g) * 0.5
        self.boxes = torch.cat([corner, corner + 0.5], -1)  # normalised x1 y1 x2 y2
        self.box_ids = torch.randint(1, 90, (n, boxes, 8), generator=g)
        self.hard_ids = torch.randint(1, 90, (n, boxes, hard, 8), generator=g)
        for t in (self.ids, self.box_ids, self.hard_ids):
            t[..., -1] = 99  # the end token, the highest id

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixels[i], "input_ids": self.ids[i], "boxes": self.boxes[i],
                "box_ids": self.box_ids[i], "hard_ids": self.hard_ids[i]}


def collate(rows):
    boxes = [torch.cat([torch.full((r["boxes"].shape[0], 1), float(i)), r["boxes"]], 1) for i, r in enumerate(rows)]
    return {
        "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
        "input_ids": torch.stack([r["input_ids"] for r in rows]),
        "boxes": torch.cat(boxes),
        "box_ids": torch.cat([r["box_ids"] for r in rows]),
        "hard_ids": torch.cat([r["hard_ids"] for r in rows]),
    }


def tiny_config(scale):
    text = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, eos_token_id=99)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16, logit_scale_init_value=scale)


def train():
    parser = transformers.HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    torch.manual_seed(training_args.seed)
    if model_args.model_name_or_path:
        model = FineGrainedCLIP.from_pretrained(model_args.model_name_or_path)
        model.logit_scale_finegraind = nn.Parameter(torch.ones([]) * model_args.logit_scale_init_value)
        model.logit_scale_hardneg = nn.Parameter(torch.ones([]) * model_args.logit_scale_init_value)
    else:
        model = FineGrainedCLIP(tiny_config(model_args.logit_scale_init_value))
    data = RandomRegions(data_args.num_samples, data_args.boxes_per_image, data_args.hard_negatives)
    trainer = transformers.Trainer(model=model, args=training_args, train_dataset=data, data_collator=collate)
    if list(pathlib.Path(training_args.output_dir).glob("checkpoint-*")):
        trainer.train(resume_from_checkpoint=True)
    else:
        trainer.train()


if __name__ == "__main__":
    train()
