"""Generate ``tests/fixtures/roi_align_ref.safetensors``: reference RoIAlign numbers from
the real ``torchvision.ops.roi_align``, for ``tests/test_roi_align.py``.

This script is run ONCE, by hand, in a throw-away venv that has torchvision; the project's
own venv (torch 2.13 CPU) has no torchvision and the test suite never needs it: the tests
only read the committed fixture with ``safetensors``.  It was run as::

    python3 -m venv /tmp/tvenv
    /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 safetensors numpy
    /tmp/tvenv/bin/python tools/make_roi_align_fixture.py

(torch 2.14.1, torchvision 0.29.1, CPU kernel; the versions actually used are also
written into the file's metadata.)

Layout: for every case NAME the tensors ``NAME/input`` [N, C, H, W], ``NAME/boxes``
[K, 5] (batch_index, x1, y1, x2, y2), ``NAME/output`` [K, C, oh, ow], ``NAME/weight``
(same shape as output) and ``NAME/grad`` = d (output * weight).sum() / d input.  The
metadata key ``cases`` holds a JSON list of {name, output_size, spatial_scale,
sampling_ratio, aligned, dtype, note}; ``torch`` / ``torchvision`` hold the versions.
"""

from __future__ import annotations

import itertools
import json
import os
import sys

import torch
import torchvision
from safetensors.torch import save_file
from torchvision.ops import roi_align

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "roi_align_ref.safetensors")


def mixed_boxes(g: torch.Generator, n: int, h: int, w: int, scale: float) -> torch.Tensor:
    """[K, 5] boxes in image units (feature units / scale) of every awkward kind."""

    def u(lo, hi):
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    feat = []  # (x1, y1, x2, y2) in feature-map cells
    for _ in range(2):  # fully inside
        x1, y1 = u(0, w - 3), u(0, h - 3)
        feat.append((x1, y1, u(x1 + 1.5, w), u(y1 + 1.5, h)))
    feat.append((u(-3, -0.5), u(-3, -0.5), u(2, w - 1), u(2, h - 1)))  # over top-left edge
    feat.append((u(1, w - 3), u(1, h - 3), u(w + 0.5, w + 3), u(h + 0.5, h + 3)))  # bottom-right
    feat.append((u(-2, 0), u(1, 3), u(w, w + 2), u(h - 2, h - 1)))  # wider than the map
    for _ in range(2):  # tiny: < 1 cell
        x1, y1 = u(0, w - 1), u(0, h - 1)
        feat.append((x1, y1, x1 + u(0.05, 0.9), y1 + u(0.05, 0.9)))
    x1, y1 = u(w - 1, w), u(h - 1, h)
    feat.append((x1, y1, x1 + u(0.1, 0.9), y1 + u(0.1, 0.9)))  # tiny, on the far edge
    feat.append((w + 1.5, h + 1.5, w + 3.0, h + 3.0))  # fully outside: far side
    feat.append((2.0, 2.0, 2.0, 2.0))  # zero-size point box
    feat.append((u(3, 5), u(3, 5), u(0, 2), u(0, 2)))  # malformed: x2 < x1, y2 < y1
    xy = torch.tensor(feat, dtype=torch.float64) / scale
    bidx = torch.randint(0, n, (len(feat), 1), generator=g).double()  # batches interleaved
    bidx[0], bidx[1] = 0, n - 1
    return torch.cat([bidx, xy], dim=1).float()


def fgclip_boxes(g: torch.Generator, n: int, grid: int, k_per: int) -> torch.Tensor:
    """FG-CLIP style: normalised [0, 1] xyxy boxes per image, scaled by the patch grid."""
    rows = []
    for i in range(n):
        xy = torch.rand(k_per, 2, 2, generator=g).sort(dim=1).values  # [k, (lo, hi), (x, y)]
        nb = torch.stack([xy[:, 0, 0], xy[:, 0, 1], xy[:, 1, 0], xy[:, 1, 1]], dim=1)
        nb[0] = torch.tensor([0.0, 0.0, 1.0, 1.0])  # whole image
        rows.append(torch.cat([torch.full((k_per, 1), float(i)), nb * grid], dim=1))
    return torch.cat(rows).float()


def run_case(g, name, inp, boxes, params, cases, tensors, note):
    inp = inp.clone().requires_grad_(True)
    out = roi_align(inp, boxes.to(inp.dtype), **params)
    weight = torch.randn(out.shape, generator=g, dtype=inp.dtype)
    (grad,) = torch.autograd.grad((out * weight).sum(), inp)
    for key, t in (("input", inp), ("boxes", boxes), ("output", out), ("weight", weight), ("grad", grad)):
        tensors[f"{name}/{key}"] = t.detach().contiguous()
    cases.append(
        {
            "name": name,
            **params,
            "output_size": list(params["output_size"]),
            "dtype": str(inp.dtype).replace("torch.", ""),
            "note": note,
        }
    )


def main() -> None:
    g = torch.Generator().manual_seed(20240611)
    cases, tensors = [], {}
    n, c, h, w = 2, 2, 7, 9
    grid = itertools.product([True, False], [1, 2, 4, -1], [1, 2, 7], [1.0, 0.5])
    for aligned, sr, os_, scale in grid:
        name = f"a{int(aligned)}_sr{sr}_o{os_}_s{scale:g}"
        inp = torch.randn(n, 1 if os_ == 7 else c, h, w, generator=g)  # C=1 keeps 7x7 small
        boxes = mixed_boxes(g, n, h, w, scale)
        params = dict(output_size=(os_, os_), spatial_scale=scale, sampling_ratio=sr, aligned=aligned)
        run_case(g, name, inp, boxes, params, cases, tensors, "mixed boxes")
    # Non-square output, adaptive sampling with bigger rois, float64.
    inp = torch.randn(n, c, 12, 10, generator=g, dtype=torch.float64)
    params = dict(output_size=(3, 2), spatial_scale=1.0, sampling_ratio=0, aligned=True)
    run_case(
        g,
        "f64_o3x2_sr0",
        inp,
        mixed_boxes(g, n, 12, 10, 1.0),
        params,
        cases,
        tensors,
        "float64, non-square output, sampling_ratio=0 (adaptive)",
    )
    # The FG-CLIP case: 14x14 patch grid, boxes normalised then scaled by the grid, 1x1 output.
    for sr in (-1, 2):
        inp = torch.randn(2, 8, 14, 14, generator=g)
        params = dict(output_size=(1, 1), spatial_scale=1.0, sampling_ratio=sr, aligned=True)
        run_case(
            g,
            f"fgclip_sr{sr}",
            inp,
            fgclip_boxes(g, 2, 14, 4),
            params,
            cases,
            tensors,
            "FG-CLIP: [2, 8, 14, 14] map, normalised boxes * 14, 1x1, aligned",
        )
    meta = {
        "cases": json.dumps(cases),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "generator": " ".join(sys.argv),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata=meta)
    print(f"{len(cases)} cases -> {os.path.normpath(OUT)} ({os.path.getsize(OUT) / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
