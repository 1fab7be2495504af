"""Training code the doctor has never seen: a plain transformers.CLIPModel, HfArgumentParser + Trainer.

Random images and token ids, `return_loss=True`: CLIP's own symmetric cross-entropy. Run as
`python tests/helpers/train_plain_clip.py --output_dir OUT --per_device_train_batch_size 6 ...`.
"""

from dataclasses import dataclass

import torch
from transformers import CLIPConfig, CLIPModel, HfArgumentParser, Trainer, TrainingArguments


@dataclass
class ModelArgs:
    logit_scale_init_value: float = 2.6592
    seed_data: int = 0
    blank_images: bool = False  # casebook fault: every image all zeros (the images never reach the tower)
    model_name_or_path: str = ""  # a folder of save_pretrained: fine-tune from it (else random weights)


class RandomPairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 64, seed: int = 0, blank: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.pixels = torch.randn(n, 3, 32, 32, generator=g)
        if blank:
            self.pixels.zero_()
        self.ids = torch.randint(1, 90, (n, 8), generator=g)
        self.ids[:, -1] = 99  # EOS, the highest id

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixels[i], "input_ids": self.ids[i]}


def collate(rows):
    return {
        "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
        "input_ids": torch.stack([r["input_ids"] for r in rows]),
        "return_loss": True,
    }


# One transformer layer per tower, 32 wide: trains in a second on the CPU (the SigLIP helper too).
TINY_TEXT = dict(
    vocab_size=100,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    max_position_embeddings=16,
)
TINY_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
)


def tiny_clip(logit_scale_init_value: float = 2.6592) -> CLIPModel:
    """A CLIPModel small enough to train in a second on the CPU."""
    cfg = CLIPConfig(
        text_config=dict(TINY_TEXT, eos_token_id=99),
        vision_config=TINY_VISION,
        projection_dim=16,
        logit_scale_init_value=logit_scale_init_value,
    )
    return CLIPModel(cfg)


def main() -> None:
    margs, targs = HfArgumentParser((ModelArgs, TrainingArguments)).parse_args_into_dataclasses()
    torch.manual_seed(targs.seed)
    trainer = Trainer(
        model=CLIPModel.from_pretrained(margs.model_name_or_path)
        if margs.model_name_or_path
        else tiny_clip(margs.logit_scale_init_value),
        args=targs,
        train_dataset=RandomPairs(seed=margs.seed_data, blank=margs.blank_images),
        data_collator=collate,
    )
    trainer.train()


if __name__ == "__main__":
    main()
