"""Benchmark: `fgclip-doctor check-data` vs a plain json.loads-per-line loop doing the same checks.

Generates FG-CLIP annotations (.jsonl, 4 boxes per record with short / long captions and 10
hard-negative rewrites each, about 2.9 KB per record, a few known defects) in a temp dir: the
first 100k records and the whole 1M. Then, in the same run and on warm page cache:
  - records/s of a cold `python -m fgclip_doctor check-data FILE --format json` (all cores)
    vs a cold single-process baseline script (text-mode line loop, json.loads, the same checks
    through the same fgclip.boxes functions), whose counts must equal check-data's exactly;
  - CPU time per record of both (user + system of the command and every process it waited for:
    getrusage(RUSAGE_CHILDREN) of a probe process, so check-data's workers count);
  - peak memory (max RSS of the largest process in the tree) of check-data at 100k vs 1M records;
  - decode alone, per record, on 20000 of the bench's records: json.loads, orjson.loads, and
    the msgspec typed decoder check-data's fast path uses (sources/data/bulk.py), which was
    chosen on these numbers.
Targets (issue 21): check-data >= 6x the baseline's records/s at 1M records on the 2-core
machine, CPU per record >= 3x lower, peak memory within 1.2x between 100k and 1M records. The
CPU ratio holds under load; the wall ratio needs both cores free (the load average is printed).

`--big`: a 12M-record run (FineHARD's size), generated, not stored: a folder of 12 links to the
1M-record file (12x its bytes read, nothing more written); prints check-data's wall time,
records/s and CPU per record, and checks its counts are 12x the known defects. No baseline
there (it would take ~20 minutes).

`--layout array` (issue 11): the same records as one JSON array per file (FG-CLIP's native
layout) at 100k, 300k (--mid) and 1M; the baseline `json.load`s the file and loops over it
(at 100k and 300k only: at 1M it needs ~10 GB). Targets: check-data's records/s at 300k at least
the baseline's; its peak memory 1M / 100k <= 1.2x while the baseline's grows with the file.
In an array a truncated record would break the whole file, so that defect slot is a zero-area
box there.

    python bench/check_data.py [--layout jsonl|array] [--records 1000000] [--small 100000]
                               [--mid 300000] [--runs 1] [--keep DIR] [--big]
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
BASELINE = r"""
import json, sys
from fgclip.boxes import box_problem, looks_like_pixels, smaller_than_cell
counts = dict.fromkeys(["not_json", "not_object", "missing_fields", "malformed", "nonfinite",
    "inverted", "zero_area", "out_of_range", "pixel_coords", "tiny", "empty_caption",
    "negatives_malformed", "negatives_short", "over_max", "loader_crash"], 0)
records = boxes = 0

def fgclip_raises(e):  # FG-CLIP's __getitem__ on one of a record's first 4 entries
    if not isinstance(e, dict) or "bbox" not in e:
        return True
    b = e["bbox"]
    if not isinstance(b, (list, tuple)) or len(b) < 4 or not all(type(v) in (int, float, bool) for v in b[:4]):
        return True
    return b[0] > b[2] or b[1] > b[3]

