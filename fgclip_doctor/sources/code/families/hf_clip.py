"""transformers CLIPModel / run_clip.py: `logit_scale` (log-scale), HfArgumentParser TrainingArguments."""

from fgclip_doctor.sources.code.families import Family

FAMILY = Family(
    name="hf_clip",
    priority=10,
    scale_params={"logit_scale": "global"},
    representation={"logit_scale": "log-scale"},
    terms={"global": "global"},
    softmax=frozenset({"cross_entropy", "CrossEntropyLoss"}),
    library_models={"CLIP": "softmax", "AutoModel": "", "ChineseCLIP": "softmax", "AltCLIP": "softmax"},
    flag_dests={
        "train.per_device_batch": ("per_device_train_batch_size",),
        "train.grad_accum": ("gradient_accumulation_steps",),
        "train.epochs": ("num_train_epochs",),
        "train.learning_rate": ("learning_rate",),
        "train.weight_decay": ("weight_decay",),
        "train.fp16": ("fp16",),
        "train.bf16": ("bf16",),
        "train.output_dir": ("output_dir",),
        "train.resume_from_checkpoint": ("resume_from_checkpoint",),
        "train.max_steps": ("max_steps",),
    },
    world_size_idioms=("local batch only (transformers#22252)",),
    checkpoint_keys=("logit_scale", "text_model.embeddings.token_embedding.weight"),
    fixes={"fp16": "--bf16 True"},
)
