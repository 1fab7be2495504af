#!/bin/bash
# A tiny fine-grained CLIP run on the CPU (FG-CLIP v1 style launch; the package is called fgclip).
cd "$(dirname "$0")/.."
python -m fgclip.train.train_fgclip \
    --output_dir ./checkpoints/tiny \
    --per_device_train_batch_size 8 \
    --learning_rate 1e-3 \
    --logging_steps 2 \
    --save_strategy "no" \
    --report_to "none" \
    --use_cpu True