def lines(f):
    for line in f:
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                yield ValueError
with open(sys.argv[1], encoding="utf-8") as f:
    for rec in (json.load(f) if sys.argv[2:] == ["array"] else lines(f)):
        records += 1
        if rec is ValueError:
            counts["not_json"] += 1
            continue
        if not isinstance(rec, dict):
            counts["not_object"] += 1
            counts["loader_crash"] += 1
            continue
        missing = any(not isinstance(rec.get(k), t) for k, t in
               (("f_path", str), ("caption", str), ("short_caption", str), ("bbox_info", list))) or not rec["f_path"]
        counts["missing_fields"] += missing
        info = rec.get("bbox_info") if isinstance(rec.get("bbox_info"), list) else []
        counts["loader_crash"] += missing or any(fgclip_raises(e) for e in info[:4])
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
"""


def caption(rng: random.Random) -> str:
    return f"{rng.choice(('small', 'large'))} {rng.choice(COLOURS)} {rng.choice(KINDS)} {rng.choice(PLACES)}"


def templates(n: int, seed: int = 0) -> list[str]:
    """n distinct FG-CLIP records as JSON text with an {IDX} placeholder in f_path."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        info = []
        for _ in range(4):
            x1, y1 = rng.uniform(0, 0.5), rng.uniform(0, 0.5)
            box = [
                round(x1, 4),
                round(y1, 4),
                round(x1 + rng.uniform(0.1, 0.5), 4),
                round(y1 + rng.uniform(0.1, 0.5), 4),
            ]
            short = caption(rng)
            info.append(
                {
                    "bbox": box,
                    "short_expr": short,
                    "long_expr": f"a {short} of the image, drawn on grey",
                    "flag_short_neg": 1,
                    "short_expr_negs": {str(j): caption(rng) for j in range(10)},
                }
            )
        out.append(
            json.dumps(
                {
                    "f_path": "images/{IDX}.jpg",
                    "caption": "a picture with four shapes on a plain grey background. there is "
                    + ", ".join(f"a {e['short_expr']}" for e in info)
                    + ".",
                    "short_caption": ", ".join(e["short_expr"].split(" at ")[0] for e in info),
                    "bbox_info": info,
                }
            )
        )
    return out


