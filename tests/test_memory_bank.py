"""fgclip.memory_bank: warmup in forward calls, FIFO queue, candidates in the model, save / resume."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from fgclip.config import tiny_config
from fgclip.data import FGCLIPDataset, collate
from fgclip.memory_bank import RegionMemoryBank
from fgclip.model import FGCLIPModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest

BANK_BUFFERS = ("queue", "queue_ids", "ptr", "fill", "forward_calls", "enabled_at_call")


# ---- the bank on its own ---------------------------------------------------------------------
def test_buffers_are_persistent():
    bank = RegionMemoryBank(8, size=4, warmup_forward_calls=2)
    assert set(bank.state_dict()) == set(BANK_BUFFERS)
    assert bank.queue.shape == (4, 8) and bank.queue_ids.shape == (4,)
    assert torch.allclose(bank.queue.norm(dim=1), torch.ones(4))  # random unit rows until filled
    assert int(bank.fill) == 0 and int(bank.ptr) == 0 and int(bank.forward_calls) == 0
    assert int(bank.enabled_at_call) == -1 and not bank.active


def test_switches_on_at_exactly_the_warmup_call(monkeypatch, capsys):
    monkeypatch.setenv("ENABLE_RUNTIME_DIAG", "1")
    bank = RegionMemoryBank(8, size=16, warmup_forward_calls=3)
    bank.enqueue(torch.randn(2, 8), torch.tensor([1, 2]))  # something in the queue
    assert bank.tick() is False and bank.tick() is False
    assert int(bank.enabled_at_call) == -1
    assert capsys.readouterr().out == ""
    assert bank.tick() is True  # call 3 == warmup
    assert int(bank.enabled_at_call) == 3 and int(bank.forward_calls) == 3
    assert capsys.readouterr().out == "[Memory Bank] enabled @ training_step 3\n"
    for _ in range(5):
        assert bank.tick() is True
    assert int(bank.enabled_at_call) == 3 and int(bank.forward_calls) == 8  # recorded once
    assert capsys.readouterr().out == ""


def test_no_diag_line_without_the_env(monkeypatch, capsys):
    monkeypatch.delenv("ENABLE_RUNTIME_DIAG", raising=False)
    bank = RegionMemoryBank(8, size=4, warmup_forward_calls=1)
    bank.tick()
    assert int(bank.enabled_at_call) == 1
    assert capsys.readouterr().out == ""


def test_enabled_but_empty_is_not_active():
    bank = RegionMemoryBank(8, size=4, warmup_forward_calls=1)
    bank.tick()
    assert int(bank.enabled_at_call) == 1 and not bank.active  # nothing queued yet
    bank.enqueue(torch.randn(1, 8), torch.tensor([5]))
    assert bank.active


def test_enqueue_wraps_around_and_keeps_ids():
    bank = RegionMemoryBank(4, size=5, warmup_forward_calls=1)
    a = torch.randn(3, 4)
    bank.enqueue(a, torch.tensor([1, 2, 3]))
    assert int(bank.ptr) == 3 and int(bank.fill) == 3
    assert torch.allclose(bank.queue[:3], F.normalize(a, dim=1))
    b = torch.randn(4, 4)
    bank.enqueue(b, torch.tensor([4, 5, 6, 7]))  # slots 3, 4, 0, 1
    assert int(bank.ptr) == 2 and int(bank.fill) == 5
    assert bank.queue_ids.tolist() == [6, 7, 3, 4, 5]
    assert torch.allclose(bank.queue[[3, 4, 0, 1]], F.normalize(b, dim=1))
    assert torch.allclose(bank.queue[2], F.normalize(a[2], dim=0))
    feats, ids = bank.candidates()
    assert feats.shape == (5, 4) and ids.tolist() == [6, 7, 3, 4, 5]


def test_enqueue_more_than_size_keeps_the_newest():
    bank = RegionMemoryBank(4, size=3, warmup_forward_calls=1)
    x = torch.randn(7, 4)
    bank.enqueue(x, torch.arange(1, 8))
    assert int(bank.fill) == 3 and int(bank.ptr) == 0
    assert bank.queue_ids.tolist() == [5, 6, 7]
    assert torch.allclose(bank.queue, F.normalize(x[-3:], dim=1))
    bank.enqueue(torch.randn(0, 4), torch.zeros(0, dtype=torch.long))  # no-op
    assert int(bank.fill) == 3 and int(bank.ptr) == 0


def test_entries_are_normalised_and_detached():
    bank = RegionMemoryBank(6, size=8, warmup_forward_calls=1)
    x = (5 * torch.randn(4, 6)).requires_grad_()
    bank.enqueue(x * 3, torch.arange(1, 5))
    feats, ids = bank.candidates()
    assert feats.shape == (4, 6) and ids.tolist() == [1, 2, 3, 4]
    assert not feats.requires_grad and not bank.queue.requires_grad
    assert torch.allclose(feats.norm(dim=1), torch.ones(4), atol=1e-6)
    # candidates are a copy: a later enqueue (before backward) does not change them
    before = feats.clone()
    bank.enqueue(torch.randn(4, 6), torch.arange(10, 14))
    assert torch.equal(feats, before)


# ---- the bank inside FGCLIPModel -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_batches(synthetic_root, tiny_tokenizer):
    data = FGCLIPDataset(
        synthetic_root / "train.jsonl",
        synthetic_root,
        tiny_tokenizer,
        image_size=64,
        max_boxes=4,
        add_box_loss=True,
        use_hard_neg=True,
    )
    return [collate([data[i] for i in range(s, s + 4)]) for s in range(0, 16, 4)]


def tiny_model(tokenizer, **overrides):
    torch.manual_seed(0)
    cfg = tiny_config(
        len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id, **overrides
    )
    return FGCLIPModel(cfg)


class RegionCapture:
    """Forward hook on model.region_head: the HeadOutput of each region loss."""

    def __init__(self, model):
        self.outputs = []
        self.handle = model.region_head.register_forward_hook(lambda m, i, o: self.outputs.append(o))


def test_region_candidates_before_and_after_warmup(tiny_batches, tiny_tokenizer):
    model = tiny_model(tiny_tokenizer, memory_bank_size=32, memory_bank_warmup_steps=2).train()
    cap = RegionCapture(model)
    seen = 0
    for call, batch in enumerate(tiny_batches, start=1):
        k = int(batch["box_nums"].sum())
        model(**batch)
        logits = cap.outputs[-1].logits
        if call < 2:  # before warmup: in-batch boxes only
            assert logits.shape == (k, k)
            assert int(model.memory_bank.enabled_at_call) == -1
        else:  # from the warmup call on: boxes + the filled queue
            assert logits.shape == (k, k + min(32, seen))
            assert int(model.memory_bank.enabled_at_call) == 2
        seen += k
        assert int(model.memory_bank.fill) == min(32, seen)
        assert int(model.memory_bank.forward_calls) == call
    # the queue holds the valid boxes' caption ids, FIFO with wrap-around
    bank = model.memory_bank
    expected = torch.zeros(32, dtype=torch.long)
    order = torch.cat([b["box_caption_ids"][torch.arange(4)[None] < b["box_nums"][:, None]] for b in tiny_batches])
    assert len(order) == seen > 32  # wrapped at least once
    for i, cid in enumerate(order):
        expected[i % 32] = cid
    assert torch.equal(bank.queue_ids, expected) and int(bank.ptr) == seen % 32
    # eval: no tick, no enqueue; use_memory_bank=False -> in-batch only
    model.eval()
    calls, fill = int(bank.forward_calls), int(bank.fill)
    with torch.no_grad():
        model(**tiny_batches[0], use_memory_bank=False)
        k = int(tiny_batches[0]["box_nums"].sum())
        assert cap.outputs[-1].logits.shape == (k, k)
        model(**tiny_batches[0])  # eval with the bank: the queue is read, not written
        assert cap.outputs[-1].logits.shape == (k, k + fill)
    assert int(bank.forward_calls) == calls and int(bank.fill) == fill


def test_training_with_the_bank_masks_same_caption_copies(tiny_batches, tiny_tokenizer):
    model = tiny_model(tiny_tokenizer, memory_bank_size=64, memory_bank_warmup_steps=1).train()
    cap = RegionCapture(model)
    batch = tiny_batches[0]
    model(**batch)  # call 1: bank switches on but is empty -> fills with this batch's captions
    model(**batch)  # call 2: the queue holds exact copies of every positive
    out = cap.outputs[-1]
    k = int(batch["box_nums"].sum())
    assert out.logits.shape == (k, 2 * k)
    extra = out.logits[:, k:]
    valid = torch.arange(batch["boxes"].shape[1])[None] < batch["box_nums"][:, None]
    ids = batch["box_caption_ids"][valid]
    assert torch.equal(model.memory_bank.queue_ids[:k], ids)
    assert torch.equal(torch.isneginf(extra), ids[:, None] == ids[None, :])  # own (and equal) captions masked
    assert torch.isneginf(extra.diagonal()).all()
    assert torch.isfinite(out.loss)


def test_save_pretrained_restores_the_bank(tmp_path, tiny_batches, tiny_tokenizer):
    model = tiny_model(tiny_tokenizer, memory_bank_size=16, memory_bank_warmup_steps=2).train()
    for batch in tiny_batches[:3]:
        model(**batch)
    bank = model.memory_bank
    assert int(bank.enabled_at_call) == 2 and int(bank.forward_calls) == 3 and int(bank.fill) == 16
    assert int(bank.ptr) == sum(int(b["box_nums"].sum()) for b in tiny_batches[:3]) % 16
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    for name in BANK_BUFFERS:
        assert f"memory_bank.{name}" in saved
    loaded = FGCLIPModel.from_pretrained(tmp_path)
    for name in BANK_BUFFERS:
        assert torch.equal(getattr(loaded.memory_bank, name), getattr(bank, name)), name
    assert loaded.memory_bank.active
    # and the rest of the model too (long position table included)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # the loaded model still encodes long captions (past the short table): the same losses as the model
    batch = tiny_batches[0]
    assert batch["text_long"].shape[-1] > model.config.text_config.max_position_embeddings
    with torch.no_grad():
        mine = model.eval()(**batch, use_memory_bank=False)
        theirs = loaded.eval()(**batch, use_memory_bank=False)
    for term in ("loss", "global_loss", "region_loss", "hardneg_loss"):
        assert torch.isfinite(theirs[term]) and torch.equal(theirs[term], mine[term]), term


def test_checkpoint_without_a_bank_loads_an_empty_bank(tmp_path, tiny_batches, tiny_tokenizer):
    """A checkpoint saved without the bank (e.g. FG-CLIP's released weights) gets a fresh, empty bank,
    not uninitialised memory; everything it does hold is loaded as saved."""
    model = tiny_model(tiny_tokenizer, use_memory_bank=False)
    with torch.no_grad():
        model.logit_scale_finegrained.fill_(1.5)
        model.roi_projection.weight.mul_(2.0)
    model.save_pretrained(tmp_path)
    assert not any(k.startswith("memory_bank.") for k in load_file(tmp_path / "model.safetensors"))
    loaded = FGCLIPModel.from_pretrained(
        tmp_path, use_memory_bank=True, memory_bank_size=16, memory_bank_warmup_steps=1
    )
    bank = loaded.memory_bank
    assert [int(getattr(bank, n)) for n in ("ptr", "fill", "forward_calls", "enabled_at_call")] == [0, 0, 0, -1]
    assert bank.queue_ids.eq(0).all() and torch.allclose(bank.queue.norm(dim=1), torch.ones(16), atol=1e-5)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    loaded.train()
    cap = RegionCapture(loaded)
    for batch in tiny_batches[:2]:
        out = loaded(**batch)
        assert torch.isfinite(out.loss)
    k = int(tiny_batches[1]["box_nums"].sum())
    assert cap.outputs[-1].logits.shape[1] == k + min(16, int(tiny_batches[0]["box_nums"].sum()))


def test_trainer_resume_restores_the_bank(synthetic_root, tmp_path, monkeypatch):
    from transformers import TrainerCallback

    import fgclip.train

    snapshots = []

    class Snapshot(TrainerCallback):  # the bank as training (re)starts: after the checkpoint is loaded
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            snapshots.append({n: getattr(model.memory_bank, n).clone() for n in BANK_BUFFERS})

    class SnapshotTrainer(fgclip.train.FGCLIPTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(Snapshot())

    monkeypatch.setattr(fgclip.train, "FGCLIPTrainer", SnapshotTrainer)
    out = tmp_path / "run"
    common = [
        "--preset",
        "tiny",
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "2",
        "--memory_bank_size",
        "16",
        "--memory_bank_warmup_steps",
        "2",
        "--save_steps",
        "3",
        "--logging_steps",
        "1",
        "--warmup_steps",
        "0",
        "--report_to",
        "none",
        "--disable_tqdm",
        "True",
    ]
    fgclip.train.main(common + ["--max_steps", "3"])
    assert int(snapshots[0]["forward_calls"]) == 0 and int(snapshots[0]["fill"]) == 0  # a fresh bank
    saved = load_file(out / "checkpoint-3" / "model.safetensors")
    assert int(saved["memory_bank.forward_calls"]) == 3
    assert int(saved["memory_bank.enabled_at_call"]) == 2
    assert int(saved["memory_bank.fill"]) > 0
    assert not torch.equal(saved["memory_bank.queue"], snapshots[0]["queue"])

    # FG-CLIP's auto-resume (checkpoint-* in output_dir): the bank is restored exactly ...
    trainer = fgclip.train.main(common + ["--max_steps", "5", "--save_steps", "5"])
    for name in BANK_BUFFERS:
        assert torch.equal(snapshots[1][name], saved[f"memory_bank.{name}"]), name
    # ... and goes on counting from the checkpoint's forward calls.
    bank = trainer.model.memory_bank
    assert trainer.state.global_step == 5
    assert int(bank.forward_calls) == 5 and int(bank.enabled_at_call) == 2
    state = json.loads((out / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    assert all(math.isfinite(e["region_loss"]) for e in state["log_history"] if "region_loss" in e)
