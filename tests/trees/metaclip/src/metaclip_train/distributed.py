"""Rank and world from the scheduler: SLURM under srun, torchrun's variables otherwise."""
import os

import torch


def world_info_from_env():
    local_rank, rank, world_size = 0, 0, 1
    for v in ("SLURM_LOCALID", "LOCAL_RANK"):
        if v in os.environ:
            local_rank = int(os.environ[v])
            break
    for v in ("SLURM_PROCID", "RANK"):
        if v in os.environ:
            rank = int(os.environ[v])
            break
    for v in ("SLURM_NTASKS", "WORLD_SIZE"):
        if v in os.environ:
            world_size = int(os.environ[v])
            break
    return local_rank, rank, world_size


def init_distributed_device(args):
    args.local_rank, args.rank, args.world_size = world_info_from_env()
    if args.world_size > 1:
        torch.distributed.init_process_group(backend="nccl", world_size=args.world_size, rank=args.rank)
    return torch.device("cuda", args.local_rank) if torch.cuda.is_available() else torch.device("cpu")
