"""Checkpoint folders written by the real libraries; read lazily, pickles weights-only, no writes."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pickle
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.checkpoint import layout as ck
from fgclip_doctor.sources.checkpoint import run_folder


def _tiny_clip(scale: float = 4.6052):
    from transformers import CLIPConfig, CLIPModel

    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(
            small, vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1
        ),
        vision_config=dict(small, image_size=32, patch_size=16),
        projection_dim=8,
        logit_scale_init_value=scale,
    )
    torch.manual_seed(0)
    return CLIPModel(config)


def _hashes(root: pathlib.Path) -> dict[str, str]:
    """Every file below root -> sha256: proves nothing was written, added or removed."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def model():
    return _tiny_clip()


def test_single_safetensors(tmp_path, monkeypatch, model):
    out = tmp_path / "checkpoint-500"
    model.save_pretrained(out)
    before = _hashes(tmp_path)
    layout = ck.find_weights(out)
    assert layout.kind == "safetensors" and layout.files == [out / "model.safetensors"]
    assert layout.deepspeed is None and layout.weight_map == {}
    monkeypatch.chdir(tmp_path)
    scalars = ck.read_scalars(out)
    ref = load_file(str(out / "model.safetensors"))
    small = {k for k, v in ref.items() if 0 < v.numel() <= 64}
    assert set(scalars) == small
    value, source = scalars["logit_scale"]
    assert value == pytest.approx(4.6052) and value == ref["logit_scale"].item()
    assert source == "checkpoint-500/model.safetensors: logit_scale"
    assert ck.read_scalars(out / "model.safetensors", names=["logit_scale"]) == {"logit_scale": scalars["logit_scale"]}
    assert _hashes(tmp_path) == before


def test_sharded_safetensors(tmp_path, model):
    out = tmp_path / "ckpt"
    model.save_pretrained(out, max_shard_size="20KB")
    before = _hashes(tmp_path)
    layout = ck.find_weights(out)
    assert layout.kind == "safetensors-sharded" and len(layout.files) > 1
    assert layout.index == out / "model.safetensors.index.json"
    index = json.loads(layout.index.read_text())["weight_map"]
    assert {k: v.name for k, v in layout.weight_map.items()} == index
    got = ck.read_scalars(out, names=["logit_scale", "missing"])
    assert list(got) == ["logit_scale"]
    assert got["logit_scale"][0] == pytest.approx(model.logit_scale.item())
    assert got["logit_scale"][1].endswith(f"{index['logit_scale']}: logit_scale")
    everything = ck.read_scalars(out)
    merged = {}
    for shard in layout.files:
        merged.update(load_file(str(shard)))
    assert set(everything) == {k for k, v in merged.items() if 0 < v.numel() <= 64}
    for key, (value, _) in everything.items():
        assert value == merged[key].tolist(), key
    assert _hashes(tmp_path) == before
    missing = out / index["logit_scale"]
    missing.unlink()
    with pytest.raises(DoctorInputError, match=f"names shard {missing.name}, which is missing"):
        ck.find_weights(out)


def test_bad_indexes(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"a": "../../etc/x"}}')
    with pytest.raises(DoctorInputError, match="not a file name in this folder"):
        ck.find_weights(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": \n {"a": }')
    with pytest.raises(DoctorInputError, match="broken JSON at line 2, column 8: Expecting value"):
        ck.find_weights(tmp_path)


def test_bin_with_module_prefix(tmp_path, monkeypatch, model):
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    before = _hashes(tmp_path)
    assert ck.find_weights(tmp_path).kind == "bin"
    monkeypatch.chdir(tmp_path)
    got = ck.read_scalars(tmp_path, names=["logit_scale"])
    assert got == {"logit_scale": (pytest.approx(4.6052), "pytorch_model.bin: module.logit_scale")}
    legacy = tmp_path / "legacy.pt"  # the pre-1.6 format cannot be mmapped, still weights-only
    torch.save(
        {"state_dict": {"s": torch.tensor(2.5, dtype=torch.bfloat16)}}, legacy, _use_new_zipfile_serialization=False
    )
    assert ck.read_scalars(legacy) == {"s": (2.5, "legacy.pt: s")}
    assert _hashes(tmp_path) == {**before, "legacy.pt": _hashes(tmp_path)["legacy.pt"]}


class _Touch:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["pickle-proto5", "pickle-proto2", "torch.save", "deepspeed-name"])
def test_malicious_pickles_are_refused_unrun(tmp_path, how):
    marker = tmp_path / "pwned"
    evil = {"w": torch.ones(2), "x": (_System if how == "pickle-proto2" else _Touch)(marker)}
    path = tmp_path / ("global_step1" if how == "deepspeed-name" else "ckpt")
    path.mkdir()
    target = path / ("mp_rank_00_model_states.pt" if how == "deepspeed-name" else "pytorch_model.bin")
    if how.startswith("pickle"):
        target.write_bytes(pickle.dumps(evil, protocol=5 if how.endswith("5") else 2))
    else:
        torch.save(evil, target)
    before = _hashes(tmp_path)
    with pytest.raises(DoctorInputError) as err:
        ck.read_scalars(target)
    problem = err.value.problem
    assert problem.startswith("refused: the pickle wants to run code (")
    assert problem.endswith("); only weights-only pickles are read")
    named = "posix.system" if how == "pickle-proto2" else ("Path.touch" if how == "pickle-proto5" else "getattr")
    assert named in problem, problem
    assert not marker.exists()
    assert _hashes(tmp_path) == before


