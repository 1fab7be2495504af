"""Fuzz the checkpoint readers through `inspect-ckpt`: safetensors headers and bytes, shard
indexes, trainer_state.json, training_args.bin and other pickles (never executed).

Each case builds a small FG-CLIP-like checkpoint folder, mutates one file, and runs the CLI on
the folder and (for weights) on the file with `--scan`; fuzz_cli.run_cli asserts the contract.
"""

from __future__ import annotations

import json
import pickle
import struct
import tempfile
from pathlib import Path

import numpy as np
from fuzz_cli import Blob, fuzz_settings, run_cli
from hypothesis import example, given
from hypothesis import strategies as st

DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": None, "I64": "<i8", "U8": "u1", "BOOL": "?"}
NESTED = "[" * 10_000 + "]" * 10_000  # a header that is valid JSON, 10,000 levels deep


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict | None = None) -> bytes:
    """A valid safetensors file for float32 arrays (our own writer: the doctor's reader is the subject)."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def healthy_tensors() -> dict[str, np.ndarray]:
    return {
        "logit_scale": np.array(4.6052),
        "logit_scale_finegrained": np.array(4.6052),
        "logit_scale_hardneg": np.array(4.6052),
        "memory_bank.queue": np.random.default_rng(0).standard_normal((8, 4)),
        "memory_bank.enabled_at_call": np.array(3.0),
        "roi_projection.weight": np.ones((4, 4)),
    }


def trainer_state(history: list) -> dict:
    return {"global_step": 10, "max_steps": 20, "log_history": history}


def write_checkpoint(root: Path, files: dict[str, bytes]) -> Path:
    ckpt = root / "checkpoint-10"
    ckpt.mkdir()
    base = {
        "model.safetensors": safetensors_bytes(healthy_tensors(), {"format": "pt"}),
        "config.json": json.dumps({"model_type": "fgclip", "memory_bank_size": 8}).encode(),
        "trainer_state.json": json.dumps(
            trainer_state([{"step": 5, "loss": 2.0, "region_loss": 1.3}, {"step": 10, "loss": 1.5}])
        ).encode(),
    }
    for name, data in {**base, **files}.items():
        if data is not None:
            (ckpt / name).write_bytes(data)
    return ckpt


def inspect_folder(files: dict[str, bytes], scan_file: str | None = None, expect: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_checkpoint(Path(tmp), files)
        extra = ["--expect", expect] if expect is not None else []
        run_cli(["inspect-ckpt", ckpt, "--format", "json", *extra], inspected=[ckpt])
        if scan_file is not None:
            run_cli(["inspect-ckpt", ckpt / scan_file, "--scan"], inspected=[ckpt])


# ---- safetensors -------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
entries = (
    st.fixed_dictionaries(
        {},
        optional={
            "dtype": st.sampled_from([*DTYPES, "F64", "Q4", "", "f32"]) | json_values,
            "shape": st.lists(st.integers(-3, 2**40), max_size=4) | json_values,
            "data_offsets": st.lists(st.integers(-3, 2**64 + 5), min_size=0, max_size=3) | json_values,
        },
    )
    | json_values
)


@st.composite
def header_texts(draw) -> bytes:
    """A header: structured entries, arbitrary JSON, deep nesting, or non-UTF-8 bytes."""
    kind = draw(st.sampled_from(["entries", "json", "nested", "bytes"]))
    if kind == "entries":
        doc = draw(
            st.dictionaries(
                st.sampled_from(["logit_scale", "memory_bank.queue", "x", "__metadata__"]), entries, max_size=4
            )
        )
        return json.dumps(doc, allow_nan=True).encode()
    if kind == "json":
        return json.dumps(draw(json_values), allow_nan=True).encode()
    if kind == "nested":
        depth = draw(st.sampled_from([10, 999, 1_000, 5_000, 10_000]))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return ('{"x":' + opener * depth + "1" + closer * depth + "}").encode()
    return draw(st.binary(max_size=64)) + b"\xff\xfe"


@st.composite
def safetensors_files(draw) -> bytes:
    """A safetensors file, valid or mutated: header, length field, truncation, flipped bytes."""
    kind = draw(st.sampled_from(["header", "length", "truncate", "flip", "append"]))
    good = safetensors_bytes(healthy_tensors(), {"format": "pt"})
    if kind == "header":
        raw = draw(header_texts())
        data = draw(st.binary(max_size=64))
        return struct.pack("<Q", len(raw)) + raw + data
    if kind == "length":
        return struct.pack("<Q", draw(st.integers(0, 2**64 - 1))) + good[8:]
    if kind == "truncate":
        return good[: draw(st.integers(0, len(good) - 1))]
    if kind == "flip":
        out = bytearray(good)
        for pos, byte in draw(
            st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), min_size=1, max_size=6)
        ):
            out[pos] = byte
        return bytes(out)
    return good + draw(st.binary(min_size=1, max_size=32))


def _with_header(raw: bytes) -> Blob:
    return Blob(struct.pack("<Q", len(raw)) + raw)


@fuzz_settings(150)
@given(data=safetensors_files().map(Blob))
@example(data=_with_header(NESTED.encode()))  # escape (a): RecursionError before the fix
@example(data=_with_header(b'{"__metadata__":' + NESTED.encode() + b"}"))
def test_safetensors_bytes(data):
    inspect_folder({"model.safetensors": data.data}, scan_file="model.safetensors")


# ---- sharded checkpoints -----------------------------------------------------------------------
@fuzz_settings(60)
@given(
    weight_map=st.dictionaries(
        st.text(max_size=12),
        st.sampled_from(
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "../model.safetensors",
                "/etc/passwd",
                "",
                ".",
                "missing.safetensors",
                "sub/x.safetensors",
            ]
        )
        | json_values,
        max_size=5,
    ),
    wrap=st.sampled_from(["map", "raw", "nested", "list"]),
)
def test_shard_index(weight_map, wrap):
    shard = safetensors_bytes({"logit_scale": np.array(4.6)})
    doc = {"metadata": {"total_size": 4}, "weight_map": weight_map}
    text = {
        "map": json.dumps(doc),
        "raw": json.dumps(weight_map),
        "list": json.dumps([doc]),
        "nested": '{"weight_map":' + NESTED + "}",
    }[wrap]
    inspect_folder(
        {
            "model.safetensors": None,
            "model.safetensors.index.json": text.encode(),
            "model-00001-of-00002.safetensors": shard,
            "model-00002-of-00002.safetensors": safetensors_bytes({"memory_bank.queue": np.ones((4, 2))}),
        }
    )


# ---- trainer_state.json ------------------------------------------------------------------------
log_entries = st.dictionaries(
    st.sampled_from(
        [
            "step",
            "epoch",
            "loss",
            "region_loss",
            "hardneg_loss",
            "learning_rate",
            "grad_norm",
            "train_loss",
            "eval_loss",
            "logit_scale",
        ]
    )
    | st.text(max_size=6),
    st.floats()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=5)
    | st.none()
    | st.booleans()
    | st.lists(st.floats(), max_size=2),
    max_size=6,
)


@fuzz_settings(120)
@given(
    state=st.fixed_dictionaries(
        {},
        optional={
            "global_step": st.integers(-5, 2**70) | json_values,
            "max_steps": st.integers(-5, 2**70) | json_values,
            "log_history": st.lists(log_entries | json_values, max_size=8) | json_values,
            "train_batch_size": st.integers(-2, 2**40) | json_values,
        },
    )
    | json_values,
    expect=st.none() | st.sampled_from(["region_loss@5<1.0", "loss@10<2", "loss@-1<nan"]),
)
@example(state=json.loads('{"log_history": [{"step": 1, "loss": 1e400}]}'), expect=None)
@example(state={"global_step": 0, "train_batch_size": -1}, expect=None)  # ln of a batch of -1
def test_trainer_state(state, expect):
    text = json.dumps(state, allow_nan=True).encode()
    inspect_folder({"trainer_state.json": text}, expect=expect)


@fuzz_settings(40)
@given(
    name=st.sampled_from(["trainer_state.json", "config.json", "model.safetensors.index.json"]),
    text=(
        st.binary(max_size=200) | st.just(NESTED.encode()) | st.just(b'{"log_history": ' + NESTED.encode() + b"}")
    ).map(Blob),
)
@example(name="config.json", text=Blob(b'{"model_type": ' + NESTED.encode() + b"}"))
def test_checkpoint_json_bytes(name, text):
    inspect_folder({name: text.data})


# ---- pickles: training_args.bin, pytorch_model.bin, optimizer.pt, scheduler.pt ----------------
class _WritesMarker:
    """Unpickling this calls builtins.open(marker, "w"): a pickle that would run code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


