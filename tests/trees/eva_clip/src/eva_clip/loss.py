import torch
import torch.distributed.nn
import torch.nn.functional as F
from torch import nn


class ClipLoss(nn.Module):
    def __init__(self, local_loss=False, rank=0, world_size=1):
        super().__init__()
        self.local_loss, self.rank, self.world_size = local_loss, rank, world_size

    def forward(self, image_features, text_features, logit_scale):
        if self.world_size > 1:
            all_image_features = torch.cat(torch.distributed.nn.all_gather(image_features), dim=0)
            all_text_features = torch.cat(torch.distributed.nn.all_gather(text_features), dim=0)
            logits_per_image = logit_scale * image_features @ all_text_features.T
            logits_per_text = logit_scale * text_features @ all_image_features.T
        else:
            logits_per_image = logit_scale * image_features @ text_features.T
            logits_per_text = logits_per_image.T
        n = logits_per_image.shape[0]
        labels = torch.arange(n, device=image_features.device) + n * self.rank
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
