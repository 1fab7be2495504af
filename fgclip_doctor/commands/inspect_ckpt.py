"""inspect-ckpt: target(s) -> facts per checkpoint -> K rules -> report. Never loads a model.

Reading is sources/checkpoint/read.py; this module is the pipeline and its presentation. The
rules judge the newest checkpoint, whose trainer_state.json carries the whole history; the
others become rows of the trajectory table (scales, bank, losses per checkpoint) and feed the
across-checkpoint checks. Files are only ever opened for reading.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from rich.table import Table

from fgclip_doctor.checks.loss_health import parse_expectation
from fgclip_doctor.checks.registry import Status, run_rules
from fgclip_doctor.checks.temperature import fmt_scale
from fgclip_doctor.environment import install_command
from fgclip_doctor.errors import DoctorUsageError
from fgclip_doctor.facts import Facts
from fgclip_doctor.report import Report, sparkline
from fgclip_doctor.series import trend
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.checkpoint.read import Progress, expand, read_checkpoint, trajectory_facts
from fgclip_doctor.sources.files import display_path
from fgclip_doctor.units import forward_call_text, level_text


def build_report(
    paths: list[Path],
    settings: Settings,
    scan: bool = False,
    plot: Path | None = None,
    output: Path | None = None,
    progress: Progress | None = None,
) -> Report:
    """The whole inspect-ckpt pipeline (raises DoctorInputError / DoctorUsageError on bad input)."""
    for text in settings.expect:  # malformed expectations are usage errors before any reading
        parse_expectation(text)
    _check_writes(paths, [p for p in (output, plot) if p is not None])
    if plot is not None:
        _require_matplotlib()
    targets = expand(paths)
    bar = progress if progress is not None or not scan else _rich_progress()
    try:
        ckpts = [read_checkpoint(t, scan, bar) for t in targets]
    finally:
        if hasattr(bar, "close"):
            bar.close()
    latest = ckpts[-1]
    facts = latest.facts
    trajectory_facts(ckpts, facts)
    facts.mark_unknown("train.auto_resume", "inspect-ckpt reads no training code: check-config on the launch tells")
    findings = run_rules(facts, "K", settings, command="inspect-ckpt")
    sections = [("Checkpoint", summary_table(facts))]
    if facts.value("history.loss_keys"):
        sections.append(("Loss terms", loss_table(facts, findings)))
    if len(ckpts) > 1:
        sections.append(("Trajectory", trajectory_table([c.row for c in ckpts])))
    if plot is not None:
        _plot(facts, plot)
    target = ", ".join(display_path(p) for p in paths)
    layout = facts.value("ckpt.layout")
    step = [f"step {latest.step}"] if latest.step is not None else []  # a bare weights file has none
    count = f"{len(ckpts)} checkpoint{'s' if len(ckpts) > 1 else ''}"
    lines = [" · ".join(["fgclip-doctor inspect-ckpt", target, str(layout), *step, count])]
    if layout not in ("fgclip", "fgclip-v1"):
        lines.append(
            f"{layout} layout: not FG-CLIP; the rules that need FG-CLIP's scales, bank or "
            "region head SKIP with the reason"
        )
    if not targets[-1].is_dir():
        lines.append(
            "a bare weights file: no trainer_state.json, config or optimizer state; history and schedule rules SKIP"
        )
    return Report(
        "inspect-ckpt",
        target,
        facts,
        findings,
        title_lines=lines,
        sections=sections,
        extra={"trajectory": [c.row for c in ckpts]},
    )


# ---- tables -------------------------------------------------------------------------------------


def _scale_text(facts: Facts, scale: str) -> str:
    text = fmt_scale(float(facts.value(f"scale.{scale}.value")))
    init = facts.value(f"scale.{scale}.init")
    if init is not None:
        text += (
            f" · init {fmt_scale(float(init))} · drift {float(facts.value(f'scale.{scale}.value')) - float(init):+.4f}"
        )
    return text


def _bank_text(facts: Facts) -> str | None:
    if not facts.value("bank.enabled"):
        return None
    saved = facts.value("bank.persisted") or {}
    if not saved.get("queue"):
        return "not saved in the checkpoint"
    parts = [
        f"{k} {facts.value('bank.' + k)}"
        for k in ("size", "fill", "ptr", "forward_calls")
        if facts.value("bank." + k) is not None
    ]
    at, accum = facts.value("bank.enabled_at_call"), int(facts.value("train.grad_accum") or 1)
    if at is not None:
        parts.append(f"on at {forward_call_text(at, accum)}" if int(at) >= 0 else "never on (enabled_at_call -1)")
    c = facts.value("bank.queue_cosine") or {}
    if c:
        state = "still random" if facts.value("bank.queue_random") else "filled"
        parts.append(f"queue cosine {c['mean']:.3f} ± {c['std']:.3f} (random 0 ± {c['random_std']:.3f}): {state}")
    return " · ".join(parts)


def summary_table(facts: Facts) -> Table:
    """What the newest checkpoint holds, each value with its source."""
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for name in ("checkpoint", "value", "source"):
        table.add_column(name, style="dim" if name == "source" else None, overflow="fold")

    def add(label: str, text: str | None, *names: str) -> None:
        if text is not None:
            table.add_row(label, text, "\n".join(dict.fromkeys(facts.source(n) for n in names if facts.source(n))))

    mb = (facts.value("ckpt.bytes") or 0) / 1e6
    add(
        "weights",
        f"{facts.value('ckpt.layout')} · {facts.value('ckpt.tensors')} tensors · "
        f"{mb:.1f} MB" + (" · keys prefixed module." if facts.value("ckpt.prefix") else ""),
        "ckpt.layout",
    )
    step, total = facts.value("train.optimizer_steps_done"), facts.value("train.max_steps")
    if step is not None:
        epoch = facts.value("train.epoch")
        add(
            "step",
            f"{step}" + (f" of {total}" if total else "") + (f" · epoch {epoch:.3g}" if epoch is not None else ""),
            "train.optimizer_steps_done",
        )
    for scale in ("global", "finegrained", "hardneg"):
        if f"scale.{scale}.value" in facts:
            add(f"scale: {scale}", _scale_text(facts, scale), f"scale.{scale}.value", f"scale.{scale}.init")
    add("memory bank", _bank_text(facts), "bank.persisted", "bank.enabled_at_call")
    if "roi.identity_distance" in facts:
        add(
            "roi_projection",
            f"|W - I| / |I| {facts.value('roi.identity_distance'):.4g} · bias norm "
            f"{facts.value('roi.bias_norm', math.nan):.4g}",
            "roi.identity_distance",
        )
    if "train.per_device_batch" in facts:
        add(
            "batch",
            f"{facts.value('train.per_device_batch')} per device · world "
            f"{facts.value('run.world_size', '?')} · accumulation {facts.value('train.grad_accum', '?')}",
            "train.per_device_batch",
            "run.world_size",
        )
    cands = [
        f"{t} {facts.value(n)}"
        for t, n in (
            ("global", "candidates.global"),
            ("region", "candidates.region.in_batch"),
            ("hardneg", "candidates.hardneg"),
        )
        if n in facts
    ]
    if "candidates.region.with_bank" in facts:
        cands.append(f"region with the bank {facts.value('candidates.region.with_bank')}")
    add("candidates", " · ".join(cands) or None, "candidates.global", "candidates.region.in_batch")
    if "schedule.type" in facts:
        lrs = facts.value("optim.group_lrs") or []
        add(
            "LR schedule",
            f"{facts.value('schedule.type')} · warmup {facts.value('schedule.warmup_steps')} · "
            f"{facts.value('schedule.total_steps')} steps · base {facts.value('schedule.base_lr')}"
            + (f" · saved LR {lrs[0]:.4g}" if lrs else ""),
            "schedule.type",
            "optim.group_lrs",
        )
    names = facts.value("optim.group_names")
    add("optimizer groups", f"{len(names)}: {', '.join(names)}" if names else None, "optim.group_names")
    gn = [v for _, v in (facts.value("history.series") or {}).get("grad_norm", [])]
    add("grad_norm", f"last {gn[-1]:.4g} · max {max(gn):.4g} {sparkline(gn, 24)}" if gn else None, "history.series")
    return table


#: why inspect-ckpt's chance differs from live's for the same run (issue 20): shown under the table
LEVELS_NOTE = (
    "chance and floor of the logged term, from the launch's candidates: FG-CLIP's global term sums the "
    "long- and short-caption losses (2 x ln N, N the batch gathered over all ranks), region averages "
    "both directions over the in-batch boxes before the bank; live shows one cross-entropy call per "
    "row instead (one direction, the columns that process saw). verdict = loss-chance (FGD701)."
)


def loss_table(facts: Facts, findings: list) -> Table:
    """Per loss term: candidates, chance, first -> last with a sparkline, ratio, verdict."""
    verdict = {f.subject: f for f in findings if f.rule == "loss-chance"}
    table = Table(header_style="bold", box=None, pad_edge=False, caption=LEVELS_NOTE, caption_justify="left")
    for name in ("term", "key", "chance", "floor", "first → last", "trend", "ratio", "verdict"):
        table.add_column(name)
    series = facts.value("history.series") or {}
    for term, key in (facts.value("history.loss_keys") or {}).items():
        vals = [v for _, v in series.get(key, [])]
        chance = facts.value(f"loss.chance.{term}")
        f = verdict.get(term)
        table.add_row(
            term,
            key,
            level_text(chance),
            level_text(facts.value(f"loss.floor.{term}")),
            f"{vals[0]:.4g} → {vals[-1]:.4g} {sparkline(vals, 24)}" if vals else "—",
            trend([tuple(p) for p in series.get(key, [])]),
            f.measured if f and f.status is not Status.SKIP else "—",
            f.status.value if f else "—",
        )
    return table


def trajectory_table(rows: list[dict]) -> Table:
    """One row per checkpoint: step, scales (T), bank, each loss at that step, LR."""
    scales = list(dict.fromkeys(s for r in rows for s in r["scales"]))
    terms = list(dict.fromkeys(t for r in rows for t in r["losses"]))
    table = Table(header_style="bold", box=None, pad_edge=False)
    for name in ["checkpoint", "step", *scales, "bank", *terms, "lr"]:
        table.add_column(name)
    for r in rows:
        bank = r.get("bank") or {}
        btext = (
            (
                f"{bank.get('fill', '?')}/{bank.get('size', '?')} "
                + ("on" if bank.get("enabled_at_call", -1) >= 0 else "off")
            )
            if bank
            else "—"
        )
        table.add_row(
            Path(r["checkpoint"]).name,
            str(r["step"]),
            *[fmt_scale(r["scales"][s]) if s in r["scales"] else "—" for s in scales],
            btext,
            *[f"{r['losses'][t]:.4g}" if t in r["losses"] else "—" for t in terms],
            f"{r['lr']:.3g}" if r.get("lr") is not None else "—",
        )
    return table


def _check_writes(paths: list[Path], outputs: list[Path]) -> None:
    """The doctor never writes into what it inspects (--output, --plot)."""
    for out in outputs:
        o = out.resolve()
        for p in paths:
            q = p.resolve()
            if o == q or q in o.parents:
                raise DoctorUsageError(f"{out}: would write into the inspected {p}")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DoctorUsageError(f"--plot needs matplotlib, which is not installed ({install_command('plot')})") from None


def _plot(facts: Facts, path: Path) -> None:
    """Each loss term's curve against its chance line, one panel per term."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = facts.value("history.loss_keys") or {}
    series = facts.value("history.series") or {}
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.5 * max(1, len(keys)), 3.4), squeeze=False)
    for ax, (term, key) in zip(axes[0], keys.items()):
        pts = series.get(key, [])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=key)
        chance = facts.value(f"loss.chance.{term}")
        if chance is not None and math.isfinite(chance):
            ax.axhline(chance, ls="--", color="grey", label=f"chance {chance:.3g}")
            ax.axhline(0.9 * chance, ls=":", color="red", label="0.9 x chance")
        ax.set_title(term)
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class _rich_progress:
    """A transient progress bar on stderr for --scan, shown only on a terminal."""

    def __init__(self) -> None:
        self._bar = self._task = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("scanning for NaN/Inf"),
                BarColumn(),
                DownloadColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            return
        if self._task is None or self._bar.tasks[0].total != total:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task("scan", total=total)
        self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
