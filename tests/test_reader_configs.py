"""Config files decide facts (issue 18 item 5): a YAML config the code loads from `--config` is
read like flags, each value citing the config's `file:line key`, and it decides branches. Tree:
tests/trees/yaml_clip (a CLIP trainer driven by YAML, distillation from a teacher); albef (its
temperature from the config). Each fact is read once and stays unknown, saying why, once."""

from __future__ import annotations

import math
import os

import pytest
from test_check_config_code import run, status, tree
from test_check_config_families import edit
from typer.testing import CliRunner

from fgclip_doctor.cli import app

CFG = "configs/vitb16_kd.yaml"


def table(cwd, script: str = "scripts/train.sh") -> str:
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return " ".join(CliRunner().invoke(app, ["check-config", "-v", script]).stdout.split())
    finally:
        os.chdir(before)


@pytest.fixture
def kd(tmp_path):
    return tree(tmp_path, "yaml_clip")


def test_run_facts_from_the_config(kd):
    _, found, facts, _ = run(kd, "scripts/train.sh")
    assert facts["train.per_device_batch"] == (128, f"{CFG}:6 data.batch_size")
    assert facts["train.learning_rate"] == (5e-4, f"{CFG}:9 optim.lr")
    assert facts["schedule.warmup_steps"] == (2000, f"{CFG}:13 schedule.warmup_steps")
    assert facts["train.bf16"][0] is True and facts["train.bf16"][1].startswith(f"{CFG}:15 precision")
    assert status(found, "FGD601") == "PASS"


def test_scale_start_clamp_and_no_decay_from_the_config(kd):
    _, found, facts, _ = run(kd, "scripts/train.sh")
    value, source = facts["scale.global.init"]
    assert value == pytest.approx(math.log(1 / 0.07))
    assert source == f"clipkd/model.py:13 ({CFG}:3 model.init_temperature)"
    assert facts["scale.global.init_from"][0] == "config model.init_temperature"
    assert facts["scale.clamp_max"][0] == pytest.approx(math.log(100))
    assert facts["scale.clamp_max"][1].endswith(f"(bound: {CFG}:4 model.max_logit_scale)")
    assert facts["scale.global.decayed"] == (False, f"train.py:10 (no-decay names: {CFG}:11 optim.no_decay)")
    assert status(found, "FGD103", "logit_scale") == "PASS"
    assert status(found, "FGD102", "clamp") == "PASS"


def test_a_config_value_decides_a_branch(kd):
    _, _, facts, _ = run(kd, "scripts/train.sh")
    assert facts["loss.global.kind"] == ("softmax", "clipkd/losses.py:22")
    edit(kd / CFG, "siglip: false", "siglip: true")
    edit(kd / CFG, "no_decay: [bias, norm, logit_scale]", "no_decay: [bias, norm]")
    _, found, facts, _ = run(kd, "scripts/train.sh")
    assert facts["loss.global.kind"][0] == "sigmoid"
    assert facts["scale.global.decayed"][0] is True and status(found, "FGD103", "logit_scale") == "WARN"


def test_a_config_not_readable_leaves_its_values_unknown_and_says_so(kd):
    edit(kd / "scripts/train.sh", "--config configs/vitb16_kd.yaml", "--config configs/missing.yaml")
    _, found, facts, _ = run(kd, "scripts/train.sh")
    for name in ("train.per_device_batch", "scale.global.init", "scale.clamp_max", "scale.global.decayed"):
        assert name not in facts, name
    assert facts["loss.global.kind"][0] == "mixed"  # `if cfg["loss"]["siglip"]` not known: both branches
    missing = "train.py:24: yaml.safe_load loads configs/missing.yaml (scripts/train.sh:3 --config): "
    missing += "configs/missing.yaml is not on this machine"
    # the no-decay names are the config's: never a PASS or a WARN, and the SKIP says which test, which config, why
    decay = found[("FGD103", "logit_scale")]
    assert decay["status"] == "SKIP" and decay["missing"] == ["scale.global.decayed"]
    assert f"train.py:10: the no-decay names are not known: {missing}" in decay["message"]
    # a clamp whose bound is the config's: never a PASS on a bound not read; which clamp, which config, why
    clamp = found[("FGD102", "clamp")]
    assert clamp["status"] == "SKIP" and clamp["missing"] == ["scale.clamp_max"]
    assert f"clipkd/model.py:18: the clamp's bound is not known: {missing}" in clamp["message"]
    assert "FGD102" not in {c for c, s in found if s == "global"}  # no start value to judge
    shown = table(kd)
    assert "train.py:24: yaml.safe_load loads configs/missing.yaml" in shown and "is not on this machine" in shown


def test_a_clamp_in_a_branch_on_a_flag_counts_only_where_the_launch_takes_it(kd):
    edit(
        kd / "train.py",
        '    parser.add_argument("--output-dir"',
        '    parser.add_argument("--clamp-scale", type=int, default=1)\n    parser.add_argument("--output-dir"',
    )
    edit(
        kd / "train.py", "        model.clamp_scale()", "        if args.clamp_scale:\n            model.clamp_scale()"
    )
    launch = kd / "scripts/train.sh"
    edit(launch, "--output-dir runs/vitb16_kd", "--output-dir runs/vitb16_kd --clamp-scale 1")
    _, found, facts, _ = run(kd, "scripts/train.sh")
    assert status(found, "FGD102", "clamp") == "PASS" and facts["scale.clamp"][1] == "clipkd/model.py:18"
    edit(launch, "--clamp-scale 1", "--clamp-scale 0")  # the branch not taken: no clamp runs
    _, found, facts, _ = run(kd, "scripts/train.sh")
    assert facts["scale.clamp"][0] is False and status(found, "FGD102", "clamp") == "WARN"
    edit(launch, "--clamp-scale 0", "--clamp-scale $1")  # the script's argument: the clamp may or may not run
    _, found, facts, _ = run(kd, "scripts/train.sh")
    assert "scale.clamp" not in facts
    clamp = found[("FGD102", "clamp")]
    assert clamp["status"] == "SKIP" and clamp["missing"] == ["scale.clamp"]
    assert (
        "clipkd/model.py:18: the clamp runs only if `args.clamp_scale` depends on scripts/train.sh:3"
        in clamp["message"]
    )


