#!/bin/bash
# A tiny FG-CLIP 2 style run on the CPU: sigmoid global terms with a learned bias, softmax region terms.
cd "$(dirname "$0")/.."
python -m fgclip2.train.train \
    --output_dir ./checkpoints/tiny \
    --per_device_train_batch_size 8 \
    --learning_rate 1e-3 \
    --logging_steps 2 \
    --save_strategy "no" \
    --report_to "none" \
    --use_cpu True
