"""Benchmark: `fgclip-doctor check-data` vs a plain json.loads-per-line loop doing the same checks.

Generates FG-CLIP annotations (.jsonl, 4 boxes per record with short / long captions and 10
hard-negative rewrites each, about 2.9 KB per record, a few known defects) in a temp dir: the
first 100k records and the whole 1M. Then, in the same run and on warm page cache:
  - records/s of a cold `python -m fgclip_doctor check-data FILE --format json` (all cores)
    vs a cold single-process baseline script (text-mode line loop, json.loads, the same checks
    through the same fgclip.boxes functions), whose counts must equal check-data's exactly;
  - peak memory (max RSS of the largest process in the tree, /usr/bin/time %M or
    getrusage(RUSAGE_CHILDREN)) of check-data at 100k vs 1M records.
Targets (issue 6): check-data >= 3x the baseline's records/s on the 2-core machine; peak memory
within 1.2x between 100k and 1M records.

    python bench/check_data.py [--records 1000000] [--small 100000] [--runs 1] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
KINDS = ("circle", "square", "triangle", "star", "hexagon")
PLACES = ("at the top left", "at the top right", "in the centre", "at the bottom left", "at the bottom right")
DEFECT_EVERY = 10_007  # a prime: defects land at varied offsets inside the byte ranges

# The baseline: what one would write by hand. Same categories, same fgclip.boxes functions.
BASELINE = r'''
import json, sys
from fgclip.boxes import box_problem, looks_like_pixels, smaller_than_cell
counts = dict.fromkeys(["not_json", "not_object", "missing_fields", "malformed", "nonfinite",
    "inverted", "zero_area", "out_of_range", "pixel_coords", "tiny", "empty_caption",
    "negatives_malformed", "negatives_short", "over_max"], 0)
records = boxes = 0
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        if not line.strip():
            continue
        records += 1
        try:
            rec = json.loads(line)
        except ValueError:
            counts["not_json"] += 1
            continue
        if not isinstance(rec, dict):
            counts["not_object"] += 1
            continue
        if any(not isinstance(rec.get(k), t) for k, t in
               (("f_path", str), ("caption", str), ("short_caption", str), ("bbox_info", list))) or not rec["f_path"]:
            counts["missing_fields"] += 1
        info = rec.get("bbox_info") if isinstance(rec.get("bbox_info"), list) else []
        valid = 0
        for e in info:
            boxes += 1
            box = e.get("bbox") if isinstance(e, dict) else None
            p = box_problem(box)
            if p == "out_of_range" and looks_like_pixels(box):
                p = "pixel_coords"
            if p:
                counts[p] += 1
                continue
            valid += 1
            if smaller_than_cell(box, 14):
                counts["tiny"] += 1
            cap = e.get("short_expr") or e.get("long_expr")
            if not isinstance(cap, str) or not cap.strip():
                counts["empty_caption"] += 1
            if e.get("flag_short_neg") == 1:
                negs = e.get("short_expr_negs")
                negs = list(negs.values()) if isinstance(negs, dict) else negs
                if not isinstance(negs, list) or not all(isinstance(n, str) and n for n in negs):
                    counts["negatives_malformed"] += 1
                elif len(negs) < 10:
                    counts["negatives_short"] += 1
        if valid > 4:
            counts["over_max"] += 1
print(json.dumps({"records": records, "boxes": boxes, "counts": counts}))
'''


def caption(rng: random.Random) -> str:
    return f"{rng.choice(('small', 'large'))} {rng.choice(COLOURS)} {rng.choice(KINDS)} {rng.choice(PLACES)}"


def templates(n: int, seed: int = 0) -> list[str]:
    """n distinct FG-CLIP records as JSON text with an {IDX} placeholder in f_path."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        info = []
        for _ in range(4):
            x1, y1 = rng.uniform(0, 0.5), rng.uniform(0, 0.5)
            box = [round(x1, 4), round(y1, 4), round(x1 + rng.uniform(0.1, 0.5), 4), round(y1 + rng.uniform(0.1, 0.5), 4)]
            short = caption(rng)
            info.append({"bbox": box, "short_expr": short, "long_expr": f"a {short} of the image, drawn on grey",
                         "flag_short_neg": 1, "short_expr_negs": {str(j): caption(rng) for j in range(10)}})
        out.append(json.dumps({"f_path": "images/{IDX}.jpg",
                               "caption": "a picture with four shapes on a plain grey background. there is "
                                          + ", ".join(f"a {e['short_expr']}" for e in info) + ".",
                               "short_caption": ", ".join(e["short_expr"].split(" at ")[0] for e in info),
                               "bbox_info": info}))
    return out


