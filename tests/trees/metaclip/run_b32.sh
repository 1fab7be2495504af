#!/bin/bash
#SBATCH --job-name=b32_400m
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=10
# curated 400M pairs, ViT-B/32

srun --cpu_bind=v --accel-bind=gn python -u -m metaclip_train.main \
    --train-data "/datasets/metaclip_400m/{00000..39999}.tar" \
    --batch-size 128 --epochs 32 --lr 5e-4 --wd 0.2 \
    --warmup 2000 --precision amp --workers 8 \
    --model ViT-B-32 --logs ./logs --name b32_400m \
    --resume latest
