"""Lazy safetensors reads agree with the safetensors library and refuse what it refuses."""

from __future__ import annotations

import hashlib
import json
import math
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.checkpoint import safetensors_lazy as stl


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "logit_scale": torch.tensor(4.6052),
        "logit_scale_finegrained": torch.tensor(2.6592, dtype=torch.bfloat16),
        "queue_ptr": torch.tensor(17, dtype=torch.int64),
        "w_f32": torch.randn(5, 7, generator=g),
        "w_f16": torch.randn(3, 4, generator=g).half(),
        "w_bf16": torch.randn(6, 3, generator=g).bfloat16(),
        "w_f64": torch.randn(4, generator=g).double(),
        "i32": torch.arange(-5, 5, dtype=torch.int32),
        "i16": torch.arange(-3, 3, dtype=torch.int16),
        "i8": torch.arange(-4, 4, dtype=torch.int8),
        "u8": torch.arange(0, 250, 50, dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "big": torch.randn(100, 8, generator=g),
    }


@pytest.fixture()
def st_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(_tensors(), str(path), metadata={"format": "pt"})
    return path


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_header_and_every_dtype_match_the_library(st_file):
    before = _sha(st_file)
    header = stl.read_header(st_file)
    ref = load_file(str(st_file))
    assert header.metadata == {"format": "pt"}
    assert set(header.tensors) == set(ref)
    assert header.file_size == st_file.stat().st_size
    assert header.tensors["w_f32"].shape == (5, 7) and header.tensors["w_f32"].dtype == "F32"
    assert header.tensors["logit_scale"].shape == ()
    for name, tensor in ref.items():
        got = stl.read_tensor(header, name)
        want = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        assert got.shape == want.shape, name
        assert got.dtype == want.dtype, name  # bf16 widens to float32 exactly
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert stl.read_tensor(header, "logit_scale_finegrained").item() == pytest.approx(2.65625)
    got = stl.read_tensor(header, "w_f32")
    got += 1  # arrays are writable copies, never views into the file
    with pytest.raises(KeyError):
        stl.read_tensor(header, "nope")
    assert _sha(st_file) == before


def test_read_small_picks_scalar_ish_tensors(st_file):
    small = stl.read_small(stl.read_header(st_file), max_numel=10)
    assert set(small) == {
        "logit_scale",
        "logit_scale_finegrained",
        "queue_ptr",
        "w_f64",
        "i32",
        "i16",
        "i8",
        "u8",
        "mask",
    }  # empty tensors hold no value: skipped
    assert small["queue_ptr"].item() == 17
    assert small["logit_scale"].item() == pytest.approx(4.6052)


def test_tensor_stats_stream_in_chunks(tmp_path):
    g = torch.Generator().manual_seed(1)
    big = torch.randn(300, 16, generator=g)
    big[3, 4], big[7, 1], big[200, 0] = float("nan"), float("inf"), -float("inf")
    path = tmp_path / "w.safetensors"
    save_file(
        {"a": torch.ones(2), "roi_projection.weight": big, "bf": big.bfloat16(), "ints": torch.arange(10)}, str(path)
    )
    header = stl.read_header(path)
    seen = []
    stats = stl.tensor_stats(
        header, "roi_projection.weight", chunk_bytes=1000, progress=lambda done, total: seen.append((done, total))
    )
    values = big.double().numpy().ravel()
    finite = values[np.isfinite(values)]
    assert stats["nonfinite"] == 3 and stats["count"] == finite.size
    assert stats["mean"] == pytest.approx(finite.mean(), rel=1e-9, abs=1e-12)
    assert stats["std"] == pytest.approx(finite.std(), rel=1e-9)
    assert stats["min"] == finite.min() and stats["max"] == finite.max()
    assert stats["norm"] == pytest.approx(np.linalg.norm(finite), rel=1e-9)
    assert len(seen) > 10 and seen[-1] == (big.numel() * 4, big.numel() * 4)
    assert all(done % 4 == 0 for done, _ in seen)  # chunks hold whole elements
    rows = stl.tensor_stats(header, "roi_projection.weight", max_rows=2)
    assert rows["count"] == 32 and rows["mean"] == pytest.approx(big[:2].double().mean().item())
    bf = stl.tensor_stats(header, "bf", chunk_bytes=64)
    assert bf["nonfinite"] == 3 and bf["max"] == pytest.approx(finite.max(), rel=1e-2)
    assert stl.tensor_stats(header, "ints")["mean"] == 4.5


