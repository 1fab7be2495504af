"""Every loss term, wherever it is computed (issue 18 items 7 and 9): a distillation KL in its own
module (tests/trees/yaml_clip), ALBEF's ITC against a queue of keys (tests/trees/albef: candidates
= per-device batch + the queue's length from its YAML), and `loss.<term>.present`, False only
where the model was read whole; SLIP's model picked by `getattr(models, args.model)` (item 3 of the
rest of issue 18). Each is read once and stays unknown, saying why, once."""

from __future__ import annotations

import math

import pytest
from test_check_config_code import run, status, tree
from test_check_config_families import edit
from test_reader_meaning import check, write_tree

CFG = "configs/vitb16_kd.yaml"


def test_distillation_term_in_its_own_module(tmp_path):
    kd = tree(tmp_path, "yaml_clip")
    _, found, facts, _ = run(kd, "scripts/train.sh")
    assert facts["loss.terms"][0] == ["distill", "global"]
    assert facts["loss.distill.kind"] == ("kl", "clipkd/losses.py:40")
    assert facts["loss.distill.present"] == (True, "clipkd/losses.py:40")
    assert facts["features.gathered.distill"][0] is False and facts["features.gathered.global"][0] is True
    assert facts["loss.region.present"] == (False, "train.py:26: no region term in this code (DualEncoder, read whole)")
    assert status(found, "FGD201", "global") == "PASS"  # 128 x 4, the distill term has no negatives to count


def test_a_term_the_config_turns_off_is_absent_and_unknown_when_the_config_is_not_read(tmp_path):
    kd = tree(tmp_path, "yaml_clip")
    edit(kd / CFG, "    enabled: true", "    enabled: false")
    _, _, facts, _ = run(kd, "scripts/train.sh")
    assert facts["loss.terms"][0] == ["global"] and facts["loss.distill.present"][0] is False
    edit(kd / "scripts/train.sh", "--config configs/vitb16_kd.yaml", "--config $1")
    _, _, facts, _ = run(kd, "scripts/train.sh")
    assert "distill" in facts["loss.terms"][0]  # `if cfg["loss"]["distill"]["enabled"]` not known: both branches
    assert facts["loss.global.kind"][0] == "mixed"


def test_albef_itc_candidates_are_the_batch_and_the_queue(tmp_path):
    al = tree(tmp_path, "albef")
    _, found, facts, _ = run(al, "run_pretrain.sh")
    assert facts["loss.global.queue"] == (
        65536,
        "models/model_pretrain.py:47: self.text_queue (configs/Pretrain.yaml:10 queue_size)",
    )
    assert facts["loss.global.keys_queued"][0] is True
    f = found[("FGD201", "global")]
    assert f["status"] == "PASS" and "64 in-batch + 65536 queued keys = 65600" in f["message"]
    assert "loss.hardneg.present" in facts and facts["loss.region.present"][0] is False


def test_albef_queue_length_unknown_without_its_config_is_never_a_pass(tmp_path):
    al = tree(tmp_path, "albef")
    edit(al / "run_pretrain.sh", "--config ./configs/Pretrain.yaml", "--config $1")
    _, found, facts, _ = run(al, "run_pretrain.sh")
    assert facts["loss.global.keys_queued"][0] is True and "loss.global.queue" not in facts
    assert status(found, "FGD201", "global") == "SKIP"


def test_region_term_present_where_a_module_computes_it(tmp_path):
    found, facts, _ = check(write_tree(tmp_path, region=True), "")
    assert facts["loss.region.present"][0] is True and facts["loss.hardneg.present"][0] is False


def test_slip_simclr_term_held_by_value_with_its_own_gather(tmp_path):
    slip = tree(tmp_path, "slip")
    _, found, facts, _ = run(slip, "run_slip.sh")
    assert facts["loss.ssl.kind"] == ("softmax", "losses.py:39") and facts["loss.ssl.present"][0] is True
    assert facts["features.gathered.ssl"] == (True, "losses.py:32")  # all_gather_batch_with_grad of both views
    assert "candidates.ssl" not in facts  # the augmented views per row: never a count
    skip = found[("FGD201", "ssl")]
    assert skip["status"] == "SKIP" and "depend on the augmentation batch" in skip["message"]


def test_slip_model_picked_by_its_flag(tmp_path):
    slip = tree(tmp_path, "slip")
    _, found, facts, _ = run(slip, "run_slip.sh")  # --model SLIP_VITB16: getattr(models, args.model)()
    assert facts["code.model"][0].startswith("SLIP (models.py:26), built at models.py:39")
    assert facts["code.train_function"][0] == "main.py:32 main"  # not get_args_parser(), called inside a call
    assert facts["scale.global.init"] == (pytest.approx(math.log(1 / 0.07)), "models.py:13")
    assert facts["model.scales"][0] == ["global"] and facts["bank.enabled"][0] is False
    # CLIPLoss reads the scale from the model's outputs by key: the global term, gathered, next to the SSL one
    assert facts["loss.terms"][0] == ["global", "ssl"] and facts["features.gathered.global"] == (True, "losses.py:15")
    assert status(found, "FGD201", "global") == "PASS"  # 64 per device x 8


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (
            "$1",
            "main.py:34: getattr(models, args.model) picks what it builds by a value not known here (run.sh:3 --model",
        ),
        ("SLIP_VITL14", "main.py:34: getattr(models, args.model) = models.SLIP_VITL14 (run.sh:3 --model), not defined"),
    ],
)
def test_slip_model_unknown_when_its_flag_is(tmp_path, value, why):
    slip = tree(tmp_path, "slip")
    (slip / "run.sh").write_text((slip / "run_slip.sh").read_text().replace("SLIP_VITB16", value))
    _, found, facts, _ = run(slip, "run.sh")
    for name in ("scale.global.init", "model.scales", "bank.enabled", "loss.region.present"):
        assert name not in facts, name  # never the first constructor's constant, never "absent" of a model not known
    bank = found[("FGD202", "")]
    assert bank["status"] == "SKIP" and why in bank["message"], bank["message"]
    assert status(found, "FGD201", "global") == "PASS"  # the loss module is known whatever the model
