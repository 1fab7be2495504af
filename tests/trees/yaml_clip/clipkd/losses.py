import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def gather_features(image_features, text_features):
    world = dist.get_world_size()
    images = [torch.zeros_like(image_features) for _ in range(world)]
    texts = [torch.zeros_like(text_features) for _ in range(world)]
    dist.all_gather(images, image_features)
    dist.all_gather(texts, text_features)
    images[dist.get_rank()], texts[dist.get_rank()] = image_features, text_features
    return torch.cat(images), torch.cat(texts)


class ContrastiveLoss(nn.Module):
    def forward(self, image_features, text_features, logit_scale):
        all_images, all_texts = gather_features(image_features, text_features)
        logits = logit_scale * image_features @ all_texts.T
        labels = torch.arange(logits.shape[0]) + dist.get_rank() * logits.shape[0]
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logit_scale * text_features @ all_images.T, labels)) / 2


class SigmoidLoss(nn.Module):
    def forward(self, image_features, text_features, logit_scale):
        logits = logit_scale * image_features @ text_features.T - 10.0
        labels = 2 * torch.eye(logits.shape[0]) - 1
        return -F.logsigmoid(labels * logits).sum() / logits.shape[0]


class DistillLoss(nn.Module):
    """KL between the teacher's and the student's image-text logits (softened by a temperature)."""

    def __init__(self, temperature=1.0):
        super().__init__()
        self.t = temperature

    def forward(self, student_logits, teacher_logits):
        return F.kl_div(
            F.log_softmax(student_logits / self.t, dim=1), F.softmax(teacher_logits / self.t, dim=1), reduction="batchmean"
        ) * self.t**2
