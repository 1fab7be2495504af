"""A first run that talks: one line before the synthetic data and tiny base are generated, a bar
while they are (on a terminal only), and nothing from the libraries on stderr (or stdout).

The generation runs small here (40 + 8 records, 3 base steps: fgclip.synthetic's constants, which
both entry points read at the call) so that a test takes seconds, not the half minute of the default.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fgclip.progress import Bar, shown
from fgclip_doctor.terminal import notice_stream

ROOT = Path(__file__).resolve().parents[1]
SMALL = "import fgclip.synthetic as s; s.N_TRAIN, s.N_VAL, s.PRETRAIN_STEPS = 40, 8, 3"


def run(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FGCLIP_CACHE=str(cache), COLUMNS="100", NO_COLOR="1")
    return subprocess.run([sys.executable, "-c", code], cwd=cache, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.subject
def test_first_check_config_says_it_generates_and_stderr_stays_clean(tmp_path):
    cli = "import sys; from fgclip_doctor.cli import app; sys.argv = ['fgclip-doctor', 'check-config']; app()"
    first = run(f"{SMALL}; {cli}", tmp_path)
    assert first.stderr == "", first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == (
        f"first use: generating synthetic data and a tiny base into {tmp_path}/synthetic-v1, "
        "about 30 s on a free CPU core"
    )
    assert lines[1].startswith("fgclip-doctor check-config · default run") and first.returncode in (0, 1)
    assert (tmp_path / "synthetic-v1" / "base" / "model.safetensors").is_file()
    again = run(f"{SMALL}; {cli}", tmp_path)  # made: nothing more to say
    assert again.stderr == "" and again.stdout.splitlines()[0] == lines[1]


def test_the_first_use_line_leaves_a_json_or_junit_document_alone():
    assert notice_stream(None) is sys.stdout and notice_stream("table") is sys.stdout
    assert notice_stream("json") is sys.stderr and notice_stream("junit") is sys.stderr


@pytest.mark.subject
def test_synthetic_cli_says_what_it_makes_and_nothing_else(tmp_path):
    out = tmp_path / "data"
    args = ["--out", str(out), "--n-train", "40", "--n-val", "8", "--base-steps", "3"]
    made = run(f"from fgclip.synthetic import main; main({args!r})", tmp_path)
    assert made.returncode == 0 and made.stderr == "", made.stderr
    first, last = made.stdout.splitlines()  # no library line between them (DeepSpeed logs to stdout)
    assert first == f"generating 40+8 records and a tiny base (3 steps) into {out}"
    assert last.startswith(f"wrote 40+8 records to {out}, the tiny base to {out}/base in ")
    assert len((out / "train.jsonl").read_text().splitlines()) == 40 and (out / "base" / "config.json").is_file()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_draws_on_a_terminal_and_erases_itself():
    term = _Terminal()
    with Bar(10, stream=term) as bar:
        bar.stage("synthetic data")
        bar.advance(10)
        bar.stage("tiny base")  # a stage change always redraws
    drawn = term.getvalue()
    assert "synthetic data  [" in drawn and "tiny base       [" + "#" * 24 + "] 100%" in drawn
    assert drawn.endswith("\r") and drawn.rsplit("\r", 2)[-2].strip() == ""  # erased: blanks, back to column 0


def test_the_bar_draws_nothing_off_a_terminal():
    log = io.StringIO()
    with Bar(10, stream=log) as bar:
        bar.stage("synthetic data")
        bar.advance(10)
    assert log.getvalue() == ""


def test_paths_under_home_show_as_tilde():
    assert shown(Path.home() / ".cache" / "fgclip-doctor") == "~/.cache/fgclip-doctor"
    assert shown(Path("/elsewhere/x")) == "/elsewhere/x"


def test_synthetic_cli_without_transformers_says_what_to_install(tmp_path):
    block = "import sys; sys.modules['transformers'] = None"  # as on the core install
    done = run(f"{block}; from fgclip.synthetic import main; main(['--out', 'x', '--no-base'])", tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == (
        "python -m fgclip.synthetic: error: needs transformers (the subject's extra): "
        f'pip install -e "{ROOT}[subject]"'
    )
    assert not (tmp_path / "x").exists()
