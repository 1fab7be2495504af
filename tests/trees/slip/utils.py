import torch
import torch.distributed as dist


def get_rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def all_gather_batch_with_grad(tensors):
    world_size = dist.get_world_size()
    if world_size == 1:
        return tensors
    output = []
    for tensor in tensors:
        output.append(torch.cat(torch.distributed.nn.all_gather(tensor), dim=0))
    return output
