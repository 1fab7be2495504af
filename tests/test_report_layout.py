"""The table a person reads: its width, whole words, problems first as complete blocks, -q / -v,
NO_COLOR / FORCE_COLOR; on real check-config reports (the CLI in-process) and on built ones."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from fgclip_doctor.checks.causes import CAUSES
from fgclip_doctor.checks.registry import Finding, Status
from fgclip_doctor.cli import app
from fgclip_doctor.facts import Facts
from fgclip_doctor.phrases import say_names
from fgclip_doctor.report import Report, render, to_json
from fgclip_doctor.terminal import colour_wanted, terminal_width
from fgclip_doctor.text_wrap import shorten_paths, truncate, wrap

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (80, 100, 200)
HEADER = re.compile(r"^(FAIL|WARN|PASS|SKIP) (FGD\d{3}) ")
ANSI = re.compile(r"\x1b\[")
EMPTY_LABEL = re.compile(r"(measured|expected|from): —")
runner = CliRunner()


def norm(text: str) -> str:
    return " ".join(text.split())


# ---- what a rendered table must satisfy -------------------------------------------------------


def blocks(text: str) -> list[tuple[str, str]]:
    """(header line, the block's text with whitespace normalised) for every finding line."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if HEADER.match(line):
            out.append((line, [line]))
        elif line.startswith("  ") and out and out[-1][1] is not None:
            out[-1][1].append(line)
        else:
            out.append(("", None))  # anything else ends a block
    return [(h, norm(" ".join(ls))) for h, ls in out if h]


def shown(text: str) -> str:
    """A report string as the table shows it (fact names in words, paths shortened), spaces as typed."""
    return shorten_paths(say_names(text))


def check_layout(text: str, findings: list[dict], width: int, verbose: bool = False) -> None:
    """No line over `width`; FAIL, then WARN, then the one-liners; every problem (every finding
    with `verbose`) a block with its message, measured, expected, sources and fix, none of
    their words split across lines."""
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= width, max(lines, key=cell_len)
    assert not EMPTY_LABEL.search(text), EMPTY_LABEL.search(text)  # no `measured: —` / `from: —`
    found = blocks(text)
    statuses = [HEADER.match(h).group(1) for h, _ in found]
    rank = ["FAIL", "WARN", "PASS", "SKIP"]
    assert statuses == sorted(statuses, key=rank.index), statuses  # problems first
    tokens = set(text.split())
    for f in findings:
        if f["status"] not in ("FAIL", "WARN") and not verbose:
            continue
        mine = [
            b
            for h, b in found
            if h.startswith(f"{f['status']} {f['code']} {f['rule']}")
            and f["subject"] in h
            and norm(shown(f["message"])) in b
        ]
        assert len(mine) == 1, (f, found)
        block = mine[0]
        for label in ("measured", "expected"):  # a side with nothing to say has no label at all
            assert (f"{label}: {norm(shown(f[label]))}" in block) == bool(f[label]), (label, block)
        assert ("from: " in block) == bool(f["sources"]), block
        for source in f["sources"]:
            assert norm(shown(source)) in block, source
        if "cause: follows from" in block:  # a consequence under its root (checks/causes.py): the root's fix
            assert (f["rule"], f["subject"]) in CAUSES and "fix:" not in block
        else:
            assert (f"fix: {norm(shown(f['fix']))}" in block) == bool(f["fix"]), block
        for word in (shown(f["message"]) + " " + shown(f["fix"])).split():
            assert word in tokens or "cause: follows from" in block, word  # whole, on one line


# ---- built reports ------------------------------------------------------------------------------

LONG_PATH = "/work/cache/synthetic-v1/base/model.safetensors"


def finding(status: Status, code: str, rule: str, subject: str = "", **kw) -> Finding:
    base = dict(
        measured="2.6592 (T 14.3)",
        expected="4.6052 (T 100); at least 0.5 x the base temperature",
        message=f"{subject or rule} starts at 2.6592 (T 14.3); base global 4.6052 (T 100): CLIP's "
        "from-scratch init on a base at ln 100, read from --logit_scale_init_value",
        fix="start new scales at the base's scale (drop --logit_scale_init_value, or set 4.6052)",
        sources=(
            "scripts/seed_bug.sh:21 --logit_scale_init_value",
            "scripts/seed_bug.sh:13 --model_name_or_path",
            f"{LONG_PATH}: logit_scale",
        ),
    )
    base.update(kw)
    return Finding(
        code,
        rule,
        status,
        "fail",
        base["measured"],
        base["expected"],
        base["message"],
        base["fix"],
        tuple(base["sources"]),
        subject,
    )


FINDINGS = [
    finding(Status.PASS, "FGD102", "logit-scale-clamp", "global", measured="4.6052 (T 100)"),
    finding(Status.FAIL, "FGD101", "logit-scale-init", "finegrained"),
    finding(
        Status.SKIP,
        "FGD705",
        "loss-floor",
        "region",
        measured="",
        message="needs observations of a live run: run `fgclip-doctor live` to measure the floor of every loss term",
    ),
    finding(
        Status.WARN,
        "FGD208",
        "grad-accum-negatives",
        measured="8",
        expected="1",
        message="accumulation 8 multiplies the batch per optimizer step (global batch 64) but not "
        "the negatives: each loss sees per_device x world = 8 candidates per forward",
        sources=(
            "scripts/seed_bug.sh:25 --gradient_accumulation_steps",
            "per_device (scripts/seed_bug.sh:24 --per_device_train_batch_size) × world "
            "(python launches one process × default: one node)",
        ),
    ),
    finding(Status.FAIL, "FGD101", "logit-scale-init", "hardneg"),
    finding(
        Status.FAIL,
        "FGD301",
        "step-units",
        "bank warmup",
        measured="400 forward calls = optimizer step 50",
        expected="< 320 forward calls (optimizer step 40)",
        sources=(
            "scripts/seed_bug.sh:23 --memory_bank_warmup_steps",
            "scripts/seed_bug.sh:23 --memory_bank_warmup_steps ÷ accumulation "
            "(scripts/seed_bug.sh:25 --gradient_accumulation_steps)",
        ),
        fix="count the warmup in optimizer steps, or divide it by the gradient accumulation",
    ),
]


def wide_tables() -> list[tuple[str, Table]]:
    run = Table(box=None)
    for name in ("run", "value", "source"):
        run.add_column(name)
    run.add_row("fine-tuning from", "/work/cache/synthetic-v1/base", "scripts/seed_bug.sh:13 --model_name_or_path")
    run.add_row(
        "global scale init",
        "4.6052 (T 100)",
        "fgclip.train build_model (built on meta): logit_scale = the base's learned logit_scale (from_clip copies it)",
    )
    run.add_row(
        "bank warmup",
        "400 forward calls = optimizer step 50",
        "scripts/seed_bug.sh:23 --memory_bank_warmup_steps\n" + LONG_PATH + ": memory_bank.enabled_at_call",
    )
    terms = Table(box=None)
    for name in (
        "term",
        "candidates",
        "T",
        "logits min..max",
        "pos − hardest",
        "loss first→last",
        "ln N",
        "ratio",
        "verdict",
    ):
        terms.add_column(name, no_wrap=True)
    terms.add_row(
        "global", "8", "100", "-3.1..12.0", "+1.20", "2.079 → 0.412 ▇▅▃▂▁", "2.08", "0.20", Text("PASS", style="green")
    )
    terms.add_row(
        "region",
        "24 → 152",
        "14.3",
        "-1.0..3.9",
        "-0.30",
        "3.180 → 3.150 ▁▁▁▁▁",
        "3.18",
        "0.99",
        Text("FAIL", style="red"),
    )
    return [("Run", run), ("Loss terms", terms)]


def built_report(**kw) -> Report:
    return Report(
        "check-config",
        "scripts/seed_bug.sh",
        Facts(),
        list(FINDINGS),
        title_lines=[
            "fgclip-doctor check-config · scripts/seed_bug.sh · fgclip.train via python",
            f"note: the base at {LONG_PATH} is read, never loaded",
        ],
        sections=wide_tables(),
        **kw,
    )


@pytest.fixture
def cache_env(monkeypatch):
    monkeypatch.setenv("FGCLIP_CACHE", "/work/cache")


@pytest.mark.parametrize("width", WIDTHS)
def test_built_report_layout(width, cache_env):
    report = built_report()
    text = render(report, "table", width=width)
    check_layout(text, to_json(report)["findings"], width)
    assert "$FGCLIP_CACHE/synthetic-v1/base/model.safetensors" in text and LONG_PATH not in text
    # the two FGD101 problems differ only in subject and message: one block, both messages
    [fgd101] = [h for h, _ in blocks(text) if "FGD101" in h]
    assert fgd101 == "FAIL FGD101 logit-scale-init · finegrained, hardneg"
    lines = text.splitlines()
    assert lines[-1] == "1 PASS · 1 WARN · 2 FAIL · 1 SKIP (6 findings) · exit 1"  # blocks: FGD101 holds two
    assert any(line.startswith("PASS FGD102 logit-scale-clamp · global") and "4.6052 (T 100)" in line for line in lines)
    [skip] = [line for line in lines if line.startswith("SKIP FGD705")]
    assert "needs observations" in skip  # a SKIP's one line carries its reason
    for _, table in wide_tables():  # every cell's words, whole
        for col in table.columns:
            for cell in col.cells:
                for word in shorten_paths(str(cell)).split():
                    assert word in text.split(), word


def test_quiet_and_verbose_on_a_built_report(cache_env):
    report = built_report()
    normal = render(report, "table", width=100)
    quiet = render(report, "table", width=100, verbosity=-1)
    verbose = render(report, "table", width=100, verbosity=1)
    assert "PASS FGD102" in normal and "PASS FGD102" not in quiet and "SKIP FGD705" not in quiet
    assert "1 PASS and 1 SKIP not listed (-q)" in quiet
    assert [b for b in blocks(quiet)] == [b for b in blocks(normal) if b[0][:4] in ("FAIL", "WARN")]
    check_layout(verbose, to_json(report)["findings"], 100, verbose=True)


def test_one_liners_are_cut_at_a_word_boundary():
    long = finding(
        Status.PASS,
        "FGD103",
        "logit-scale-decay",
        "logit_scale_finegrained",
        measured="group 'logit_scales' without weight decay, " * 4,
    )
    text = render(Report("check-config", None, Facts(), [long]), "table", width=80)
    [line] = [line for line in text.splitlines() if line.startswith("PASS")]
    assert cell_len(line) <= 80 and line.endswith("…")
    assert line[:-1].split()[-1] in long.measured.split()


# ---- the real CLI -----------------------------------------------------------------------------


@pytest.fixture
def in_copy(synthetic_root, monkeypatch, tmp_path):
    """A temp working folder holding a copy of scripts/, as tests/test_check_config.py does (a
    stale runs/ in the checkout is not picked up; sources read `scripts/seed_bug.sh:NN`)."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def env(**values: str) -> dict[str, str | None]:
    """The environment of one in-process run: colour variables unset unless given."""
    base: dict[str, str | None] = {"NO_COLOR": None, "FORCE_COLOR": None, "COLUMNS": None}
    base.update(values)
    return base


def cli(*args: str, codes=(0, 1), **environ: str):
    result = runner.invoke(app, list(args), env=env(**environ))
    assert result.exit_code in codes, result.output + repr(result.exception)
    return result


def seed_json() -> dict:
    return json.loads(cli("check-config", "scripts/seed_bug.sh", "--format", "json").stdout)


def test_done_when_seed_bug_fits_100_lines_of_100_columns(in_copy):
    """The issue's bar: at COLUMNS=100, `check-config scripts/seed_bug.sh` fits in 100 lines, no
    line over 100 columns, every FAIL and WARN shows message, measured, expected, sources, fix."""
    result = cli("check-config", "scripts/seed_bug.sh", COLUMNS="100")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) <= 100, len(lines)
    assert max(cell_len(line) for line in lines) <= 100
    doc = seed_json()
    problems = [f for f in doc["findings"] if f["status"] in ("FAIL", "WARN")]
    assert len(problems) >= 5
    check_layout(result.stdout, doc["findings"], 100)
    # the footer counts what the table shows: FAIL / WARN blocks, one-liners, and how many findings they hold
    shown = dict.fromkeys(("FAIL", "WARN", "PASS", "SKIP"), 0)
    for line in lines:
        if HEADER.match(line):
            shown[line.split()[0]] += 1
    held = len(doc["findings"])
    assert lines[-1] == (
        f"{shown['PASS']} PASS · {shown['WARN']} WARN · {shown['FAIL']} FAIL · {shown['SKIP']} SKIP"
        f" ({held} findings) · exit 1"
    )
    # the seed's warmup of 400: one root (step-units) with its fix, the two consequences under it
    heads = [line for line in lines if line.startswith("FAIL ")]
    at = heads.index("FAIL FGD301 step-units · bank warmup")
    assert sorted(heads[at + 1 : at + 3]) == ["FAIL FGD201 negatives-count · region", "FAIL FGD202 bank-active"]
    assert result.stdout.count("cause: follows from FGD301 step-units · bank warmup above") == 2


@pytest.mark.parametrize("width", WIDTHS)
def test_seed_bug_at_each_width(in_copy, width):
    text = cli("check-config", "scripts/seed_bug.sh", COLUMNS=str(width)).stdout
    doc = seed_json()
    check_layout(text, doc["findings"], width)
    assert "Run" in text.splitlines()[:3]
    cache = os.environ["FGCLIP_CACHE"]
    assert "$FGCLIP_CACHE/synthetic-v1/base" in text and cache + "/synthetic-v1" not in text
    assert any(cache in s for f in doc["findings"] for s in f["sources"])  # JSON keeps it absolute
    passes = [line for line in text.splitlines() if line.startswith("PASS ")]
    codes = [f["code"] for f in doc["findings"] if f["status"] == "PASS"]
    assert len(passes) == len(dict.fromkeys(codes))  # one line per rule, its subjects joined
    for f in (f for f in doc["findings"] if f["status"] == "PASS"):
        line = next(p for p in passes if p.startswith(f"PASS {f['code']} "))
        assert not f["subject"] or f["subject"] in line or line.endswith("…")


def test_quiet_and_verbose_flags(in_copy):
    doc = seed_json()
    quiet = cli("check-config", "scripts/seed_bug.sh", "-q", COLUMNS="100").stdout
    assert not re.search(r"^(PASS|SKIP) ", quiet, re.M)
    assert f"{doc['summary']['pass']} PASS and {doc['summary']['skip']} SKIP not listed (-q)" in quiet
    check_layout(quiet, doc["findings"], 100)
    verbose = cli("check-config", "scripts/seed_bug.sh", "--verbose", COLUMNS="100").stdout
    check_layout(verbose, doc["findings"], 100, verbose=True)
    assert json.loads(cli("check-config", "scripts/seed_bug.sh", "-v", "--format", "json").stdout) == doc
    both = cli("check-config", "scripts/seed_bug.sh", "-q", "-v", codes=(2,))
    assert both.stdout == "" and "fgclip-doctor: error: --quiet and --verbose" in both.stderr


def test_colour_only_on_a_terminal_or_when_forced(in_copy):
    plain = cli("check-config", "scripts/seed_bug.sh").stdout
    assert not ANSI.search(plain)  # off a terminal: no ANSI codes
    assert max(cell_len(line) for line in plain.splitlines()) <= 80  # no COLUMNS: 80
    forced = cli("check-config", "scripts/seed_bug.sh", FORCE_COLOR="1").stdout
    assert ANSI.search(forced)
    assert ANSI.sub("", re.sub(r"\x1b\[[0-9;]*m", "", forced)) == plain  # the same table, coloured
    assert not ANSI.search(cli("check-config", "scripts/seed_bug.sh", FORCE_COLOR="1", NO_COLOR="1").stdout)


# ---- the pieces ---------------------------------------------------------------------------------

WORD = st.text(alphabet=string.ascii_letters + string.digits + "-_.()×→·", min_size=1, max_size=15)


@settings(max_examples=200, deadline=None)
@given(st.lists(WORD, min_size=1, max_size=40), st.integers(24, 120), st.integers(0, 8))
def test_wrap_never_splits_a_word_nor_passes_the_width(words, width, indent):
    lines = wrap(" ".join(words), width, indent=indent, first_indent=0)
    assert all(cell_len(line.plain) <= width for line in lines)
    assert " ".join(line.plain for line in lines).split() == words


def test_a_token_wider_than_the_line_folds_after_separators():
    lines = [line.plain.strip() for line in wrap(f"from: {LONG_PATH}:memory_bank.enabled_at_call", 30, indent=4)]
    assert all(cell_len(line) <= 26 for line in lines[1:])
    assert "".join(lines).replace("from: ", "") == f"{LONG_PATH}:memory_bank.enabled_at_call"
    assert all(line[-1] in "/:." for line in lines[:-1])  # broken only after a separator


def test_truncate_cuts_at_a_word_boundary():
    text = "PASS FGD101 logit-scale-init · global  4.6052 (T 100) and a long tail of words"
    cut = truncate(text, 40).plain
    assert cell_len(cut) <= 40 and cut.endswith("…")
    kept = cut[:-1].rstrip()
    assert text.startswith(kept) and text[len(kept)] == " "
    assert truncate("short", 40).plain == "short"


def test_shorten_paths():
    env_ = {"FGCLIP_CACHE": "/data/cache", "HOME": "/home/ada"}

    def short(text: str) -> str:
        return shorten_paths(text, cwd="/home/ada/proj", environ=env_)

    assert short("/home/ada/proj/scripts/train.sh:12 --x") == "scripts/train.sh:12 --x"
    assert (
        short("/data/cache/synthetic-v1/base/model.safetensors: s")
        == "$FGCLIP_CACHE/synthetic-v1/base/model.safetensors: s"
    )
    assert short("(relative to /home/ada/other/runs)") == "(relative to ~/other/runs)"
    assert short("/home/ada/projx/a /tmp/b") == "~/projx/a /tmp/b"  # a prefix, not a parent
    assert short("/home/ada/proj") == "~/proj"  # the working folder itself stays a folder name
    assert short("per_device × world 8/16") == "per_device × world 8/16"  # not a path


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1


def test_terminal_width(monkeypatch):
    assert terminal_width(io.StringIO(), {}) == 80
    assert terminal_width(io.StringIO(), {"COLUMNS": "100"}) == 100
    assert terminal_width(io.StringIO(), {"COLUMNS": "wide"}) == 80
    monkeypatch.setattr("fgclip_doctor.terminal.os.get_terminal_size", lambda fd: os.terminal_size((90, 40)))
    assert terminal_width(_Tty(), {}) == 90
    assert terminal_width(_Tty(), {"COLUMNS": "70"}) == 70
    assert terminal_width(_Tty(), {"COLUMNS": "200"}) == 90  # never wider than the terminal


def test_colour_wanted():
    assert colour_wanted(_Tty(), {}) and not colour_wanted(io.StringIO(), {})
    assert colour_wanted(io.StringIO(), {"FORCE_COLOR": "1"})
    assert not colour_wanted(_Tty(), {"NO_COLOR": "1"})
    assert not colour_wanted(io.StringIO(), {"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert not colour_wanted(io.StringIO(), {"FORCE_COLOR": ""})  # empty means unset
