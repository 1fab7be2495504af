"""The doctor beside the user's own environment: transformers 4.x (FG-CLIP v1), 5.x, or none.

Installing the doctor must not move the user's transformers; the reading commands need none, `live`
runs the user's Trainer with the transformers installed, and only the bundled subject needs 5.x
(the `subject` extra). `.ci/run` runs this file (and the other `compat` files, tests/conftest.py)
a second time in a venv with transformers 4.57 and without the extra.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fgclip_doctor import environment
from fgclip_doctor.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def without_transformers(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a subprocess where `import transformers` fails (tests/helpers/without_transformers.py)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    helper = ROOT / "tests" / "helpers" / "without_transformers.py"
    return subprocess.run(
        [sys.executable, str(helper), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def one_error_line(stderr: str) -> str:
    [line] = stderr.strip().splitlines()
    assert line.startswith("fgclip-doctor: error: "), line
    return line


def plain_clip_script(folder: Path, extra: str = "") -> Path:
    """A launch of tests/helpers/train_plain_clip.py: a plain transformers CLIPModel + Trainer."""
    script = folder / "train_clip.sh"
    script.write_text(
        f"#!/bin/bash\n{sys.executable} {ROOT}/tests/helpers/train_plain_clip.py \\\n"
        f"  --output_dir {folder}/out --per_device_train_batch_size 6 --learning_rate 1e-3 {extra}\\\n"
        "  --logit_scale_init_value 3.0 --report_to none --use_cpu True --save_steps 4 --logging_steps 1\n"
    )
    return script


# ---- what pip installs ---------------------------------------------------------------------------


def test_the_live_extra_leaves_the_users_transformers_alone():
    tomllib = pytest.importorskip("tomllib")
    requirements = pytest.importorskip("packaging.requirements")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    parse = lambda reqs: {r.name: r for r in map(requirements.Requirement, reqs)}
    core, extras = parse(project["dependencies"]), project["optional-dependencies"]
    assert not {"torch", "transformers", "accelerate"} & set(core)  # the core reads; tests/test_core_install.py
    live = parse(extras["live"])
    spec = live["transformers"].specifier
    assert {v: spec.contains(v) for v in ("4.45.2", "4.46.0", "4.57.6", "5.24.0")} == {
        "4.45.2": False,  # below environment.LIVE_MIN: the floor pip enforces is the one live checks
        "4.46.0": True,
        "4.57.6": True,  # FG-CLIP v1's transformers stays where it is
        "5.24.0": True,
    }
    assert ".".join(map(str, environment.LIVE_MIN)) == "4.46"
    assert "accelerate" not in live  # the user's Trainer brings its own; the subject's is in its extra
    subject = parse(extras["subject"])
    assert not subject["transformers"].specifier.contains("4.57.6")
    assert subject["transformers"].specifier.contains("5.0.0") and "accelerate" in subject
    assert any(
        r.name == "fgclip-doctor" and "subject" in r.extras for r in map(requirements.Requirement, extras["test"])
    )


def test_versions_come_from_metadata_and_a_blocked_import_is_none(monkeypatch):
    assert environment.version_tuple("4.57.6") == (4, 57)
    assert environment.version_tuple("5.0.0rc1") == (5, 0)
    assert environment.version_tuple("main") == (0, 0)
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert environment.transformers_version() is None
    assert "transformers is not installed" in environment.subject_unavailable()


# ---- where the subject or a Trainer is needed: one line, exit 2, what to install ------------------


@pytest.mark.parametrize("version", ["4.57.6", None])
def test_subject_commands_say_what_to_install(monkeypatch, version):
    monkeypatch.setattr(environment, "transformers_version", lambda: version)
    runs = [["check-config"], ["check-config", str(ROOT / "scripts" / "train_tiny.sh")]]
    if version:  # live needs a Trainer first (next test)
        runs += [["live"], ["live", "--preset", "seed-bug"], ["live", str(ROOT / "scripts" / "train_tiny.sh")]]
    for args in runs:
        result = runner.invoke(app, args)
        line = one_error_line(result.stderr)
        assert result.exit_code == 2, args
        assert environment.install_command("subject") in line and "transformers>=5.0" in line, line
        assert (version or "not installed") in line


def test_live_needs_the_users_trainer(monkeypatch, tmp_path):
    script = plain_clip_script(tmp_path)
    for version, words in ((None, "transformers is not installed"), ("4.40.2", "transformers 4.40.2 is installed")):
        monkeypatch.setattr(environment, "transformers_version", lambda v=version: v)
        result = runner.invoke(app, ["live", str(script), "--steps", "2"])
        line = one_error_line(result.stderr)
        assert result.exit_code == 2 and words in line and "transformers>=4.46" in line, line
        assert environment.install_command("live") in line
    assert not (tmp_path / "out").exists()


# ---- the reading commands, with this environment's transformers and without one ------------------


def test_check_config_reads_a_plain_clip_launch(tmp_path):
    script = plain_clip_script(tmp_path)
    result = runner.invoke(app, ["check-config", str(script), "--format", "json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)["facts"]
    assert facts["run.subject_known"]["value"] is False
    assert facts["train.per_device_batch"] == {"value": 6, "source": f"{script}:3 --per_device_train_batch_size"}
    # a default of the INSTALLED TrainingArguments (4.57 in .ci/run's second venv), cited as such
    version = environment.transformers_version()
    assert facts["train.grad_accum"]["value"] == 1
    assert f"transformers {version} TrainingArguments" in facts["train.grad_accum"]["source"]


def test_check_config_without_transformers_says_what_is_unknown(tmp_path):
    script = plain_clip_script(tmp_path)
    table = without_transformers("check-config", str(script), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "the fields of the base TrainingArguments are unknown" in " ".join(table.stdout.split())
    result = without_transformers("check-config", str(script), "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)["facts"]
    assert facts["code.parser"]["value"] == "HfArgumentParser(ModelArgs, TrainingArguments)"  # the code was read
    assert "train.grad_accum" not in facts  # transformers' default, unknown here: never guessed


def test_rules_and_subject_without_transformers(tmp_path):
    listing = without_transformers("rules", cwd=tmp_path)
    assert listing.returncode == 0 and "FGD101" in listing.stdout, listing.stderr
    one = without_transformers("rules", "step-units", cwd=tmp_path)
    assert one.returncode == 0 and "FGD301" in one.stdout, one.stderr
    for args in (["check-config"], ["live", "--steps", "1"]):
        result = without_transformers(*args, cwd=tmp_path)
        assert result.returncode == 2 and "not installed" in one_error_line(result.stderr), args


def annotation_lines() -> list[str]:
    """Six FG-CLIP records, one inverted box (the loader raises), one zero-area box, one broken line."""
    negs = {str(i): f"rewrite {i}" for i in range(10)}
    boxes = lambda *bs: [
        {
            "bbox": b,
            "short_expr": "red circle",
            "long_expr": "a red circle",
            "flag_short_neg": 1,
            "short_expr_negs": negs,
        }
        for b in bs
    ]
    records = [
        {"f_path": f"images/{i}.png", "caption": "shapes", "short_caption": "shapes", "bbox_info": boxes(*bs)}
        for i, bs in enumerate(
            [[[0.1, 0.1, 0.5, 0.5]]] * 2
            + [[[0.5, 0.5, 0.1, 0.1]], [[0.2, 0.2, 0.2, 0.6]]]
            + [[[0.0, 0.0, 1.0, 1.0]]] * 2
        )
    ]
    return [json.dumps(r) for r in records] + ["not json"]


def test_check_data_counts_the_same_with_and_without_transformers(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(annotation_lines()) + "\n")
    before = data.read_bytes()
    here = runner.invoke(app, ["check-data", str(data), "--format", "json", "-j", "1"])
    bare = without_transformers("check-data", str(data), "--format", "json", "-j", "1", cwd=tmp_path)
    assert here.exit_code == bare.returncode == 1, (here.output, bare.stderr)  # box-valid FAILs
    counts = {}
    for name, text in (("here", here.stdout), ("bare", bare.stdout)):
        facts = json.loads(text)["facts"]
        counts[name] = {k: facts[k]["value"] for k in ("data.records", "data.box.inverted", "data.box.zero_area")}
        counts[name]["crash"] = facts["data.crash.first"]["value"].split(": ")[0]
    assert (
        counts["here"]
        == counts["bare"]
        == {
            "data.records": 7,
            "data.box.inverted": 1,
            "data.box.zero_area": 1,
            "crash": f"{data}:3",  # FG-CLIP's loader stops at the inverted box of line 3
        }
    )
    assert data.read_bytes() == before


# ---- live and inspect-ckpt on a plain CLIPModel run, with the installed transformers --------------


@pytest.fixture(scope="module")
def plain_live(tmp_path_factory):
    """`live` on the plain CLIPModel launch, its run kept (a checkpoint at step 4) for inspect-ckpt."""
    folder = tmp_path_factory.mktemp("plain-clip")
    script = plain_clip_script(folder)
    kept = folder / "kept"
    result = runner.invoke(
        app, ["live", str(script), "--steps", "4", "--interval", "2", "--keep-run", str(kept), "--format", "json"]
    )
    return folder, result, kept


def test_live_on_a_plain_clip_script(plain_live):
    folder, result, _ = plain_live
    assert result.exit_code == 0, (result.output or "") + repr(result.exception)
    facts = json.loads(result.stdout)["facts"]
    assert facts["run.subject_known"]["value"] is False
    [term] = facts["observed.terms"]["value"]  # DoctorCallback's probes saw CLIP's own loss
    assert "contrastive_loss" in term and facts[f"observed.candidates.{term}"]["value"] == 6
    assert facts["scale.global.init"]["value"] == pytest.approx(3.0, abs=1e-6)
    assert facts[f"observed.loss.{term}.chance"]["value"] == pytest.approx(math.log(6), rel=1e-5)
    assert not (folder / "out").exists()  # never the user's output_dir


def test_inspect_ckpt_on_the_installed_transformers_checkpoint(plain_live, tmp_path):
    _, live_result, kept = plain_live
    assert live_result.exit_code == 0
    here = runner.invoke(app, ["inspect-ckpt", str(kept), "--format", "json"])
    bare = without_transformers("inspect-ckpt", str(kept), "--format", "json", cwd=tmp_path)
    assert here.exit_code == bare.returncode == 0, (here.output, bare.stderr)
    for text in (here.stdout, bare.stdout):
        facts = json.loads(text)["facts"]
        assert facts["ckpt.layout"]["value"] == "hf-clip"
        assert facts["scale.global.value"]["value"] == pytest.approx(3.0, abs=0.05)  # 4 steps at lr 1e-3
        assert facts["train.optimizer_steps_done"]["value"] == 4
        # training_args.bin of this transformers, read without running its pickle
        assert facts["schedule.type"]["value"] == "linear" and facts["train.grad_accum"]["value"] == 1
