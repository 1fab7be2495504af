"""Fuzzing with meaning, checkpoints: a NaN / Inf written into a tensor's bytes never leaves the
nonfinite rule (FGD703) passing it.

A small FG-CLIP-like checkpoint (scales, memory bank, roi_projection, tower weights; float32,
float16 and bfloat16) gets one element of one float tensor overwritten with a non-finite bit
pattern (quiet, signalling or negative NaN, +Inf, -Inf). Then:
- `inspect-ckpt --scan` reads every tensor: FGD703 on the weights FAILs, naming that tensor;
- plain `inspect-ckpt` reads the scales, the bank and roi_projection: a corrupted one of those
  FAILs; any other tensor may PASS only with the scope said (`--scan checks every tensor`).
The crash oracle (tests/fuzz_cli.py) holds on every case too.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
from fuzz_cli import fuzz_settings, run_cli
from hypothesis import example, given
from hypothesis import strategies as st

#: name -> shape of the checkpoint's float tensors (what the plain read covers: READ)
SHAPES = {
    "logit_scale": (),
    "logit_scale_finegrained": (),
    "logit_scale_hardneg": (),
    "memory_bank.queue": (8, 4),
    "roi_projection.weight": (4, 4),
    "roi_projection.bias": (4,),
    "text_projection.weight": (4, 6),
    "vision_model.encoder.layers.0.mlp.fc1.weight": (5, 6),
}
READ = ("logit_scale", "memory_bank.", "roi_projection.")
INTS = {"memory_bank.enabled_at_call": 3, "memory_bank.fill": 8, "memory_bank.ptr": 0}
#: little-endian bit patterns per dtype: quiet NaN, signalling NaN, negative NaN, +Inf, -Inf
NONFINITE = {
    "F32": (0x7FC00000, 0x7F800001, 0xFFC00000, 0x7F800000, 0xFF800000),
    "F16": (0x7E00, 0x7C01, 0xFE00, 0x7C00, 0xFC00),
    "BF16": (0x7FC0, 0x7F81, 0xFFC0, 0x7F80, 0xFF80),
}
WIDTH = {"F32": 4, "F16": 2, "BF16": 2}


def encode(values: np.ndarray, dtype: str) -> bytes:
    """Little-endian bytes of float32 `values` in `dtype` (bf16: the top half of each float32)."""
    f32 = np.ascontiguousarray(values, dtype="<f4")
    if dtype == "F32":
        return f32.tobytes()
    if dtype == "F16":
        return f32.astype("<f2").tobytes()
    return (f32.view("<u4") >> 16).astype("<u2").tobytes()


def checkpoint(dtypes: dict[str, str], corrupt: tuple[str, int, int] | None) -> dict[str, bytes]:
    """The checkpoint's files; `corrupt` = (tensor, element index, pattern index) or None."""
    rng = np.random.default_rng(0)
    header, blobs, offset = {}, [], 0
    for name, shape in SHAPES.items():
        values = np.full(shape, 4.6052) if name.startswith("logit_scale") else rng.standard_normal(shape) * 0.1
        data = bytearray(encode(values, dtypes[name]))
        if corrupt is not None and corrupt[0] == name:
            width = WIDTH[dtypes[name]]
            at = (corrupt[1] % max(1, int(np.prod(shape)))) * width
            data[at : at + width] = NONFINITE[dtypes[name]][corrupt[2]].to_bytes(width, "little")
        header[name] = {"dtype": dtypes[name], "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(bytes(data))
        offset += len(data)
    for name, value in INTS.items():
        data = struct.pack("<q", value)
        header[name] = {"dtype": "I64", "shape": [], "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    state = {"global_step": 10, "max_steps": 20, "log_history": [{"step": 10, "loss": 1.5}]}
    return {
        "model.safetensors": struct.pack("<Q", len(raw)) + raw + b"".join(blobs),
        "config.json": json.dumps({"model_type": "fgclip", "memory_bank_size": 8}).encode(),
        "trainer_state.json": json.dumps(state).encode(),
    }


def weights_finding(args: list, ckpt: Path) -> dict:
    out = run_cli(["inspect-ckpt", *args, "--format", "json"], inspected=[ckpt])
    assert out.code in (0, 1), out.stderr
    [finding] = [f for f in json.loads(out.stdout)["findings"] if f["code"] == "FGD703" and f["subject"] == "weights"]
    return finding


def check(dtypes: dict[str, str], corrupt: tuple[str, int, int] | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "checkpoint-10"
        ckpt.mkdir()
        for name, data in checkpoint(dtypes, corrupt).items():
            (ckpt / name).write_bytes(data)
        scanned = weights_finding([str(ckpt / "model.safetensors"), "--scan"], ckpt)
        plain = weights_finding([str(ckpt)], ckpt)
    if corrupt is None:  # the healthy twin: both pass, so the FAILs below are about the corruption
        assert scanned["status"] == plain["status"] == "PASS", (scanned, plain)
        return
    name = corrupt[0]
    assert scanned["status"] == "FAIL" and name in scanned["message"], scanned
    if name.startswith(READ):
        assert plain["status"] == "FAIL" and name in plain["message"], plain
    elif plain["status"] == "PASS":
        assert "--scan checks every tensor" in plain["message"], plain  # a PASS says what it read


dtype_maps = st.fixed_dictionaries({name: st.sampled_from(list(WIDTH)) for name in SHAPES})
corruptions = st.tuples(st.sampled_from(list(SHAPES)), st.integers(0, 47), st.integers(0, 4))


@fuzz_settings(25)
@given(dtypes=dtype_maps, corrupt=corruptions | st.none())
@example(dtypes=dict.fromkeys(SHAPES, "F32"), corrupt=None)
@example(dtypes=dict.fromkeys(SHAPES, "BF16"), corrupt=("memory_bank.queue", 31, 1))  # the bank's last row
@example(dtypes=dict.fromkeys(SHAPES, "F16"), corrupt=("logit_scale_hardneg", 0, 4))
def test_nan_in_a_tensor_never_passes_nonfinite(dtypes, corrupt):
    check(dtypes, corrupt)