def defect(i: int, good: str, layout: str) -> tuple[str, tuple[str, ...]]:
    """The defect for defect slot i: (record text, categories it adds one to)."""
    kind = (i // DEFECT_EVERY) % 4
    rec = json.loads(good)
    if kind == 0 and layout == "jsonl":
        return good[: len(good) // 2], ("not_json",)  # a truncated write
    if kind == 0:  # in an array a truncated record breaks the file: a zero-area box instead
        b = rec["bbox_info"][2]["bbox"]
        rec["bbox_info"][2]["bbox"] = [b[0], b[1], b[0], b[3]]
        return json.dumps(rec), ("zero_area",)
    if kind == 1:
        rec["bbox_info"][0]["bbox"] = [12, 30, 200, 180]
        return json.dumps(rec), ("pixel_coords",)
    if kind == 2:  # among the first 4: FG-CLIP's loader raises on it
        b = rec["bbox_info"][1]["bbox"]
        rec["bbox_info"][1]["bbox"] = [b[2], b[1], b[0], b[3]]
        return json.dumps(rec), ("inverted", "loader_crash")
    del rec["bbox_info"]
    return json.dumps(rec), ("missing_fields", "loader_crash")


def generate(folder: Path, sizes: dict[str, int], layout: str) -> dict[str, tuple[Path, dict]]:
    """Write one file per size (each the first n records of the largest) in `layout`
    ("jsonl" or "array"); {size name: (path, known defect counts)}."""
    pool, n = templates(1000), max(sizes.values())
    suffix = ".jsonl" if layout == "jsonl" else ".json"
    out = {name: (folder / f"{name}{suffix}", {}) for name in sizes}
    files = {name: open(path, "w") for name, (path, _) in out.items()}
    try:
        if layout == "array":
            for f in files.values():
                f.write("[")
        for i in range(n):
            line, cats = pool[i % len(pool)].replace("{IDX}", str(i), 1), ()
            if i % DEFECT_EVERY == DEFECT_EVERY - 1:
                line, cats = defect(i, line, layout)
            for name, f in files.items():
                if i < sizes[name]:
                    f.write(line + "\n" if layout == "jsonl" else ("," if i else "") + line)
                    for cat in cats:
                        out[name][1][cat] = out[name][1].get(cat, 0) + 1
        if layout == "array":
            for f in files.values():
                f.write("]\n")
    finally:
        for f in files.values():
            f.close()
    return out


# Runs `cmd` as a fresh child and reports, for it and the workers it waited for: wall seconds,
# CPU seconds (user + system) and the peak RSS of the largest process (KiB). RUSAGE_CHILDREN keeps
# a running max / sum, hence one probe process per measurement.
PROBE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "w = time.perf_counter() - t; r = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr[-2000:]); "
    "sys.stderr.write(f'\\n@@{w} {r.ru_utime + r.ru_stime} {r.ru_maxrss} {p.returncode}')"
)


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


def decode_costs(path: Path, n: int = 20_000) -> tuple[int, dict[str, float]]:
    """CPU us per record of decoding alone, best of 3, GC off: json.loads (the baseline's),
    orjson.loads, and check-data's msgspec typed decoder."""
    import gc

    import orjson

    from fgclip_doctor.sources.data.bulk import _REFUSED, record_decoder

    with open(path, "rb") as fh:
        lines = [line for _, line in zip(range(n), fh) if line.strip()]
    texts = [line.decode() for line in lines]
    typed = record_decoder(4, 10).decode

    def typed_or_none(line):
        try:
            return typed(line)
        except _REFUSED:  # a defect slot: check-data hands it to the reference path
            return None

    ways = {"json.loads": (json.loads, texts), "orjson.loads": (orjson.loads, lines)}
    ways["msgspec typed (check-data)"] = (typed_or_none, lines)
    out, enabled = {}, gc.isenabled()
    gc.disable()
    try:
        for name, (fn, data) in ways.items():
            best = float("inf")
            for _ in range(3):
                t = time.process_time()
                for x in data:
                    try:
                        fn(x)
                    except ValueError:
                        pass
                best = min(best, time.process_time() - t)
            out[name] = best / len(data) * 1e6
    finally:
        if enabled:
            gc.enable()
    return len(lines), out


def big_run(tmp: Path, big: Path, n: int, known: dict, copies: int = 12) -> None:
    """check-data over `copies` links to the n-record file: n * copies records, none stored."""
    folder = tmp / f"big-x{copies}"
    folder.mkdir(exist_ok=True)
    for i in range(copies):
        link = folder / f"part-{i:02d}.jsonl"
        if not link.is_symlink():
            link.symlink_to(big.resolve())
    wall, cpu, peak, out = timed(doctor(folder))
    records, counts = doctor_counts(out)
    expected = {c: v * copies for c, v in known.items()}
    assert records == n * copies and {c: v for c, v in counts.items() if v} == expected, (counts, expected)
    print(
        f"--big: {records:,} records ({copies} links to the {n:,}-record file, "
        f"{copies * big.stat().st_size / 1e9:.1f} GB read, nothing more stored): check-data {wall:.1f} s wall, "
        f"{records / wall:,.0f} records/s, CPU {cpu / records * 1e6:.1f} us/record, peak RSS {peak / 1024:.0f} MiB; "
        f"counts == {copies} x known defects; load average (1 min) {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", choices=("jsonl", "array"), default="jsonl")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--mid", type=int, default=300_000, help="--layout array: the speed comparison's size")
    ap.add_argument("--runs", type=int, default=1, help="runs of each command (best is reported)")
    ap.add_argument("--keep", type=Path, help="generate into (or reuse) this folder instead of a temp dir")
    ap.add_argument("--big", action="store_true", help="also a 12M-record run: 12 links to the 1M-record file")
    args = ap.parse_args()
    array = args.layout == "array"
    sizes = {"small": args.small, "big": args.records} | ({"mid": args.mid} if array else {})
    baseline_sizes = ("small", "mid") if array else ("small", "big")  # json.load of 1M: ~10 GB
    speed_size = "mid" if array else "big"
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-check-data-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        meta = tmp / f"known-{args.layout}.json"  # --keep: reuse files generated with the same sizes
        if meta.exists() and json.loads(meta.read_text())["sizes"] == sizes:
            files = {k: (Path(p), known) for k, (p, known) in json.loads(meta.read_text())["files"].items()}
        else:
            files = generate(tmp, sizes, args.layout)
            meta.write_text(json.dumps({"sizes": sizes, "files": {k: (str(p), kn) for k, (p, kn) in files.items()}}))
        big = files["big"][0]
        print(
            f"layout {args.layout}: generated {args.records} records ({big.stat().st_size / 1e9:.2f} GB) and the "
            f"first {', '.join(str(sizes[k]) for k in sizes if k != 'big')} in {time.perf_counter() - t:.0f} s; "
            f"known defects in {args.records}: {files['big'][1]}"
        )
        for f, _ in files.values():  # warm page cache: both sides read from memory
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        print(f"load average (1 min) at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        base_script = tmp / "baseline.py"
        base_script.write_text(BASELINE)
        best: dict[tuple[str, str], tuple[float, float, int, str]] = {}
        order = sorted(sizes, key=sizes.get)
        for _ in range(args.runs):  # interleaved, so a busy moment hits both sides
            for size in order:
                path = files[size][0]
                cmds = [("check-data", doctor(path))]
                if size in baseline_sizes:
                    cmds.insert(0, ("baseline", [sys.executable, str(base_script), str(path), args.layout]))
                for name, cmd in cmds:
                    run = timed(cmd)
                    if (name, size) not in best or run[0] < best[(name, size)][0]:
                        best[(name, size)] = run
        for size in order:
            known, n = files[size][1], sizes[size]
            records, counts = doctor_counts(best[("check-data", size)][3])
            assert records == n and {c: v for c, v in counts.items() if v} == known, (size, counts, known)
            if size in baseline_sizes:
                base = json.loads(best[("baseline", size)][3])
                assert base["records"] == n and counts == base["counts"], (size, counts, base)
        cpus = os.cpu_count()
        print(
            f"machine: {cpus} cores; check-data counts == known defects (every size) == baseline counts "
            f"({', '.join(baseline_sizes)})"
        )
        print(
            f"{'':>12} {'records':>9} {'wall s':>8} {'records/s':>10} {'CPU s':>8} {'CPU us/rec':>10} "
            f"{'peak RSS MiB':>13}"
        )
        for (name, size), (wall, cpu, peak, _) in sorted(best.items(), key=lambda kv: (sizes[kv[0][1]], kv[0][0])):
            n = sizes[size]
            print(
                f"{name:>12} {n:>9} {wall:>8.2f} {n / wall:>10,.0f} {cpu:>8.2f} {cpu / n * 1e6:>10.1f} "
                f"{peak / 1024:>13.1f}"
            )
        speed = best[("baseline", speed_size)][0] / best[("check-data", speed_size)][0]
        cpu_ratio = best[("baseline", speed_size)][1] / best[("check-data", speed_size)][1]
        mem = best[("check-data", "big")][2] / best[("check-data", "small")][2]
        target = "1x" if array else "6x"
        print(
            f"speed-up (records/s) vs baseline at {sizes[speed_size]}: {speed:.2f}x (target >= {target}); "
            f"CPU per record, baseline / check-data: {cpu_ratio:.2f}x" + ("" if array else " (target >= 3x)")
        )
        print(f"check-data peak memory {args.records} / {args.small}: {mem:.3f}x (target <= 1.2x)")
        if array:
            grow = best[("baseline", "mid")][2] / best[("baseline", "small")][2]
            print(f"baseline (json.load) peak memory {args.mid} / {args.small}: {grow:.2f}x")
        print(
            f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {cpus} cores "
            "(other work on the machine takes cores from check-data's workers, not from the single-process baseline)"
        )
        if array:
            return
        decoded, costs = decode_costs(files["small"][0])
        print(
            f"decode alone, CPU us/record on {decoded} of these records: "
            + ", ".join(f"{k} {v:.2f}" for k, v in costs.items())
            + f" (msgspec {costs['orjson.loads'] / costs['msgspec typed (check-data)']:.2f}x less than orjson)"
        )
        if args.big:
            big_run(tmp, big, args.records, files["big"][1])
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
