"""live's probes placed by the static reader (issue 19.1): code the doctor did not write is measured
by what it means, not by the bundled subject's names.

- The renamed copy of the subject (tests/helpers/renamed_subject.py: package, modules, classes and
  helpers renamed; here `roi_align` -> `pool_boxes` too) under `live scripts/train_tiny.sh`
  measures the same terms and judges the same live rules as the subject itself: one run of each,
  shared by the module.
- The probes on a tiny hand-written model (tests/helpers/tiny_regions.py): roi-scale and
  region-collapse fire and stay silent on real tensors; hooks sit on the instance and in the
  caller's namespace, and everything is put back, also on Ctrl-C; the F.* patch is only the
  fallback, and says why.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from fgclip_doctor.callback import DoctorCallback
from fgclip_doctor.cli import app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
import tiny_regions  # noqa: E402
from renamed_subject import make_checkout  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
#: the live rules the issue names, judged on both
RULES = (
    "bank-active",
    "bank-hygiene",
    "bank-false-negatives",
    "loss-floor",
    "region-collapse",
    "roi-scale",
    "step-units",
    "negatives-count",
    "loss-chance",
    "text-eos",
)


def live_json(cwd: Path, *args: str) -> dict:
    import os

    before = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, ["live", *args, "--format", "json"])
    finally:
        os.chdir(before)
    assert result.exit_code in (0, 1), (result.output or "") + repr(result.exception)
    return json.loads(result.stdout)


#: the README's tiny launch with the bank on from forward call 2, so 4 steps see it switch on and queue
BANK_EARLY = ("--memory_bank_warmup_steps 50", "--memory_bank_warmup_steps 2")


@pytest.fixture(scope="module")
def two_runs(synthetic_root, tmp_path_factory):
    """(the subject's live doc, the renamed copy's live doc, the renames): 4 steps each."""
    checkout = tmp_path_factory.mktemp("user") / "checkout"
    table = make_checkout(checkout)
    for path in (checkout / "mytrain").glob("*.py"):  # the RoIAlign helper under another name too
        path.write_text(re.sub(r"\broi_align\b", "pool_boxes", path.read_text()))
    launch = (ROOT / "scripts" / "train_tiny.sh").read_text()
    assert launch.count(BANK_EARLY[0]) == 1
    (checkout / "scripts" / "train_tiny.sh").write_text(
        launch.replace(*BANK_EARLY).replace("fgclip.train", "mytrain.train")
    )
    subject_launch = checkout.parent / "subject_tiny.sh"  # run from the repository, as the README's launch
    subject_launch.write_text(launch.replace(*BANK_EARLY))
    args = ("--steps", "4", "--interval", "2")
    return live_json(ROOT, str(subject_launch), *args), live_json(checkout, "scripts/train_tiny.sh", *args), table


def test_the_renamed_copy_measures_the_same_terms_by_name(two_runs):
    subject, copy, table = two_runs
    assert table["box_features"] != "box_features" and table["RegionContrastiveLoss"] != "RegionContrastiveLoss"
    assert copy["facts"]["run.subject_known"]["value"] is False  # the foreign-code path
    assert (
        set(copy["live"]["terms"])
        == set(subject["live"]["terms"])
        == {
            "global",
            "global/reverse",
            "region",
            "region/reverse",
            "hardneg",
        }
    )
    for term, want in subject["live"]["terms"].items():
        got = copy["live"]["terms"][term]
        for key in ("columns_max", "candidates_last", "chance_last"):  # candidates per row, chance
            assert got[key] == want[key], (term, key)
        for key in ("logit_min", "logit_max", "loss_first", "loss_last", "ratio_last"):  # logit range, loss vs chance
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), (term, key)
        floor = f"loss.floor.{term}"
        assert copy["facts"][floor]["value"] == pytest.approx(subject["facts"][floor]["value"], abs=1e-6)
    notes = copy["live"]["notes"]
    placed = next(n for n in notes if n.startswith("probes placed by reading the code: "))
    assert f"region at mytrain.{table['losses']}:{table['RegionContrastiveLoss']}.forward" in placed
    assert f"box features at mytrain.{table['model']}:{table['FGCLIPModel']}.{table['box_features']}" in placed
    assert f"RoIAlign at mytrain.{table['roi_align']}:pool_boxes" in placed
    assert not any("fallback" in n for n in notes)  # every term placed: F.* left alone


def test_the_renamed_copy_judges_the_same_live_rules(two_runs):
    subject, copy, _ = two_runs

    def statuses(doc):
        return {(f["rule"], f["subject"]): f["status"] for f in doc["findings"] if f["rule"] in RULES}

    want, got = statuses(subject), statuses(copy)
    assert got == want
    judged = {rule for (rule, _), status in want.items() if status != "SKIP"}
    assert {"bank-active", "loss-floor", "region-collapse", "roi-scale", "step-units", "negatives-count"} <= judged
    assert {"bank-hygiene", "bank-false-negatives"} <= judged  # the queue switched on and filled, read on both
    assert copy["facts"]["bank.enabled_at_call"]["value"] == subject["facts"]["bank.enabled_at_call"]["value"] == 2
    region = copy["live"]["terms"]["region"]
    assert region["columns"][-1][1] > region["columns"][0][1]  # in-batch, then in-batch + queue
    sources = {(f["rule"], f["subject"]): f["sources"] for f in copy["findings"]}
    assert "live: RoIAlign outputs" in sources[("roi-scale", "")]
    assert "live: box features" in sources[("region-collapse", "")]
    assert any("live: memory bank buffers" in s for s in sources[("bank-active", "")])


# ---- the probes themselves, on a tiny model of the family (no Trainer) --------------------------


def measured(model, sites=tiny_regions.SITES, calls: int = 1):
    """A DoctorCallback with `sites` over `calls` forward passes: (its findings by rule, the callback)."""
    cb = DoctorCallback(interval=1, sites=[dict(s) for s in sites], unplaced={})
    cb.install(model)
    try:
        for i in range(calls):
            model(**tiny_regions.batch(seed=i)).backward()
        cb.snapshot(1, model)
        findings = cb.judge_record(cb.record())
    finally:
        cb.close()
    return {(f.rule, f.subject): f for f in findings}, cb


def test_boxes_pooled_where_they_are_pass_roi_scale_and_region_collapse():
    found, cb = measured(tiny_regions.TinyRegions())
    assert found[("roi-scale", "")].status.value == "PASS"
    assert found[("region-collapse", "")].status.value == "PASS"
    record = cb.record()
    assert set(record.terms) == {"global", "global/reverse", "region"}  # cross_entropy imported by name, seen too
    assert record.placement["fallback"] is None and record.columns["region"][0].columns == 8


def test_boxes_off_the_grid_fail_roi_scale():
    found, _ = measured(tiny_regions.TinyRegions(grid_scale=100))  # corners at 50 on a 4-cell grid
    assert found[("roi-scale", "")].status.value == "FAIL"
    assert "min norm 0" in found[("roi-scale", "")].measured


def test_normalised_boxes_on_grid_units_fail_region_collapse():
    found, _ = measured(tiny_regions.TinyRegions(grid_scale=1))  # every box inside the first cell
    assert found[("region-collapse", "")].status.value == "FAIL"
    assert found[("roi-scale", "")].status.value == "PASS"


def test_hooks_sit_on_the_instance_and_are_put_back_also_on_ctrl_c():
    model, other = tiny_regions.TinyRegions(), tiny_regions.TinyRegions()
    original_ce, original_crop = F.cross_entropy, tiny_regions.crop_mean
    cb = DoctorCallback(interval=1, sites=[dict(s) for s in tiny_regions.SITES], unplaced={})

    def interrupt(*args):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), cb:
        cb.install(model)
        assert F.cross_entropy is original_ce  # every term placed: no patch of torch.nn.functional
        assert tiny_regions.crop_mean is not original_crop  # replaced in the module that calls it, for the run
        assert "match_loss" in vars(model) and "match_loss" not in vars(other)  # the instance, never the class
        handle = model.head.register_forward_pre_hook(interrupt)  # Ctrl-C once the global term has begun
        model(**tiny_regions.batch())
    handle.remove()
    assert tiny_regions.crop_mean is original_crop and "match_loss" not in vars(model)
    assert not model.head._forward_pre_hooks and not model.head._forward_hooks and F.cross_entropy is original_ce
    assert not torch._C._is_torch_function_mode_enabled()  # the term's mode left with the run
    model(**tiny_regions.batch())  # runs as before


def test_a_term_not_in_the_model_falls_back_to_call_sites_and_says_why():
    sites = [dict(s) for s in tiny_regions.SITES]
    sites[1] = {**sites[1], "qualname": "OtherModel.match_loss", "at": "tiny_regions.py:60"}
    found, cb = measured(tiny_regions.TinyRegions(), sites)
    fallback = cb.record().placement["fallback"]
    assert (
        fallback
        == "region: no instance of tiny_regions:OtherModel.match_loss in the model trained (tiny_regions.py:60)"
    )
    # the placed global term by name; match_loss's F.cross_entropy through the fallback patch, by call site
    line = next(
        i for i, text in enumerate(Path(tiny_regions.__file__).read_text().splitlines(), 1) if "F.cross_entropy" in text
    )
    assert sorted(cb.record().terms) == ["global", "global/reverse", f"tiny_regions.py:{line} match_loss"]


def test_the_reader_places_the_v1_tree_probes(tmp_path):
    from fgclip_doctor.sources.code.reader import read_training_code

    tree = tmp_path / "FG-CLIP"
    shutil.copytree(ROOT / "tests" / "trees" / "fgclip_v1_live", tree)
    reading = read_training_code("fgclip.train.train_fgclip", "module", tree)
    sites = {s.get("term", s["what"]): s for s in reading.facts.value("code.probe_sites")}
    assert {k: (v["qualname"], v["kind"]) for k, v in sites.items()} == {
        "global": ("FineGrainedCLIP.global_loss", "method"),
        "region": ("FineGrainedCLIP.pair_loss", "method"),
        "hardneg": ("FineGrainedCLIP.hard_loss", "method"),
        "box_features": ("FineGrainedCLIP.box_features", "method"),
        "roi": ("roi_align", "function"),
    }
    assert (
        sites["roi"]["caller"] == "fgclip.model.fgclip_tiny" and sites["roi"]["at"] == "fgclip/model/fgclip_tiny.py:14"
    )
    assert reading.facts.value("code.probe_unplaced") is None


def test_torchvision_roi_align_is_placed_by_the_name_the_code_calls_it(tmp_path):
    from fgclip_doctor.sources.code.reader import read_training_code

    model_py = (ROOT / "tests" / "trees" / "fgclip_v1_live" / "fgclip" / "model" / "fgclip_tiny.py").read_text()
    tree = tmp_path / "FG-CLIP"
    shutil.copytree(ROOT / "tests" / "trees" / "fgclip_v1_live", tree)
    path = tree / "fgclip" / "model" / "fgclip_tiny.py"
    own = model_py[model_py.index("def roi_align") : model_py.index("def _embeds")]
    path.write_text(
        model_py.replace(own, "from torchvision.ops import roi_align as pool\n\n\n").replace(
            "roi_align(grid", "pool(grid"
        )
    )
    sites = read_training_code("fgclip.train.train_fgclip", "module", tree).facts.value("code.probe_sites")
    [roi] = [s for s in sites if s["what"] == "roi"]
    assert (roi["module"], roi["qualname"], roi["caller"], roi["name"]) == (
        "torchvision.ops",
        "roi_align",
        "fgclip.model.fgclip_tiny",
        "pool",
    )
    path.write_text(
        path.read_text()
        .replace("from torchvision.ops import roi_align as pool", "import torchvision")
        .replace("pool(grid", "torchvision.ops.roi_align(grid")
    )
    unplaced = read_training_code("fgclip.train.train_fgclip", "module", tree).facts.value("code.probe_unplaced")
    assert "torchvision.ops.roi_align is called through the library's module" in unplaced["roi"]
    held = model_py.replace(
        "from transformers import CLIPModel", "from torchvision.ops import RoIAlign\nfrom transformers import CLIPModel"
    )
    held = held.replace(
        "super().__init__(config)\n", "super().__init__(config)\n        self.pool = RoIAlign(1, 1.0, 2)\n"
    )
    path.write_text(held.replace("roi_align(grid, boxes, spatial_scale=side)", "self.pool(grid, boxes * side)"))
    sites = read_training_code("fgclip.train.train_fgclip", "module", tree).facts.value("code.probe_sites")
    [roi] = [s for s in sites if s["what"] == "roi"]
    assert (roi["kind"], roi["name"], roi["module"]) == ("attribute", "pool", "torchvision.ops.RoIAlign")


def test_sites_in_the_entry_of_a_module_launch_name_main():
    """`python -m pkg.train` runs pkg/train.py as __main__ (runpy): its classes live there at run time."""
    from types import SimpleNamespace

    from fgclip_doctor.commands.live.runner import probe_sites
    from fgclip_doctor.facts import Facts

    facts = Facts()
    site = {"what": "term", "term": "global", "module": "pkg.train", "qualname": "Model.loss", "kind": "method"}
    roi = {"what": "roi", "module": "pkg.ops", "qualname": "pool", "kind": "function", "caller": "pkg.train"}
    facts.set("code.probe_sites", [site, roi], "pkg/train.py:3")
    facts.set("code.probe_unplaced", {"hardneg": "pkg/train.py:9: why"}, "pkg/train.py:9")
    module = SimpleNamespace(is_subject=False, entry="pkg.train")
    sites, unplaced = probe_sites(module, facts)
    assert [s["module"] for s in sites] == ["__main__", "pkg.ops"] and sites[1]["caller"] == "__main__"
    assert unplaced == {"hardneg": "pkg/train.py:9: why"} and site["module"] == "pkg.train"  # the facts untouched
    script = SimpleNamespace(is_subject=False, entry="train.py")
    assert probe_sites(script, facts)[0][0]["module"] == "pkg.train"
    assert probe_sites(SimpleNamespace(is_subject=True, entry="fgclip.train"), facts) == (None, None)
