#!/bin/bash
# The same tiny run as FG-CLIP launches it: deepspeed with a ZeRO-2 config (optimizer offloaded to the CPU).
cd "$(dirname "$0")/.."
export PYTHONPATH=.
deepspeed fgclip/train/train_mem.py \
    --deepspeed ./scripts/zero2.json \
    --output_dir ./checkpoints/ds \
    --per_device_train_batch_size 8 \
    --learning_rate 1e-3 \
    --logging_steps 2 \
    --report_to "none"
