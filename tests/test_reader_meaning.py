"""The static reader by meaning (issue 18 items 2, 3, 7, 9): a small open_clip / SigLIP style
tree written here (our own code), launched with different flags. Each item has a launch where the
reader reads the value and one where it stays unknown and says why."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fgclip_doctor.cli import app
from fgclip_doctor.sources.launch.target import read_target
from fgclip_doctor.sources.run_config import collect_facts

MODEL = """import numpy as np
import torch
from torch import nn


class DualEncoder(nn.Module):
    def __init__(self, dim=64, init_logit_bias=None):
        super().__init__()
        self.image = nn.Linear(dim, dim)
        self.text = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        if init_logit_bias is not None:
            self.logit_bias = nn.Parameter(torch.ones([]) * init_logit_bias)
        else:
            self.logit_bias = None

    def forward(self, images, texts):
        return self.image(images), self.text(texts), self.logit_scale.exp(), self.logit_bias


def build(args):
    bias = -10.0 if args.siglip else None
    model = DualEncoder(init_logit_bias=bias)
    if args.pretrained:
        model.load_state_dict(torch.load(args.pretrained, map_location="cpu"))
    if args.init_logit_scale is not None:
        model.logit_scale.data.fill_(args.init_logit_scale)
    return model
"""

LOSS = """import torch
import torch.nn.functional as F
from torch import nn


class PairLoss(nn.Module):
    def forward(self, image_features, text_features, logit_scale, logit_bias=None):
        logits = logit_scale * image_features @ text_features.T
        labels = torch.arange(logits.shape[0])
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class SigmoidPairLoss(nn.Module):
    def forward(self, image_features, text_features, logit_scale, logit_bias):
        logits = logit_scale * image_features @ text_features.T + logit_bias
        labels = 2 * torch.eye(logits.shape[0]) - 1
        return -F.logsigmoid(labels * logits).sum() / logits.shape[0]


def make_loss(args):
    if args.siglip:
        return SigmoidPairLoss()
    return PairLoss()
"""

MAIN = """import argparse
import sys

import torch

from myclip.loss import make_loss
from myclip.model import build


def parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--siglip", action="store_true")
    p.add_argument("--pretrained", type=str, default="")
    p.add_argument("--init-logit-scale", type=float, default=None)
    return p.parse_args(argv)


def main(argv):
    args = parse(argv)
    model = build(args)
    loss = make_loss(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    for step in range(10):
        img, txt, scale, bias = model(torch.randn(4, 64), torch.randn(4, 64))
        total = loss(img, txt, scale, bias)
        total.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)


if __name__ == "__main__":
    main(sys.argv[1:])
"""

REGION = """import torch
import torch.nn.functional as F
from torch import nn


class BoxPhraseLoss(nn.Module):
    def forward(self, box_features, phrase_features, logit_scale):
        keep = box_features.norm(dim=-1) > 0  # zero-padded boxes dropped: rows depend on the data
        box_features = box_features[keep]
        logits = logit_scale * box_features @ phrase_features[keep].T
        return F.cross_entropy(logits, torch.arange(logits.shape[0]))
