"""CLIP with a region (RoI) loss and a hard-negative loss next to the global one."""
import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel


class FineGrainedCLIP(CLIPModel):
    def __init__(self, config):
        super().__init__(config)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.logit_scale_finegraind = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.logit_scale_hardneg = nn.Parameter(torch.tensor(config.logit_scale_init_value))

    def forward(self, image=None, text_long=None, text_short=None, box_embeds=None,
                box_text_embeds=None, hard_image=None, hard_text=None):
        rank = dist.get_rank()
        image_embeds = self.encode_image(image)
        long_embeds = self.encode_text(text_long)
        loss = self.global_loss(image_embeds, long_embeds, rank)
        if box_embeds is not None:
            loss = loss + 0.1 * self.pair_loss(box_embeds, box_text_embeds, self.logit_scale_finegraind)
        if hard_image is not None:
            loss = loss + 0.5 * self.hard_loss(hard_image, hard_text, self.logit_scale_hardneg)
        return {"loss": loss}

    def global_loss(self, image_embeds, text_embeds, rank):
        # every rank sees every rank's features (gather keeps the gradient)
        all_images = torch.cat(dist_nn.all_gather(image_embeds), dim=0)
        all_texts = torch.cat(dist_nn.all_gather(text_embeds), dim=0)
        i2t = self.logit_scale.exp() * image_embeds @ all_texts.T
        t2i = self.logit_scale.exp() * text_embeds @ all_images.T
        n = image_embeds.shape[0]
        targets = torch.arange(rank * n, rank * n + n, device=image_embeds.device)
        return (F.cross_entropy(i2t, targets) + F.cross_entropy(t2i, targets)) / 2

    def pair_loss(self, region_embeds, region_texts, logit_scale):
        logits = logit_scale.exp() * region_embeds @ region_texts.T
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def hard_loss(self, region_embeds, rewrites, logit_scale):
        scores = logit_scale.exp() * torch.einsum("bd,bkd->bk", region_embeds, rewrites)
        return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long))
