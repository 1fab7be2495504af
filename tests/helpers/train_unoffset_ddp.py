"""A DDP contrastive training with a classic bug: features gathered across ranks, targets NOT offset.

Each rank's positives sit at columns rank × B + i of the gathered logits, but the targets say
i: on rank 1 every target points into rank 0's block. `--offset True` is the correct version.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from train_plain_clip import RandomPairs, collate, tiny_clip
from transformers import HfArgumentParser, Trainer, TrainingArguments

from fgclip.losses import gather_features, world


@dataclass
class BugArgs:
    offset: bool = False


class GatheringTrainer(Trainer):
    offset = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"])
        img, txt = out.image_embeds, out.text_embeds  # [B, D] normalised
        all_txt = gather_features(txt)  # [W*B, D]
        scale = getattr(model, "module", model).logit_scale  # DDP wraps the model on each rank
        logits = scale.exp() * img @ all_txt.t()
        rank = world()[0]
        targets = torch.arange(img.shape[0]) + (rank * img.shape[0] if self.offset else 0)
        return F.cross_entropy(logits, targets)


def main() -> None:
    bug, targs = HfArgumentParser((BugArgs, TrainingArguments)).parse_args_into_dataclasses()
    torch.manual_seed(targs.seed)
    trainer = GatheringTrainer(model=tiny_clip(), args=targs, train_dataset=RandomPairs(), data_collator=collate)
    trainer.offset = bug.offset
    trainer.train()


if __name__ == "__main__":
    main()