"""


def write_tree(root: Path, region: bool = False) -> Path:
    pkg = root / "src" / "myclip"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    model, main = MODEL, MAIN
    if region:  # a second scale on the model, a region term computed in its own module
        model = model.replace(
            "        if init_logit_bias is not None:",
            "        self.logit_scale_finegrained = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))\n"
            "        if init_logit_bias is not None:",
        )
        main = main.replace(
            "from myclip.model import build", "from myclip.model import build\nfrom myclip.region import BoxPhraseLoss"
        )
        main = main.replace(
            "    loss = make_loss(args)", "    loss = make_loss(args)\n    region_loss = BoxPhraseLoss()"
        )
        main = main.replace(
            "        total = loss(img, txt, scale, bias)",
            "        total = loss(img, txt, scale, bias) + region_loss(img, txt, model.logit_scale_finegrained.exp())",
        )
        (pkg / "region.py").write_text(REGION)
    (pkg / "model.py").write_text(model)
    (pkg / "loss.py").write_text(LOSS)
    (pkg / "main.py").write_text(main)
    torch.save({"logit_scale": torch.tensor(math.log(100.0))}, root / "base.pt")
    return root


def check(root: Path, flags: str) -> tuple[dict, dict, list]:
    (root / "run.sh").write_text(f"cd src\npython -m myclip.main --batch-size 32 {flags}\n")
    before = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(app, ["check-config", "--format", "json", "run.sh"])
    finally:
        os.chdir(before)
    assert result.exit_code in (0, 1), result.stderr or result.stdout
    doc = json.loads(result.stdout)
    findings = {(f["code"], f.get("subject", "")): f for f in doc["findings"]}
    facts = {k: (v["value"], v["source"]) for k, v in doc["facts"].items()}
    os.chdir(root)
    try:  # the report's `note:` lines, as collected for the text report
        view = read_target(Path("run.sh"))
        collect_facts(view)
    finally:
        os.chdir(before)
    return findings, facts, view.notes


@pytest.fixture
def tree(tmp_path) -> Path:
    return write_tree(tmp_path)


# --- item 2: a scale's start value is the last write before training -------------------------


def test_constructor_constant_when_nothing_loads(tree):
    found, facts, _ = check(tree, "")
    assert facts["scale.global.init"][0] == pytest.approx(math.log(1 / 0.07))
    assert facts["scale.global.init_from"] == ("constant", "myclip/model.py:11")


def test_local_weights_replace_the_constructor_value(tree):
    found, facts, _ = check(tree, "--pretrained ../base.pt")
    value, source = facts["scale.global.init"]
    assert value == pytest.approx(math.log(100.0), abs=1e-5)
    assert source.startswith("myclip/model.py:25: logit_scale loaded from") and "base.pt" in source
    assert "4.6052" in found[("FGD102", "global")]["message"]


def test_hub_weights_leave_the_start_unknown_citing_the_load(tree):
    found, facts, notes = check(tree, "--pretrained laion2b_s34b_b79k")
    assert "scale.global.init" not in facts  # never the constructor's 2.6593 once weights load over it
    assert ("FGD102", "global") not in found
    assert not any("2.6593" in f["message"] for f in found.values() if f["status"] == "PASS")
    assert any("myclip/model.py:25" in n and "laion2b_s34b_b79k" in n for n in notes), notes


def test_flag_overrides_the_init_after_the_load(tree):
    _, facts, _ = check(tree, "--pretrained ../base.pt --init-logit-scale 2.3")
    assert facts["scale.global.init"] == (2.3, "run.sh:2 --init-logit-scale")
    assert facts["scale.global.init_from"][0] == "flag init_logit_scale"


# --- item 3: flags decide branches -----------------------------------------------------------


def test_sigmoid_branch_taken(tree):
    found, facts, _ = check(tree, "--siglip")
    assert facts["loss.global.kind"][0] == "sigmoid" and facts["loss.global.logit_bias"][0] is True
    assert facts["bias.global.init_from"][0] == "constant"


def test_softmax_branch_taken(tree):
    _, facts, _ = check(tree, "")
    assert facts["loss.global.kind"][0] == "softmax"  # not "mixed": the sigmoid branch is not taken
    assert "loss.global.logit_bias" not in facts and "bias.global.init_from" not in facts


def test_unknown_flag_keeps_both_branches_and_says_so(tree):
    found, facts, notes = check(tree, '--pretrained "$(cat which.txt)"')
    assert "scale.global.init" not in facts
    assert any("--pretrained has no value known here" in n for n in notes), notes


# --- item 7: every loss term, wherever computed ----------------------------------------------


def test_region_term_in_its_own_module(tmp_path):
    root = write_tree(tmp_path, region=True)
    found, facts, _ = check(root, "")
    assert facts["loss.terms"][0] == ["global", "region"]
    assert facts["loss.region.kind"][0] == "softmax" and facts["features.gathered.region"][0] is False
    assert facts["scale.finegrained.init"][0] == pytest.approx(math.log(1 / 0.07))
    assert "candidates.region.in_batch" not in facts  # valid boxes per batch: data, never a count
    skip = found[("FGD201", "region")]
    assert skip["status"] == "SKIP" and "data-dependent" in skip["message"], skip


# --- item 9: absent is a fact ----------------------------------------------------------------


def test_no_bank_in_code_read_whole(tree):
    found, facts, _ = check(tree, "")
    assert facts["bank.enabled"][0] is False and "no memory bank in this code" in facts["bank.enabled"][1]
    assert "no memory bank" in found[("FGD202", "")]["message"]


def test_bank_unknown_when_a_module_is_unreadable(tree):
    (tree / "src" / "myclip" / "loss.py").write_text(LOSS + "\ndef broken(:\n")
    found, facts, _ = check(tree, "")
    assert "bank.enabled" not in facts
    message = found[("FGD202", "")]["message"]
    assert "bank.enabled" in found[("FGD202", "")]["missing"] and "myclip/loss.py" in message, message


def test_checkpoint_dict_load_is_a_load(tree):
    """`torch.load(path)["state_dict"]` (a resume of pretrained weights) replaces the constructor value."""
    model = tree / "src" / "myclip" / "model.py"
    model.write_text(
        model.read_text().replace(
            'model.load_state_dict(torch.load(args.pretrained, map_location="cpu"))',
            'checkpoint = torch.load(args.pretrained, map_location="cpu")\n'
            '        model.load_state_dict(checkpoint["state_dict"])',
        )
    )
    torch.save({"state_dict": {"logit_scale": torch.tensor(4.0)}, "epoch": 3}, tree / "resume.pt")
    _, facts, _ = check(tree, "--pretrained ../resume.pt")
    assert facts["scale.global.init"][0] == pytest.approx(4.0)


def test_weights_from_code_not_read_are_unknown(tree):
    model = tree / "src" / "myclip" / "model.py"
    model.write_text(
        model.read_text().replace(
            'model.load_state_dict(torch.load(args.pretrained, map_location="cpu"))',
            "model.load_state_dict(some_library.fetch(args.pretrained))",
        )
    )
    found, facts, _ = check(tree, "--pretrained ../base.pt")
    assert "scale.global.init" not in facts
    assert not any("2.6593" in f["message"] for f in found.values() if f["status"] == "PASS")


def test_no_new_scales_is_said(tree):
    found, facts, _ = check(tree, "")
    assert facts["model.scales"][0] == ["global"]
    assert "no new scales in this code" in found[("FGD101", "")]["message"]


def test_new_scales_unknown_when_code_unread(tree):
    (tree / "src" / "myclip" / "loss.py").write_text(LOSS + "\ndef broken(:\n")
    found, facts, _ = check(tree, "")
    assert "model.scales" not in facts
    assert "scale.finegrained.init" in found[("FGD101", "")]["missing"]  # unknown, not absent


def test_dict_dispatch_on_a_flag(tree):
    """`LOSSES[args.loss]()`: the class the launch's value picks, nothing of the others."""
    loss = tree / "src" / "myclip" / "loss.py"
    loss.write_text(
        loss.read_text().replace(
            "def make_loss(args):\n    if args.siglip:\n        return SigmoidPairLoss()\n    return PairLoss()\n",
            'LOSSES = {"clip": PairLoss, "siglip": SigmoidPairLoss}\n\n\n'
            "def make_loss(args):\n    return LOSSES[args.loss]()\n",
        )
    )
    main = tree / "src" / "myclip" / "main.py"
    main.write_text(
        main.read_text().replace(
            '    p.add_argument("--siglip", action="store_true")',
            '    p.add_argument("--siglip", action="store_true")\n    p.add_argument("--loss", default="clip")',
        )
    )
    _, facts, _ = check(tree, "--loss siglip --siglip")
    assert facts["loss.global.kind"][0] == "sigmoid"
    _, facts, _ = check(tree, "--loss clip")
    assert facts["loss.global.kind"][0] == "softmax"


