"""The nits a first user saw (issue 22, item 6), each pinned: the Run table's sources under their
values when they do not fit beside them, sources said once, `rules NAME` wrapped with indentation,
the `rules` table's legend and the severities a rule really reports, every target kind named for a
directory, no `None` in a header, paths named relatively in errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.cells import cell_len
from rich.table import Table
from safetensors.numpy import save_file
from typer.testing import CliRunner

from fgclip_doctor.checks.registry import get_rule, rule, scratch_registry
from fgclip_doctor.cli import app
from fgclip_doctor.commands.rules import LEGEND, severities
from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.report_layout import table_lines

ROOT = Path(__file__).resolve().parents[1]
DOCS = dict(fix="f", what="w", why="y", example="e", evidence="v")
runner = CliRunner()


def cli(*args: str, width: int = 80, codes: tuple[int, ...] = (0, 1)):
    result = runner.invoke(app, list(args), env={"COLUMNS": str(width), "NO_COLOR": "1"})
    assert result.exit_code in codes, result.output + repr(result.exception)
    return result


# ---- the Run table ---------------------------------------------------------------------------------


def run_table() -> Table:
    table = Table(box=None)
    for name in ("run", "value", "source"):
        table.add_column(name)
    table.add_row("launcher", "deepspeed", "scripts/train_ucf_full.sh")
    table.add_row("per-device batch", "16", "scripts/train_ucf_full.sh:33\xa0--per_device_train_batch_size")
    table.add_row(
        "fine-tuning from", "/data/models/clip-vit-base-patch16", "scripts/train_ucf_full.sh:16 --model_name_or_path"
    )
    table.add_row("bank size", "128", "scripts/train_ucf_full.sh:26 --memory_bank_size")
    return table


@pytest.mark.parametrize("width", [60, 80, 100])
def test_a_source_that_does_not_fit_goes_under_its_value(width):
    lines = [line.plain for line in table_lines(run_table(), width)]
    assert max(cell_len(line) for line in lines) <= width
    value_at = lines[0].index("deepspeed")
    source_at = lines[0].index("scripts/")
    for line in lines:
        assert not line.rstrip().endswith(":"), lines  # never folded inside `path:line`
        if "scripts/" in line:  # a source is at the tab stop or under its value, never pushed along
            assert line.index("scripts/") in (source_at, value_at + 2), lines
    # the long value's source is on its own line under it
    [i] = [i for i, line in enumerate(lines) if "/data/models/clip-vit-base-patch16" in line]
    assert "--model_name_or_path" not in lines[i] and lines[i + 1].startswith(" " * (value_at + 2) + "scripts/")


def test_the_ucf_run_table_at_80_columns(synthetic_root, tmp_path, monkeypatch):
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    monkeypatch.chdir(tmp_path)
    text = cli("check-config", "scripts/train_ucf_full.sh").stdout
    run = text.split("\nRun\n")[1].split("\n\n")[0].splitlines()
    assert not any(line.rstrip().endswith((":", "sh:")) for line in run), run
    # deepspeed --include gives the processes per node and the nodes: cited once
    assert "world size           4          scripts/train_ucf_full.sh:14 --include" in run
    assert "--include × scripts/train_ucf_full.sh:14 --include" not in " ".join(text.split())


def test_a_huge_scale_flag_is_cited_and_shown_short(synthetic_root, tmp_path, monkeypatch):
    """--logit_scale_init_value 1e20: the parameter holds float32(1e20) = 1.00000002e20, still the flag's
    own value (cited as the command line, not "the code overrides it"), shown as 1e+20, not 21 digits."""
    monkeypatch.chdir(tmp_path)
    text = cli(
        "check-config", "-m", "fgclip.train", "--", "--preset", "tiny", "--logit_scale_init_value", "1e20"
    ).stdout
    [row] = [line for line in text.splitlines() if line.startswith("finegrained scale init")]
    assert row.split() == [
        "finegrained",
        "scale",
        "init",
        "1e+20",
        "(T",
        "inf)",
        "command",
        "line",
        "--logit_scale_init_value",
    ]
    assert "100000002004087734272" not in text and "overrides" not in text


# ---- rules -------------------------------------------------------------------------------------------


def test_rules_explain_wraps_with_indentation_and_no_trailing_spaces():
    text = cli("rules", "step-units").stdout
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert all(line == line.rstrip() for line in lines)
    body = text.split("What it does\n")[1].split("\n\n")[0].splitlines()
    assert len(body) > 1 and all(line.startswith("  ") for line in body), body
    assert lines[0].startswith("FGD301 step-units (fail · where: config, live run)")


def test_rules_table_has_a_legend_and_the_severities_a_rule_reports():
    text = cli("rules", width=200).stdout
    assert LEGEND in " ".join(text.split())
    for word in ("C config (check-config)", "K checkpoint (inspect-ckpt)", "L live run (live)", "D data (check-data)"):
        assert word in LEGEND
    [clamp] = [line for line in text.splitlines() if "logit-scale-clamp" in line]
    assert "fail / warn" in clamp  # FAILs on a scale above the clamp, WARNs on no clamp
    assert severities(get_rule("logit-scale-clamp")) == ["fail", "warn"]
    assert severities(get_rule("logit-scale-init")) == ["fail"]
    assert severities(get_rule("bank-size")) == ["fail", "warn"]  # `make = ctx.warned`, chosen then called
    with scratch_registry():

        @rule("FGD901", "only-warns", title="t", severity="fail", where="C", **DOCS)
        def only_warns(facts, ctx):
            return ctx.warned(1, 0, "soft")

        @rule("FGD902", "own-severity", title="t", severity="warn", where="C", **DOCS)
        def own(facts, ctx):
            return _helper(ctx)

        assert severities(get_rule("only-warns")) == ["warn"]
        assert severities(get_rule("own-severity")) == ["warn"]
        explained = cli("rules", "only-warns").stdout
        assert explained.startswith("FGD901 only-warns (warn · where: config)")


def _helper(ctx):
    return ctx.problem(1, 0, "the rule's own severity, from a helper")


# ---- errors and headers -------------------------------------------------------------------------------


def test_a_directory_launch_is_told_every_target_kind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for command in ("check-config", "live"):
        result = cli(command, "runs", codes=(2,))
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("fgclip-doctor: error: runs: is a directory: give ")
        for kind in ("(.sh)", "(.py", "(.json / .yaml)", "(-m MODULE)"):
            assert kind in line, kind


def test_a_bare_weights_file_has_no_none_in_its_header(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_file({"logit_scale": np.array(4.6052, dtype=np.float32)}, str(tmp_path / "model.safetensors"))
    text = cli("inspect-ckpt", "model.safetensors").stdout
    header = text.split("\n")[0]
    assert header.startswith("fgclip-doctor inspect-ckpt · model.safetensors · ")
    assert "None" not in text and "step" not in header


def test_errors_name_paths_below_the_working_directory_relatively(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "config.json").write_text("{}")
    for args in (("inspect-ckpt", "runs/config.json"), ("inspect-ckpt", str(tmp_path / "runs" / "config.json"))):
        [line] = cli(*args, codes=(2,)).stderr.strip().splitlines()
        assert line.startswith("fgclip-doctor: error: runs/config.json: unsupported weights file"), line
    assert str(DoctorInputError(tmp_path / "a" / "b.sh", "x")) == "a/b.sh: x"
    assert str(DoctorInputError("/elsewhere/b.sh", "x")) == "/elsewhere/b.sh: x"  # outside: as given
