"""Fine-tune a vision-text dual encoder on image/caption pairs (transformers example style)."""
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

from transformers import AutoModel, HfArgumentParser, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "pretrained dual encoder"})
    freeze_vision_model: bool = field(default=False)
    freeze_text_model: bool = field(default=False)


@dataclass
class DataTrainingArguments:
    train_file: Optional[str] = field(default=None)
    image_column: Optional[str] = field(default="image_path")
    caption_column: Optional[str] = field(default="caption")
    max_seq_length: Optional[int] = field(default=128)


def main():
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(json_file=sys.argv[1])
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses()

    last_checkpoint = None
    if os.path.isdir(training_args.output_dir) and training_args.do_train and not training_args.overwrite_output_dir:
        last_checkpoint = get_last_checkpoint(training_args.output_dir)

    model = AutoModel.from_pretrained(model_args.model_name_or_path)
    if model_args.freeze_vision_model:
        for p in model.vision_model.parameters():
            p.requires_grad = False

    trainer = Trainer(model=model, args=training_args)
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint or last_checkpoint
        trainer.train(resume_from_checkpoint=checkpoint)


if __name__ == "__main__":
    main()
