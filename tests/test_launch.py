"""Launch scripts are parsed like bash reads them, never executed; every value keeps its line."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.launch.script import NO_LAUNCH, ArgValue, Launch, format_source, parse_launch_script


def write(tmp_path: Path, text: str, name: str = "train.sh") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line containing `needle` (so tests never hard-code numbers)."""
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if needle in text:
            return number
    raise AssertionError(needle)


FGCLIP_STAGE2 = r"""
#!/bin/bash
# FG-CLIP stage 2 fine-tune (shaped like 360CVGroup/FG-CLIP scripts/train.sh)
set -euo pipefail

name="openai/clip-vit-base-patch16"
# resume from fgclip: name="qihoo360/fg-clip-base"
MODEL=/models/$name
jsonfiles="FgGRN-12M/jsonfiles"
image_root=${IMAGE_ROOT:-data/grit-12m/}
ACC=$((64 / 8))
cd "$(dirname "$0")/.."

deepspeed --include localhost:0,1,2,3 --master_port 29500 fgclip/train/train_fgclip.py \
    --deepspeed ./scripts/zero2.json \
    --model_name_or_path $MODEL \
    --data_path $jsonfiles \
    --image_folder "$image_root" \
    --output_dir ./checkpoints/fgclip-stage2 \
    --add_box_loss True \
    --use_hard_neg True \
    --base_seq_length 77 \
    --max_seq_length 248 \
    --bf16 \
    --per_device_train_batch_size 512 \
    --gradient_accumulation_steps 1 \
    --evaluation_strategy "no" \
    --learning_rate 1e-6 \
    --weight_decay 0.001 \
    --warmup_steps=200 \
    --lr_scheduler_type 'cosine' \
    --seed -1 \
    --logging_steps 1 \
    --gradient_accumulation_steps $ACC \
    --report_to "none" \
    > logs/stage2.log 2>&1 &
echo "launched"
"""


def test_fgclip_deepspeed_launch(tmp_path):
    path = write(tmp_path, FGCLIP_STAGE2)
    launch = parse_launch_script(path)
    assert isinstance(launch, Launch)
    assert launch.launcher == "deepspeed"
    assert launch.entry == "fgclip/train/train_fgclip.py" and launch.entry_kind == "script"
    assert launch.entry_line == line_of(path, "deepspeed --include")
    assert launch.launcher_args["include"].value == "localhost:0,1,2,3"
    assert launch.launcher_args["master_port"].value == "29500"
    assert (launch.nproc, launch.nnodes, launch.world_size) == (4, 1, 4)
    assert launch.nproc_source.endswith(f":{launch.entry_line} --include")
    args = launch.args
    assert args["deepspeed"].value == "./scripts/zero2.json"
    assert args["model_name_or_path"].value == "/models/openai/clip-vit-base-patch16"
    assert args["model_name_or_path"].raw == "--model_name_or_path $MODEL"
    assert args["image_folder"].value == "data/grit-12m/"  # ${IMAGE_ROOT:-...} default
    assert args["bf16"].value == "True"  # bare flag
    assert args["warmup_steps"].value == "200"  # --flag=value
    assert args["lr_scheduler_type"].value == "cosine"
    assert args["evaluation_strategy"].value == "no"
    assert args["seed"].value == "-1"  # a negative number is a value, not an option
    # Last occurrence wins, as with argparse; its line is the second one.
    assert args["gradient_accumulation_steps"].value == "8"
    assert args["gradient_accumulation_steps"].line == line_of(path, "--gradient_accumulation_steps $ACC")
    assert args["learning_rate"].line == line_of(path, "--learning_rate")
    assert args["report_to"].value == "none"
    assert "logs/stage2.log" not in {a.value for a in args.values()}  # redirection dropped
    assert launch.positionals == [] and launch.args_file is None
    assert launch.env["ACC"] == ArgValue("8", line_of(path, "ACC="), "ACC=$((64 / 8))", "ACC")
    assert launch.unresolved == []  # `$(dirname "$0")` is pure: evaluated, never run
    assert launch.directory == path.parent.parent  # cd "$(dirname "$0")/.."
    assert launch.directory_source == f'{path}:{line_of(path, "cd ")} cd "$(dirname "$0")/.."'


