"""FG-CLIP's three contrastive losses as modules, split as open_clip does: targets, logits, loss.

Each head returns a `HeadOutput(logits, targets, loss)`; `logits` are the image->text (or
box->caption) rows whose columns are the candidates, so `logits.shape[1]` is the number of
candidates each positive competes with and ln(candidates) is the chance level of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class HeadOutput:
    logits: torch.Tensor  # [rows, candidates]
    targets: torch.Tensor  # [rows] index of the positive column
    loss: torch.Tensor  # [] mean over rows (and directions)


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for our slice (all_reduce + slice)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        ctx.rank, ctx.rows = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)  # [W*B, D]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """[B, D] per rank -> [W*B, D] from every rank, differentiable; identity on one process."""
    if world()[1] == 1:
        return x
    return _AllGatherWithGrad.apply(x)


class GlobalContrastiveLoss(nn.Module):
    """Image <-> caption InfoNCE over the global batch (features gathered across ranks)."""

    def forward(self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> HeadOutput:
        # image, text: [B, D] L2-normalised, this rank's rows; logit_scale: [] ln-value.
        rank, _ = world()
        all_image, all_text = gather_features(image), gather_features(text)  # [W*B, D]
        scale = logit_scale.exp()
        logits_i2t = scale * image @ all_text.t()  # [B, W*B]
        logits_t2i = scale * text @ all_image.t()  # [B, W*B]
        # Our rows sit at rank*B .. rank*B+B-1 of the gathered columns.
        targets = torch.arange(image.shape[0], device=image.device) + rank * image.shape[0]
        loss = (F.cross_entropy(logits_i2t, targets) + F.cross_entropy(logits_t2i, targets)) / 2
        return HeadOutput(logits_i2t, targets, loss)


class RegionContrastiveLoss(nn.Module):
    """Box feature <-> box caption InfoNCE over this rank's valid boxes, plus the memory bank.

    Box->caption rows get the queued caption features as extra columns once the bank is warm;
    queued entries whose caption equals the row's own caption are masked (-inf), since they
    are copies of the positive (false negatives). Caption->box rows stay in-batch.
    """

    def __init__(self, mask_same_caption: bool = True) -> None:
        super().__init__()
        self.mask_same_caption = mask_same_caption

    def forward(
        self,
        boxes: torch.Tensor,
        captions: torch.Tensor,
        logit_scale: torch.Tensor,
        caption_ids: torch.Tensor | None = None,
        queue: torch.Tensor | None = None,
        queue_ids: torch.Tensor | None = None,
    ) -> HeadOutput:
        # boxes, captions: [k, D] normalised; caption_ids [k]; queue [F, D], queue_ids [F].
        scale = logit_scale.exp()
        targets = torch.arange(boxes.shape[0], device=boxes.device)
        logits_b2c = scale * boxes @ captions.t()  # [k, k]
        if queue is not None and queue.shape[0] > 0:
            extra = scale * boxes @ queue.to(boxes.dtype).t()  # [k, F]
            if self.mask_same_caption and caption_ids is not None and queue_ids is not None:
                same = caption_ids[:, None] == queue_ids[None, :]  # [k, F]
                extra = extra.masked_fill(same, float("-inf"))
            logits_b2c = torch.cat([logits_b2c, extra], dim=1)  # [k, k + F]
        logits_c2b = scale * captions @ boxes.t()  # [k, k]
        loss = (F.cross_entropy(logits_b2c, targets) + F.cross_entropy(logits_c2b, targets)) / 2
        return HeadOutput(logits_b2c, targets, loss)


class HardNegativeLoss(nn.Module):
    """Each box against its own caption (column 0) and its rewritten hard negatives."""

    def forward(self, boxes: torch.Tensor, captions: torch.Tensor, logit_scale: torch.Tensor) -> HeadOutput:
        # boxes: [h, D]; captions: [h, 1 + n_neg, D], all normalised.
        logits = logit_scale.exp() * torch.einsum("hd,hnd->hn", boxes, captions)  # [h, 1 + n_neg]
        targets = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
        return HeadOutput(logits, targets, F.cross_entropy(logits, targets))
