"""check-config on CLIP-family codebases in their own launch shapes (issue 18 items 4, 5, 6, 10):
tests/trees/metaclip (src/ layout, sbatch + srun, `--resume latest`), eva_clip (layer-wise LR decay,
torch.distributed.launch, `$1` data), albef (a YAML config drives the run), slip (auto-resume from
<output-dir>/checkpoint.pt). Expected facts are read by hand from each tree's code; every item has
a case where it is read and one where it stays unknown and says why."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from test_check_config_code import run, status, tree
from typer.testing import CliRunner

from fgclip_doctor.cli import app

SBATCH = "run_b32.sh"


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


# --------------------------------------------------------------------------- metaclip: srun, src/, resume
def test_metaclip_srun_under_sbatch_from_a_src_layout(tmp_path):
    mc = tree(tmp_path, "metaclip")
    code, found, facts, _ = run(mc, SBATCH)
    assert facts["run.world_size"][0] == 32 and "#SBATCH --nodes" in facts["run.world_size"][1]
    assert facts["code.entry_file"][0] == "src/metaclip_train/main.py"  # pyproject package-dir "" = src
    assert facts["train.per_device_batch"] == (128, f"{SBATCH}:11 --batch-size")
    assert facts["schedule.warmup_steps"] == (2000, f"{SBATCH}:12 --warmup")
    assert facts["code.resume_restores"][0] == ["model", "optimizer", "epoch", "scaler"]
    # --resume latest: <logs>/<name>/checkpoints/epoch_latest.pt, from the launch's --logs and --name
    assert facts["train.auto_resume_path"][0] == "./logs/b32_400m/checkpoints/epoch_latest.pt"
    assert status(found, "FGD401") == "PASS" and "does not exist yet" in found[("FGD401", "")]["message"]
    stale = mc / "logs/b32_400m/checkpoints"
    stale.mkdir(parents=True)
    torch.save({"epoch": 7, "state_dict": {"logit_scale": torch.tensor(4.6052)}}, stale / "epoch_latest.pt")
    code, found, facts, _ = run(mc, SBATCH)
    assert status(found, "FGD401") == "WARN" and "epoch_latest.pt" in found[("FGD401", "")]["message"]
    assert facts["resume.scale.global"][0] == pytest.approx(4.6052, abs=1e-4)


def test_metaclip_explicit_resume_says_what_it_restores(tmp_path):
    mc = tree(tmp_path, "metaclip")
    torch.save({"epoch": 32, "state_dict": {"logit_scale": torch.tensor(4.0)}}, mc / "pretrained.pt")
    edit(mc / SBATCH, "--resume latest", "--resume pretrained.pt")
    _, found, facts, _ = run(mc, SBATCH)
    assert facts["train.auto_resume"][0] is False and facts["train.resume_from_checkpoint"][0] == "pretrained.pt"
    assert facts["resume.scale.global"][0] == 4.0 and "pretrained.pt" in facts["resume.scale.global"][1]
    msg = found[("FGD401", "")]["message"]
    assert "explicit resume from pretrained.pt" in msg and "restores model, optimizer, epoch, scaler" in msg


def test_metaclip_resume_path_unknown_without_a_run_name(tmp_path):
    mc = tree(tmp_path, "metaclip")
    edit(mc / SBATCH, " --name b32_400m", "")  # the run's name is then the clock's
    _, found, facts, _ = run(mc, SBATCH)
    assert facts["train.auto_resume"][0] is True and "train.auto_resume_path" not in facts
    assert status(found, "FGD401") == "SKIP"


def test_metaclip_resume_flag_from_the_scripts_argument_is_unknown(tmp_path):
    mc = tree(tmp_path, "metaclip")
    edit(mc / SBATCH, "--resume latest", "--resume $1")
    _, found, facts, _ = run(mc, SBATCH)
    assert "train.auto_resume" not in facts and status(found, "FGD401") == "SKIP"
    assert status(found, "FGD303") == "PASS"  # an unknown value is never an unknown flag


def test_entry_not_found_is_exit_2_naming_where_it_looked(tmp_path):
    mc = tree(tmp_path, "metaclip")
    (mc / "pyproject.toml").unlink()  # no package-dir, no project: src/ is not on sys.path
    runner = CliRunner()
    before = os.getcwd()
    os.chdir(mc)
    try:
        result = runner.invoke(app, ["check-config", SBATCH])
        module = runner.invoke(app, ["check-config", "-m", "metaclip_train.main", "--", "--batch-size", "320"])
    finally:
        os.chdir(before)
    for r in (result, module):
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "metaclip_train.main: module not found under ." in r.stderr
    assert "flags read: --batch-size 320" in module.stderr


def test_world_size_from_the_environment_is_unknown_under_plain_python(tmp_path):
    mc = tree(tmp_path, "metaclip")
    (mc / "one.sh").write_text("python -m metaclip_train.main --batch-size 64 --name x\n")
    _, found, facts, _ = run(mc, "one.sh")
    assert "run.world_size" not in facts and facts["code.world_size_env"][0] == ["SLURM_NTASKS", "WORLD_SIZE"]
    assert status(found, "FGD201", "global") == "SKIP"
    assert "takes its world size from $SLURM_NTASKS / $WORLD_SIZE" in found[("FGD201", "global")]["message"]
    (mc / "four.sh").write_text("WORLD_SIZE=4 python -m metaclip_train.main --batch-size 64 --name x\n")
    _, _, facts, _ = run(mc, "four.sh")
    assert facts["run.world_size"][0] == 4 and "four.sh:1 WORLD_SIZE" in facts["run.world_size"][1]


# --------------------------------------------------------------------------- eva_clip: $1, layer decay
def test_eva_clip_layer_decay_range_and_script_arguments(tmp_path):
    eva = tree(tmp_path, "eva_clip")
    _, found, facts, _ = run(eva, "scripts/pretrain_b16.sh")
    assert facts["code.flags_rejected"][0] == [] and status(found, "FGD303") == "PASS"  # --train-data=$1
    assert "--train_data" in facts["run.unresolved_flags"][0]
    assert "run.world_size" not in facts  # --nnodes=$WORLD_SIZE, unset here
    assert facts["schedule.warmup_steps"][0] == 2000
    low, high = facts["optim.group_lr_range"][0]["lowest"], facts["optim.group_lr_range"][0]["highest"]
    assert low == [pytest.approx(5e-4 * 0.75**13), "layer 0 (embeddings)"]  # 12 blocks: layers 0..13
    assert high == [pytest.approx(5e-4), "layer 13 (the last: head and final norm)"]
    assert "layer 0 (embeddings) 1.19e-5" in found[("FGD603", "lr")]["message"]


def test_eva_clip_layer_count_unknown_never_every_group(tmp_path):
    eva = tree(tmp_path, "eva_clip")
    (eva / "src/eva_clip/model_configs/EVA02-CLIP-B-16.json").unlink()
    _, found, facts, _ = run(eva, "scripts/pretrain_b16.sh")
    assert facts["optim.layer_decay"][0] == {"layer_decay": 0.75} and "optim.group_lr_range" not in facts
    msg = found[("FGD603", "lr")]["message"]
    assert "every group" not in msg and "the last layer's group" in msg


# --------------------------------------------------------------------------- albef: a YAML config
def test_albef_yaml_config_is_read_like_flags(tmp_path):
    al = tree(tmp_path, "albef")
    _, found, facts, _ = run(al, "run_pretrain.sh")
    assert facts["train.per_device_batch"] == (64, "configs/Pretrain.yaml:7 batch_size")
    assert facts["train.learning_rate"] == (1e-4, "configs/Pretrain.yaml:14 optimizer.lr")
    assert facts["schedule.warmup_epochs"] == (20, "configs/Pretrain.yaml:15 schedular.warmup_epochs")
    assert facts["train.epochs"][0] == 30 and facts["run.world_size"][0] == 8
    assert facts["code.config_values"][0]["queue_size"] == 65536
    assert facts["train.auto_resume"][0] is False  # --checkpoint not given
    assert facts["code.resume_restores"][0] == ["model", "optimizer", "epoch"]


def test_albef_config_from_an_argument_is_unknown(tmp_path):
    al = tree(tmp_path, "albef")
    edit(al / "run_pretrain.sh", "--config ./configs/Pretrain.yaml", "--config $1")
    _, found, facts, _ = run(al, "run_pretrain.sh")
    assert "train.per_device_batch" not in facts and "code.config_values" not in facts
    assert status(found, "FGD603") == "SKIP"


# --------------------------------------------------------------------------- slip: auto-resume by itself
def test_slip_resumes_from_its_output_dir_by_itself(tmp_path):
    sl = tree(tmp_path, "slip")
    _, found, facts, _ = run(sl, "run_slip.sh")
    assert facts["train.auto_resume_path"] == ("./output/slip_vitb16/checkpoint.pt", "main.py:59 latest")
    assert facts["schedule.warmup_epochs"] == (1, "run_slip.sh:7 --warmup-epochs")
    assert status(found, "FGD401") == "PASS"
    (sl / "output/slip_vitb16").mkdir(parents=True)
    torch.save({"epoch": 3, "state_dict": {"logit_scale": torch.tensor(4.2)}}, sl / "output/slip_vitb16/checkpoint.pt")
    code, found, _, _ = run(sl, "run_slip.sh")
    assert (
        status(found, "FGD401") == "WARN"
        and "restores epoch, model, optimizer, scaler" in found[("FGD401", "")]["message"]
    )
    assert status(found, "FGD402", "global") == "FAIL" and code == 1


def test_slip_explicit_resume_elsewhere_is_not_auto(tmp_path):
    sl = tree(tmp_path, "slip")
    edit(sl / "run_slip.sh", "--ssl-temp 0.1", "--ssl-temp 0.1 --resume /elsewhere/ckpt.pt")
    _, found, facts, _ = run(sl, "run_slip.sh")
    assert facts["train.auto_resume"][0] is False and facts["train.resume_from_checkpoint"][0] == "/elsewhere/ckpt.pt"
    assert "resume.checkpoint" not in facts  # not on this machine: what it restores is unknown


# --------------------------------------------------------------------------- HF shapes
def test_resume_through_a_variable_and_a_checkpoint_killed_half_way(tmp_path):
    v1 = tree(tmp_path, "fgclip_v1")
    train = v1 / "fgclip/train/train_fgclip.py"
    text = train.read_text()
    start = text.index("    if list(pathlib.Path(training_args.output_dir).glob")
    end = text.index("\n", text.index("trainer.train()", start))
    body = (
        '    resume = bool(list(pathlib.Path(training_args.output_dir).glob("checkpoint-*")))\n'
        "    trainer.train(resume_from_checkpoint=resume)"
    )
    train.write_text(text[:start] + body + text[end:])
    _, found, facts, _ = run(v1, "scripts/train.sh")
    assert facts["train.auto_resume"][0] is True and "passed to train()" in facts["train.auto_resume"][1]
    half = v1 / "checkpoints/stage2/checkpoint-500"
    half.mkdir(parents=True)
    (half / "trainer_state.json").write_text(json.dumps({"global_step": 500}))
    code, found, facts, _ = run(v1, "scripts/train.sh")
    assert code == 1 and status(found, "FGD401") == "FAIL"
    assert "the resume would crash: checkpoint-500 holds no model weights" in found[("FGD401", "")]["message"]
    shutil.rmtree(half)


def test_warmup_ratio_read_and_a_warmup_from_an_unset_variable_unknown(tmp_path):
    al = tree(tmp_path, "albef")
    config = al / "configs/Pretrain.yaml"
    config.write_text(config.read_text() + "warmup_ratio: 0.05\n")
    _, _, facts, _ = run(al, "run_pretrain.sh")
    line = len(config.read_text().splitlines())
    assert facts["schedule.warmup_ratio"] == (0.05, f"configs/Pretrain.yaml:{line} warmup_ratio")
    eva = tree(tmp_path, "eva_clip")
    edit(eva / "scripts/pretrain_b16.sh", "--warmup=2000", "--warmup=$WARMUP")
    _, _, facts, _ = run(eva, "scripts/pretrain_b16.sh")
    assert "schedule.warmup_steps" not in facts and "--warmup" in " ".join(facts["run.unresolved_flags"][0])


def test_albef_checkpoint_flag_is_an_explicit_resume(tmp_path):
    al = tree(tmp_path, "albef")
    torch.save({"epoch": 4, "model": {"temp": torch.tensor(0.05)}, "optimizer": {}}, al / "ckpt.pth")
    edit(al / "run_pretrain.sh", "--output_dir output/Pretrain", "--output_dir output/Pretrain --checkpoint ckpt.pth")
    _, found, facts, _ = run(al, "run_pretrain.sh")
    assert facts["code.resume_flag"][0] == "checkpoint"
    assert facts["train.resume_from_checkpoint"] == ("ckpt.pth", "run_pretrain.sh:3 --checkpoint")
    assert "restores model, optimizer, epoch" in found[("FGD401", "")]["message"]
