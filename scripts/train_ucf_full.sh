#!/usr/bin/env bash
# What a GPU user runs: FG-CLIP stage-2 fine-tuning of OpenAI CLIP ViT-B/16 on UCF-Crime region
# annotations, 4 GPUs with DeepSpeed ZeRO-2, bf16. Weights and data are local directories.
set -e

export ENABLE_RUNTIME_DIAG=${ENABLE_RUNTIME_DIAG:-0}
MODEL=/data/models/clip-vit-base-patch16          # HF-format openai/clip-vit-base-patch16
DATA=/data/ucf_crime/fgclip_annotations
OUTPUT=./checkpoints/fgclip_ucf_full
GPUS=localhost:0,1,2,3
BATCH=16
ACCUM=8

deepspeed --include $GPUS --master_port 29501 --module fgclip.train \
    --deepspeed scripts/zero2.json \
    --model_name_or_path $MODEL \
    --base_model $MODEL \
    --from_openai True \
    --data_path $DATA/train.jsonl \
    --image_folder $DATA/frames \
    --base_image_size 224 \
    --max_seq_length 248 \
    --base_seq_length 77 \
    --add_box_loss True \
    --use_hard_neg True \
    --memory_bank_size 128 \
    --memory_bank_warmup_steps 50 \
    --text_model_lr 4e-6 \
    --roi_projection_lr 1e-4 \
    --bf16 True \
    --output_dir $OUTPUT \
    --num_train_epochs 10 \
    --per_device_train_batch_size $BATCH \
    --gradient_accumulation_steps $ACCUM \
    --learning_rate 2e-5 \
    --weight_decay 0.05 \
    --warmup_steps 0.03 \
    --lr_scheduler_type cosine \
    --logging_steps 10 \
    --save_strategy steps \
    --save_steps 500 \
    --save_total_limit 5 \
    --dataloader_num_workers 8 \
    --gradient_checkpointing False \
    --report_to tensorboard \
    --seed 42
