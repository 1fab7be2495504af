"""check-data's source: a streaming, multi-core scan of FG-CLIP annotations -> counts, examples.

Input is what FG-CLIP's `--data_path` takes (a file, a `.txt` list of files, or a folder of
`*.json` then `*.jsonl`; each file one JSON array or JSON Lines: sources/data/formats.py), read as
`fgclip.data.read_annotations` reads it; JSON Lines go a block at a time through the fast path
(bulk.py: msgspec typed structs, boxes checked with numpy), which passes the records with no
defect and hands every other one to `record.RecordChecker` (the subject's own
`fgclip.boxes.box_problem` for every box): counts and examples are the reference's.

Scaling (FG-CLIP: ~12M records, 40M boxes). A `.jsonl` is cut into fixed byte ranges
(CHUNK_BYTES, whatever --workers is, so results never depend on it); a range owns the lines that
*start* in it: its worker seeks there, skips to the next line start and streams its lines. Workers
return counters, line counts and at most K examples per category, merged as they arrive: memory
does not grow with the file. Example lines are range-local until the end, when the ranges' line
counts make them absolute. A JSON array is one document: streamed too (ijson, one item at a
time; examples cite the item's index) but by one worker; a folder spreads its files over them.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.facts import Facts
from fgclip_doctor.sources.data.formats import annotation_files
from fgclip_doctor.sources.data.record import (
    CATEGORIES,
    INVALID,
    TALLY_INTS,
    Partial,
    RecordChecker,
    ScanOptions,
    Tally,
)
from fgclip_doctor.sources.data.tasks import CHUNK_BYTES, Task, plan, read_task

_ORDER = {c: i for i, c in enumerate(CATEGORIES)}


@dataclass
class ScanResult(Tally):
    """The merged scan: totals, counts per category, examples ("file:line: detail")."""

    path: str = ""
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    options: ScanOptions = field(default_factory=ScanOptions)
    workers: int = 1
    examples: dict[str, list[str]] = field(default_factory=dict)
    clean: tuple[str, int, int] | None = None  # (path, records, boxes) written by --write-clean

    def ratio(self, category: str) -> float:
        """count / (boxes or records, by the category's unit); 0 when there are none."""
        total = self.boxes if CATEGORIES[category][0] == "boxes" else self.records
        return self.counts.get(category, 0) / total if total else 0.0


def run_task(job: tuple[ScanOptions, Task]) -> Partial:
    """Worker entry: scan one task. The cyclic GC is paused meanwhile: records are acyclic and
    die young, and json creates enough containers to trigger it every few records."""
    opts, task = job
    part = Partial(task=task.index)
    clean = open(task.clean_part, "w", encoding="utf-8") if task.clean_part else None
    enabled = gc.isenabled()
    gc.disable()
    try:
        chk = RecordChecker(opts, part, clean)
        part.lines = read_task(task, chk)
    finally:
        if enabled:
            gc.enable()
        if clean is not None:
            clean.close()
    return part


# --- merging ---------------------------------------------------------------------------------


class _Merger:
    """Adds up task results as they arrive; keeps the first K examples per category in file order."""

    def __init__(self, result: ScanResult, tasks: list[Task]) -> None:
        self.r, self.tasks = result, tasks
        self.lines: dict[int, int] = {}  # task -> lines it owns (one int per task)
        self.examples: dict[str, list[tuple[int, int, str]]] = {}  # (task, local line, detail)
        self.clean = [0, 0]  # records, boxes written by --write-clean

    def add(self, part: Partial) -> None:
        r = self.r
        for name in TALLY_INTS:
            setattr(r, name, getattr(r, name) + getattr(part, name))
        r.counts.update(part.counts)
        for cat, ex in part.examples.items():
            kept = self.examples.setdefault(cat, [])
            kept.extend((part.task, line, detail) for line, detail in ex)
            kept.sort()
            del kept[r.options.examples :]
        for size, n in part.sizes.items():
            r.add_size(size, n)
        if part.size_lo is not None:  # sizes beyond SIZE_KINDS still widen the range
            r.add_size(part.size_lo, 0)
            r.add_size(part.size_hi, 0)
        self.lines[part.task] = part.lines
        self.clean[0] += part.clean_records
        self.clean[1] += part.clean_boxes

    def finish(self) -> None:
        """Example lines made absolute: a range's offset is the lines of the ranges before it in
        its file (a file's first range starts at byte 0: a .txt list may name a file twice)."""
        offset, run = {}, 0
        for t in self.tasks:
            run = 0 if t.start == 0 else run
            offset[t.index] = run
            run += self.lines.get(t.index, 0)
        for cat in sorted(self.examples, key=_ORDER.get):
            self.r.examples[cat] = [
                f"{self.tasks[t].file}:{offset[t] + line}: {detail}" for t, line, detail in self.examples[cat]
            ]
        self.r.counts = {c: self.r.counts.get(c, 0) for c in CATEGORIES}


def scan(
    path: Path | str,
    opts: ScanOptions | None = None,
    workers: int | None = None,
    clean_out: Path | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """Scan annotations at `path` with `workers` processes (default: all cores).

    `clean_out`: also write a JSONL copy with the valid records (required fields present, image
    found when an image root is given) and only their valid boxes. `progress(n)` is called with
    the bytes of each finished range. DoctorInputError on a missing path / image root; OSError on
    unreadable files.
    """
    path, opts = Path(path), opts if opts is not None else ScanOptions()
    files = annotation_files(path)
    if opts.image_root is not None and not Path(opts.image_root).is_dir():
        raise DoctorInputError(opts.image_root, "--image-root is not a folder")
    tasks = plan(files, chunk_bytes)
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    result = ScanResult(
        path=str(path),
        files=[str(f) for f in files],
        options=opts,
        workers=workers,
        bytes=sum(t.end - t.start for t in tasks),
    )
    tmp = None
    if clean_out is not None:
        tmp = tempfile.mkdtemp(prefix=".fgclip-clean-", dir=Path(clean_out).resolve().parent)
        tasks = [
            Task(t.index, t.file, t.start, t.end, t.kind, os.path.join(tmp, f"{t.index:06d}.jsonl")) for t in tasks
        ]
    merger = _Merger(result, tasks)
    jobs = [(opts, t) for t in tasks]
    pool = multiprocessing.get_context().Pool(workers) if workers > 1 else None
    try:
        for part in pool.imap_unordered(run_task, jobs) if pool else map(run_task, jobs):
            merger.add(part)
            if progress is not None:
                progress(tasks[part.task].end - tasks[part.task].start)
        merger.finish()
        if clean_out is not None:
            _join_clean(tasks, Path(clean_out))
            result.clean = (str(clean_out), *merger.clean)
    finally:
        if pool is not None:
            pool.terminate()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _join_clean(tasks: list[Task], out: Path) -> None:
    """Concatenate the per-task clean parts in order; replace `out` only when complete."""
    partial = out.with_name(out.name + ".part")
    with open(partial, "wb") as dst:
        for t in tasks:
            with open(t.clean_part, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(partial, out)


def sizes_summary(result: ScanResult) -> dict | None:
    """Opened image sizes: {"min", "max", "common": {"WxH": images}} (None when none opened)."""
    if result.size_lo is None:
        return None
    wh = lambda s: f"{s[0]}x{s[1]}"
    return {
        "min": wh(result.size_lo),
        "max": wh(result.size_hi),
        "common": {wh(s): n for s, n in result.sizes.most_common(5)},
    }


def to_facts(result: ScanResult) -> Facts:
    """The scan as facts (see vocabulary.py): totals, one count per category, examples, options.

    Image categories are set only when images were checked (unknown is absent, not zero).
    """
    o, src = result.options, f"check-data scan of {result.path}"
    facts = Facts()
    facts.set("data.path", result.path, "command line")
    facts.set("data.files", result.files, src)
    for name in ("records", "boxes", "valid_boxes", "over_max_boxes"):
        facts.set(f"data.{name}", getattr(result, name), src)
    facts.set("data.invalid_boxes", sum(result.counts[c] for c in INVALID), src)
    crashes = result.examples.get("loader_crash")
    facts.set("data.crash.first", crashes[0] if crashes else None, src)
    kept = result.valid_boxes - result.over_max_boxes
    facts.set("data.boxes_per_image", kept / result.records if result.records else None, src)
    for cat, (unit, _) in CATEGORIES.items():
        if cat.endswith("_image") and o.image_root is None:
            continue
        facts.set(f"data.{'box' if unit == 'boxes' else 'record'}.{cat}", result.counts[cat], src)
        facts.set(f"data.examples.{cat}", result.examples.get(cat) or None, src)
    facts.set("data.grid", o.grid, "--grid")
    facts.set("data.max_boxes", o.max_boxes, "--max-boxes")
    facts.set("data.num_hard_negatives", o.num_negatives, "fgclip.data default num_hard_negatives")
    if o.image_root is not None:
        facts.set("data.image_root", o.image_root, "--image-root")
        facts.set("data.images.checked", result.images_checked, src)
        facts.set("data.images.opened", o.check_images, "--check-images")
        facts.set("data.images.sizes", sizes_summary(result), src)
    if result.clean is not None:
        path, records, boxes = result.clean
        facts.set("data.clean", {"path": path, "records": records, "boxes": boxes}, "--write-clean")
    return facts
