#!/usr/bin/env bash
# Healthy tiny FG-CLIP fine-tune on the CPU: synthetic shapes, tiny base CLIP, 60 optimizer steps.
# Data and base come from `python -m fgclip.synthetic --out $DATA` (generated on first use by --preset).
set -euo pipefail
DATA=${DATA:-${FGCLIP_CACHE:-$HOME/.cache/fgclip-doctor}/synthetic-v1}
OUT=${OUT:-runs/tiny}

python -m fgclip.train \
    --model_name_or_path $DATA/base \
    --base_model $DATA/base \
    --from_openai True \
    --data_path $DATA/train.jsonl \
    --image_folder $DATA \
    --base_image_size 64 \
    --add_box_loss True \
    --use_hard_neg True \
    --memory_bank_size 128 \
    --memory_bank_warmup_steps 50 \
    --per_device_train_batch_size 8 \
    --gradient_accumulation_steps 1 \
    --max_steps 60 \
    --learning_rate 5e-4 \
    --warmup_steps 5 \
    --weight_decay 0.0 \
    --lr_scheduler_type cosine \
    --logging_steps 5 \
    --save_strategy steps \
    --save_steps 60 \
    --report_to none \
    --dataloader_num_workers 0 \
    --seed 0 \
    --output_dir $OUT
