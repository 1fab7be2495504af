"""open_clip (mlfoundations): `logit_scale` log-scale, argparse flags, `--precision`, gather_features."""

from fgclip_doctor.sources.code.families import Family

FAMILY = Family(
    name="open_clip",
    priority=20,
    scale_params={"logit_scale": "global"},
    representation={"logit_scale": "log-scale"},
    terms={"global": "global"},
    softmax=frozenset({"cross_entropy"}),
    gather=frozenset({"all_gather", "all_gather_tensor_autograd"}),
    flag_dests={
        "train.per_device_batch": ("batch_size",),
        "train.grad_accum": ("accum_freq",),
        "train.epochs": ("epochs",),
        "train.learning_rate": ("lr",),
        "train.weight_decay": ("wd",),
    },
    # torch.autocast's default dtype on CUDA is float16: amp is fp16
    precision={
        "amp": ("fp16", "fp16 autocast"),
        "fp16": ("fp16", "fp16 weights"),
        "pure_fp16": ("fp16", "fp16 weights"),
        "amp_bf16": ("bf16", "bf16 autocast"),
        "amp_bfloat16": ("bf16", "bf16 autocast"),
        "bf16": ("bf16", "bf16 weights"),
        "pure_bf16": ("bf16", "bf16 weights"),
        "fp32": ("fp32", "fp32"),
    },
    world_size_idioms=("args.world_size",),
    checkpoint_keys=("logit_scale", "visual.conv1.weight", "token_embedding.weight"),
    fixes={"fp16": "--precision amp_bf16"},
)
