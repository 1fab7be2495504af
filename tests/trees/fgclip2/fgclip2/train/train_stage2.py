"""Stage-2 training: SigLIP-2 towers, sigmoid global loss, region and hard-negative heads."""
import pathlib
from dataclasses import dataclass, field
from typing import Optional

import torch
import transformers

from fgclip2.model.fgclip2_model import FGCLIP2


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default=None)
    base_model: Optional[str] = field(default=None)
    log_scale: float = 4.6052
    loss_type: str = field(default="gather")


@dataclass
class DataArguments:
    data_path: str = field(default=None)
    add_box_loss: bool = field(default=False)
    use_hard_neg: bool = field(default=False)


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    train_use_word_size: int = 8


def train():
    parser = transformers.HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    model = FGCLIP2.from_pretrained(model_args.model_name_or_path)
    # new heads start at the value of a flag, not at the base's scale
    model.logit_scale_finegraind = torch.nn.Parameter(torch.ones([]) * model_args.log_scale)
    model.logit_scale_hardneg = torch.nn.Parameter(torch.ones([]) * model_args.log_scale)
    model.loss_type = model_args.loss_type
    # the loss loops over this many ranks, whatever the launcher started
    model.world_size = training_args.train_use_word_size

    trainer = transformers.Trainer(model=model, args=training_args)
    if list(pathlib.Path(training_args.output_dir).glob("checkpoint-*")):
        trainer.train(resume_from_checkpoint=True)
    else:
        trainer.train()
