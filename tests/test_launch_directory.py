"""Issue 11.2: a launch script's `cd` / `pushd` / `popd` move the folder its relative paths resolve
from, as bash would run it: the training code, output_dir, data_path and resume checkpoints under
check-config, and the folder `live` trains in. A `cd` the doctor cannot follow leaves them unknown,
citing its line; nothing is guessed."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fgclip_doctor.cli import app
from fgclip_doctor.sources.launch.directory import basename, dirname
from fgclip_doctor.sources.launch.script import parse_launch_script

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

TRAIN_PY = """
from dataclasses import dataclass

from transformers import HfArgumentParser, Trainer, TrainingArguments


@dataclass
class DataArguments:
    data_path: str = "data/none.jsonl"


def main():
    dargs, targs = HfArgumentParser((DataArguments, TrainingArguments)).parse_args_into_dataclasses()
    Trainer(model=None, args=targs).train(resume_from_checkpoint=targs.resume_from_checkpoint)


if __name__ == "__main__":
    main()
"""
ARGS = "--output_dir out --data_path data/train.jsonl --per_device_train_batch_size 2 \\\n"
ARGS += "  --resume_from_checkpoint out/checkpoint-10"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def parse(path: Path, environ: dict | None = None):
    return parse_launch_script(path, {"HOME": "/home/u", **(environ or {})})


def check_config(cwd: Path, target: str) -> tuple[int, dict, dict]:
    """(exit code, facts {name: (value, source)}, findings {code: finding}) of check-config run in `cwd`."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(app, ["check-config", target, "--format", "json"])
    finally:
        os.chdir(before)
    assert result.exit_code in (0, 1), result.stderr or result.stdout
    doc = json.loads(result.stdout)
    facts = {k: (v["value"], v["source"]) for k, v in doc["facts"].items()}
    return result.exit_code, facts, {f["code"]: f for f in doc["findings"]}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """proj/ with train.py, 5 data records, out/checkpoint-10 (step 10, logit_scale 2.5); the launch
    scripts live in proj/scripts/ and the doctor runs from elsewhere/."""
    import torch
    from safetensors.torch import save_file

    proj = tmp_path / "proj"
    write(proj / "train.py", TRAIN_PY)
    write(proj / "data/train.jsonl", "".join(json.dumps({"caption": f"c{i}"}) + "\n" for i in range(5)))
    ckpt = proj / "out/checkpoint-10"
    ckpt.mkdir(parents=True)
    save_file({"logit_scale": torch.tensor(2.5)}, str(ckpt / "model.safetensors"))
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 10}))
    (tmp_path / "elsewhere").mkdir()
    return proj


# --------------------------------------------------------------------------- bash's rules
@pytest.mark.parametrize(
    "path, parent, name",
    [("a/b", "a", "b"), ("a", ".", "a"), ("/a", "/", "a"), ("a/b/", "a", "b"), ("/", "/", "/"), ("", ".", "")],
)
def test_dirname_and_basename_as_gnu(path, parent, name):
    assert (dirname(path), basename(path)) == (parent, name)


def test_cd_forms_move_the_directory(tmp_path):
    (tmp_path / "proj/scripts").mkdir(parents=True)
    (tmp_path / "proj/src").mkdir()
    script = write(
        tmp_path / "proj/scripts/train.sh",
        """
        #!/bin/bash
        cd "$(dirname "$0")" || exit 1
        ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
        cd /
        pushd $ROOT/src > /dev/null
        cd ..
        HERE=$(pwd)
        pushd src
        popd
        python train.py --output_dir "$HERE/out" --base "$(realpath ../proj)"
        """,
    )
    launch = parse(script)
    proj = str(tmp_path / "proj")
    assert launch.directory == Path(proj)  # `|| exit 1` did not end the script; popd went back
    assert launch.directory_source.endswith(f"{script.name}:9 popd (back to {proj})")
    assert launch.args["output_dir"].value == f"{proj}/out"  # $(pwd) after `cd ..`
    assert launch.args["base"].value == os.path.realpath(proj)  # $(realpath ../proj) from proj
    assert launch.unresolved == [] and launch.notes == []


def test_cd_relative_to_where_the_script_is_run(tmp_path, monkeypatch):
    write(tmp_path / "proj/scripts/train.sh", 'cd "$(dirname "$0")/.."\npython train.py\n')
    monkeypatch.chdir(tmp_path)
    launch = parse(Path("proj/scripts/train.sh"))  # $0 as given: proj/scripts/train.sh
    assert launch.directory == tmp_path / "proj"
    assert launch.directory_source == 'proj/scripts/train.sh:1 cd "$(dirname "$0")/.."'


@pytest.mark.parametrize(
    "line, why",
    [
        ('cd "$(some_cmd)"', "only known when the script runs"),
        ("cd $UNSET_DIR", "only known when the script runs"),
        ("[ -d /x ] && cd /x", "runs only in some cases"),
        ("cd /x || cd /y", "runs only in some cases"),
        ("if true; then cd /x; fi", "runs only in some cases"),
        ("popd", "which directory it returns to"),
    ],
)
def test_unknowable_cd_is_unknown_with_its_line(tmp_path, line, why):
    script = write(tmp_path / "train.sh", f"#!/bin/bash\ncd /tmp\n{line}\npython train.py\n")
    launch = parse(script)
    assert launch.directory is None
    assert f"{script}:3 " in launch.directory_source and why in launch.directory_source
    assert any(n.startswith("line 3: ") and why in n for n in launch.notes)


