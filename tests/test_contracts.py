"""The architecture as checks: import contracts (pyproject [tool.importlinter]), ruff lint and
format, and the size limit on modules. A change that imports upward, closes a circle, breaks
the style or grows a module past 400 lines fails here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 400
LINTED = ["fgclip_doctor", "fgclip", "tests", "bench", "tools"]


def tool(name: str) -> str:
    """The console script `name` of this interpreter's environment (else the one on PATH)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[test]')")
    return found


def run(*cmd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    proc = run(tool("lint-imports"), "--no-cache")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 kept, 0 broken" in proc.stdout


def test_ruff_lint_is_clean():
    proc = run(tool("ruff"), "check", *LINTED)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


def test_ruff_format_is_clean():
    proc = run(tool("ruff"), "format", "--check", *LINTED)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


def test_no_module_over_400_lines():
    modules = sorted(p for package in ("fgclip_doctor", "fgclip") for p in (REPO / package).rglob("*.py"))
    assert len(modules) > 50
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in modules}
    assert not {m: n for m, n in sizes.items() if n > MAX_LINES}, f"modules over {MAX_LINES} lines"
