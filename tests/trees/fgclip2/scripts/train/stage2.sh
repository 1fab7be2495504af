#!/bin/bash
# Stage-2 training of a SigLIP-2 based fine-grained model (FG-CLIP 2 style launch).
export NCCL_IB_GID_INDEX=5
MODELS="/models"
name="siglip2-base-patch16-naflex"

deepspeed fgclip2/train/train.py \
    --deepspeed ./scripts/zero2.json \
    --base_model $MODELS/$name \
    --model_name_or_path $MODELS/$name \
    --data_path en_pairs/ \
    --loss_type reduce \
    --output_dir ./checkpoints/stage2 \
    --train_use_word_size 8 \
    --add_box_loss True \
    --use_hard_neg True \
    --bf16 True \
    --per_device_train_batch_size 512 \
    --num_train_epochs 6 \
    --learning_rate 1e-6 \
    --weight_decay 0.001 \
    --warmup_ratio 0.03 \
    --lr_scheduler_type "cosine" \
    --report_to "none"
