"""`python -m fgclip.train`: FG-CLIP fine-tuning with HfArgumentParser, as FG-CLIP's train_fgclip.py.

Accepts FG-CLIP's own flags plus `--preset`, the scale init, the memory bank's size and warmup,
`--roi_projection_lr` and `--logit_scale_weight_decay`. Like FG-CLIP it auto-resumes whenever
`output_dir` holds `checkpoint-*` (faithful and dangerous: the doctor warns about it).
"""

from __future__ import annotations

import json
import pathlib
import sys
from dataclasses import dataclass, field

import torch
import transformers
from transformers import AutoTokenizer, HfArgumentParser

from fgclip import faults
from fgclip.arguments import refused
from fgclip.config import CLIP_INIT, FGCLIPConfig
from fgclip.data import FGCLIPDataset, collate
from fgclip.model import FGCLIPModel
from fgclip.presets import preset_args
from fgclip.trainer import FGCLIPTrainer


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "HF CLIP (with --from_openai) or FG-CLIP dir"}
    )
    base_model: str | None = field(default=None, metadata={"help": "dir with the tokenizer and preprocessor"})
    model_config: str | None = field(default=None, metadata={"help": "config.json for training from scratch"})
    preset: str | None = field(default=None, metadata={"help": "tiny | seed-bug (flags prepended to yours)"})
    logit_scale_init_value: float | None = field(
        default=None,
        metadata={
            "help": "ln-scale the new scales start at; None = the base's global scale "
            "(fine-tuning) or 2.6592 (from scratch)"
        },
    )
    memory_bank_size: int = 128
    memory_bank_warmup_steps: int = field(default=50, metadata={"help": "counted in FORWARD calls"})
    use_memory_bank: bool = True
    memory_bank_mask_same_caption: bool = True
    clamp_logit_scale: bool = True
    region_pool: str = field(default="box", metadata={"help": "box | image (control that ignores boxes)"})


@dataclass
class DataArguments:
    data_path: str | None = None
    image_folder: str | None = None
    max_seq_length: int = 77 * 4 - 60  # 248
    base_seq_length: int = 77
    base_image_size: int = 224
    max_boxes: int = 4
    add_box_loss: bool = False
    use_hard_neg: bool = False


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    remove_unused_columns: bool = False
    from_openai: bool = False
    text_model_lr: float | None = None
    roi_projection_lr: float | None = None
    logit_scale_weight_decay: bool = False


