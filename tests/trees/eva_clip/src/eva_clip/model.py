"""Vision transformer blocks and a text tower; the temperature is a learned log scale."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.mlp = nn.Linear(width, width)

    def forward(self, x):
        return x + self.mlp(self.norm1(x))


class EVAVisionTransformer(nn.Module):
    def __init__(self, layers, width, embed_dim, **kwargs):
        super().__init__()
        self.patch_embed = nn.Linear(3 * 16 * 16, width)
        self.blocks = nn.ModuleList([Block(width) for _ in range(layers)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, embed_dim)

    def get_num_layers(self):
        return len(self.blocks)

    def forward(self, x):
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x).mean(1))


class TextTransformer(nn.Module):
    def __init__(self, layers, width, embed_dim, vocab_size, **kwargs):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.blocks = nn.ModuleList([Block(width) for _ in range(layers)])
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Linear(width, embed_dim)

    def forward(self, text):
        x = self.token_embedding(text)
        for blk in self.blocks:
            x = blk(x)
        return self.text_projection(self.ln_final(x)[:, -1])


class CustomCLIP(nn.Module):
    def __init__(self, embed_dim, vision_cfg, text_cfg):
        super().__init__()
        self.visual = EVAVisionTransformer(embed_dim=embed_dim, **vision_cfg)
        self.text = TextTransformer(embed_dim=embed_dim, **text_cfg)
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def forward(self, image, text):
        image_features = F.normalize(self.visual(image), dim=-1)
        text_features = F.normalize(self.text(text), dim=-1)
        return image_features, text_features, self.logit_scale.exp()
