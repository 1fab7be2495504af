"""check-data: FG-CLIP annotations -> streaming multi-core scan -> facts -> D rules -> report.

The box checks are the subject loader's own (`fgclip.boxes.box_problem`), so what this command
flags is exactly what training would drop. Never writes into the annotations: `--write-clean`
must point outside them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.table import Table

from fgclip_doctor.checks.registry import run_rules, selected_rules
from fgclip_doctor.errors import DoctorUsageError
from fgclip_doctor.report import Report
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.data.formats import layout
from fgclip_doctor.sources.data.scan import (
    CATEGORIES,
    CHUNK_BYTES,
    ScanOptions,
    ScanResult,
    annotation_files,
    scan,
    sizes_summary,
    to_facts,
)


def refuse_in_place(data: Path, out: Path) -> None:
    """DoctorUsageError when `out` is an input file, lies inside an input folder, or is a folder."""
    target = out.resolve()
    if target.is_dir():
        raise DoctorUsageError(f"{out}: --write-clean needs a file name, not a folder")
    if not target.parent.is_dir():
        raise DoctorUsageError(f"{out}: --write-clean folder {target.parent} does not exist")
    inputs = [f.resolve() for f in annotation_files(data)]
    if target in inputs or (data.is_dir() and data.resolve() in target.parents):
        raise DoctorUsageError(
            f"{out}: --write-clean would write into the inspected {data}; write the clean copy elsewhere"
        )


def _examples(r: ScanResult, cat: str, n: int = 3) -> str:
    return "\n".join(r.examples.get(cat, [])[:n])


def defects_table(r: ScanResult) -> Table:
    """Per category with a nonzero count: unit, count, ratio, what it is, first examples."""
    table = Table(header_style="bold", box=None, pad_edge=False)
    for name in ("category", "count", "ratio", "what", "examples (file:line)"):
        table.add_column(name, overflow="fold", no_wrap=name in ("category", "count", "ratio"))
    for cat, (unit, what) in CATEGORIES.items():
        if r.counts.get(cat):
            table.add_row(cat, f"{r.counts[cat]} {unit}", f"{100 * r.ratio(cat):.3g} %", what, _examples(r, cat))
    if not table.rows:
        table.add_row("(none)", "0", "0 %", "no defect found", "")
    return table


def summary_table(r: ScanResult, seconds: float) -> Table:
    """What was scanned, how fast, and what --write-clean wrote."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("what")
    table.add_column("value")
    files = r.files[0] if len(r.files) == 1 else f"{len(r.files)} files in {r.path}"
    rows = [
        ("annotations", files),
        ("records", str(r.records)),
        ("boxes", f"{r.boxes} ({r.valid_boxes} valid)"),
        (
            "options",
            f"grid {r.options.grid} · max boxes {r.options.max_boxes} · {r.options.num_negatives} hard negatives",
        ),
        (
            "scan",
            f"{r.bytes / 1e6:.1f} MB in {seconds:.2f} s · {r.workers} "
            f"worker{'s' if r.workers > 1 else ''} · "
            f"{r.records / max(seconds, 1e-9):,.0f} records/s",
        ),
    ]
    if r.options.image_root is not None:
        rows.append(("images", f"{r.images_checked} checked under {r.options.image_root}"))
    if (sizes := sizes_summary(r)) is not None:
        common = ", ".join(f"{k} ({n})" for k, n in sizes["common"].items())
        rows.append(("image sizes", f"{sizes['min']} .. {sizes['max']} · most common {common}"))
    if r.clean is not None:
        rows.append(("clean copy", f"{r.clean[0]}: {r.clean[1]} records, {r.clean[2]} boxes"))
    for row in rows:
        table.add_row(*row)
    return table


def data_json(r: ScanResult, seconds: float) -> dict:
    """The report's extra "data" key: every category with unit, count, ratio and examples."""
    return {
        "records": r.records,
        "boxes": r.boxes,
        "valid_boxes": r.valid_boxes,
        "files": r.files,
        "workers": r.workers,
        "seconds": round(seconds, 3),
        "categories": {
            cat: {
                "unit": unit,
                "count": r.counts.get(cat, 0),
                "ratio": r.ratio(cat),
                "what": what,
                "examples": r.examples.get(cat, []),
            }
            for cat, (unit, what) in CATEGORIES.items()
        },
        "image_sizes": sizes_summary(r),
        "clean": None if r.clean is None else dict(zip(("path", "records", "boxes"), r.clean)),
    }


class ProgressBar:
    """A rich progress bar in bytes on stderr, or nothing (not a terminal, or turned off).

    Refreshed on each finished range rather than by rich's refresh thread: the scan forks its
    worker pool, and forking a process that runs threads risks deadlocks.
    """

    def __init__(self, total: int, enabled: bool | None = None) -> None:
        self.bar = None
        if sys.stderr.isatty() if enabled is None else enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                TextColumn("check-data"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                auto_refresh=False,
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.bar.add_task("scan", total=total)

    def __enter__(self) -> ProgressBar:
        if self.bar is not None:
            self.bar.start()
            self.bar.refresh()
        return self

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)
            self.bar.refresh()

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def build_report(
    path: Path,
    settings: Settings,
    image_root: Path | None = None,
    check_images: bool = False,
    grid: int = 14,
    workers: int | None = None,
    max_boxes: int = 4,
    examples: int = 5,
    *,
    write_clean: Path | None = None,
    num_negatives: int = 10,
    chunk_bytes: int = CHUNK_BYTES,
    progress: bool | None = None,
) -> Report:
    """The whole check-data pipeline (DoctorInputError / DoctorUsageError / OSError on bad input).

    `workers` None = all cores; `examples` = K examples kept per category; `write_clean` = also
    write a JSONL copy with the valid records and only their valid boxes (never in place).
    """
    path = Path(path)
    if check_images and image_root is None:
        raise DoctorUsageError("--check-images needs --image-root (the folder f_path is relative to)")
    selected_rules("D", settings)  # unknown --select / thresholds fail before a long scan
    if write_clean is not None:
        refuse_in_place(path, Path(write_clean))
    opts = ScanOptions(
        grid=grid,
        max_boxes=max_boxes,
        num_negatives=num_negatives,
        examples=examples,
        image_root=None if image_root is None else str(image_root),
        check_images=check_images,
    )
    start = time.perf_counter()
    total = sum(f.stat().st_size for f in annotation_files(path))
    with ProgressBar(total, progress) as bar:
        result = scan(path, opts, workers, write_clean, chunk_bytes, bar.advance)
    seconds = time.perf_counter() - start
    facts = to_facts(result)
    findings = run_rules(facts, "D", settings, command="check-data")
    lines = [f"fgclip-doctor check-data · {path} · {result.records} records · {result.boxes} boxes"]
    if len(result.files) == 1 and layout(result.files[0]) == "array":
        lines.append("note: a JSON array is one document: streamed, but by one worker")
    return Report(
        "check-data",
        str(path),
        facts,
        findings,
        title_lines=lines,
        sections=[("Data", summary_table(result, seconds)), ("Defects", defects_table(result))],
        extra={"data": data_json(result, seconds)},
    )
