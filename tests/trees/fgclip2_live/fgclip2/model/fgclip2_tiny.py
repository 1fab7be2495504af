"""A SigLIP with a long and a short global caption, regions and hard negatives (FG-CLIP 2 style, tiny).

Global terms: sigmoid, one learned scale and bias shared by the long and the short caption (each
image against every caption of the batch, +1 on the diagonal, -1 elsewhere). Region features: the
vision tower's patch tokens on their grid, averaged inside each box (pool_regions: boxes in [0, 1]
scaled to the grid), projected, and contrasted with softmax against the box captions with their own
scale; hard negatives: each box against its caption and K rewrites, with a third scale.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SiglipModel


def pool_regions(grid, boxes, spatial_scale):
    # grid [B, C, H, W]; boxes [K, 5] = (image index, x1, y1, x2, y2), scaled to the grid by spatial_scale
    _, _, h, w = grid.shape
    pooled = []
    for box in boxes:
        b = int(box[0])
        x1, y1, x2, y2 = (box[1:] * spatial_scale).tolist()
        x1, y1 = max(0, min(int(x1), w - 1)), max(0, min(int(y1), h - 1))
        x2, y2 = max(x1 + 1, min(int(math.ceil(x2)), w)), max(y1 + 1, min(int(math.ceil(y2)), h))
        pooled.append(grid[b, :, y1:y2, x1:x2].mean(dim=(1, 2)))
    return torch.stack(pooled)


def _pooled(out):
    # transformers 4.x returns the pooled features, 5.x an output whose pooler_output holds them
    return out if torch.is_tensor(out) else out.pooler_output


class FGCLIP2(SiglipModel):
    def __init__(self, config):
        super().__init__(config)
        self.logit_scale = nn.Parameter(torch.tensor([math.log(10.0)]))  # SigLIP's start: t = 10, b = -10
        self.logit_bias = nn.Parameter(torch.tensor([-10.0]))
        self.logit_scale_finegraind = nn.Parameter(torch.tensor([config.region_scale_init]))
        self.logit_scale_hardneg = nn.Parameter(torch.tensor([config.region_scale_init]))
        self.box_projection = nn.Linear(config.vision_config.hidden_size, config.vision_config.hidden_size)

    def embed_text(self, input_ids):
        return F.normalize(_pooled(self.get_text_features(input_ids=input_ids)), dim=-1)

    def region_embeds(self, pixel_values, boxes):
        tokens = self.vision_model(pixel_values=pixel_values).last_hidden_state  # [B, side * side, C]
        side = int(tokens.shape[1] ** 0.5)
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)
        return F.normalize(self.box_projection(pool_regions(grid, boxes, side)), dim=-1)

    def forward(self, pixel_values=None, long_ids=None, short_ids=None, boxes=None, box_ids=None, hard_ids=None):
        image = F.normalize(_pooled(self.get_image_features(pixel_values=pixel_values)), dim=-1)
        loss = self.sigmoid_loss(image, self.embed_text(long_ids))
        loss = loss + self.sigmoid_loss(image, self.embed_text(short_ids))
        regions = self.region_embeds(pixel_values, boxes)
        captions = self.embed_text(box_ids)
        loss = loss + 0.1 * self.region_loss(regions, captions)
        k = hard_ids.shape[1]
        rewrites = self.embed_text(hard_ids.flatten(0, 1)).view(regions.shape[0], k, -1)
        loss = loss + 0.5 * self.hardneg_loss(regions, torch.cat([captions[:, None], rewrites], 1))
        return {"loss": loss}

    def sigmoid_loss(self, image, text):
        logits = self.logit_scale.exp() * image @ text.T + self.logit_bias
        signs = 2 * torch.eye(logits.shape[0], device=logits.device) - 1  # +1 on the diagonal, -1 elsewhere
        return -F.logsigmoid(signs * logits).sum() / logits.shape[0]

    def region_loss(self, regions, captions):
        logits = self.logit_scale_finegraind.exp() * regions @ captions.T
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def hardneg_loss(self, regions, candidates):
        scores = self.logit_scale_hardneg.exp() * torch.einsum("bd,bkd->bk", regions, candidates)
        return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))
