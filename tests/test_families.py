"""sources/code/families (issue 18 item 8): one module per convention, found by the registry
without a list to edit; the reader and launch_code take their spellings from it."""

from __future__ import annotations

import json
import os
import pkgutil
import shutil
from pathlib import Path

from typer.testing import CliRunner

from fgclip_doctor.cli import app
from fgclip_doctor.sources.code import families

TREES = Path(__file__).parent / "trees"


def test_every_family_module_is_registered():
    modules = {m.name for m in pkgutil.iter_modules(families.__path__)}
    assert {f.name for f in families.REGISTRY} == modules
    assert {"fgclip", "hf_clip", "open_clip", "siglip", "eva_clip"} <= modules


def test_lookups_span_families():
    assert families.scale_of("logit_scale_finegraind") == "finegrained"  # FG-CLIP v1's spelling
    assert families.scale_of("logit_scale") == "global" and families.scale_of("roi_projection") is None
    assert families.term_of_scale("finegrained") == "region"
    assert families.library_model_kind("SiglipModel") == "sigmoid"
    assert families.library_model_kind("CLIPModel") == "softmax"
    assert families.library_model_kind("MyOwnModel") is None
    assert families.precision("amp") == ("fp16", "fp16 autocast") and families.precision("bogus") is None
    assert families.fact_dests("train.per_device_batch")[:2] == ("per_device_train_batch_size", "batch_size")
    assert families.fix_for("open_clip", "fp16") == "--precision amp_bf16"
    assert {"logsigmoid", "cross_entropy"} <= families.SIGMOID | families.SOFTMAX


def _fp16(cwd: Path, script: str) -> dict:
    before = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, ["check-config", "--format", "json", script])
    finally:
        os.chdir(before)
    doc = json.loads(result.stdout)
    return next(f for f in doc["findings"] if f["code"] == "FGD601")


def test_open_clip_fix_is_spelled_its_way(tmp_path):
    tree = tmp_path / "open_clip"
    shutil.copytree(TREES / "open_clip", tree)
    finding = _fp16(tree, "train.sh")
    assert finding["status"] == "WARN" and finding["fix"] == "--precision amp_bf16"


def test_hf_flags_keep_the_rule_fix(tmp_path):
    tree = tmp_path / "run_clip"
    shutil.copytree(TREES / "run_clip", tree)
    finding = _fp16(tree, "train.sh")
    assert "--precision" not in (finding.get("fix") or "")
