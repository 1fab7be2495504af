#!/bin/bash
torchrun --nproc_per_node 8 run_clip.py \
    --output_dir ./clip-finetuned \
    --model_name_or_path ./clip-base \
    --train_file data/train.json \
    --do_train \
    --per_device_train_batch_size 64 \
    --learning_rate 5e-5 --warmup_steps 0 --weight_decay 0.1
