"""fgclip.roi_align against torchvision's numbers, stored once in a fixture.

The fixture was produced by tools/make_roi_align_fixture.py with a real torchvision;
these tests only need safetensors and never import torchvision.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from fgclip.roi_align import roi_align

FIXTURE = Path(__file__).parent / "fixtures" / "roi_align_ref.safetensors"


def _load():
    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, json.loads(meta["cases"]), tensors


META, CASES, TENSORS = _load()


def _tol(dtype: torch.dtype) -> dict:
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


def test_fixture_covers_the_grid():
    assert META["torchvision"] and META["torch"]
    params = {(c["aligned"], c["sampling_ratio"], tuple(c["output_size"]), c["spatial_scale"]) for c in CASES}
    for aligned in (True, False):
        for sr in (1, 2, 4, -1):
            for os_ in (1, 2, 7):
                for scale in (1.0, 0.5):
                    assert (aligned, sr, (os_, os_), scale) in params
    assert any(c["name"].startswith("fgclip") for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_torchvision(case):
    t = {k: TENSORS[f"{case['name']}/{k}"] for k in ("input", "boxes", "output", "weight", "grad")}
    inp = t["input"].clone().requires_grad_(True)
    out = roi_align(
        inp,
        t["boxes"],
        tuple(case["output_size"]),
        spatial_scale=case["spatial_scale"],
        sampling_ratio=case["sampling_ratio"],
        aligned=case["aligned"],
    )
    assert out.shape == t["output"].shape and out.dtype == t["output"].dtype
    torch.testing.assert_close(out, t["output"], **_tol(inp.dtype))
    (grad,) = torch.autograd.grad((out * t["weight"]).sum(), inp)
    torch.testing.assert_close(grad, t["grad"], **_tol(inp.dtype))


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_constant_map_gives_constant(aligned, sampling_ratio):
    x = torch.full((2, 3, 10, 12), 2.5)
    boxes = torch.tensor([[0, 1.0, 1.0, 9.0, 7.0], [1, 0.5, 2.0, 3.5, 9.5], [1, 4.2, 4.2, 4.4, 4.4]])
    out = roi_align(x, boxes, (3, 4), sampling_ratio=sampling_ratio, aligned=aligned)
    torch.testing.assert_close(out, torch.full((3, 3, 3, 4), 2.5))


def test_list_and_tensor_boxes_agree():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 11, generator=g, dtype=torch.float64)
    per_image = [
        torch.rand(k, 2, 2, generator=g, dtype=torch.float64).sort(dim=1).values.flatten(1) * 10 for k in (2, 0, 3)
    ]  # image 1 has no boxes
    stacked = torch.cat(
        [torch.cat([torch.full((b.size(0), 1), float(i), dtype=b.dtype), b], 1) for i, b in enumerate(per_image)]
    )
    for sr in (2, 0):
        a = roi_align(x, per_image, 2, spatial_scale=0.5, sampling_ratio=sr)
        b = roi_align(x, stacked, (2, 2), spatial_scale=0.5, sampling_ratio=sr)
        assert a.shape == (5, 4, 2, 2)
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_empty_boxes():
    assert roi_align(torch.randn(1, 2, 5, 5), torch.zeros(0, 5), 3).shape == (0, 2, 3, 3)
