"""Benchmark: what each install costs, from an empty venv: time and size on disk.

    core          pip install -e .                       what a CI runner needs (no torch, no transformers)
    core + HF     pip install -e . "transformers==X"     the same, typing flags against TrainingArguments
    subject       pip install torch==T; pip install -e ".[subject]"   the bundled subject: torch, transformers 5

Each venv is built in a temporary folder with this interpreter's `venv`, through pip as configured
here (its index, find-links and cache: a local CPU wheel of torch where there is one; elsewhere pass
`--torch-index https://download.pytorch.org/whl/cpu`, or the public index's default CUDA build is
measured). Prints seconds and MB per install and each one's ratio to the core; the venvs are deleted.

    python bench/install_size.py [--torch 2.13.0] [--transformers 4.57.6] [--torch-index URL] [--only core]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def folder_bytes(path: Path) -> int:
    """Bytes of every regular file under `path` (links not followed: a venv's python is a link)."""
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            p = Path(base) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def build(where: Path, steps: list[list[str]]) -> tuple[float, int]:
    """(seconds, bytes) of a new venv at `where` after each `pip install` step in `steps`."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    start = time.perf_counter()
    for args in steps:
        subprocess.run(pip + args, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    for name in ("torch", "transformers"):
        found = subprocess.run([str(where / "bin" / "python"), "-c", f"import {name}"], capture_output=True).returncode
        print(f"  {where.name}: {name} {'present' if found == 0 else 'absent'}")
    return seconds, folder_bytes(where)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch", default="2.13.0", help="the torch version of the subject install")
    ap.add_argument("--transformers", default="4.57.6", help="the transformers of the core + HF install")
    ap.add_argument("--torch-index", help="the index torch comes from (https://download.pytorch.org/whl/cpu)")
    ap.add_argument("--only", choices=("core", "core+hf", "subject"), action="append")
    args = ap.parse_args()
    torch_step = [f"torch=={args.torch}"] + (["--index-url", args.torch_index] if args.torch_index else [])
    installs = {
        "core": [["-e", "."]],
        "core+hf": [["-e", ".", f"transformers=={args.transformers}"]],
        "subject": [torch_step, ["-e", ".[subject]"]],
    }
    rows: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="fgclip-install-") as tmp:
        for name, steps in installs.items():
            if args.only and name not in args.only:
                continue
            print(f"building {name} ...", flush=True)
            rows[name] = build(Path(tmp) / name.replace("+", "-"), steps)
    print(f"\n{'install':<10} {'seconds':>8} {'MB':>8}   vs core (time, size)")
    core = rows.get("core")
    for name, (seconds, size) in rows.items():
        ratio = f"{seconds / core[0]:.1f} x, {size / core[1]:.1f} x" if core else "-"
        print(f"{name:<10} {seconds:>8.1f} {size / 1e6:>8.0f}   {ratio}")


if __name__ == "__main__":
    main()
