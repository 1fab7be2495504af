"""EVA-CLIP (open_clip fork): the same `logit_scale` log-scale, `--precision` spelled as open_clip's."""

from fgclip_doctor.sources.code.families import Family

FAMILY = Family(
    name="eva_clip",
    priority=40,
    scale_params={"logit_scale": "global"},
    representation={"logit_scale": "log-scale"},
    terms={"global": "global"},
    softmax=frozenset({"cross_entropy"}),
    gather=frozenset({"all_gather", "all_gather_with_grad"}),
    flag_dests={"train.per_device_batch": ("batch_size",), "train.learning_rate": ("lr",)},
    world_size_idioms=("args.world_size",),
    checkpoint_keys=("logit_scale", "visual.patch_embed.proj.weight"),
    fixes={"fp16": "--precision amp_bf16"},
)