def test_junk_and_truncated_pickles(tmp_path):
    junk = tmp_path / "pytorch_model.bin"
    junk.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(DoctorInputError, match=r"not a readable torch checkpoint \(neither torch.save's"):
        ck.read_scalars(tmp_path)
    junk.write_bytes(b"")
    with pytest.raises(DoctorInputError, match="empty file"):
        ck.read_scalars(junk)
    benign = tmp_path / "plain.pkl.pt"  # a harmless protocol-5 pickle: still not weights-only
    benign.write_bytes(pickle.dumps({"a": 1.0}, protocol=5))
    with pytest.raises(DoctorInputError, match="refused: not a weights-only torch pickle"):
        ck.read_scalars(benign)
    torch.save({"w": torch.ones(1000)}, junk)
    junk.write_bytes(junk.read_bytes()[:-300])
    with pytest.raises(DoctorInputError, match="not a readable torch checkpoint"):
        ck.read_scalars(junk)


def test_no_weights(tmp_path):
    with pytest.raises(DoctorInputError) as err:
        ck.find_weights(tmp_path)
    assert err.value.problem == (
        "no model weights (looked for model.safetensors, model-*-of-*."
        "safetensors + index, pytorch_model.bin, DeepSpeed global_step*/)"
    )
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DoctorInputError, match="no model weights"):
        ck.find_weights(tmp_path)
    with pytest.raises(DoctorInputError, match="no such directory"):
        ck.find_weights(tmp_path / "nope")
    with pytest.raises(DoctorInputError, match="no such file or directory"):
        ck.read_scalars(tmp_path / "nope")


def test_deepspeed_layout_without_deepspeed(tmp_path):
    """The folder logic on a hand-made layout (CI has no DeepSpeed)."""
    tag = tmp_path / "global_step7"
    tag.mkdir()
    state = {
        "module": {"logit_scale": torch.tensor(4.6052), "lin.weight": torch.ones(3, 4)},
        "buffer_names": [],
        "param_shapes": [{"logit_scale": torch.Size([])}],
        "sparse_tensor_module_names": set(),
        "global_steps": 7,
        "ds_config": {},
        "ds_version": "0.19.7",
    }
    torch.save(state, tag / "mp_rank_00_model_states.pt")
    (tag / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"")
    layout = ck.find_weights(tmp_path)  # no `latest`: the newest tag
    assert layout.kind == "deepspeed" and layout.deepspeed.tag == "global_step7"
    assert [p.name for p in layout.deepspeed.optim_states] == ["bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"]
    assert ck.read_scalars(tmp_path)["logit_scale"][0] == pytest.approx(4.6052)
    (tmp_path / "latest").write_text("global_step9")
    with pytest.raises(DoctorInputError, match="names DeepSpeed tag 'global_step9', but there is no such folder"):
        ck.find_weights(tmp_path)


DS_SCRIPT = textwrap.dedent("""
    import os, sys, torch, deepspeed
    # One process: DeepSpeed's shared-memory allreduce for the CPU is never used, but its backend
    # compiles it (a C++ build, about a minute of both cores on a clean machine) unless marked unusable.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    class M(torch.nn.Module):
        def __init__(s):
            super().__init__()
            s.lin = torch.nn.Linear(4, 3)
            s.logit_scale = torch.nn.Parameter(torch.tensor(4.6052))
            s.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        def forward(s, x):
            return (s.lin(x) * s.logit_scale.exp()).pow(2).mean()
    m = M()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    cfg = {"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 2}, "bf16": {"enabled": True}}
    eng, *_ = deepspeed.initialize(model=m, optimizer=opt, config=cfg)
    loss = eng(torch.randn(2, 4, dtype=torch.bfloat16)); eng.backward(loss); eng.step()
    eng.save_checkpoint(sys.argv[1])
    torch.save(eng.module.state_dict(), sys.argv[1] + "/expected.pt")
""")


