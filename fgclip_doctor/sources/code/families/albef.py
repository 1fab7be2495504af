"""ALBEF / BLIP / X-VLM ITC: a learned temperature `temp` the logits are divided by (clamped to a
range), image-text contrast against a momentum encoder's queue of keys, settings in a YAML config."""

from fgclip_doctor.sources.code.families import Family

FAMILY = Family(
    name="albef",
    priority=45,
    scale_params={"temp": "global"},
    representation={"temp": "temperature"},
    terms={"global": "global"},
    softmax=frozenset({"log_softmax", "cross_entropy"}),
    gather=frozenset({"all_gather"}),
    flag_dests={"train.per_device_batch": ("batch_size",), "train.learning_rate": ("lr",)},
    world_size_idioms=("dist.get_world_size()",),
    checkpoint_keys=("temp", "image_queue", "text_queue"),
)
