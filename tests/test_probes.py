"""Probes: no host synchronisation inside the forward pass, statistics that are right, clean removal."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

import fgclip.model as fgmodel
from fgclip_doctor.callback import DoctorCallback
from fgclip_doctor.probes.cross_entropy import ce_observation


@pytest.fixture(scope="module")
def model_and_batch(synthetic_root, tiny_tokenizer):
    from fgclip.data import FGCLIPDataset, collate

    torch.manual_seed(0)
    model = fgmodel.FGCLIPModel.from_clip(str(synthetic_root / "base"), memory_bank_warmup_steps=1)
    data = FGCLIPDataset(synthetic_root / "train.jsonl", synthetic_root, tiny_tokenizer, image_size=64)
    return model, collate([data[i] for i in range(4)])


def test_hooks_make_no_host_sync_in_the_forward_pass(model_and_batch, monkeypatch):
    model, batch = model_and_batch
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cb = DoctorCallback()
    cb.install(model, opt)
    offenders = []
    probes = os.path.join("fgclip_doctor", "probes")
    torch_dir = os.path.dirname(torch.__file__)

    def spy(name, original):
        def wrapper(self, *a, **k):
            import sys

            frame = sys._getframe(1)
            # The responsible code is the first caller outside torch itself (torch helpers that a
            # probe calls count as the probe's; the model's own code called from a wrapper does not).
            while frame is not None and frame.f_code.co_filename.startswith(torch_dir):
                frame = frame.f_back
            if frame is not None and probes in frame.f_code.co_filename:
                offenders.append(f"{name} from {frame.f_code.co_filename}:{frame.f_lineno}")
            return original(self, *a, **k)

        return wrapper

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, spy(name, getattr(torch.Tensor, name)))
    try:
        for _ in range(2):  # the second call has the bank on: queue columns, duplicates, masking
            model(**batch).loss.backward()
    finally:
        monkeypatch.undo()
    snap = cb.snapshot(1, model)  # reading back is allowed, outside the forward pass
    cb.close()
    assert offenders == [], offenders
    assert set(snap["terms"]) >= {"global", "global/reverse", "region", "region/reverse", "hardneg"}


def test_probes_are_removed(model_and_batch):
    model, batch = model_and_batch
    original_ce, original_roi = F.cross_entropy, fgmodel.roi_align

    def hooks():  # transformers registers its own output-capturing hooks: compare, do not expect none
        return {name: (len(m._forward_pre_hooks), len(m._forward_hooks)) for name, m in model.named_modules()}

    before = hooks()
    cb = DoctorCallback()
    with cb:
        cb.install(model, None)
        assert F.cross_entropy is not original_ce and "box_features" in model.__dict__
        assert hooks() != before
    assert F.cross_entropy is original_ce and fgmodel.roi_align is original_roi
    assert "box_features" not in model.__dict__
    assert hooks() == before


def test_ce_observation_counts_finite_candidates_and_offsets():
    logits = torch.tensor([[5.0, 1.0, -math.inf, 0.0], [0.0, 3.0, 1.0, -math.inf]])
    target = torch.tensor([0, 1])
    loss = F.cross_entropy(logits, target)
    sums, mins, maxs = ce_observation(logits, target, loss, rank=0)
    n_eff, pos, hardest, offset = float(sums[5]), float(sums[6]), float(sums[7]), float(sums[10])
    assert n_eff == 3.0  # the masked (-inf) column is not a candidate
    assert math.isclose(float(sums[4]), math.log(3.0), rel_tol=1e-6)
    assert pos == 4.0 and hardest == 1.0 and offset == 1.0
    assert float(mins[0]) == 0.0 and float(maxs[0]) == 5.0
    # rank 1 of 2 with gathered columns: targets must be 2 + i
    assert float(ce_observation(logits, target, loss, rank=1)[0][10]) == 0.0


def test_callback_abort_on_fail_stops_training(synthetic_root, tmp_path):
    """A user's own run: DoctorCallback(abort_on="fail") stops through control at the first FAIL."""
    from fgclip.train import main
    from fgclip_doctor.settings import Settings
    from fgclip_doctor.sources.launch.target import read_target
    from fgclip_doctor.sources.run_config import collect_facts

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = collect_facts(read_target(__import__("pathlib").Path(root, "scripts", "seed_bug.sh")))
    cb = DoctorCallback(interval=2, abort_on="fail", settings=Settings(), base_facts=base)
    import transformers

    original = transformers.Trainer.__init__

    def init(self, *a, **k):
        original(self, *a, **k)
        cb.attach(self)

    transformers.Trainer.__init__ = init
    seen = []

    class Recorder(transformers.TrainerCallback):  # after ours: sees what TensorBoard / W&B would
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs))

    def init_with_recorder(self, *a, **k):
        init(self, *a, **k)
        self.add_callback(Recorder())

    transformers.Trainer.__init__ = init_with_recorder
    try:
        trainer = main(
            [
                "--preset",
                "seed-bug",
                "--per_device_train_batch_size",
                "1",
                "--gradient_accumulation_steps",
                "1",
                "--max_steps",
                "20",
                "--output_dir",
                str(tmp_path),
                "--save_strategy",
                "no",
                "--logging_steps",
                "1",
                "--report_to",
                "none",
            ]
        )
    finally:
        transformers.Trainer.__init__ = original
    assert trainer.state.global_step == 2  # stopped at the first interval with a FAIL
    fails = {f.rule for f in cb.findings if f.status.value == "FAIL"}
    assert "logit-scale-init" in fails
    logged = [log for log in seen if any(k.startswith("doctor/") for k in log)]
    assert logged and logged[-1]["doctor/fail"] >= 1
