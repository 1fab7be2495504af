"""Training code the doctor has never seen, with a sigmoid loss: a plain transformers.SiglipModel,
HfArgumentParser + Trainer. Random images and token ids, `return_loss=True`: SigLIP's own loss,
-sum_j logsigmoid(z_ij * (T cos_ij + b)) over a row, averaged over rows (z = +1 on the diagonal).
Run as `python tests/helpers/train_plain_siglip.py --output_dir OUT --per_device_train_batch_size 16 ...`.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import HfArgumentParser, SiglipConfig, SiglipModel, Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_plain_clip import TINY_TEXT, TINY_VISION, RandomPairs, collate


@dataclass
class ModelArgs:
    logit_scale_init: float = 2.302585  # ln 10: SigLIP's init (T 10, bias -10)
    seed_data: int = 0


def tiny_siglip(logit_scale_init: float) -> SiglipModel:
    """A SiglipModel small enough to train in a second on the CPU."""
    cfg = SiglipConfig(text_config=TINY_TEXT, vision_config=TINY_VISION)
    model = SiglipModel(cfg)
    with torch.no_grad():
        model.logit_scale.fill_(logit_scale_init)
    return model


def main() -> None:
    margs, targs = HfArgumentParser((ModelArgs, TrainingArguments)).parse_args_into_dataclasses()
    torch.manual_seed(targs.seed)
    trainer = Trainer(
        model=tiny_siglip(margs.logit_scale_init),
        args=targs,
        train_dataset=RandomPairs(seed=margs.seed_data),
        data_collator=collate,
    )
    trainer.train()


if __name__ == "__main__":
    main()
