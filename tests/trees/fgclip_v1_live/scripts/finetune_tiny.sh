#!/bin/bash
# Fine-tune the tiny base (base/: a CLIP written by save_pretrained, logit_scale at ln 100) on the CPU,
# FG-CLIP v1 style: the base keeps its scale, the two new scales start at --logit_scale_init_value.
cd "$(dirname "$0")/.."
python -m fgclip.train.train_fgclip \
    --model_name_or_path ./base \
    --output_dir ./checkpoints/finetune \
    --per_device_train_batch_size 8 \
    --learning_rate 1e-4 \
    --logging_steps 2 \
    --save_strategy "no" \
    --report_to "none" \
    --use_cpu True
