#!/usr/bin/env bash
# The team's broken launch (docs/seed-incident.md), on the tiny CPU setup. Three silent mistakes:
#   1. the new (finegrained / hardneg) scales start at 2.6592 = ln(1/0.07), T 14.3, while the
#      base CLIP sits at ln 100 = 4.6052 (T 100);
#   2. the memory bank warmup is 400 FORWARD calls; with gradient accumulation 8 that is
#      optimizer step 50, after the 40-step run has ended: the bank never switches on;
#   3. fgclip.train auto-resumes from any checkpoint-* in the output dir.
set -euo pipefail
DATA=${DATA:-${FGCLIP_CACHE:-$HOME/.cache/fgclip-doctor}/synthetic-v1}
OUT=${OUT:-runs/seed-bug}

python -m fgclip.train \
    --model_name_or_path $DATA/base \
    --base_model $DATA/base \
    --from_openai True \
    --data_path $DATA/train.jsonl \
    --image_folder $DATA \
    --base_image_size 64 \
    --add_box_loss True \
    --use_hard_neg True \
    --logit_scale_init_value 2.6592 \
    --memory_bank_size 128 \
    --memory_bank_warmup_steps 400 \
    --per_device_train_batch_size 8 \
    --gradient_accumulation_steps 8 \
    --max_steps 40 \
    --learning_rate 5e-4 \
    --warmup_steps 5 \
    --weight_decay 0.0 \
    --lr_scheduler_type cosine \
    --logging_steps 5 \
    --save_strategy steps \
    --save_steps 20 \
    --report_to none \
    --dataloader_num_workers 0 \
    --seed 0 \
    --output_dir $OUT