@pytest.mark.timeout(1200)  # trains under DeepSpeed in a subprocess (up to 600 s)
def test_real_deepspeed_checkpoint(tmp_path):
    pytest.importorskip("deepspeed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        DS_ACCELERATOR="cpu",
    )
    out = tmp_path / "checkpoint-1"
    run = subprocess.run(
        [sys.executable, "-c", DS_SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    expected = torch.load(out / "expected.pt", weights_only=True)
    (out / "expected.pt").unlink()
    before = _hashes(tmp_path)
    layout = ck.find_weights(out)
    assert layout.kind == "deepspeed" and layout.deepspeed.tag == "global_step1"
    assert layout.files == [out / "global_step1" / "mp_rank_00_model_states.pt"]
    scalars = ck.read_scalars(out)
    assert scalars["logit_scale"][0] == expected["logit_scale"].item()
    assert scalars["queue_ptr"][0] == 0
    assert scalars["logit_scale"][1].endswith("global_step1/mp_rank_00_model_states.pt: logit_scale")
    # ZeRO optimizer states need DeepSpeed's loss scaler / enum / fragment classes: stand-ins.
    optim = ck.load_torch_file(layout.deepspeed.optim_states[0])
    osd = optim["optimizer_state_dict"]
    assert osd["loss_scaler"].cur_scale == 1.0 and osd["zero_stage"] == 2
    assert osd["param_slice_mappings"][0]["logit_scale"].numel == 1
    assert _hashes(tmp_path) == before


def test_checkpoints_like_transformers(tmp_path):
    from transformers.trainer_utils import _re_checkpoint, get_last_checkpoint

    assert run_folder._RE_CHECKPOINT.pattern == _re_checkpoint.pattern
    assert run_folder.latest_checkpoint(tmp_path) is None is get_last_checkpoint(str(tmp_path))
    assert (
        run_folder.latest_checkpoint(tmp_path / "missing") is None
        and run_folder.list_checkpoints(tmp_path / "missing") == []
    )
    for name in [
        "checkpoint-5",
        "checkpoint-10",
        "checkpoint-9",
        "checkpoint-abc",
        "checkpoint-20x",
        "old-checkpoint-99",
        "checkpoint-007",
        "checkpoint-7",
    ]:
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-50").write_text("a file, not a checkpoint")
    assert [p.name for p in run_folder.list_checkpoints(tmp_path)] == [
        "checkpoint-5",
        "checkpoint-007",
        "checkpoint-7",
        "checkpoint-9",
        "checkpoint-10",
    ]
    assert str(run_folder.latest_checkpoint(tmp_path)) == get_last_checkpoint(str(tmp_path))
    assert run_folder.latest_checkpoint(tmp_path).name == "checkpoint-10"
    (tmp_path / "checkpoint-10").rmdir()
    (tmp_path / "checkpoint-9").rmdir()
    assert str(run_folder.latest_checkpoint(tmp_path)) == get_last_checkpoint(str(tmp_path))  # a tie at 7


def test_trainer_state(tmp_path):
    folder = tmp_path / "checkpoint-40"
    folder.mkdir()
    assert ck.read_trainer_state(folder) is None
    assert run_folder.checkpoint_step(folder) == 40
    state = {"global_step": 40, "log_history": [{"loss": float("nan"), "step": 40}]}
    (folder / "trainer_state.json").write_text(json.dumps(state, indent=2))
    got = ck.read_trainer_state(folder)
    assert got["global_step"] == 40 and got["log_history"][0]["loss"] != got["log_history"][0]["loss"]
    other = tmp_path / "final"
    other.mkdir()
    assert run_folder.checkpoint_step(other) is None
    (other / "trainer_state.json").write_text('{"global_step": 12}')
    assert run_folder.checkpoint_step(other) == 12
    (other / "trainer_state.json").write_text('{\n  "global_step": 12,\n  "log_history": [\n}')
    with pytest.raises(DoctorInputError) as err:
        ck.read_trainer_state(other)
    assert err.value.path.endswith("trainer_state.json")
    assert err.value.problem.startswith("broken JSON at line 4, column 1")