def test_format_source_cites_line_and_flag(tmp_path, monkeypatch):
    (tmp_path / "scripts").mkdir()
    path = write(tmp_path / "scripts", FGCLIP_STAGE2)
    monkeypatch.chdir(tmp_path)
    launch = parse_launch_script(path)
    line = line_of(path, "--gradient_accumulation_steps $ACC")
    expected = f"scripts/train.sh:{line} --gradient_accumulation_steps"
    assert format_source(launch, "gradient_accumulation_steps") == expected
    assert format_source(launch, "--gradient-accumulation-steps") == expected
    assert format_source(launch, "master_port").endswith(" --master_port")
    assert format_source(launch, "ACC") == f"scripts/train.sh:{line_of(path, 'ACC=')} ACC"
    assert format_source(launch, "max_steps") == "scripts/train.sh (--max_steps not given)"


def test_torchrun_module_launch(tmp_path):
    path = write(
        tmp_path,
        """
        export OMP_NUM_THREADS=4
        torchrun --nproc_per_node=2 --nnodes 1 -m fgclip.train \\
            --preset tiny --max-steps 60 --do_train
    """,
    )
    launch = parse_launch_script(path)
    assert (launch.launcher, launch.entry, launch.entry_kind) == ("torchrun", "fgclip.train", "module")
    assert launch.nproc == 2 and launch.world_size == 2
    assert launch.args["max_steps"].value == "60" and launch.args["max_steps"].flag == "--max-steps"
    assert launch.args["max_steps"].line == 3 and launch.args["do_train"].value == "True"
    assert launch.env["OMP_NUM_THREADS"].value == "4"


def test_python_m_torch_distributed_is_torchrun(tmp_path):
    path = write(
        tmp_path,
        """
        NGPU=${NGPU:-4}
        python -m torch.distributed.run --nproc-per-node $NGPU --nnodes=2 \\
            fgclip/train/train_fgclip.py --output_dir out
    """,
    )
    launch = parse_launch_script(path)
    assert launch.launcher == "torchrun" and launch.entry == "fgclip/train/train_fgclip.py"
    assert (launch.nproc, launch.nnodes, launch.world_size) == (4, 2, 8)
    assert launch.launcher_args["nproc_per_node"].flag == "--nproc-per-node"


def test_torchrun_default_is_one_process(tmp_path):
    launch = parse_launch_script(write(tmp_path, "torchrun train.py --lr 1\n"))
    assert launch.nproc == 1 and "default" in launch.nproc_source


def test_plain_python_module_with_inline_env(tmp_path):
    path = write(
        tmp_path,
        """
        # single GPU debug run
        CUDA_VISIBLE_DEVICES=0 ENABLE_RUNTIME_DIAG=1 nohup python3 -u -m fgclip.train \\
            --preset seed-bug --output_dir runs/dbg > dbg.log 2>&1 &
    """,
    )
    launch = parse_launch_script(path)
    assert (launch.launcher, launch.entry, launch.entry_kind) == ("python", "fgclip.train", "module")
    assert launch.entry_line == 2
    assert launch.env["ENABLE_RUNTIME_DIAG"].value == "1"
    assert launch.env["CUDA_VISIBLE_DEVICES"].line == 2
    assert launch.nproc == 1 and launch.world_size == 1
    assert launch.args["output_dir"].value == "runs/dbg"


def test_python_args_file_positional(tmp_path):
    launch = parse_launch_script(write(tmp_path, "python fgclip/train/train_fgclip.py configs/stage2.json\n"))
    assert launch.args_file is not None and launch.args_file.value == "configs/stage2.json"
    assert launch.args == {}


def test_accelerate_launch(tmp_path):
    path = write(
        tmp_path,
        """
        accelerate launch --multi_gpu --num_processes 8 --num_machines 2 --mixed_precision bf16 \\
            train_clip.py --per_device_train_batch_size 64
    """,
    )
    launch = parse_launch_script(path)
    assert launch.launcher == "accelerate" and launch.entry == "train_clip.py"
    assert launch.launcher_args["multi_gpu"].value == "True"
    assert launch.launcher_args["mixed_precision"].value == "bf16"
    assert (launch.nproc, launch.nnodes, launch.world_size) == (8, 2, 16)
    assert launch.args["per_device_train_batch_size"].line == 2


def test_cuda_visible_devices_counts_processes(tmp_path):
    path = write(
        tmp_path,
        """
        export CUDA_VISIBLE_DEVICES=0,1,2
        env WANDB_MODE=offline deepspeed --module fgclip.train --deepspeed zero2.json
    """,
    )
    launch = parse_launch_script(path)
    assert (launch.entry, launch.entry_kind) == ("fgclip.train", "module")
    assert launch.nproc == 3 and launch.nproc_source.endswith(":1 CUDA_VISIBLE_DEVICES")
    assert launch.env["WANDB_MODE"].value == "offline"
    assert launch.args["deepspeed"].value == "zero2.json"


