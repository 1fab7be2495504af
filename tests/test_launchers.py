"""Schedulers and launchers around a training command (issue 18 item 5): srun and `#SBATCH`, mpirun /
mpiexec, python -m torch.distributed.launch, accelerate's config file, deepspeed's hostfile; the
script's own arguments are unknown values. Each world is read with its line, or stays unknown."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fgclip_doctor.sources.launch.script import parse_launch_script


def launch(tmp_path: Path, text: str, environ: dict | None = None):
    path = tmp_path / "train.sh"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return parse_launch_script(path, environ or {})


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative config files / hostfiles are the launch's, from here


def test_srun_under_sbatch_headers_starts_nodes_times_tasks_per_node(tmp_path):
    got = launch(
        tmp_path,
        """
        #!/bin/bash
        #SBATCH --nodes=4
        #SBATCH --ntasks-per-node=8 --gres=gpu:8
        srun --cpu_bind=v --accel-bind=gn python -u train.py --batch-size 64
        """,
    )
    assert (got.launcher, got.entry, got.args["batch_size"].value) == ("srun", "train.py", "64")
    assert (got.nproc, got.nproc_source) == (8, "train.sh:3 #SBATCH --ntasks-per-node")
    assert (got.nnodes, got.nnodes_source) == (4, "train.sh:2 #SBATCH --nodes")


def test_srun_ntasks_is_the_total_and_sbatch_exports_slurm_variables(tmp_path):
    got = launch(tmp_path, "srun --ntasks=16 python -u train.py --lr 1\n")
    assert got.world_size == 16 and "the total over every node" in got.nproc_source
    split = launch(tmp_path, "srun -N 2 -n 16 python train.py\n")
    assert (split.nproc, split.nnodes) == (8, 2)
    # torchrun per node inside the allocation: --nnodes from the SLURM_NNODES sbatch exports
    per_node = launch(tmp_path, "#SBATCH -N 4\nsrun torchrun --nnodes $SLURM_NNODES --nproc_per_node 8 train.py\n")
    assert (per_node.launcher, per_node.world_size) == ("torchrun", 32)


def test_mpirun_and_mpiexec(tmp_path):
    got = launch(tmp_path, "mpirun -np 16 -H a:8,b:8 --allow-run-as-root -x NCCL_DEBUG=INFO python train.py\n")
    assert (got.launcher, got.nproc, got.nnodes) == ("mpirun", 8, 2) and "-np 16" in got.nproc_source
    (tmp_path / "hosts").write_text("w1 slots=4\nw2 slots=4\nw3 slots=4\n")
    hosts = launch(tmp_path, "mpiexec --hostfile hosts python train.py\n")
    assert (hosts.launcher, hosts.world_size) == ("mpirun", 12)


def test_distributed_launch_accelerate_config_and_deepspeed_hostfile(tmp_path):
    old = launch(tmp_path, "python -m torch.distributed.launch --nproc_per_node=4 --use_env main.py --lr 1\n")
    assert (old.launcher, old.entry, old.world_size) == ("torchrun", "main.py", 4)
    (tmp_path / "acc.yaml").write_text("compute_environment: LOCAL_MACHINE\nnum_processes: 16\nnum_machines: 2\n")
    acc = launch(tmp_path, "accelerate launch --config_file acc.yaml train.py --lr 1\n")
    assert (acc.nproc, acc.nnodes) == (8, 2) and "acc.yaml:2 num_processes" in acc.nproc_source
    (tmp_path / "hostfile").write_text("worker-1 slots=8\nworker-2 slots=8\n")
    ds = launch(tmp_path, "deepspeed --hostfile hostfile train.py --lr 1\n")
    assert (ds.nproc, ds.nnodes) == (8, 2) and "hostfile" in ds.nnodes_source


def test_worlds_the_script_does_not_say_stay_unknown(tmp_path):
    assert launch(tmp_path, "srun --ntasks=$NTASKS python train.py\n").world_size is None
    assert launch(tmp_path, "mpirun python train.py\n").world_size is None  # every slot of the allocation
    missing = launch(tmp_path, "accelerate launch --config_file nowhere.yaml train.py\n")
    assert missing.world_size is None and any("nowhere.yaml not readable here" in n for n in missing.notes)
    ds = launch(tmp_path, "deepspeed --hostfile /no/such/hostfile train.py\n")
    assert ds.nproc is None


def test_the_scripts_own_arguments_are_unknown_values(tmp_path):
    got = launch(
        tmp_path,
        """
        train_data=$1
        out=${2:-./out}
        python train.py --train-data=${train_data} --output-dir "$out" --name "$@" --lr 1
        """,
    )
    assert got.args["train_data"].value is None and got.args["output_dir"].value is None
    assert got.args["lr"].value == "1"
    assert {"$1 (an argument of the script)", "$2 (an argument of the script)"} <= set(got.unresolved)
    assert launch(tmp_path, 'cd "$(dirname "$0")"\npython train.py\n').directory == tmp_path  # $0 is known


@pytest.mark.parametrize(
    "files, why",
    [
        (
            {"pyproject.toml": '[tool.setuptools.package-dir]\n"" = "lib"\n'},
            "pyproject.toml [tool.setuptools] package-dir",
        ),
        ({"pyproject.toml": '[tool.setuptools.packages.find]\nwhere = ["lib"]\n'}, "packages.find] where"),
        ({"setup.cfg": "[options]\npackage_dir =\n    =lib\n"}, "setup.cfg [options] package_dir"),
        ({"setup.py": 'from setuptools import setup\nsetup(name="x", package_dir={"": "lib"})\n'}, "setup.py setup"),
    ],
)
def test_package_dir_of_an_editable_install(tmp_path, files, why):
    from fgclip_doctor.sources.code.reader.packages import project_roots

    (tmp_path / "lib/pkg").mkdir(parents=True)
    (tmp_path / "lib/pkg/__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    [(root, said)] = project_roots(tmp_path)
    assert root == (tmp_path / "lib").resolve() and why in said


def test_a_src_folder_is_on_the_path_only_in_a_project(tmp_path):
    from fgclip_doctor.sources.code.reader.packages import project_roots

    (tmp_path / "src/pkg").mkdir(parents=True)
    (tmp_path / "src/pkg/__init__.py").write_text("")
    assert project_roots(tmp_path) == []  # no pyproject / setup.cfg / setup.py: nothing installs it
    (tmp_path / "setup.py").write_text("import setuptools\nsetuptools.setup()\n")  # never run
    assert [r for r, _ in project_roots(tmp_path)] == [(tmp_path / "src").resolve()]
