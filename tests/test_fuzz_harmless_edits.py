"""Fuzzing with meaning, launches: a healthy launch keeps its verdicts under edits bash ignores.

scripts/train_tiny.sh (healthy: exit 0) rewritten as bash runs it the same: its flags in another
order, `--x v` / `--x=v` / quoted in every way that expands the same, separated by spaces, tabs or
line continuations, with comment lines and blank lines around the command and a trailing comment.
check-config must give the same set of (code, subject, status) as on the original script; the
crash oracle (tests/fuzz_cli.py) holds on every case too.

Each case is one check-config with the meta build (about a second on a busy machine): a small
default budget; HYPOTHESIS_PROFILE=fuzz-10k runs 10,000.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from fuzz_cli import fuzz_settings, run_cli
from hypothesis import example, given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
TINY = (REPO / "scripts" / "train_tiny.sh").read_text()
_HEAD, _COMMAND = TINY.split("python -m fgclip.train", 1)
#: the launch's flags in order, [(--name, value)], read from the script itself
PAIRS = re.findall(r"(--\w+) (\S+)", _COMMAND)


def verdicts(script: Path, cwd: Path) -> tuple[int, frozenset[tuple[str, str, str]]]:
    out = run_cli(["check-config", script, "--format", "json"], inspected=[script], cwd=cwd)
    assert out.code in (0, 1), out.stderr
    findings = json.loads(out.stdout)["findings"]
    return out.code, frozenset((f["code"], f["subject"] or "", f["status"]) for f in findings)


@cache
def baseline(tmp: Path) -> frozenset[tuple[str, str, str]]:
    script = tmp / "original.sh"
    script.write_text(TINY)
    code, found = verdicts(script, tmp)
    assert code == 0 and not any(status == "FAIL" for *_, status in found), found  # a healthy launch
    return found


def spellings(flag: str, value: str) -> st.SearchStrategy[str]:
    """The ways bash passes the same two words (or one `--x=v` word) to the program."""
    forms = [f"{flag} {value}", f"{flag}={value}", f'{flag} "{value}"', f'"{flag}" "{value}"', f'"{flag}={value}"']
    if "$" not in value:  # single quotes would stop the expansion
        forms += [f"{flag} '{value}'", f"'{flag}'='{value}'", f"{flag}=\\{value[0]}{value[1:]}"]
    if "{" not in value:  # braces: ${VAR} must stay one expansion
        forms.append(f'{flag}=""{value}')
    return st.sampled_from(forms)


SEPARATORS = st.sampled_from([" ", "  ", "\t", " \\\n    ", " \\\n\t", "\\\n "])
COMMENTS = st.sampled_from(["", "# a comment\n", "\n", "# --max_steps 1 (a comment, not a flag)\n", "   \n"])


@st.composite
def edited_launches(draw) -> str:
    """train_tiny.sh with its flags reordered, respelled and re-separated, comments added."""
    order = draw(st.permutations(PAIRS))
    words = [draw(spellings(flag, value)) for flag, value in order]
    command = "python -m fgclip.train"
    for word in words:
        command += draw(SEPARATORS) + word
    trailing = draw(st.sampled_from(["", "  # the end", " ;", "\t# --max_steps 1"]))
    head = "".join(line + "\n" + draw(COMMENTS) for line in _HEAD.rstrip("\n").split("\n"))
    return head + draw(COMMENTS) + command + trailing + "\n" + draw(COMMENTS)


@fuzz_settings(6)
@given(text=edited_launches())
@example(text=TINY)
@example(text=TINY.replace(" \\\n    ", " ").replace("--max_steps 60", "--max_steps=60"))
def test_harmless_edits_keep_the_verdicts(synthetic_root, tmp_path_factory, text):
    tmp = tmp_path_factory.getbasetemp() / "harmless-edits"
    tmp.mkdir(exist_ok=True)
    script = tmp / "edited.sh"
    script.write_text(text)
    _code, found = verdicts(script, tmp)
    before = baseline(tmp)
    assert found == before, f"verdicts moved:\n+ {sorted(found - before)}\n- {sorted(before - found)}"