def test_deepspeed_num_gpus_and_unknown_count(tmp_path):
    launch = parse_launch_script(write(tmp_path, "deepspeed --num_gpus 2 t.py\n"))
    assert launch.nproc == 2
    launch = parse_launch_script(write(tmp_path, "deepspeed t.py --x 1\n"))
    assert launch.nproc is None and launch.world_size is None


def test_variables_quotes_and_defaults(tmp_path):
    path = write(
        tmp_path,
        """
        BS=32
        LR=${LR:-1e-4}
        OUT="runs/bs${BS}_lr$LR"
        EXTRA="--warmup_steps 10 --seed 7"
        GPUS=$(nvidia-smi -L | wc -l)
        python train.py --output_dir "$OUT" $EXTRA --note 'literal $BS' \\
            --model $MODEL_DIR --world $GPUS --n $((BS * 2 + 1))
    """,
    )
    launch = parse_launch_script(path)
    args = launch.args
    assert args["output_dir"].value == "runs/bs32_lr1e-4"
    assert args["warmup_steps"].value == "10" and args["seed"].value == "7"  # word splitting
    assert args["note"].value == "literal $BS"
    assert args["model"].value is None and args["model"].raw == "--model $MODEL_DIR"
    assert args["world"].value is None
    assert args["n"].value == "65"
    assert "MODEL_DIR" in launch.unresolved and "GPUS" in launch.unresolved
    assert "$(nvidia-smi -L | wc -l)" in launch.unresolved


def test_blocks_are_skipped_not_crashed(tmp_path):
    path = write(
        tmp_path,
        """
        if [ -z "$DATA" ]; then
            DATA=/data/default
        else
            DATA=/data/other
        fi
        for seed in 1 2 3; do echo $seed; done
        case "$1" in
            tiny) PRESET=tiny ;;
        esac
        python -m fgclip.train --data $DATA
    """,
    )
    launch = parse_launch_script(path)
    assert launch.args["data"].value == "/data/default"
    assert any("inside a block" in note for note in launch.notes)


def test_helper_python_before_training_is_not_the_launch(tmp_path):
    path = write(
        tmp_path,
        """
        python tools/make_synthetic.py --out data/
        python -c "print(1)"
        torchrun --nproc_per_node 2 fgclip/train.py --max_steps 5
    """,
    )
    assert parse_launch_script(path).launcher == "torchrun"


def test_comment_inside_continued_command_orphans_flags(tmp_path):
    path = write(
        tmp_path,
        """
        deepspeed train.py \\
            --learning_rate 1e-5 \\
            # --weight_decay 0.1 \\
            --max_steps 100
    """,
    )
    launch = parse_launch_script(path)
    assert "max_steps" not in launch.args and "weight_decay" not in launch.args  # as bash does
    assert any(note.startswith("line 4: `--max_steps`") for note in launch.notes)


def test_heredoc_body_is_not_a_command(tmp_path):
    path = write(
        tmp_path,
        """
        cat > cfg.txt <<EOF
        deepspeed fake.py --lr 9
        EOF
        python train.py --lr 1
    """,
    )
    launch = parse_launch_script(path)
    assert launch.entry == "train.py" and launch.args["lr"].line == 4


def test_no_launch_is_an_input_error(tmp_path):
    path = write(tmp_path, "echo hello\npython -c 'import torch'\n")
    with pytest.raises(DoctorInputError) as err:
        parse_launch_script(path)
    assert str(err.value) == f"{path}: {NO_LAUNCH}"


def test_missing_file(tmp_path):
    with pytest.raises(DoctorInputError, match="no such file"):
        parse_launch_script(tmp_path / "nope.sh")


def test_binary_and_non_utf8_files(tmp_path):
    binary = tmp_path / "model.sh"
    binary.write_bytes(b"\x7fELF\x00\x01\x02")
    with pytest.raises(DoctorInputError, match="binary"):
        parse_launch_script(binary)
    latin = tmp_path / "latin.sh"
    latin.write_bytes(b"# caf\xe9\npython train.py\n")
    with pytest.raises(DoctorInputError, match=r"not UTF-8 .*line 1"):
        parse_launch_script(latin)


def test_script_is_never_executed(tmp_path):
    marker = tmp_path / "marker"
    path = write(
        tmp_path,
        f"""
        touch {marker}
        X=$(touch {marker}-subst)
        Y=`touch {marker}-tick`
        python -m fgclip.train --out "$(touch {marker}-arg)"
        touch {marker}-after
    """,
    )
    parse_launch_script(path)
    assert not list(tmp_path.glob("marker*")), os.listdir(tmp_path)