class _RunsShell:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


picklable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6) | st.binary(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3) | st.tuples(inner, inner)
    ),
    max_leaves=8,
)


@fuzz_settings(60)
@given(
    name=st.sampled_from(["training_args.bin", "pytorch_model.bin", "optimizer.pt", "scheduler.pt"]),
    kind=st.sampled_from(["evil-open", "evil-shell", "plain", "junk", "cut"]),
    obj=picklable,
    junk=st.binary(max_size=64),
    proto=st.integers(0, pickle.HIGHEST_PROTOCOL),
)
def test_pickles_are_never_run(name, kind, obj, junk, proto):
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "marker"
        payload = {"evil-open": _WritesMarker(str(marker)), "evil-shell": _RunsShell(str(marker))}
        data = pickle.dumps({"model": payload[kind]} if kind in payload else obj, protocol=proto)
        data = {"junk": junk, "cut": data[: len(data) // 2]}.get(kind, data)
        files = {name: data}
        if name == "pytorch_model.bin":
            files["model.safetensors"] = None
        ckpt = write_checkpoint(Path(tmp), files)
        run_cli(["inspect-ckpt", ckpt], inspected=[ckpt])
        if name.endswith(".bin"):
            run_cli(["inspect-ckpt", ckpt / name, "--scan"], inspected=[ckpt])
        assert not marker.exists(), f"{name}: the pickle was executed"
