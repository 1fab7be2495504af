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


def _by_function(terms: dict) -> dict[str, dict]:
    return {name.rsplit(" ", 1)[-1]: term for name, term in terms.items()}


def test_every_term_is_measured(run):
    code, doc, checkout = run
    terms = _by_function(doc["live"]["terms"])
    assert set(terms) == {"sigmoid_loss", "region_loss", "hardneg_loss"}, list(terms)
    # 8 images a batch (each against every caption), 2 boxes an image, each box against its caption and 4 rewrites
    assert [terms[f]["columns_max"] for f in ("sigmoid_loss", "region_loss", "hardneg_loss")] == [8, 16, 5]
    for term in terms.values():
        assert term["loss_first"] > 0 and math.isfinite(term["logit_max"])
    assert code == doc["exit_code"]
    assert not (checkout / "checkpoints").exists()  # never the launch's output_dir


def test_the_sigmoid_term_is_judged_as_sigmoid_with_its_bias(run):
    _code, doc, _checkout = run
    facts = doc["facts"]
    [name] = [n for n in doc["live"]["terms"] if n.endswith(" sigmoid_loss")]
    assert facts[f"loss.{name}.kind"]["value"] == "sigmoid"
    # the sigmoid chance level for 8 candidates: ln 8 + 7 ln(8/7), not ln 8
    assert facts[f"loss.chance.{name}"]["value"] == pytest.approx(math.log(8) + 7 * math.log(8 / 7), rel=1e-3)
    assert facts["loss.global.logit_bias"]["value"] is True
    # SigLIP's start, t = 10: measured from the model at train begin, the region scales at the flag's default
    assert facts["scale.global.init"]["value"] == pytest.approx(math.log(10), abs=1e-5)
    assert facts["scale.finegrained.init"]["value"] == pytest.approx(2.6592, abs=1e-4)
