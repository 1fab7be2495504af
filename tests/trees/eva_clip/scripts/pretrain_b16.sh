#!/bin/bash
# usage: bash scripts/pretrain_b16.sh <train shards>   (one call per node)
train_data=$1
MODEL=EVA02-CLIP-B-16
export PYTHONPATH=$(pwd)/src:${PYTHONPATH:-}

python -m torch.distributed.launch --nproc_per_node=8 \
        --nnodes=$WORLD_SIZE --node_rank=$RANK \
        --master_addr=$MASTER_ADDR --master_port=12355 --use_env \
        src/training/main.py \
        --train-data=${train_data} \
        --train-num-samples 400000000 \
        --batch-size=512 \
        --epochs=20 \
        --lr=5e-4 \
        --wd=0.05 \
        --layer-decay=0.75 \
        --warmup=2000 \
        --precision=amp_bf16 \
        --model=${MODEL} \
        --enable-deepspeed --zero-stage=1 \
        --grad-clip-norm=5.0 \
        --logs=./logs --name=eva02_b16
