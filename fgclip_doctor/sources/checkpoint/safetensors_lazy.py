"""Read safetensors files lazily: the JSON header, then only the bytes of the tensors asked for.

Pure Python + numpy on purpose (no torch import): `check-config` must start fast, and the cost
of a verdict must not grow with the checkpoint (a 2 GB file costs one header read and a few
seeks). numpy itself is imported only when a tensor is decoded into an array: the header and
`read_scalar` need none (importing numpy costs more than reading a header). Files are opened
read-only and nothing in them is executed: safetensors is data only.

Format (https://github.com/huggingface/safetensors): 8 bytes little-endian u64 N, N bytes of
UTF-8 JSON `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`,
then the byte buffer; offsets are relative to the buffer and must tile it exactly. The checks
below mirror the safetensors library's own, so a file we accept is one it would load.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fgclip_doctor.errors import DoctorInputError, read_error

if TYPE_CHECKING:
    import numpy as np

# The safetensors library refuses headers above 100 MB; a larger claim means a corrupt file.
MAX_HEADER_BYTES = 100_000_000
CHUNK_BYTES = 16 * 1024 * 1024

# Bytes per element for every dtype safetensors defines (validation needs sizes even for dtypes
# we cannot decode); the decoders below cover the ones training checkpoints use.
# lookup tables, kept as tables:
# fmt: off
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E5M2FNUZ": 1, "F8_E4M3FNUZ": 1,
    "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
_NUMPY = {
    "BOOL": "u1", "U8": "u1", "I8": "i1", "I16": "<i2", "U16": "<u2", "F16": "<f2", "I32": "<i4",
    "U32": "<u4", "F32": "<f4", "I64": "<i8", "U64": "<u8", "F64": "<f8",
    "BF16": "<u2", "F8_E5M2": "u1",
}
# fmt: on
DECODABLE = frozenset(_NUMPY)  # dtypes read_tensor can turn into numpy


@dataclass(frozen=True)
class TensorInfo:
    """One header entry; `begin`/`end` are byte offsets relative to the data buffer."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)  # 1 for a 0-d tensor; Python ints never overflow


@dataclass
class SafetensorsHeader:
    """A validated header: where every tensor's bytes lie, without having read any of them."""

    path: Path
    header_size: int
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    file_size: int = 0

    @property
    def data_start(self) -> int:
        """Absolute file offset of the data buffer."""
        return 8 + self.header_size


def _no_duplicates(pairs: list) -> dict:
    # json.loads silently keeps the last duplicate; a header naming a tensor twice is corrupt.
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"tensor {key!r} is listed twice")
        out[key] = value
    return out


def read_header(path: object) -> SafetensorsHeader:
    """Read and validate the header of a safetensors file; reads 8 + N bytes, no tensor data.

    Raises DoctorInputError(path, problem) for anything the safetensors library would refuse:
    a short file, an absurd or overlong header length, a header that is not UTF-8 JSON, an
    unknown dtype, a shape that does not match the byte length, offsets out of order,
    overlapping or leaving gaps, and tensors ending beyond the end of the file (truncation).
    """
    p = Path(str(path))
    try:
        with p.open("rb") as fh:
            file_size = fh.seek(0, 2)
            fh.seek(0)
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise DoctorInputError(
                    path, f"not a safetensors file: {file_size} bytes, shorter than the 8-byte header length"
                )
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER_BYTES:
                raise DoctorInputError(
                    path, f"not a safetensors file: header length {n} bytes is absurd (limit {MAX_HEADER_BYTES})"
                )
            if 8 + n > file_size:
                raise DoctorInputError(
                    path, f"truncated safetensors: the header claims {n} bytes but the file has only {file_size} bytes"
                )
            raw = fh.read(n)
    except OSError as err:
        raise read_error(path, err, "a .safetensors file") from None
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise DoctorInputError(path, "not a safetensors file: the header is not UTF-8") from None
    except ValueError as err:  # JSONDecodeError is a ValueError; so is a duplicate name
        raise DoctorInputError(path, f"not a safetensors file: header is not valid JSON ({err})") from None
    except RecursionError:  # valid JSON nested deeper than the parser's stack (`[[[[...]]]]`)
        raise DoctorInputError(
            path, "not a safetensors file: the header is JSON nested too deeply to be a tensor table"
        ) from None
    if not isinstance(doc, dict):
        raise DoctorInputError(path, "not a safetensors file: header is not a JSON object")
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise DoctorInputError(path, "bad safetensors header: __metadata__ is not an object")
    header = SafetensorsHeader(p, n, {str(k): v for k, v in metadata.items()}, {}, file_size)
    for name, entry in doc.items():
        header.tensors[name] = _tensor_info(path, name, entry)
    _check_layout(path, header)
    return header


