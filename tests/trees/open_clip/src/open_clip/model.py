import numpy as np
import torch
from torch import nn


class TwoTowerCLIP(nn.Module):
    def __init__(self, name, init_logit_scale: float = np.log(1 / 0.07)):
        super().__init__()
        self.name = name
        self.logit_scale = nn.Parameter(torch.ones([]) * init_logit_scale)

    def forward(self, images, texts):
        return self.visual(images), self.text(texts), self.logit_scale.exp()
