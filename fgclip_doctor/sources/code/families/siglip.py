"""SigLIP (big_vision, open_clip SigLipLoss, transformers SiglipModel): log-scale plus a logit bias, sigmoid loss."""

from fgclip_doctor.sources.code.families import Family

FAMILY = Family(
    name="siglip",
    priority=30,
    scale_params={"logit_scale": "global"},
    representation={"logit_scale": "log-scale"},
    bias_params=("logit_bias",),
    terms={"global": "global"},
    sigmoid=frozenset({"logsigmoid", "binary_cross_entropy_with_logits", "BCEWithLogitsLoss"}),
    library_models={"Siglip": "sigmoid", "Siglip2": "sigmoid"},
    world_size_idioms=("dist.get_world_size()",),
    checkpoint_keys=("logit_bias",),
    fixes={"fp16": "--precision amp_bf16"},
)
