"""A CLIP with region and hard-negative losses next to the global one (FG-CLIP v1 style, tiny).

Region features: the patch tokens of the last layer on their grid, pooled inside each box
(roi_align below: average pooling at output size 1x1 over normalised boxes scaled to the grid),
projected, and contrasted against the box captions with their own scale; hard negatives: each box
against its caption and K rewritten captions, with a third scale.
"""
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel


def roi_align(feature_map, boxes, spatial_scale=1.0):
    # feature_map [B, C, H, W]; boxes [K, 5] = (image index, x1, y1, x2, y2) in map units / spatial_scale
    _, _, h, w = feature_map.shape
    out = []
    for box in boxes:
        b = int(box[0])
        x1, y1, x2, y2 = (box[1:] * spatial_scale).tolist()
        x1, y1 = max(0, min(int(x1), w - 1)), max(0, min(int(y1), h - 1))
        x2, y2 = max(x1 + 1, min(int(round(x2)), w)), max(y1 + 1, min(int(round(y2)), h))
        out.append(feature_map[b, :, y1:y2, x1:x2].mean(dim=(1, 2)))
    return torch.stack(out)[:, :, None, None]


def _embeds(out):
    # transformers 4.x returns the projected features, 5.x an output whose pooler_output holds them
    return out if torch.is_tensor(out) else out.pooler_output


class FineGrainedCLIP(CLIPModel):
    def __init__(self, config):
        super().__init__(config)
        self.logit_scale_finegraind = nn.Parameter(torch.ones([]) * config.logit_scale_init_value)
        self.logit_scale_hardneg = nn.Parameter(torch.ones([]) * config.logit_scale_init_value)
        self.roi_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim)

    def box_features(self, pixel_values, boxes):
        tokens = self.vision_model(pixel_values=pixel_values).last_hidden_state[:, 1:]
        side = int(tokens.shape[1] ** 0.5)
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)
        pooled = roi_align(grid, boxes, spatial_scale=side).flatten(1)
        return F.normalize(self.roi_projection(pooled), dim=-1)

    def encode_text(self, input_ids):
        return F.normalize(_embeds(self.get_text_features(input_ids=input_ids)), dim=-1)

    def forward(self, pixel_values=None, input_ids=None, boxes=None, box_ids=None, hard_ids=None):
        image = F.normalize(_embeds(self.get_image_features(pixel_values=pixel_values)), dim=-1)
        text = self.encode_text(input_ids)
        loss = self.global_loss(image, text)
        regions = self.box_features(pixel_values, boxes)
        box_text = self.encode_text(box_ids)
        loss = loss + self.pair_loss(regions, box_text, self.logit_scale_finegraind)
        k = hard_ids.shape[1]
        rewrites = self.encode_text(hard_ids.flatten(0, 1)).view(regions.shape[0], k, -1)
        loss = loss + self.hard_loss(regions, torch.cat([box_text[:, None], rewrites], 1), self.logit_scale_hardneg)
        return {"loss": loss}

    def global_loss(self, image, text):
        logits = self.logit_scale.exp() * image @ text.T
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    def pair_loss(self, regions, captions, logit_scale):
        logits = logit_scale.exp() * regions @ captions.T
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def hard_loss(self, regions, candidates, logit_scale):
        scores = logit_scale.exp() * torch.einsum("bd,bkd->bk", regions, candidates)
        return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))
