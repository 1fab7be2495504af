"""The reader's oracle (issue 18 item 1, DESIGN §2.5): the bundled subject read as a user's checkout.

tests/helpers/renamed_subject.py copies `fgclip/` to `<tmp>/mytrain/` with every module (but
`train`), class, function and own method renamed to generated names (K1, fn3, m4, mod7), and the
README launches rewritten to `-m mytrain.train`. That checkout is not the bundled subject, so
check-config reads it as text; the subject path builds the model on the meta device and knows
its truth exactly. For every static rule the two must agree, or the copy SKIPs naming the fact
it misses and the line that hides it, listed below with the reason.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fgclip_doctor.cli import app

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from renamed_subject import LAUNCHES, make_checkout

REPO = Path(__file__).parents[1]

#: (launch, code, subject) -> (the fact the copy misses, text its SKIP must hold: the line hiding it).
#: The parameter names of a model whose towers are transformers modules live in transformers, which
#: the reader never reads; the optimizer groups split those names in a loop over named_parameters().
LIBRARY_TOWERS = ("model.parameters", "CLIPTextModel._from_config builds a library module")
ALLOWED = {
    (launch, code, subject): LIBRARY_TOWERS
    for launch in LAUNCHES
    for code, subject in (("FGD602", "roi_projection"), ("FGD602", ""), ("FGD603", "parameters"))
}


def check_config(cwd: Path, script: str) -> tuple[dict, dict]:
    before = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, ["check-config", "--format", "json", script])
    finally:
        os.chdir(before)
    assert result.exit_code in (0, 1), result.stderr or result.stdout
    doc = json.loads(result.stdout)
    findings = {(f["code"], f.get("subject", "")): f for f in doc["findings"]}
    return findings, doc["facts"]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user") / "checkout"
    table = make_checkout(root)
    assert {"GlobalContrastiveLoss", "RegionMemoryBank", "roi_align", "box_features", "tick"} <= table.keys()
    assert not any(n in (root / "mytrain" / "mod9.py").read_text() for n in ("FGCLIPModel", "RegionMemoryBank"))
    return root


@pytest.mark.parametrize("launch", LAUNCHES)
def test_copy_agrees_with_the_subject(checkout, launch):
    subject, subject_facts = check_config(REPO, f"scripts/{launch}")
    copy, facts = check_config(checkout, f"scripts/{launch}")
    assert subject_facts["run.subject_known"]["value"] is True
    assert facts["run.subject_known"]["value"] is False  # read as text: the foreign-code path
    disagree = []
    for key in sorted(set(subject) | set(copy)):
        want = subject.get(key, {}).get("status")
        got = copy.get(key, {}).get("status")
        if want == got:
            continue
        allowed = ALLOWED.get((launch, *key))
        if allowed is not None:  # a SKIP naming the fact and the line (FGD603 drops its part: FGD602 says it)
            fact, line = allowed
            assert got in ("SKIP", None), (key, copy.get(key))
            skips = [
                f
                for f in copy.values()
                if f["status"] == "SKIP" and fact in [*f.get("missing", []), f["message"]] and line in f["message"]
            ]
            assert skips, (key, fact, line)
            continue
        disagree.append(f"{key}: subject {want} / copy {got}: {copy.get(key, {}).get('message', '')[:160]}")
    assert not disagree, "\n".join(disagree)


def test_the_copy_reads_the_values_the_subject_builds(checkout):
    """The four problems seed_bug.sh plants, read from the renamed code with their provenance."""
    _, facts = check_config(checkout, "scripts/seed_bug.sh")
    value = {k: v["value"] for k, v in facts.items()}
    assert value["scale.finegrained.init"] == value["scale.hardneg.init"] == 2.6592
    assert "--logit_scale_init_value" in facts["scale.finegrained.init"]["source"]
    assert abs(value["scale.global.init"] - value["scale.global.base"]) < 1e-6  # the base's, read lazily
    assert "model.safetensors: logit_scale" in facts["scale.global.init"]["source"]
    assert value["bank.enabled"] is True and value["bank.size"] == 128
    assert (
        value["bank.warmup_forward_calls"] == 400
        and "once per forward call" in facts["bank.warmup_forward_calls"]["source"]
    )
    assert value["scale.clamp"] is True and abs(value["scale.clamp_max"] - 4.6052) < 1e-3
    assert value["loss.terms"] == ["global", "hardneg", "region"]
    assert value["features.gathered.global"] is True and value["features.gathered.region"] is False
