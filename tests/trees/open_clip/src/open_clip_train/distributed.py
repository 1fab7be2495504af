import os

import torch


def init_distributed(args):
    args.rank, args.world_size = 0, 1
    if "WORLD_SIZE" in os.environ:
        torch.distributed.init_process_group(backend="nccl")
        args.world_size = torch.distributed.get_world_size()
        args.rank = torch.distributed.get_rank()
    return args
