"""The JSON output of every README command that has `--format json`, saved to a folder; or two
such folders compared.

    python tools/json_snapshot.py OUT [--ckpt DIR] [--no-live]   # run the commands, write OUT/*.json
    python tools/json_snapshot.py --compare A B                    # exit 1 when any output differs

Used to show that a refactoring changes no behaviour: snapshot before, snapshot after, compare.
Each command runs in a subprocess (`python -m fgclip_doctor ...`) from a scratch folder holding a
copy of `scripts/`, so that a `runs/` left in the checkout is not resumed. What differs between
two runs of the same code is normalised away: the scratch folder and checkpoint paths become
`<work>` / `<ckpt>`, temporary folders `<tmp>`, and check-data's `seconds` 0. The checkpoint
inspected is written once by a short `python -m fgclip.train --preset tiny` run into `--ckpt`
and reused by later snapshots (training again would change trainer_state's timings).
Needs FGCLIP_CACHE pointing at a prebuilt synthetic set (the README's default run uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commands(ckpt: Path, data: Path, live: bool) -> dict[str, list[str]]:
    """name -> fgclip-doctor arguments (the README's commands, at sizes a CPU runs in minutes)."""
    out = {
        "check-config-default": ["check-config"],
        "check-config-seed-bug": ["check-config", "scripts/seed_bug.sh"],
        "check-config-ucf-full": ["check-config", "scripts/train_ucf_full.sh", "--dataset-size", "120000"],
        "check-config-train-tiny": ["check-config", "scripts/train_tiny.sh"],
        "inspect-ckpt": ["inspect-ckpt", str(ckpt / "checkpoint-10"), "--expect", "region_loss@10<9.0"],
        "inspect-ckpt-run": ["inspect-ckpt", str(ckpt)],
        "check-data": ["check-data", str(data / "train.jsonl"), "--image-root", str(data), "--grid", "8"],
        "check-config-select-fgd1": ["check-config", "--select", "FGD1"],
    }
    if live:
        out["live-10"] = ["live", "--steps", "10"]
        out["live-nproc-2"] = ["live", "scripts/train_tiny.sh", "--nproc", "2", "--steps", "4", "--interval", "2"]
    return out


def train_checkpoint(ckpt: Path, env: dict[str, str]) -> None:
    """A 10-step tiny run saving checkpoint-5 and checkpoint-10 into `ckpt` (once)."""
    if (ckpt / "checkpoint-10").is_dir():
        return
    cmd = [
        sys.executable,
        "-m",
        "fgclip.train",
        "--preset",
        "tiny",
        "--max_steps",
        "10",
        "--save_steps",
        "5",
        "--logging_steps",
        "1",
        "--output_dir",
        str(ckpt),
    ]
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)


def normalise(text: str, work: Path, ckpt: Path) -> object:
    """The JSON document with run-dependent paths and timings replaced."""
    for path, name in (
        (str(ckpt.resolve()), "<ckpt>"),
        (str(ckpt), "<ckpt>"),
        (str(work.resolve()), "<work>"),
        (str(work), "<work>"),
    ):
        text = text.replace(path, name)
    text = re.sub(r"/tmp/fgclip-doctor-[\w-]+", "<tmp>", text)
    doc = json.loads(text)
    if isinstance(doc.get("data"), dict) and "seconds" in doc["data"]:
        doc["data"]["seconds"] = 0
    return doc


def snapshot(out: Path, ckpt: Path, live: bool, only: list[str] | None = None) -> int:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    data = Path(env.get("FGCLIP_CACHE", Path.home() / ".cache" / "fgclip-doctor")) / "synthetic-v1"
    train_checkpoint(ckpt, env)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="fgclip-json-snapshot-") as tmp:
        work = Path(tmp)
        shutil.copytree(REPO / "scripts", work / "scripts")
        for name, args in commands(ckpt, data, live).items():
            if only and name not in only:
                continue
            cmd = [sys.executable, "-m", "fgclip_doctor", *args, "--format", "json"]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
            if proc.returncode not in (0, 1):
                print(f"{name}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
                failures += 1
                continue
            doc = {"exit": proc.returncode, "stdout": normalise(proc.stdout, work, ckpt)}
            (out / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            print(f"{name}: exit {proc.returncode}")
    return 1 if failures else 0


def compare(a: Path, b: Path) -> int:
    """Print one line per output: identical, differs (with the first differing lines), or missing."""
    differ = 0
    for name in sorted({p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")}):
        pa, pb = a / name, b / name
        if not pa.exists() or not pb.exists():
            print(f"{name}: only in {a if pa.exists() else b}")
            differ += 1
            continue
        la, lb = pa.read_text().splitlines(), pb.read_text().splitlines()
        if la == lb:
            print(f"{name}: identical")
            continue
        differ += 1
        import difflib

        diff = list(difflib.unified_diff(la, lb, str(pa), str(pb), n=1, lineterm=""))
        print(f"{name}: DIFFERS")
        print("\n".join(diff[:40]))
    print(f"{differ} differ" if differ else "all identical")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="folder for the JSON outputs")
    parser.add_argument(
        "--ckpt",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fgclip-json-snapshot-ckpt",
        help="run folder of the short training (written once, then reused)",
    )
    parser.add_argument("--no-live", action="store_true", help="leave out `live --steps 10`")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these commands (output names)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("give OUT, or --compare A B")
    return snapshot(args.out, args.ckpt, not args.no_live, args.only)


if __name__ == "__main__":
    sys.exit(main())
