"""Two towers and a learned temperature, stored as its log."""
import numpy as np
import torch
from torch import nn


class Tower(nn.Module):
    def __init__(self, width, embed_dim):
        super().__init__()
        self.proj = nn.Linear(width, embed_dim)
        self.ln_final = nn.LayerNorm(embed_dim)

    def forward(self, x):
        return self.ln_final(self.proj(x))


class CLIP(nn.Module):
    def __init__(self, embed_dim=512, vision_width=768, text_width=512):
        super().__init__()
        self.visual = Tower(vision_width, embed_dim)
        self.transformer = Tower(text_width, embed_dim)
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def forward(self, image, text):
        image_features = nn.functional.normalize(self.visual(image), dim=-1)
        text_features = nn.functional.normalize(self.transformer(text), dim=-1)
        return image_features, text_features, self.logit_scale.exp()


def create_model(name, precision="fp32"):
    widths = {"ViT-B-32": (768, 512), "ViT-L-14": (1024, 768)}[name]
    return CLIP(512, *widths)
