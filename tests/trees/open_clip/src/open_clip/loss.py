import torch
import torch.distributed.nn
import torch.nn.functional as F
from torch import nn


def gather_all(image_features, text_features, gather_with_grad=False):
    """Features of every rank, concatenated (autograd-aware when asked)."""
    if gather_with_grad:
        return (torch.cat(torch.distributed.nn.all_gather(image_features), dim=0),
                torch.cat(torch.distributed.nn.all_gather(text_features), dim=0))
    images = [torch.zeros_like(image_features) for _ in range(torch.distributed.get_world_size())]
    texts = [torch.zeros_like(text_features) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(images, image_features)
    torch.distributed.all_gather(texts, text_features)
    return torch.cat(images, dim=0), torch.cat(texts, dim=0)


class ContrastiveLoss(nn.Module):
    def __init__(self, local_loss=False, gather_with_grad=False, rank=0, world_size=1):
        super().__init__()
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad
        self.rank, self.world_size = rank, world_size

    def forward(self, image_features, text_features, logit_scale):
        if self.world_size > 1:
            all_images, all_texts = gather_all(image_features, text_features, self.gather_with_grad)
            per_image = logit_scale * image_features @ all_texts.T
            per_text = logit_scale * text_features @ all_images.T
        else:
            per_image = logit_scale * image_features @ text_features.T
            per_text = per_image.T
        n = per_image.shape[0]
        labels = torch.arange(n, device=per_image.device) + n * self.rank
        return (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2
