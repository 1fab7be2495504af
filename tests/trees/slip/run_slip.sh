#!/bin/bash
torchrun --nproc_per_node=8 main.py \
    --model SLIP_VITB16 --dataset yfcc15m \
    --root /datasets/yfcc100m --metadata /datasets/yfcc15m.pkl \
    --output-dir ./output/slip_vitb16 \
    --batch-size 64 --epochs 25 --lr 3e-3 --wd 0.1 \
    --warmup-epochs 1 --ssl-scale 1.0 --ssl-temp 0.1
