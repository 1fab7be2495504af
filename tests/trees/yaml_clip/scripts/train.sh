#!/bin/bash
cd "$(dirname "$0")/.."
torchrun --nproc_per_node=4 train.py --config configs/vitb16_kd.yaml --output-dir runs/vitb16_kd