def parse(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse like FG-CLIP: flags (or one .json / .yaml file); `--preset NAME` prepends its flags."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return _checked(parser.parse_json_file(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return _checked(parser.parse_yaml_file(argv[0]))
    for i, arg in enumerate(argv):
        if arg == "--preset" or arg.startswith("--preset="):
            name = arg.split("=", 1)[1] if "=" in arg else argv[i + 1]
            argv = preset_args(name) + argv
            break
    return _checked(parser.parse_args_into_dataclasses(args=argv))


def _checked(parsed: tuple) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """The parsed arguments, or the first value fgclip.arguments refuses (ArgumentError, named)."""
    margs, dargs, targs = parsed
    for error in refused({**vars(margs), **vars(dargs), **vars(targs)}):
        raise error
    return margs, dargs, targs


def config_overrides(margs: ModelArguments, dargs: DataArguments) -> dict:
    """FGCLIPConfig values this launch sets from its flags."""
    return dict(
        memory_bank_size=margs.memory_bank_size,
        memory_bank_warmup_steps=margs.memory_bank_warmup_steps,
        use_memory_bank=margs.use_memory_bank,
        memory_bank_mask_same_caption=margs.memory_bank_mask_same_caption,
        clamp_logit_scale=margs.clamp_logit_scale,
        region_pool=margs.region_pool,
        add_box_loss=dargs.add_box_loss,
        use_hard_neg=dargs.use_hard_neg,
        long_text_positions=dargs.max_seq_length,
    )


def build_model(margs: ModelArguments, dargs: DataArguments, targs: TrainingArguments, tokenizer) -> FGCLIPModel:
    """The model as this launch builds it: from an HF CLIP (from_openai), an FG-CLIP dir, or scratch."""
    overrides = config_overrides(margs, dargs)
    if margs.model_name_or_path and targs.from_openai:
        return FGCLIPModel.from_clip(margs.model_name_or_path, new_scale_init=margs.logit_scale_init_value, **overrides)
    if margs.model_name_or_path:
        model = FGCLIPModel.from_pretrained(margs.model_name_or_path, **overrides)
        if margs.logit_scale_init_value is not None:
            model.logit_scale_finegrained.data.fill_(margs.logit_scale_init_value)
            model.logit_scale_hardneg.data.fill_(margs.logit_scale_init_value)
        return model
    # From scratch: every scale starts at the given init, or CLIP's own 2.6592.
    init = CLIP_INIT if margs.logit_scale_init_value is None else margs.logit_scale_init_value
    if margs.model_config:
        cfg_dict = json.loads(pathlib.Path(margs.model_config).read_text())
        cfg = FGCLIPConfig(
            text_config=cfg_dict["text_config"],
            vision_config=cfg_dict["vision_config"],
            projection_dim=cfg_dict.get("projection_dim", 512),
            logit_scale_init_value=init,
            **overrides,
        )
    else:
        from fgclip.base_model import tiny_clip_config

        c = tiny_clip_config(tokenizer, dargs.base_image_size)
        cfg = FGCLIPConfig(
            text_config=c.text_config.to_dict(),
            vision_config=c.vision_config.to_dict(),
            projection_dim=c.projection_dim,
            logit_scale_init_value=init,
            **overrides,
        )
    return FGCLIPModel(cfg)


def built_model(margs: ModelArguments, dargs: DataArguments, targs: TrainingArguments, tokenizer) -> FGCLIPModel:
    """build_model, with the casebook's frozen-scales fault applied when FGCLIP_FAULT names it."""
    model = build_model(margs, dargs, targs, tokenizer)
    if faults.active("frozen-scales"):  # casebook: scales that never train (no grad, no optimizer)
        for p in model.logit_scales().values():
            p.requires_grad_(False)
    if faults.active("bf16-weights"):  # casebook: every tensor, logits included, in bfloat16
        model = model.to(torch.bfloat16)
    return model


def image_stats(base_dir: str | None) -> dict:
    """Normalisation mean / std from the base's preprocessor_config.json (CLIP's when absent)."""
    path = pathlib.Path(base_dir or "") / "preprocessor_config.json"
    if base_dir and path.exists():
        cfg = json.loads(path.read_text())
        return {"image_mean": tuple(cfg["image_mean"]), "image_std": tuple(cfg["image_std"])}
    return {}


def main(argv: list[str] | None = None) -> FGCLIPTrainer:
    """Build tokenizer, data, model and trainer; train (auto-resuming like FG-CLIP); save."""
    margs, dargs, targs = parse(sys.argv[1:] if argv is None else list(argv))
    if targs.fp16:
        raise SystemExit("FG-CLIP does not support fp16 training (the loss goes NaN); use --bf16")
    transformers.set_seed(targs.seed)
    tokenizer = AutoTokenizer.from_pretrained(margs.base_model or margs.model_name_or_path)
    data = FGCLIPDataset(
        dargs.data_path,
        dargs.image_folder,
        tokenizer,
        image_size=dargs.base_image_size,
        max_boxes=dargs.max_boxes,
        base_seq_length=dargs.base_seq_length,
        max_seq_length=dargs.max_seq_length,
        add_box_loss=dargs.add_box_loss,
        use_hard_neg=dargs.use_hard_neg,
        **image_stats(margs.base_model),
    )
    if sum(data.dropped_boxes.values()) and targs.process_index == 0:
        print(f"[data] dropped boxes: {dict(data.dropped_boxes)}", flush=True)
    model = built_model(margs, dargs, targs, tokenizer)
    trainer = FGCLIPTrainer(
        model=model,
        args=targs,
        train_dataset=data,
        data_collator=collate,
        text_model_lr=targs.text_model_lr,
        roi_projection_lr=targs.roi_projection_lr,
        logit_scale_weight_decay=targs.logit_scale_weight_decay,
    )
    if list(pathlib.Path(targs.output_dir).glob("checkpoint-*")):
        trainer.train(resume_from_checkpoint=True)  # FG-CLIP: silently restores the old state
    else:
        trainer.train()
    trainer.save_state()
    trainer.save_model(targs.output_dir)
    return trainer


if __name__ == "__main__":
    main()
