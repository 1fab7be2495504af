"""live on an FG-CLIP 2 style training it did not write (tests/trees/fgclip2_live): sigmoid global terms
with a learned bias (a long and a short caption per image), softmax region and hard-negative terms over
the vision tower's patch grid, each with its own scale. Every term is measured, the sigmoid one as a
sigmoid loss against the sigmoid chance level."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from schema import validate
from typer.testing import CliRunner

from fgclip_doctor.cli import app

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "tests" / "trees" / "fgclip2_live"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[int, dict, Path]:
    checkout = tmp_path_factory.mktemp("fgclip2") / "FG-CLIP2"
    shutil.copytree(TREE, checkout)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(checkout)
        result = CliRunner().invoke(
            app, ["live", "scripts/train_tiny.sh", "--steps", "4", "--interval", "2", "--format", "json"]
        )
    assert result.exit_code in (0, 1), (result.output or "") + repr(result.exception)
    doc = json.loads(result.stdout)
    validate(doc, {"live"})
    return result.exit_code, doc, checkout


def test_every_term_is_measured_by_name(run):
    # placed by reading: global at FGCLIP2.sigmoid_loss, region at region_loss, hardneg at hardneg_loss
    code, doc, checkout = run
    terms = doc["live"]["terms"]
    assert set(terms) == {"global", "region", "region/reverse", "hardneg"}, list(terms)
    # 8 images a batch (each against every caption), 2 boxes an image, each box against its caption and 4 rewrites
    assert [terms[t]["columns_max"] for t in ("global", "region", "hardneg")] == [8, 16, 5]
    for term in terms.values():
        assert term["loss_first"] > 0 and math.isfinite(term["logit_max"])
    [placed] = [n for n in doc["live"]["notes"] if n.startswith("probes placed by reading the code: ")]
    assert "global at fgclip2.model.fgclip2_tiny:FGCLIP2.sigmoid_loss" in placed
    assert "RoIAlign at fgclip2.model.fgclip2_tiny:pool_regions" in placed
    # the boxes reaching its own pooling and the box features are measured: both rules judge, and pass
    found = {(f["rule"], f["subject"]): f["status"] for f in doc["findings"]}
    assert found[("roi-scale", "")] == "PASS" and found[("region-collapse", "")] == "PASS", found
    assert code == doc["exit_code"]
    assert not (checkout / "checkpoints").exists()  # never the launch's output_dir


def test_the_sigmoid_term_is_judged_as_sigmoid_with_its_bias(run):
    _code, doc, _checkout = run
    facts = doc["facts"]
    assert facts["loss.global.kind"]["value"] == "sigmoid"
    # the sigmoid chance level for 8 candidates: ln 8 + 7 ln(8/7), not ln 8
    assert facts["loss.chance.global"]["value"] == pytest.approx(math.log(8) + 7 * math.log(8 / 7), rel=1e-3)
    assert facts["loss.global.logit_bias"]["value"] is True
    # SigLIP's start, t = 10: measured from the model at train begin, the region scales at the flag's default
    assert facts["scale.global.init"]["value"] == pytest.approx(math.log(10), abs=1e-5)
    assert facts["scale.finegrained.init"]["value"] == pytest.approx(2.6592, abs=1e-4)
