"""Fuzz the launch readers through `check-config`: shell launch scripts (quotes, `$(...)`,
backticks, heredocs, arrays, functions, cd, source, a trailing `\\`, NUL bytes, invalid UTF-8,
megabyte lines) and args files (JSON / YAML).

Most cases launch code the doctor does not know (`train.py`: flags typed with TrainingArguments,
no model built); a few launch the bundled subject, whose model check-config builds on the meta
device (about a second each), so those get a small example budget of their own.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fuzz_cli import Blob, fuzz_settings, run_cli
from hypothesis import example, given
from hypothesis import strategies as st

FLAGS = [
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "learning_rate",
    "num_train_epochs",
    "output_dir",
    "data_path",
    "deepspeed",
    "bf16",
    "fp16",
    "weight_decay",
    "resume_from_checkpoint",
    "logging_steps",
    "warmup_steps",
    "seed",
    "report_to",
    "x-y",
]
SUBJECT_FLAGS = [
    "preset",
    "model_name_or_path",
    "base_model",
    "memory_bank_warmup_steps",
    "memory_bank_size",
    "logit_scale_init_value",
    "max_boxes",
    "add_box_loss",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "data_path",
]
SUBJECT_FLAGS_ALL = SUBJECT_FLAGS + [
    "use_hard_neg",
    "from_openai",
    "base_image_size",
    "output_dir",
    "learning_rate",
    "text_model_lr",
    "roi_projection_lr",
]

values = st.sampled_from(
    [
        "8",
        "0",
        "-1",
        "1e-4",
        "nan",
        "inf",
        "True",
        "false",
        "''",
        '""',
        "$X",
        "${X:-4}",
        "${UNSET}",
        "${X:?}",
        "${#X}",
        "$(echo 4)",
        "`echo 4`",
        "$((2*3))",
        "$((1/0))",
        "$((9**99))",
        "$((X+1))",
        '"${ARR[@]}"',
        "$1",
        "$@",
        '"a b"',
        "'a b'",
        "runs/x",
        "/nonexistent/dir",
        "../out",
        "~/x",
        "$HOME/x",
        '"$(dirname "$0")"/out',
        "é",
        "\\",
        "a\\ b",
        "{a,b}",
        "*.json",
        "[",
        "--",
    ]
) | st.text(alphabet=" \t'\"$`\\(){}[];&|<>#!*?~=-:.,/_aZ09é\u2028", max_size=12)

preludes = st.sampled_from(
    [
        "set -euo pipefail",
        "X=4",
        "export X=4",
        "X=$(nproc)",
        "ARR=(1 2 3)",
        "f() { echo hi; }",
        "function g { python train.py --max_steps 1; }",
        "source ./env.sh",
        ". ./env.sh",
        "cd /tmp",
        'cd "$(dirname "$0")"',
        'cd "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        "cd ..",
        "cd $UNSET",
        "pushd sub",
        "popd",
        "cd -",
        "if [ -z $X ]; then X=2; fi",
        "for i in 1 2; do Y=$i; done",
        "cat <<EOF\n--max_steps 9\nEOF",
        "cat <<-'END'\n\tpython train.py --max_steps 3\n\tEND",
        "unset X",
        "X+=1",
        "readonly Z=5",
        "declare -a A=(1 2)",
        "exit 0",
        "trap 'echo' INT",
        "case $X in 4) Y=1;; esac",
        "{ echo; }",
        "(cd sub && ls)",
        "echo $((",
        "echo ${",
        "echo $(",
        "echo 'unterminated",
        'echo "unterminated',
        "echo `unterminated",
        "#!/bin/bash",
    ]
)

launchers = st.sampled_from(
    [
        "python train.py",
        "python3 -u train.py",
        "torchrun --nproc_per_node 14 train.py",
        "torchrun --nproc_per_node=$NGPU --nnodes ${NNODES:-2} train.py",
        "deepspeed --num_gpus 4 train.py",
        "deepspeed --include localhost:0,1@h2:0,1 train.py",
        "accelerate launch --num_processes 2 train.py",
        "CUDA_VISIBLE_DEVICES=0,1 torchrun --nproc_per_node gpu train.py",
        "nohup python train.py",
        "env A=1 python train.py",
        "python -m torch.distributed.run --nproc_per_node 2 train.py",
        "python train.py args.json",
        "python $(which train.py)",
        "python `echo train.py`",
        "python",
        "python -c 'print(1)'",
        "torchrun",
        "deepspeed --",
        "python -m",
    ]
)


@st.composite
def launch_scripts(draw, launcher=launchers, flags=FLAGS) -> str:
    lines = draw(st.lists(preludes, max_size=4))
    cmd = [draw(launcher)]
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(flags))
        cmd.append(draw(st.sampled_from([f"--{name} {{}}", f"--{name}={{}}", f"--{name}"])).format(draw(values)))
    sep = draw(st.sampled_from([" ", " \\\n    ", " \\ \n    ", " \\\n# comment\n    "]))
    lines.append(sep.join(cmd) + draw(st.sampled_from(["", " \\", " &", " | tee log", " 2>&1 > log", ";"])))
    lines += draw(st.lists(preludes, max_size=2))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\\", "\r\n"]))


@st.composite
def script_bytes(draw) -> Blob:
    """A launch script, or one mutated at the byte level (NUL, invalid UTF-8, huge lines)."""
    text = draw(launch_scripts())
    kind = draw(st.sampled_from(["text", "text", "text", "nul", "latin1", "bom", "huge", "random"]))
    data = text.encode()
    if kind == "nul":
        data = data.replace(b" ", b"\0", 1)
    elif kind == "latin1":
        data += "\n# caf\u00e9".encode("latin-1")
    elif kind == "bom":
        data = b"\xef\xbb\xbf" + data
    elif kind == "huge":
        data += b"\npython train.py --x " + b"a" * 1_100_000 + b"\n"
    elif kind == "random":
        data = draw(st.binary(max_size=300))
    return Blob(data)


def check_script(data: bytes, extra: dict[str, bytes] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "sub").mkdir()
        (root / "train.py").write_text("print('never run')\n")
        (root / "env.sh").write_text("X=5\n")
        for name, blob in (extra or {}).items():
            (root / name).write_bytes(blob)
        script = root / "launch.sh"
        script.write_bytes(data)
        run_cli(["check-config", script, "--format", "json"], inspected=[root], cwd=root)


@fuzz_settings(200)
@given(data=script_bytes())
def test_launch_scripts(data):
    check_script(data.data)


# ---- the bundled subject: flags with values the doctor cannot know --------------------------
@fuzz_settings(8)
@given(text=launch_scripts(st.just("python -m fgclip.train --preset tiny --max_steps 3"), SUBJECT_FLAGS))
@example(text="python -m fgclip.train --preset=$(echo 4) --output_dir runs/x\n")  # escape (b)
@example(text="python -m fgclip.train --preset tiny --model_name_or_path $(pwd)/base --base_model ${UNSET}\n")
def test_subject_launch_with_unknowable_values(synthetic_root, text):
    check_script(text.encode())


# ---- args files ---------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
DEEP = "[" * 10_000 + "]" * 10_000
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)
BILLION_LAUGHS += "max_steps: *i\n"


@st.composite
def args_files(draw) -> tuple[str, Blob]:
    suffix = draw(st.sampled_from([".json", ".yaml", ".yml"]))
    kind = draw(st.sampled_from(["mapping", "mapping", "any", "bytes", "deep", "laughs"]))
    if kind == "mapping":
        doc = draw(st.dictionaries(st.sampled_from(FLAGS) | st.text(max_size=6), json_values | values, max_size=6))
        text = json.dumps(doc, allow_nan=True)  # JSON is YAML too (but for NaN / Infinity)
    elif kind == "any":
        text = json.dumps(draw(json_values), allow_nan=True)
    elif kind == "deep":
        text = '{"max_steps": ' + DEEP + "}"
    elif kind == "laughs":
        text = BILLION_LAUGHS
    else:
        return suffix, Blob(draw(st.binary(max_size=200)))
    return suffix, Blob(text.encode())


@fuzz_settings(40)
@given(case=args_files(), via_script=st.booleans())
@example(case=(".yaml", Blob(BILLION_LAUGHS.encode())), via_script=False)
@example(case=(".json", Blob(('{"max_steps": ' + DEEP + "}").encode())), via_script=True)
@example(case=(".yaml", Blob(("max_steps: " + DEEP).encode())), via_script=False)
@example(case=(".json", Blob(b'{"output_dir": "a\\ud800b"}')), via_script=False)  # a lone surrogate
def test_args_files(case, via_script):
    suffix, blob = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        args = root / f"args{suffix}"
        args.write_bytes(blob.data)
        target = args
        if via_script:  # `python train.py args.json`: HfArgumentParser reads the file
            target = root / "launch.sh"
            target.write_text(f"python train.py {args.name}\n")
        run_cli(["check-config", target, "--format", "json"], inspected=[root], cwd=root)
