"""Fine-grained CLIP training: arguments, model set-up, then the HF Trainer (FG-CLIP v1 style)."""
import pathlib
from dataclasses import dataclass, field
from typing import Optional

import torch
import transformers

from fgclip.model.clip_strc.fgclip_model import FineGrainedCLIP
from fgclip.train.clip_trainer import RegionCLIPTrainer


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default="openai/clip-vit-base-patch16")
    base_model: Optional[str] = field(default=None)
    log_scale: float = 4.6052  # declared but the scales below copy the base's own


@dataclass
class DataArguments:
    data_path: str = field(default=None)
    image_folder: Optional[str] = field(default=None)
    max_seq_length: int = 77 * 4 - 60
    base_seq_length: int = 77
    add_box_loss: bool = field(default=False)
    use_hard_neg: bool = field(default=False)


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    remove_unused_columns: bool = field(default=False)
    from_openai: bool = field(default=False)
    train_use_word_size: int = 8
    text_model_lr: Optional[float] = None


def train():
    parser = transformers.HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    model = FineGrainedCLIP.from_pretrained(model_args.model_name_or_path)

    # the region and hard-negative heads start where the base's global scale ended up
    model.logit_scale_finegraind = torch.nn.Parameter(torch.ones([]) * model.logit_scale)
    model.logit_scale_hardneg = torch.nn.Parameter(torch.ones([]) * model.logit_scale)
    if training_args.from_openai:
        model.stretch_positions()
    assert training_args.fp16 == False, "fp16 makes the contrastive losses NaN: train in bf16"
    trainer = RegionCLIPTrainer(model=model, args=training_args)
    if list(pathlib.Path(training_args.output_dir).glob("checkpoint-*")):
        trainer.train(resume_from_checkpoint=True)
    else:
        trainer.train()
    trainer.save_state()


if __name__ == "__main__":
    train()