def test_albef_temperature_from_its_yaml(tmp_path):
    al = tree(tmp_path, "albef")
    _, found, facts, _ = run(al, "run_pretrain.sh")
    assert facts["scale.global.init"][0] == pytest.approx(math.log(1 / 0.07))
    assert facts["scale.global.init"][1] == "ln(1 / temp 0.07) (configs/Pretrain.yaml:8 temp)"
    assert facts["scale.clamp_max"][0] == pytest.approx(math.log(1 / 0.001))  # clamp_(0.001, 0.5) on temp
    edit(al / "run_pretrain.sh", "--config ./configs/Pretrain.yaml", "--config $1")
    _, found, facts, _ = run(al, "run_pretrain.sh")
    assert "scale.global.init" not in facts and "train.per_device_batch" not in facts
    assert "yaml.load loads a config whose path is not known" in table(al, "run_pretrain.sh")


def test_a_no_decay_grouping_counts_only_where_the_launch_uses_it(kd):
    edit(
        kd / "train.py",
        '    parser.add_argument("--output-dir"',
        '    parser.add_argument("--group", type=int, default=1)\n    parser.add_argument("--output-dir"',
    )
    edit(
        kd / "train.py",
        'torch.optim.AdamW(param_groups(model, cfg["optim"]), lr',
        'torch.optim.AdamW(param_groups(model, cfg["optim"]) if args.group else model.parameters(), lr',
    )
    launch = kd / "scripts/train.sh"
    _, found, facts, _ = run(kd, "scripts/train.sh")  # the default, 1: the config's no-decay list holds
    assert facts["scale.global.decayed"][0] is False and status(found, "FGD103", "logit_scale") == "PASS"
    for value, why in (
        (
            "0",
            "train.py:10: param_groups() builds the groups, but every call of it is in a branch this launch",
        ),
        ("$1", "train.py:10: param_groups() builds the groups only if `args.group` depends on scripts/train.sh:3"),
    ):
        edit(
            launch,
            "--output-dir runs/vitb16_kd" + ("" if value == "0" else " --group 0"),
            f"--output-dir runs/vitb16_kd --group {value}",
        )
        _, found, facts, _ = run(kd, "scripts/train.sh")
        decay = found[("FGD103", "logit_scale")]
        assert "scale.global.decayed" not in facts and decay["status"] == "SKIP", value
        assert why in decay["message"], decay["message"]


def test_batch_and_lr_are_the_values_the_loader_and_the_optimizer_get(kd):
    """A key named batch_size / lr that the code never hands on is not the run's: the DataLoader
    gets loader.per_gpu and the optimizer optim.peak (issue 18: follow a value to its use site)."""
    edit(kd / CFG, "  num_workers: 8\n", "  num_workers: 8\nloader:\n  per_gpu: 32\n")
    edit(kd / CFG, "  lr: 5e-4\n", "  lr: 5e-4\n  peak: 1e-3\n")
    edit(kd / "train.py", 'batch_size=cfg["data"]["batch_size"]', 'batch_size=cfg["loader"]["per_gpu"]')
    edit(kd / "train.py", 'lr=cfg["optim"]["lr"]', 'lr=cfg["optim"]["peak"]')
    _, found, facts, _ = run(kd, "scripts/train.sh")
    assert facts["train.per_device_batch"] == (
        32,
        f"{CFG}:9 loader.per_gpu (batch_size handed to the DataLoader at train.py:36 DataLoader)",
    )
    assert facts["train.learning_rate"] == (
        1e-3,
        f"{CFG}:12 optim.peak (lr handed to the optimizer at train.py:35 AdamW)",
    )
    assert found[("FGD201", "global")]["measured"] == "128"  # the loader's 32 x world 4, never data.batch_size's 128
    edit(kd / "scripts/train.sh", "--config configs/vitb16_kd.yaml", "--config $1")  # the key's value unknown
    _, found, facts, _ = run(kd, "scripts/train.sh")
    assert "train.per_device_batch" not in facts and "train.learning_rate" not in facts
    skip = found[("FGD201", "global")]
    assert skip["status"] == "SKIP"
    assert (
        "train.py:36 DataLoader: the batch_size handed to the DataLoader is not known: train.py:24" in skip["message"]
    )


def test_a_loader_of_its_own_beside_a_trainer_is_not_the_run_batch(tmp_path):
    """A transformers Trainer builds the training loader from --per_device_train_batch_size: a DataLoader
    the code builds for something else (a warm-up pass, the base's pretraining) is not the run's batch."""
    live_tree = tree(tmp_path, "fgclip_v1_live")
    edit(
        live_tree / "fgclip/train/train_fgclip.py",
        "    trainer = transformers.Trainer(",
        "    warm = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, collate_fn=collate)\n"
        "    trainer = transformers.Trainer(",
    )
    _, found, facts, _ = run(live_tree, "scripts/train_tiny.sh")
    assert facts["train.per_device_batch"][0] == 8, facts["train.per_device_batch"]
    assert "--per_device_train_batch_size" in facts["train.per_device_batch"][1]
    assert found[("FGD201", "global")]["measured"] == "8"
