"""A tiny region-contrastive model in FG-CLIP v1's style, for the placed probes' own tests.

Patch features on a grid, boxes pooled by the module's own `crop_mean` (box corners scaled to the
grid, cells averaged), a box->caption loss with its own scale in `match_loss`, a global loss in a
head module. `grid_scale` is the factor boxes are scaled by before pooling: the grid side for
normalised boxes (right), 1 for a loader that forgets it (every box inside the first cell: the
boxes of one image pool the same feature), or 100 (every box off the grid: zero features).
`crop_mean` imports cross_entropy by name, as some code does, to show the mode sees it anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.functional import cross_entropy


def crop_mean(grid, boxes, scale=1.0):
    # grid [B, C, H, W]; boxes [K, 5] = (image, x1, y1, x2, y2); zero where a box misses the grid
    _, _, h, w = grid.shape
    rows = []
    for box in boxes:
        x1, y1, x2, y2 = (box[1:] * scale).tolist()
        x1, y1, x2, y2 = int(x1), int(y1), int(x2 + 0.999), int(y2 + 0.999)
        if x1 >= w or y1 >= h:
            rows.append(grid.new_zeros(grid.shape[1]))
            continue
        rows.append(grid[int(box[0]), :, y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)].mean(dim=(1, 2)))
    return torch.stack(rows)


class PairHead(nn.Module):
    def forward(self, a, b, logit_scale):
        logits = logit_scale.exp() * a @ b.t()
        targets = torch.arange(a.shape[0])
        return (cross_entropy(logits, targets) + cross_entropy(logits.t(), targets)) / 2


class TinyRegions(nn.Module):
    def __init__(self, side: int = 4, dim: int = 8, grid_scale: float | None = None) -> None:
        super().__init__()
        self.side, self.grid_scale = side, float(side if grid_scale is None else grid_scale)
        self.patch = nn.Linear(3, dim)
        self.text = nn.Embedding(50, dim)
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))
        self.logit_scale_finegrained = nn.Parameter(torch.tensor(4.6052))
        self.head = PairHead()

    def regions(self, pixels, boxes):
        grid = self.patch(pixels.flatten(2).transpose(1, 2))  # [B, side*side, D]
        grid = grid.transpose(1, 2).reshape(pixels.shape[0], -1, self.side, self.side)
        return F.normalize(crop_mean(grid, boxes, self.grid_scale), dim=-1)

    def match_loss(self, boxes, captions, logit_scale):
        logits = logit_scale.exp() * boxes @ captions.t()
        return F.cross_entropy(logits, torch.arange(boxes.shape[0]))

    def forward(self, pixels, ids, boxes, box_ids):
        image = F.normalize(self.patch(pixels.flatten(2).transpose(1, 2)).mean(1), dim=-1)
        text = F.normalize(self.text(ids).mean(1), dim=-1)
        loss = self.head(image, text, self.logit_scale)
        feats = self.regions(pixels, boxes)
        return loss + self.match_loss(
            feats, F.normalize(self.text(box_ids).mean(1), dim=-1), self.logit_scale_finegrained
        )


def batch(images: int = 4, boxes: int = 2, side: int = 4, seed: int = 0) -> dict:
    """Random pixels on a side x side grid, `boxes` normalised boxes an image in different corners."""
    g = torch.Generator().manual_seed(seed)
    corners = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]])[:boxes]
    rois = torch.cat([torch.cat([torch.full((boxes, 1), float(i)), corners], 1) for i in range(images)])
    return {
        "pixels": torch.randn(images, 3, side, side, generator=g),
        "ids": torch.randint(0, 50, (images, 6), generator=g),
        "boxes": rois,
        "box_ids": torch.randint(0, 50, (images * boxes, 6), generator=g),
    }


#: where the reader would place the probes in this module (reader/sites.py's format)
SITES = [
    {"what": "term", "term": "global", "module": __name__, "qualname": "PairHead.forward", "kind": "module", "at": "h"},
    {
        "what": "term",
        "term": "region",
        "module": __name__,
        "qualname": "TinyRegions.match_loss",
        "kind": "method",
        "at": "m",
    },
    {"what": "box_features", "module": __name__, "qualname": "TinyRegions.regions", "kind": "method", "at": "r"},
    {
        "what": "roi",
        "module": __name__,
        "qualname": "crop_mean",
        "kind": "function",
        "caller": __name__,
        "name": "crop_mean",
        "at": "c",
    },
]