def test_a_known_cd_after_an_unknown_one_is_known_again(tmp_path):
    script = write(tmp_path / "train.sh", 'cd "$(git rev-parse --show-toplevel)"\ncd ..\ncd /opt\npython t.py\n')
    assert parse(script).directory == Path("/opt")
    script = write(tmp_path / "train.sh", 'cd "$(git rev-parse --show-toplevel)"\ncd ..\npython t.py\n')
    assert parse(script).directory is None  # `..` of an unknown folder stays unknown


def test_an_impure_substitution_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    script = write(tmp_path / "train.sh", f'cd "$(touch {marker}; pwd)"\npython train.py --x "$(echo 4)"\n')
    launch = parse(script)
    assert launch.directory is None and launch.args["x"].value is None
    assert not marker.exists()


# --------------------------------------------------------------------------- check-config
def test_check_config_resolves_paths_from_the_launch_directory(project):
    write(project / "scripts/train.sh", f'#!/bin/bash\ncd "$(dirname "$0")/.." || exit 1\npython train.py {ARGS}\n')
    _, facts, _ = check_config(project.parent / "elsewhere", "../proj/scripts/train.sh")
    assert facts["run.directory"] == (str(project), '../proj/scripts/train.sh:2 cd "$(dirname "$0")/.."')
    assert facts["code.entry_file"][0] == "train.py"  # proj/train.py read, not elsewhere/train.py
    assert facts["code.parser"][0] == "HfArgumentParser(DataArguments, TrainingArguments)"
    assert facts["train.dataset_size"] == (5, "data/train.jsonl (5 records counted)")
    assert facts["resume.checkpoints"][0] == [str(project / "out/checkpoint-10")]
    assert facts["resume.step"][0] == 10
    assert facts["resume.scale.global"][0] == pytest.approx(2.5)


def test_check_config_cd_to_an_absolute_folder(project, tmp_path):
    write(tmp_path / "launch.sh", f"#!/bin/bash\ncd {project}\npython train.py {ARGS}\n")
    _, facts, _ = check_config(tmp_path / "elsewhere", "../launch.sh")
    assert facts["run.directory"] == (str(project), f"../launch.sh:2 cd {project}")
    assert facts["train.dataset_size"][0] == 5 and facts["resume.step"][0] == 10


def test_subject_base_model_relative_to_the_launch_directory(tmp_path, synthetic_root):
    # The bundled subject's --model_name_or_path is opened by its process, after the script's cd.
    proj = tmp_path / "proj"
    shutil.copytree(synthetic_root / "base", proj / "base")
    write(
        proj / "scripts/train.sh",
        'cd "$(dirname "$0")/.."\npython -m fgclip.train --preset tiny --model_name_or_path base '
        "--base_model base --output_dir out\n",
    )
    (tmp_path / "elsewhere").mkdir()
    _, facts, _ = check_config(tmp_path / "elsewhere", "../proj/scripts/train.sh")
    assert facts["scale.global.base"][0] == pytest.approx(4.6052, abs=1e-3)
    assert str(proj / "base") in facts["scale.global.base"][1]


def test_check_config_unknown_cd_leaves_relative_paths_unknown(project):
    write(project / "scripts/train.sh", f'#!/bin/bash\ncd "$(some_cmd)"\npython train.py {ARGS}\n')
    shutil.copy(project / "train.py", project / "scripts/train.py")  # a twin beside the doctor: not read either
    _, facts, found = check_config(project / "scripts", "train.sh")
    assert "run.directory" not in facts
    for name in ("code.entry_file", "train.dataset_size", "resume.checkpoints", "resume.step"):
        assert name not in facts, name  # never resolved from the doctor's own folder
    assert facts["train.per_device_batch"] == (2, "train.sh:3 --per_device_train_batch_size")  # by name
    cited = 'train.sh:2 cd "$(some_cmd)"'
    skips = [f for f in found.values() if f["status"] == "SKIP" and cited in f["message"]]
    assert {"FGD303", "FGD402"} <= {f["code"] for f in skips}, [f["code"] for f in skips]


# --------------------------------------------------------------------------- live
def _plain_clip_project(tmp_path: Path, cd: str) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(ROOT / "tests/helpers/train_plain_clip.py", proj / "train.py")
    return write(
        proj / "scripts/train.sh",
        f"""
        #!/bin/bash
        {cd}
        {sys.executable} train.py --output_dir out --per_device_train_batch_size 4 \\
          --report_to none --use_cpu True
        """,
    )


def test_live_runs_the_training_from_the_launch_directory(tmp_path, monkeypatch):
    _plain_clip_project(tmp_path, 'cd "$(dirname "$0")/.."')
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = runner.invoke(app, ["live", "../proj/scripts/train.sh", "--steps", "2", "--interval", "1", "-f", "json"])
    assert result.exit_code in (0, 1), result.stderr
    facts = json.loads(result.stdout)["facts"]
    assert facts["run.directory"]["value"] == str(tmp_path / "proj")
    [term] = facts["observed.terms"]["value"]
    assert facts[f"observed.candidates.{term}"]["value"] == 4
    assert os.getcwd() == str(tmp_path / "elsewhere")  # restored after the run
    assert not (tmp_path / "proj/out").exists()  # the temporary output_dir stays the doctor's


def test_live_refuses_a_launch_whose_directory_is_unknown(tmp_path, monkeypatch):
    script = _plain_clip_project(tmp_path, 'cd "$(some_cmd)"')
    monkeypatch.chdir(script.parent.parent)
    result = runner.invoke(app, ["live", "scripts/train.sh", "--steps", "2"])
    [line] = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and line.startswith("fgclip-doctor: error: ")
    assert 'scripts/train.sh:2 cd "$(some_cmd)"' in line