def test_cost_does_not_grow_with_file_size(tmp_path):
    """A 4 GB tensor (a sparse file: no disk used) costs nothing to step over."""
    path = tmp_path / "huge.safetensors"
    big = 4 * 1024**3
    doc = {
        "logit_scale": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
        "huge": {"dtype": "F16", "shape": [big // 2], "data_offsets": [4, 4 + big]},
    }
    raw = json.dumps(doc).encode()
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw + struct.pack("<f", 4.6052))
        fh.truncate(8 + len(raw) + 4 + big)
    header = stl.read_header(path)
    assert header.tensors["huge"].numel == big // 2
    assert stl.read_small(header)["logit_scale"].item() == pytest.approx(4.6052)
    assert stl.tensor_stats(header, "huge", max_rows=1000)["count"] == 1000


# ---- corrupt files: one clear line, and the library refuses them too -------------------------


def _raw(header: dict, data: bytes = b"", declared: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if declared is None else declared) + text + data


_ENTRY = b'{"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}'
_DUP = b'{"a": ' + _ENTRY + b', "a": ' + _ENTRY + b"}"
CORRUPT = {
    "short": (b"\x01\x02\x03", "shorter than the 8-byte header length"),
    "absurd header length": (struct.pack("<Q", 2**40) + b"{}", "is absurd"),
    "header beyond file": (_raw({}, declared=500), "header claims 500 bytes but the file has only"),
    "garbage header": (struct.pack("<Q", 6) + b"\x00\x01garb", "header is not valid JSON"),
    "not utf-8": (struct.pack("<Q", 4) + b"\xff\xfe{}", "header is not UTF-8"),
    "not an object": (_raw([1, 2]), "header is not a JSON object"),
    "unknown dtype": (
        _raw({"x": {"dtype": "F12", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
        "tensor 'x' has unknown dtype 'F12'",
    ),
    "shape vs bytes": (
        _raw({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
        "tensor 'x' is F32 [3] = 12 bytes but spans 8 bytes",
    ),
    "overlap": (
        _raw(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            b"\0" * 8,
        ),
        "overlaps tensor 'a'",
    ),
    "gap": (
        _raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
        "leaves a gap after the header",
    ),
    "bad offsets": (
        _raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, b"\0" * 8),
        "data_offsets [8, 4]",
    ),
    "trailing bytes": (
        _raw({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0" * 5),
        "4 unexplained bytes after the last tensor",
    ),
    "duplicate name": (struct.pack("<Q", len(_DUP)) + _DUP + b"\0", "tensor 'a' is listed twice"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_files_are_refused_clearly(tmp_path, case):
    data, problem = CORRUPT[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(DoctorInputError) as err:
        stl.read_header(path)
    assert problem in err.value.problem and "\n" not in err.value.problem
    assert err.value.path == str(path)
    if case != "duplicate name":  # the library keeps the last duplicate; we refuse it
        with pytest.raises(Exception):
            with safe_open(str(path), "np") as fh:
                [fh.get_tensor(k) for k in fh.keys()]
    assert path.read_bytes() == data


def test_truncated_real_file(st_file):
    data = st_file.read_bytes()
    st_file.write_bytes(data[:-10])
    with pytest.raises(DoctorInputError) as err:
        stl.read_header(st_file)
    # Which tensor is last depends on save_file's order; the message names it and both sizes.
    assert err.value.problem.startswith("truncated safetensors: tensor '")
    assert f"ends at byte {len(data)} but the file has {len(data) - 10} bytes" in err.value.problem


def test_missing_and_directory(tmp_path):
    with pytest.raises(DoctorInputError, match="no such file"):
        stl.read_header(tmp_path / "nope.safetensors")
    with pytest.raises(DoctorInputError, match="is a directory"):
        stl.read_header(tmp_path)


def test_module_does_not_import_torch():
    code = "import sys, fgclip_doctor.sources.checkpoint.safetensors_lazy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_nan_stats_when_nothing_finite(tmp_path):
    path = tmp_path / "n.safetensors"
    save_file({"x": torch.full((4,), float("nan"))}, str(path))
    stats = stl.tensor_stats(stl.read_header(path), "x")
    assert stats["nonfinite"] == 4 and stats["count"] == 0 and math.isnan(stats["mean"])


def test_float8(tmp_path):
    """F8_E5M2 widens to float16 exactly; F8_E4M3 passes validation but is not decoded."""
    path = tmp_path / "f8.safetensors"
    e5 = torch.tensor([0.5, -3.0, 1024.0, float("inf")]).to(torch.float8_e5m2)
    save_file({"e5": e5, "e4": torch.ones(2).to(torch.float8_e4m3fn)}, str(path))
    header = stl.read_header(path)
    np.testing.assert_array_equal(stl.read_tensor(header, "e5"), e5.half().numpy())
    assert set(stl.read_small(header)) == {"e5"}
    with pytest.raises(DoctorInputError, match="cannot decode dtype F8_E4M3"):
        stl.read_tensor(header, "e4")
