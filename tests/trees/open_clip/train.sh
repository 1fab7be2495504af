#!/bin/bash
cd src
torchrun --nproc_per_node 4 -m open_clip_train.main \
    --train-data /data/cc12m/shards.tar \
    --batch-size 320 --precision amp --workers 4 \
    --warmup 10000 --lr 1e-3 --wd 0.1 --epochs 30 \
    --model RN50 --local-loss --gather-with-grad
