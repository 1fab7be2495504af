"""FG-CLIP (360CVGroup/FG-CLIP v1 / 2, its forks, the bundled subject): three log-scales, HF flags."""

from fgclip_doctor.sources.code.families import Family

FAMILY = Family(
    name="fgclip",
    priority=0,
    scale_params={
        "logit_scale_finegrained": "finegrained",
        "logit_scale_finegraind": "finegrained",  # FG-CLIP v1's spelling
        "logit_scale_hardneg": "hardneg",
    },
    representation={"logit_scale_finegrained": "log-scale", "logit_scale_finegraind": "log-scale"},
    terms={"finegrained": "region", "hardneg": "hardneg"},
    softmax=frozenset({"cross_entropy", "CrossEntropyLoss", "nll_loss", "log_softmax"}),
    gather=frozenset({"all_gather", "all_gather_into_tensor", "_all_gather_base"}),
    flag_dests={"data.max_boxes": ("max_boxes",), "text.max_seq_length": ("max_seq_length",)},
    world_size_idioms=("dist.get_world_size()",),
    checkpoint_keys=(
        "logit_scale_finegrained",
        "logit_scale_finegraind",
        "logit_scale_hardneg",
        "roi_projection.weight",
    ),
    fixes={"fp16": "--bf16 True", "scale-init": "--logit_scale_init_value 4.6052 (or leave it unset)"},
    hard_negative_attrs=("num_hard_negatives",),
)