def defect(i: int, good: str) -> tuple[str, str]:
    """The defect for defect slot i: (line, category it adds one to)."""
    kind = (i // DEFECT_EVERY) % 4
    if kind == 0:
        return good[: len(good) // 2], "not_json"  # a truncated write
    if kind == 1:
        rec = json.loads(good)
        rec["bbox_info"][0]["bbox"] = [12, 30, 200, 180]
        return json.dumps(rec), "pixel_coords"
    if kind == 2:
        rec = json.loads(good)
        b = rec["bbox_info"][1]["bbox"]
        rec["bbox_info"][1]["bbox"] = [b[2], b[1], b[0], b[3]]
        return json.dumps(rec), "inverted"
    rec = json.loads(good)
    del rec["bbox_info"]
    return json.dumps(rec), "missing_fields"


def generate(folder: Path, n: int, small: int) -> tuple[Path, Path, dict, dict]:
    """Write big.jsonl (n records) and small.jsonl (its first `small`); known defect counts of each."""
    pool = templates(1000)
    known_small, known_big = {}, {}
    with open(folder / "big.jsonl", "w") as big, open(folder / "small.jsonl", "w") as sm:
        for i in range(n):
            line = pool[i % len(pool)].replace("{IDX}", str(i), 1)
            if i % DEFECT_EVERY == DEFECT_EVERY - 1:
                line, cat = defect(i, line)
                known_big[cat] = known_big.get(cat, 0) + 1
                if i < small:
                    known_small[cat] = known_small.get(cat, 0) + 1
            big.write(line + "\n")
            if i < small:
                sm.write(line + "\n")
    return folder / "small.jsonl", folder / "big.jsonl", known_small, known_big


# Runs `cmd` as a fresh child and reports, for it and the workers it waited for: wall seconds,
# CPU seconds (user + system) and the peak RSS of the largest process (KiB). RUSAGE_CHILDREN keeps
# a running max / sum, hence one probe process per measurement.
PROBE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
         "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
         "w = time.perf_counter() - t; r = resource.getrusage(resource.RUSAGE_CHILDREN); "
         "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr[-2000:]); "
         "sys.stderr.write(f'\\n@@{w} {r.ru_utime + r.ru_stime} {r.ru_maxrss} {p.returncode}')")


def timed(cmd: list[str]) -> tuple[float, float, int, str]:
    """(wall s, CPU s, peak RSS KiB, stdout) of one cold run of `cmd`."""
    out = subprocess.run([sys.executable, "-c", PROBE, *cmd], cwd=ROOT, capture_output=True, text=True)
    err, stats = out.stderr.rsplit("@@", 1)
    wall, cpu, peak, code = stats.split()
    if int(code) not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{err}")
    return float(wall), float(cpu), int(peak), out.stdout


def doctor(path: Path) -> list[str]:
    return [sys.executable, "-m", "fgclip_doctor", "check-data", str(path), "--format", "json"]


def doctor_counts(stdout: str) -> tuple[int, dict]:
    doc = json.loads(stdout)
    cats = doc["data"]["categories"]
    return doc["data"]["records"], {c: v["count"] for c, v in cats.items() if not c.endswith("_image")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=1, help="runs of each command (best is reported)")
    ap.add_argument("--keep", type=Path, help="generate into (or reuse) this folder instead of a temp dir")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-check-data-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        meta = tmp / "known.json"  # --keep: reuse files generated with the same sizes
        if meta.exists() and json.loads(meta.read_text())["sizes"] == [args.records, args.small]:
            known_small, known_big = json.loads(meta.read_text())["known"]
            small, big = tmp / "small.jsonl", tmp / "big.jsonl"
        else:
            small, big, known_small, known_big = generate(tmp, args.records, args.small)
            meta.write_text(json.dumps({"sizes": [args.records, args.small], "known": [known_small, known_big]}))
        print(f"generated {args.records} records ({big.stat().st_size / 1e9:.2f} GB) and the first "
              f"{args.small} in {time.perf_counter() - t:.0f} s; known defects in {args.records}: {known_big}")
        for f in (small, big):  # warm page cache: both sides read from memory
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        base_script = tmp / "baseline.py"
        base_script.write_text(BASELINE)
        best: dict[tuple[str, str], tuple[float, float, int, str]] = {}
        for _ in range(args.runs):  # interleaved, so a busy moment hits both sides
            for size, path in (("small", small), ("big", big)):
                for name, cmd in (("baseline", [sys.executable, str(base_script), str(path)]),
                                  ("check-data", doctor(path))):
                    run = timed(cmd)
                    if (name, size) not in best or run[0] < best[(name, size)][0]:
                        best[(name, size)] = run
        for size, known, n in (("small", known_small, args.small), ("big", known_big, args.records)):
            base = json.loads(best[("baseline", size)][3])
            records, counts = doctor_counts(best[("check-data", size)][3])
            assert records == base["records"] == n, (records, base["records"], n)
            assert counts == base["counts"], (counts, base["counts"])
            assert {c: v for c, v in counts.items() if v} == known, (counts, known)
        cpus = os.cpu_count()
        print(f"machine: {cpus} cores; check-data counts == baseline counts == known defects (both sizes)")
        print(f"{'':>12} {'records':>9} {'wall s':>8} {'records/s':>10} {'CPU s':>8} {'CPU us/rec':>10} {'peak RSS MiB':>13}")
        for (name, size), (wall, cpu, peak, _) in sorted(best.items(), key=lambda kv: (kv[0][1] != "small", kv[0][0])):
            n = args.small if size == "small" else args.records
            print(f"{name:>12} {n:>9} {wall:>8.2f} {n / wall:>10,.0f} {cpu:>8.2f} {cpu / n * 1e6:>10.1f} {peak / 1024:>13.1f}")
        speed = best[("baseline", "big")][0] / best[("check-data", "big")][0]
        speed_small = best[("baseline", "small")][0] / best[("check-data", "small")][0]
        cpu_ratio = best[("baseline", "big")][1] / best[("check-data", "big")][1]
        mem = best[("check-data", "big")][2] / best[("check-data", "small")][2]
        print(f"speed-up (records/s) vs baseline at {args.records}: {speed:.2f}x (target >= 3x); at {args.small}: {speed_small:.2f}x")
        print(f"CPU per record, baseline / check-data: {cpu_ratio:.2f}x (the speed-up a fully idle machine "
              f"could add parallelism to: at most {cpu_ratio * min(cpus, 2 if cpus else 1):.2f}x on {min(cpus, 2)} cores)")
        print(f"check-data peak memory {args.records} / {args.small}: {mem:.3f}x (target <= 1.2x)")
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {cpus} cores "
              "(other work on the machine takes cores from check-data's workers, not from the single-process baseline)")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
