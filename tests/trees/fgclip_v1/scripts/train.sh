#!/bin/bash
# Second-stage fine-tuning of a CLIP into a fine-grained CLIP (FG-CLIP v1 style launch).
base="openai/clip-vit-base-patch16"   # from_openai True: copy and stretch the position table
annotations="data/finegrained/jsonfiles"
images="data/finegrained/images/"

deepspeed fgclip/train/train_mem.py \
    --deepspeed ./scripts/zero2.json \
    --base_model $base \
    --model_name_or_path $base \
    --data_path $annotations \
    --image_folder $images \
    --output_dir ./checkpoints/stage2 \
    --train_use_word_size 8 \
    --add_box_loss True \
    --use_hard_neg True \
    --from_openai True \
    --max_seq_length 248 \
    --num_train_epochs 1 \
    --bf16 True \
    --per_device_train_batch_size 512 \
    --gradient_accumulation_steps 1 \
    --evaluation_strategy "no" \
    --save_strategy "epoch" \
    --learning_rate 1e-6 \
    --weight_decay 0.001 \
    --warmup_steps 200 \
    --lr_scheduler_type "cosine" \
    --logging_steps 1 \
    --report_to "none"
