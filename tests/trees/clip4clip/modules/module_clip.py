import os

import torch
from torch import nn

_MODELS = {"ViT-B/32": "ViT-B-32.pt", "ViT-B/16": "ViT-B-16.pt"}


class CLIP(nn.Module):
    def __init__(self, embed_dim, image_resolution, vision_layers, vision_width, context_length, vocab_size):
        super().__init__()
        self.context_length = context_length
        self.visual = nn.Linear(3 * 32 * 32, vision_width)
        self.visual_proj = nn.Parameter(torch.empty(vision_width, embed_dim))
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        self.text_projection = nn.Parameter(torch.empty(embed_dim, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]))

    @staticmethod
    def get_config(pretrained_clip_name="ViT-B/32"):
        model_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), _MODELS[pretrained_clip_name])
        model = torch.jit.load(model_path, map_location="cpu").eval()
        return model.state_dict()

    def encode_image(self, image):
        return self.visual(image) @ self.visual_proj

    def encode_text(self, text):
        return self.token_embedding(text)[:, 0] @ self.text_projection