def test_deep_expressions_leave_the_build_unknown_without_a_traceback(tree):
    main = tree / "src" / "myclip" / "main.py"
    chain = "+".join(["1"] * 900)  # parses, but nests deeper than the evaluator follows
    main.write_text(
        main.read_text().replace("    args = parse(argv)\n", f"    args = parse(argv)\n    depth = {chain}\n")
    )
    found, facts, _ = check(tree, "")
    assert facts["loss.terms"][0] == ["global"]  # the losses are still read by their shape


# --- bounded arithmetic: reading never hangs on what a constant expression would build ----------


def test_huge_constant_expressions_are_unknown_not_built(tree):
    """`10 ** 10 ** 10` and `"x" * 10 ** 12` in the user's code: unknown values, read at once
    (Python would spend minutes and gigabytes building them); the rest of the model still reads."""
    model = tree / "src" / "myclip" / "model.py"
    text = model.read_text()
    text = text.replace(
        "        self.logit_scale = nn.Parameter(",
        "        self.huge = 10 ** 10 ** 10\n"
        "        self.pad = 'x' * 10 ** 12\n"
        "        self.logit_scale = nn.Parameter(",
    )
    model.write_text(text)
    found, facts, _ = check(tree, "")
    assert facts["scale.global.init"][0] == pytest.approx(math.log(1 / 0.07))


def test_arithmetic_is_bounded():
    import ast

    from fgclip_doctor.sources.code.reader.astutil import UNKNOWN, arithmetic

    assert arithmetic(ast.Pow, 2, 10) == 1024
    assert arithmetic(ast.Pow, 10, 10**10) is UNKNOWN  # float overflow, never a 10-billion-digit int
    assert arithmetic(ast.Mult, "x", 10**12) is UNKNOWN
    assert arithmetic(ast.Mult, [0], 4) == [0, 0, 0, 0]
    assert arithmetic(ast.Div, 1, 0) is UNKNOWN
    assert arithmetic(ast.Add, True, 1) is UNKNOWN
