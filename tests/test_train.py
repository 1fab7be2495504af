"""fgclip.train end to end on the CPU: the tiny preset learns the boxes, the seed-bug preset's bank stays off.

Three in-process runs, each shared by the tests of this module: the healthy tiny fine-tune
(60 steps; the session's `tiny_subject_run` in tests/conftest.py), the whole-image control
(`--region_pool image`, otherwise identical) and the seed-bug preset at batch 1 (the bank counts
forward calls, not samples).
"""

import contextlib
import io
import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from fgclip.data import FGCLIPDataset, collate
from fgclip.model import FGCLIPModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest

BANK_BUFFERS = ("queue", "queue_ids", "ptr", "fill", "forward_calls", "enabled_at_call")
HELD_OUT_BATCH = 8


@contextlib.contextmanager
def one_thread():
    """Tiny models train as fast on one thread, and two threads slow down 10x and more on a
    2-core machine that has anything else to run (batch-1 steps are many tiny parallel ops)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_train(args, diag=True):
    """fgclip.train.main(args) in-process; returns (trainer, stdout)."""
    from fgclip.train import main

    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf), one_thread():
        if diag:
            mp.setenv("ENABLE_RUNTIME_DIAG", "1")
        trainer = main(args + ["--report_to", "none", "--disable_tqdm", "True"])
    return trainer, buf.getvalue()


def diag_scales(log: str) -> dict[str, tuple[float, float]]:
    """The ENABLE_RUNTIME_DIAG lines `logit_scale (NAME): LN (exp=EXP)` -> {NAME: (LN, EXP)}."""
    found = re.findall(r"^logit_scale \((\w+)\): ([-\d.]+) \(exp=([-\d.]+)\)$", log, flags=re.M)
    assert len(found) == 3, log[:2000]  # printed once, at the first training step
    return {name: (float(ln), float(exp)) for name, ln, exp in found}


@pytest.fixture(scope="module")
def tiny_run(tiny_subject_run):
    """(trainer, stdout, output_dir) of the healthy tiny run: tests/conftest.py trains it once per
    session (`--preset tiny`, 60 steps, diag on, one thread; tests/test_inspect_ckpt.py inspects it too)."""
    return tiny_subject_run


@pytest.fixture(scope="module")
def control_run(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("control")
    trainer, _ = run_train(["--preset", "tiny", "--region_pool", "image", "--output_dir", str(out)], diag=False)
    return trainer


@pytest.fixture(scope="module")
def held_out(synthetic_root):
    """Fixed held-out batches: val.jsonl in order, 8 images each."""
    tok = AutoTokenizer.from_pretrained(str(synthetic_root / "base"))
    data = FGCLIPDataset(
        synthetic_root / "val.jsonl",
        synthetic_root,
        tok,
        image_size=64,
        max_boxes=4,
        add_box_loss=True,
        use_hard_neg=True,
    )
    return [
        collate([data[i] for i in range(s, min(s + HELD_OUT_BATCH, len(data)))])
        for s in range(0, len(data), HELD_OUT_BATCH)
    ]


@torch.no_grad()
def region_chance_ratio(model, batches) -> float:
    """Mean over batches of in-batch region loss / ln(candidates) (eval, no queue)."""
    captured = []
    handle = model.region_head.register_forward_hook(lambda m, i, o: captured.append(o))
    was_training = model.training
    model.eval()
    ratios = []
    try:
        for batch in batches:
            captured.clear()
            model(**batch, use_memory_bank=False)
            (head,) = captured
            k = int(batch["box_nums"].sum())
            assert head.logits.shape == (k, k)  # in-batch candidates only
            ratios.append(float(head.loss) / math.log(head.logits.shape[1]))
    finally:
        handle.remove()
        model.train(was_training)
    return sum(ratios) / len(ratios)


# ---- (a) the healthy run's checkpoint and logs -----------------------------------------------
def test_tiny_checkpoint_has_bank_and_logged_terms(tiny_run):
    trainer, log, out = tiny_run
    assert trainer.state.global_step == 60
    ckpt = out / "checkpoint-60"
    saved = load_file(ckpt / "model.safetensors")
    for name in BANK_BUFFERS:
        assert f"memory_bank.{name}" in saved, name
    assert int(saved["memory_bank.forward_calls"]) == 60
    assert int(saved["memory_bank.enabled_at_call"]) == 50  # warmup 50 forward calls, no accumulation
    assert int(saved["memory_bank.fill"]) == 128
    for name in ("logit_scale", "logit_scale_finegrained", "logit_scale_hardneg"):
        assert name in saved
    state = json.loads((ckpt / "trainer_state.json").read_text())
    train_logs = [e for e in state["log_history"] if "loss" in e]
    assert len(train_logs) == 12  # logging_steps 5
    for key in (
        "global_loss",
        "region_loss",
        "hardneg_loss",
        "logit_scale_exp",
        "logit_scale_finegrained_exp",
        "logit_scale_hardneg_exp",
    ):
        assert all(key in e and math.isfinite(e[key]) for e in train_logs), key
    assert train_logs[-1]["memory_bank_enabled_at_call"] == 50
    assert train_logs[0]["memory_bank_enabled_at_call"] == -1
    # the final save in output_dir carries the same bank
    final = load_file(out / "model.safetensors")
    assert torch.equal(final["memory_bank.queue"], saved["memory_bank.queue"])


def test_tiny_runtime_diag_lines(tiny_run):
    trainer, log, _ = tiny_run
    assert "[Memory Bank] enabled @ training_step 50" in log
    # the seed's grep line: the new scales start at the base's ln 100
    assert "logit_scale (finegrained): 4.605170 (exp=100.0000)" in log
    scales = diag_scales(log)
    assert scales["global"] == scales["finegrained"] == scales["hardneg"]
    bank = trainer.model.memory_bank
    assert int(bank.enabled_at_call) == 50 and int(bank.forward_calls) == 60


# ---- (b) the learning test -------------------------------------------------------------------
def test_region_loss_learns_the_boxes(tiny_run, control_run, held_out, synthetic_root):
    healthy = region_chance_ratio(tiny_run[0].model, held_out)
    control = region_chance_ratio(control_run.model, held_out)
    base = region_chance_ratio(FGCLIPModel.from_clip(str(synthetic_root / "base")), held_out)
    print(
        f"\nheld-out region loss / ln(candidates): healthy {healthy:.3f}, "
        f"whole-image control {control:.3f}, base (0 steps) {base:.3f}"
    )
    assert healthy < 0.75
    assert healthy < control - 0.1  # clearly below a model that ignores the box
    assert control > 0.8
    assert healthy < base


# ---- (c) the seed bug ------------------------------------------------------------------------
def test_seed_bug_bank_never_switches_on(synthetic_root, tmp_path):
    trainer, log = run_train(
        ["--preset", "seed-bug", "--per_device_train_batch_size", "1", "--output_dir", str(tmp_path / "seed-bug")]
    )
    assert trainer.args.gradient_accumulation_steps == 8 and trainer.state.global_step == 40
    model = trainer.model
    bank = model.memory_bank
    assert bank.warmup_forward_calls == 400
    assert int(bank.forward_calls) == 40 * 8 == 320
    assert int(bank.enabled_at_call) == -1 and not bank.active
    assert "[Memory Bank] enabled" not in log
    # the new scales started at CLIP's from-scratch 2.6592 (T 14.3), the global at the base's ln 100
    scales = diag_scales(log)
    assert scales["finegrained"] == pytest.approx((2.6592, 14.285), abs=1e-3)
    assert scales["hardneg"] == pytest.approx((2.6592, 14.285), abs=1e-3)
    assert scales["global"] == pytest.approx((4.6052, 100.0), abs=1e-3)
    saved = load_file(tmp_path / "seed-bug" / "model.safetensors")
    assert int(saved["memory_bank.enabled_at_call"]) == -1
    assert int(saved["memory_bank.forward_calls"]) == 320
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert logs and all(e["memory_bank_enabled_at_call"] == -1 for e in logs)
