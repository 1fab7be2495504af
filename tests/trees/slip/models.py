import numpy as np
import torch
from torch import nn


class CLIP(nn.Module):
    def __init__(self, embed_dim=512, vision_width=768, transformer_width=512):
        super().__init__()
        self.visual = nn.Linear(3 * 16 * 16, vision_width)
        self.image_projection = nn.Parameter(torch.empty(vision_width, embed_dim))
        self.token_embedding = nn.Embedding(49408, transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def encode_image(self, image):
        return self.visual(image).mean(1) @ self.image_projection

    def encode_text(self, text):
        return self.token_embedding(text)[:, 0] @ self.text_projection

    def forward(self, image, text):
        return {"image_embed": self.encode_image(image), "text_embed": self.encode_text(text),
                "logit_scale": self.logit_scale.exp()}


class SLIP(CLIP):
    def __init__(self, ssl_emb_dim=256, **kwargs):
        super().__init__(**kwargs)
        self.image_mlp = nn.Sequential(nn.Linear(768, 4096), nn.ReLU(), nn.Linear(4096, ssl_emb_dim))

    def forward(self, image, text, aug1, aug2):
        out = super().forward(image, text)
        out["aug1_embed"] = self.image_mlp(self.visual(aug1).mean(1))
        out["aug2_embed"] = self.image_mlp(self.visual(aug2).mean(1))
        return out


def SLIP_VITB16(**kwargs):
    return SLIP(embed_dim=512, vision_width=768, transformer_width=512, **kwargs)