def _tensor_info(path: object, name: str, entry: object) -> TensorInfo:
    if not isinstance(entry, dict):
        raise DoctorInputError(path, f"bad safetensors header: entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise DoctorInputError(path, f"bad safetensors header: tensor {name!r} has unknown dtype {dtype!r}")
    ints = lambda v: isinstance(v, list) and all(type(x) is int and x >= 0 for x in v)
    if not ints(shape):
        raise DoctorInputError(path, f"bad safetensors header: tensor {name!r} has shape {shape!r}")
    if not ints(offsets) or len(offsets) != 2 or offsets[1] < offsets[0]:
        raise DoctorInputError(path, f"bad safetensors header: tensor {name!r} has data_offsets {offsets!r}")
    info = TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])
    # Python ints do not overflow, so a huge shape shows up here as a mismatch, not a wrap-around.
    expected = info.numel * DTYPE_SIZES[dtype]
    if expected != info.end - info.begin:
        raise DoctorInputError(
            path,
            f"bad safetensors header: tensor {name!r} is {dtype} "
            f"{list(shape)} = {expected} bytes but spans "
            f"{info.end - info.begin} bytes",
        )
    return info


def _check_layout(path: object, header: SafetensorsHeader) -> None:
    """Offsets must tile the buffer with no gap or overlap, and the buffer must fill the file."""
    buffer_size = header.file_size - header.data_start
    # Truncation first, named by the tensor that ends last: its end is the size the file had.
    last = max(header.tensors.items(), key=lambda kv: kv[1].end, default=None)
    if last is not None and last[1].end > buffer_size:
        raise DoctorInputError(
            path,
            f"truncated safetensors: tensor {last[0]!r} ends at byte "
            f"{header.data_start + last[1].end} but the file has "
            f"{header.file_size} bytes",
        )
    expected_begin, previous = 0, None
    for name, info in sorted(header.tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if info.begin != expected_begin:
            what = "overlaps" if info.begin < expected_begin else "leaves a gap after"
            after = f"tensor {previous!r}" if previous else "the header"
            raise DoctorInputError(
                path,
                f"bad safetensors header: tensor {name!r} starts at "
                f"offset {info.begin}, which {what} {after} "
                f"(ends at {expected_begin})",
            )
        expected_begin, previous = info.end, name
    if expected_begin != buffer_size:
        raise DoctorInputError(
            path, f"bad safetensors file: {buffer_size - expected_begin} unexplained bytes after the last tensor"
        )


def _decode(raw: bytes | bytearray, dtype: str) -> np.ndarray:
    """Little-endian bytes -> a numpy array (1-D); bf16 and f8_e5m2 widen losslessly."""
    import numpy as np

    if dtype not in _NUMPY:
        raise ValueError(f"cannot decode dtype {dtype}")
    arr = np.frombuffer(raw, dtype=_NUMPY[dtype])
    if dtype == "BF16":  # bf16 is the top half of a float32
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F8_E5M2":  # e5m2 is the top byte of a float16
        return (arr.astype(np.uint16) << 8).view(np.float16)
    if dtype == "BOOL":
        return arr.astype(bool)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _read_range(header: SafetensorsHeader, name: str, start: int, length: int) -> bytearray:
    raw = bytearray(length)  # a writable buffer: arrays built on it are writable too
    with header.path.open("rb") as fh:
        fh.seek(header.data_start + start)
        got = fh.readinto(raw)
    if got != length:  # the file shrank since its header was read
        raise DoctorInputError(
            header.path, f"truncated safetensors: tensor {name!r} could not be read in full ({got} of {length} bytes)"
        )
    return raw


def _info(header: SafetensorsHeader, name: str) -> TensorInfo:
    try:
        return header.tensors[name]
    except KeyError:
        raise KeyError(f"{header.path}: no tensor named {name!r}") from None


def read_tensor(header: SafetensorsHeader, name: str) -> np.ndarray:
    """One tensor as a numpy array of its shape, reading only its bytes (one seek, one read).

    BF16 comes back as float32 (exact), F8_E5M2 as float16; other dtypes keep their kind.
    Raises KeyError for an unknown name, DoctorInputError for an undecodable dtype.
    """
    info = _info(header, name)
    if info.dtype not in _NUMPY:
        raise DoctorInputError(header.path, f"tensor {name!r}: cannot decode dtype {info.dtype}")
    raw = _read_range(header, name, info.begin, info.end - info.begin)
    return _decode(raw, info.dtype).reshape(info.shape)


def read_small(header: SafetensorsHeader, max_numel: int = 64) -> dict[str, np.ndarray]:
    """Every decodable tensor with at most `max_numel` elements (logit scales, queue pointers).

    Empty tensors (numel 0) are skipped: they hold no value (ZeRO-3 placeholders look like this).
    """
    return {
        name: read_tensor(header, name)
        for name, info in header.tensors.items()
        if 0 < info.numel <= max_numel and info.dtype in DECODABLE
    }


def tensor_stats(
    header: SafetensorsHeader,
    name: str,
    max_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> dict[str, float | int]:
    """Streaming statistics of one tensor in ~16 MB chunks: memory stays flat for any size.

    Returns {mean, std, min, max, norm, nonfinite, count}: `nonfinite` counts NaN/Inf, the rest
    are over the finite values only (so one NaN does not hide the scale of the others), `std`
    is the population std, `norm` the L2 norm; with no finite value they are NaN. `max_rows`
    keeps only the first rows along dim 0. `progress(done_bytes, total_bytes)` after each chunk.
    """
    info = _info(header, name)
    if info.dtype not in _NUMPY:
        raise DoctorInputError(header.path, f"tensor {name!r}: cannot decode dtype {info.dtype}")
    size = DTYPE_SIZES[info.dtype]
    numel = info.numel
    if max_rows is not None and info.shape:
        row = numel // info.shape[0] if info.shape[0] else 0
        numel = min(info.shape[0], max_rows) * row
    total = numel * size
    step = max(size, chunk_bytes - chunk_bytes % size)  # chunks hold whole elements
    import numpy as np

    count, mean, m2, sumsq, nonfinite = 0, 0.0, 0.0, 0.0, 0
    lo, hi = np.inf, -np.inf
    for start in range(0, total, step):
        length = min(step, total - start)
        values = _decode(_read_range(header, name, info.begin + start, length), info.dtype)
        values = values.astype(np.float64)
        finite = np.isfinite(values)
        nonfinite += int(values.size - np.count_nonzero(finite))
        values = values[finite]
        if values.size:
            # Chan et al.'s pairwise update: numerically stable mean / variance across chunks.
            n, c_mean = values.size, float(values.mean())
            c_m2 = float(((values - c_mean) ** 2).sum())
            delta, new = c_mean - mean, count + n
            mean += delta * n / new
            m2 += c_m2 + delta * delta * count * n / new
            count = new
            sumsq += float(np.dot(values, values))
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        if progress is not None:
            progress(start + length, total)
    if count == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "min": nan, "max": nan, "norm": nan, "nonfinite": nonfinite, "count": 0}
    return {
        "mean": mean,
        "std": (m2 / count) ** 0.5,
        "min": lo,
        "max": hi,
        "norm": sumsq**0.5,
        "nonfinite": nonfinite,
        "count": count,
    }


def read_rows(header: SafetensorsHeader, name: str, start: int, count: int) -> np.ndarray:
    """Rows `start .. start+count` along dim 0 of one tensor (clipped to its length), reading only
    their bytes: a sample of a large queue costs the sample, not the queue."""
    info = _info(header, name)
    if info.dtype not in _NUMPY:
        raise DoctorInputError(header.path, f"tensor {name!r}: cannot decode dtype {info.dtype}")
    if not info.shape:
        return read_tensor(header, name)
    rows = info.shape[0]
    start = max(0, min(start, rows))
    count = max(0, min(count, rows - start))
    row_bytes = (info.numel // rows if rows else 0) * DTYPE_SIZES[info.dtype]
    raw = _read_range(header, name, info.begin + start * row_bytes, count * row_bytes)
    return _decode(raw, info.dtype).reshape((count, *info.shape[1:]))


_FLOATS = frozenset({"F16", "BF16", "F32", "F64", "F8_E5M2"})


def count_nonfinite(
    header: SafetensorsHeader, name: str, progress: Callable[[int], None] | None = None, chunk_bytes: int = CHUNK_BYTES
) -> int:
    """NaN / Inf elements of one float tensor, streamed in ~16 MB chunks (0 for integer dtypes).

    `progress(n_bytes)` after each chunk with the bytes just read (for a bar over many tensors).
    """
    info = _info(header, name)
    total = info.end - info.begin
    if info.dtype not in _FLOATS:  # integers and bools cannot hold NaN; their bytes still count
        if progress is not None and total:
            progress(total)
        return 0
    import numpy as np

    size = DTYPE_SIZES[info.dtype]
    step = max(size, chunk_bytes - chunk_bytes % size)
    bad = 0
    for start in range(0, total, step):
        length = min(step, total - start)
        values = _decode(_read_range(header, name, info.begin + start, length), info.dtype)
        bad += int(values.size - np.count_nonzero(np.isfinite(values)))
        if progress is not None:
            progress(length)
    return bad


# fmt: off
_STRUCT = {"F64": "d", "F32": "f", "F16": "e", "I64": "q", "I32": "i", "I16": "h", "I8": "b",
           "U64": "Q", "U32": "I", "U16": "H", "U8": "B", "BOOL": "?"}
# fmt: on


def read_scalar(header: SafetensorsHeader, name: str) -> float | int | bool:
    """The value of a one-element tensor (a logit scale, a queue pointer) without numpy.

    BF16 widens exactly to a float32 value. Raises ValueError for a tensor of more than one
    element and DoctorInputError for a dtype it cannot decode."""
    info = _info(header, name)
    if info.numel != 1:
        raise ValueError(f"{name!r} has {info.numel} elements, not 1")
    raw = bytes(_read_range(header, name, info.begin, info.end - info.begin))
    if info.dtype == "BF16":  # the top half of a float32
        return struct.unpack("<f", b"\0\0" + raw)[0]
    if info.dtype not in _STRUCT:
        raise DoctorInputError(header.path, f"tensor {name!r}: cannot decode dtype {info.dtype}")
    return struct.unpack("<" + _STRUCT[info.dtype], raw)[0]
