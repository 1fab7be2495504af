python -m torch.distributed.launch --nproc_per_node=8 --use_env Pretrain.py \
    --config ./configs/Pretrain.yaml \
    --output_dir output/Pretrain
