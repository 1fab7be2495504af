"""Issue 20, evidence not the injecting flag: check-config reads what the subject's code does (the
optimizer FGCLIPTrainer.create_optimizer builds, the hooks it registers, the bank's real enqueue), so a
trainer that drops its clamp, decays its scales or stops wrapping its queue is seen while every flag
still says otherwise. Real launches of the bundled subject, built on meta, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import fgclip.trainer as fgtrainer
from fgclip.memory_bank import RegionMemoryBank
from fgclip_doctor.cli import app

pytestmark = pytest.mark.subject


def check_launch(tmp_path: Path, *flags: str) -> dict:
    """check-config on `python -m fgclip.train --preset tiny <flags>`, as JSON."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "launch.sh"
    script.write_text(f"python -m fgclip.train --preset tiny --output_dir {tmp_path / 'out'} {' '.join(flags)}\n")
    result = CliRunner().invoke(app, ["check-config", str(script), "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def found(doc: dict, rule: str, subject: str = "") -> dict:
    [f] = [f for f in doc["findings"] if f["rule"] == rule and f["subject"] == subject]
    return f


def test_the_clamp_is_what_the_optimizer_hooks_do(tmp_path, synthetic_root, monkeypatch):
    doc = check_launch(tmp_path)
    clamp = doc["facts"]["scale.clamp"]
    assert clamp["value"] is True and "create_optimizer" in clamp["source"]
    assert doc["facts"]["scale.clamp_max"]["value"] == pytest.approx(4.6052, abs=1e-4)  # a scale at 1e3 came back there
    assert found(doc, "logit-scale-clamp", "clamp")["status"] == "PASS"
    # A trainer that forgets to register its clamp: the config flag still says True, the hooks say no.
    original = fgtrainer.FGCLIPTrainer.create_optimizer

    def forgets_the_clamp(self, model=None):
        optimizer = original(self, model)
        optimizer._optimizer_step_post_hooks.clear()
        return optimizer

    monkeypatch.setattr(fgtrainer.FGCLIPTrainer, "create_optimizer", forgets_the_clamp)
    doc = check_launch(tmp_path / "forgets")
    assert doc["facts"]["scale.clamp"]["value"] is False
    f = found(doc, "logit-scale-clamp", "clamp")
    assert f["status"] == "WARN" and "not clamped after the optimizer step" in f["message"]


def test_decay_is_read_from_the_optimizer_groups(tmp_path, synthetic_root, monkeypatch):
    doc = check_launch(tmp_path, "--weight_decay", "0.1")  # the subject keeps the scales out of decay
    assert found(doc, "logit-scale-decay", "logit_scale")["status"] == "PASS"
    original = fgtrainer.parameter_groups

    def decays_the_scales(model, lr, weight_decay, *args, **kwargs):
        groups = original(model, lr, weight_decay, *args, **kwargs)
        for g in groups:
            if g["name"] == "logit_scales":
                g["weight_decay"] = weight_decay  # --logit_scale_weight_decay stays False
        return groups

    monkeypatch.setattr(fgtrainer, "parameter_groups", decays_the_scales)
    doc = check_launch(tmp_path / "decays", "--weight_decay", "0.1")
    assert doc["facts"]["code.flags_accepted"]["value"].get("logit_scale_weight_decay") is None
    f = found(doc, "logit-scale-decay", "logit_scale")
    assert f["status"] == "WARN" and "weight_decay 0.1" in f["measured"]


def test_bank_size_without_wrap_around(tmp_path, synthetic_root, monkeypatch):
    """FGD203's non-wrapping branch on the real bank: 128 rows, 24 keys a call (not a multiple)."""
    doc = check_launch(tmp_path)
    f = found(doc, "bank-size")
    assert f["status"] == "PASS" and "wrap-around handles" in f["message"]

    @torch.no_grad()
    def enqueue_to_the_end(self, feats, caption_ids):  # writes up to the last row, then drops the rest
        start = int(self.ptr)
        k = min(feats.shape[0], self.size - start)
        self.queue[start : start + k] = torch.nn.functional.normalize(feats[:k].float(), dim=1)
        self.queue_ids[start : start + k] = caption_ids[:k]
        self.ptr.fill_(start + k)
        self.fill.fill_(min(self.size, int(self.fill) + k))

    monkeypatch.setattr(RegionMemoryBank, "enqueue", enqueue_to_the_end)
    doc = check_launch(tmp_path / "no-wrap")
    assert doc["facts"]["bank.wraps"]["value"] is False
    f = found(doc, "bank-size")
    assert f["status"] == "FAIL" and "does not handle wrap-around" in f["message"]


def test_head_lr_shared_group_and_lr_zero(tmp_path, synthetic_root, monkeypatch):
    """FGD602's shared-group and LR-0 branches on the optimizer the trainer builds."""
    f = found(check_launch(tmp_path, "--learning_rate", "0"), "head-lr", "roi_projection")
    assert f["status"] == "FAIL" and "lr 0" in f["message"]
    original = fgtrainer.parameter_groups

    def shares_a_group(model, *args, **kwargs):  # roi_projection folded into the backbone's group
        groups = original(model, *args, **kwargs)
        roi = next(g for g in groups if g["name"] == "roi_projection")
        next(g for g in groups if g["name"] == "other")["params"].extend(roi["params"])
        return [g for g in groups if g is not roi]

    monkeypatch.setattr(fgtrainer, "parameter_groups", shares_a_group)
    f = found(check_launch(tmp_path / "shared"), "head-lr", "roi_projection")
    assert f["status"] == "WARN" and "the seed's follow-up: give it its own LR" in f["message"]


def test_text_eos_id_and_positions_of_the_built_model(tmp_path, synthetic_root, monkeypatch):
    """FGD504's eos-id and positions branches on the model the launch builds: a base whose text config
    pools at id 2 (transformers' legacy argmax) under a tokenizer whose eos is another id, and a subject
    that hard-codes FG-CLIP's 248-row table while the launch asks for 300-token captions."""
    import shutil

    import fgclip.train as fgtrain

    base = tmp_path / "base"
    shutil.copytree(synthetic_root / "base", base)
    config = json.loads((base / "config.json").read_text())
    config["text_config"]["eos_token_id"] = 2
    (base / "config.json").write_text(json.dumps(config))
    doc = check_launch(tmp_path / "eos", "--model_name_or_path", str(base), "--base_model", str(base))
    f = found(doc, "text-eos", "eos-id")
    assert f["status"] == "FAIL" and "pools at eos id 2" in f["message"]
    assert found(doc, "text-eos", "positions")["status"] == "PASS"
    assert found(check_launch(tmp_path / "healthy"), "text-eos", "eos-id")["status"] == "PASS"

    original = fgtrain.config_overrides

    def hard_codes_248(margs, dargs):  # FG-CLIP v1 builds its long table at 248 rows whatever the flag says
        return {**original(margs, dargs), "long_text_positions": 248}

    monkeypatch.setattr(fgtrain, "config_overrides", hard_codes_248)
    f = found(check_launch(tmp_path / "long", "--max_seq_length", "300"), "text-eos", "positions")
    assert f["status"] == "FAIL" and "longer than the 248-row position table" in f["message"]
