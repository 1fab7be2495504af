"""Pure-torch RoIAlign matching ``torchvision.ops.roi_align`` (CPU kernel semantics).

torchvision cannot be installed beside the torch this project runs on, so this module
re-implements its RoIAlign exactly, vectorised over boxes and differentiable w.r.t. the
input through plain indexing ops. ``tests/test_roi_align.py`` checks it against a fixture
produced once by the real torchvision (``tools/make_roi_align_fixture.py``).

Bilinear interpolation is separable: every sample point of a bin is (y, x) with y drawn
from the bin's row samples and x from its column samples, and each of its four corner
weights is (row weight) * (column weight); the out-of-map rule zeroes a sample when y *or*
x is out of range, which is again a product.  So one roi's output is
``Wy @ feature @ Wx^T`` with sparse row/column weights: we gather the needed rows,
contract them, then gather the needed columns and contract those.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

BoxesLike = Tensor | Sequence[Tensor]


def _to_rois(boxes: BoxesLike, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[K, 5] (batch_index, x1, y1, x2, y2) from either accepted box format."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise ValueError(f"boxes tensor must be [K, 5], got {tuple(boxes.shape)}")
        return boxes.to(device=device, dtype=dtype)
    parts = []
    for i, b in enumerate(boxes):  # loop over batch images, not boxes
        if b.dim() != 2 or b.size(1) != 4:
            raise ValueError(f"boxes[{i}] must be [Ki, 4], got {tuple(b.shape)}")
        b = b.to(device=device, dtype=dtype)
        parts.append(torch.cat([b.new_full((b.size(0), 1), float(i)), b], dim=1))
    return torch.cat(parts) if parts else torch.zeros(0, 5, dtype=dtype, device=device)


def _axis_weights(start: Tensor, size: Tensor, grid: Tensor, n_bins: int, n_samp: int, length: int):
    """Bilinear corner indices and weights along one axis (rows or columns).

    start, size: [K] roi start / extent in feature-map coordinates; grid: [K] long, samples
    per bin for each roi (may be <= 0: no samples); n_samp: max(grid) over rois.
    Returns idx [K, n_bins * 2 * n_samp] long in [0, length-1] and w of the same shape
    (0 for masked-out or out-of-map samples), laid out as (bin, sample, low/high corner).
    """
    bin_size = size / n_bins  # [K]
    p = torch.arange(n_bins, device=start.device, dtype=start.dtype)  # [B]
    i = torch.arange(n_samp, device=start.device, dtype=start.dtype)  # [S]
    g = grid.clamp(min=1).to(start.dtype)  # [K]
    # Same evaluation order as torchvision: start + p * bin + (i + .5) * bin / grid.
    c = (
        start[:, None, None]
        + p[None, :, None] * bin_size[:, None, None]
        + (i + 0.5)[None, None, :] * bin_size[:, None, None] / g[:, None, None]
    )  # [K, B, S]
    # Samples beyond -1 / length contribute nothing; masked-out extra samples neither.
    keep = (c >= -1.0) & (c <= length) & (i[None, None, :] < grid[:, None, None])  # [K, B, S]
    c = c.clamp(min=0)  # c <= 0 -> 0
    low = c.long()  # floor, c >= 0
    top = low >= length - 1  # [K, B, S]
    low = torch.where(top, torch.full_like(low, length - 1), low)
    high = torch.where(top, low, low + 1)
    frac = torch.where(top, torch.zeros_like(c), c - low.to(c.dtype))  # l; h = 1 - l
    idx = torch.stack([low, high], dim=-1)  # [K, B, S, 2]
    w = torch.stack([1.0 - frac, frac], dim=-1) * keep[..., None].to(c.dtype)  # [K, B, S, 2]
    return idx.flatten(1), w.flatten(1)


def roi_align(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """RoIAlign with exactly ``torchvision.ops.roi_align``'s semantics, in pure torch.

    Args:
        input: [N, C, H, W] float32 / float64 feature map.
        boxes: Tensor [K, 5] of (batch_index, x1, y1, x2, y2), or a list of N Tensors
            [Ki, 4] of (x1, y1, x2, y2) for image i.  Coordinates are in input-image units;
            they are multiplied by ``spatial_scale`` to reach feature-map units.
        output_size: int or (oh, ow), the pooled size of each roi.
        spatial_scale: feature-map cells per input-image unit.
        sampling_ratio: sample points per bin along each axis; <= 0 means adaptive,
            ceil(roi_h / oh) by ceil(roi_w / ow) for each roi separately.
        aligned: if True, shift box coordinates by -0.5 cell (pixel-centre model); if
            False, the legacy behaviour, where each roi is at least 1 x 1 cell.

    Returns:
        [K, C, oh, ow] tensor: for every bin, the mean of the bilinear samples (samples
        whose y < -1, y > H, x < -1 or x > W count as 0).  Differentiable w.r.t. ``input``.
    """
    if input.dim() != 4:
        raise ValueError(f"input must be [N, C, H, W], got {tuple(input.shape)}")
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else map(int, output_size)
    N, C, H, W = input.shape
    dt = input.dtype
    rois = _to_rois(boxes, dt, input.device)  # [K, 5]
    K = rois.size(0)
    if K == 0:
        return input.new_zeros(0, C, oh, ow)

    offset = 0.5 if aligned else 0.0
    b = rois[:, 0].long()  # [K] batch index (truncated like the C++ int cast)
    x1, y1, x2, y2 = (rois[:, j] * spatial_scale - offset for j in range(1, 5))  # [K] each
    roi_w, roi_h = x2 - x1, y2 - y1  # [K]
    if not aligned:  # legacy: force malformed / tiny rois to 1 x 1
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)

    if sampling_ratio > 0:
        gh = torch.full((K,), sampling_ratio, dtype=torch.long, device=input.device)
        gw = gh
    else:  # adaptive: per roi, ceil(roi size / bins); <= 0 gives an all-zero roi
        gh = torch.ceil(roi_h / oh).long()  # [K]
        gw = torch.ceil(roi_w / ow).long()  # [K]
    sh, sw = max(int(gh.max()), 1), max(int(gw.max()), 1)  # padded sample counts

    yi, wy = _axis_weights(y1, roi_h, gh, oh, sh, H)  # [K, oh*sh*2]
    xi, wx = _axis_weights(x1, roi_w, gw, ow, sw, W)  # [K, ow*sw*2]

    # Rows: advanced indices around a slice put the indexed dims first.
    rows = input[b[:, None], :, yi]  # [K, oh*sh*2, C, W]
    rows = (rows * wy[:, :, None, None]).view(K, oh, sh * 2, C, W).sum(2)  # [K, oh, C, W]
    rows = rows.permute(0, 3, 2, 1)  # [K, W, C, oh]
    # Columns of each roi's row-interpolated map.
    ar = torch.arange(K, device=input.device)
    cols = rows[ar[:, None], xi]  # [K, ow*sw*2, C, oh]
    out = (cols * wx[:, :, None, None]).view(K, ow, sw * 2, C, oh).sum(2)  # [K, ow, C, oh]

    count = (gh * gw).clamp(min=1).to(dt)  # [K] torchvision divides by max(gh*gw, 1)
    return out.permute(0, 2, 3, 1) / count[:, None, None, None]  # [K, C, oh, ow]
