"""inspect-ckpt: target(s) -> facts per checkpoint -> K rules -> report. Never loads a model.

A target is a checkpoint folder (HF Trainer / DeepSpeed), a run folder holding checkpoint-*
(expanded to its checkpoints, oldest first), or a bare weights file. The rules judge the newest
checkpoint, whose trainer_state.json carries the whole history; the others become rows of the
trajectory table (scales, bank, losses per checkpoint) and feed the across-checkpoint checks.
Files are only ever opened for reading.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.table import Table

from fgclip_doctor.checks.loss_health import parse_expectation
from fgclip_doctor.checks.registry import Status, run_rules
from fgclip_doctor.checks.temperature import fmt_scale
from fgclip_doctor.errors import DoctorInputError, DoctorUsageError
from fgclip_doctor.facts import Facts
from fgclip_doctor.report import Report, sparkline
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.launch.args import display_path
from fgclip_doctor.sources.checkpoint.layout import checkpoint_step, find_weights, list_checkpoints
from fgclip_doctor.sources.checkpoint.weights import open_weights, read_config, scan_facts, weight_facts
from fgclip_doctor.sources.checkpoint.history import history_facts, trend as _trend, value_at

MAX_BOXES = 4  # the subject's DataArguments.max_boxes default: an upper bound on boxes per image
Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass
class Checkpoint:
    """One inspected checkpoint: its facts and its row of the trajectory."""

    path: Path
    step: int | None
    facts: Facts
    row: dict


def expand(paths: list[Path]) -> list[Path]:
    """Run folders -> their checkpoint-* (oldest first); checkpoint folders and files as given."""
    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise DoctorInputError(p, "no such file or directory")
        if p.is_dir() and not any(p.iterdir()):
            raise DoctorInputError(p, "empty directory: no checkpoint to inspect")
        found = list_checkpoints(p) if p.is_dir() else []
        out += found or [p]
    unique = list(dict.fromkeys(q.resolve() for q in out))
    steps = {q: checkpoint_step(q) if q.is_dir() else None for q in unique}
    if all(s is not None for s in steps.values()):
        unique.sort(key=lambda q: steps[q])
    return unique


def _chance_facts(facts: Facts) -> None:
    """Candidates per loss row, and each term's chance level, from batch, world, bank, config."""
    batch, layout = facts.value("train.per_device_batch"), facts.value("ckpt.layout")
    world = int(facts.value("run.world_size") or 1)
    wsrc = facts.source("run.world_size") or "world size not recorded: 1 assumed"
    subject = layout in ("fgclip", "fgclip-v1")
    if subject and facts.value("history.loss_keys") == {"global": "loss"}:
        # FG-CLIP's `loss` is global + 0.1 region + 0.5 hardneg: no single chance level
        facts.set("history.loss_keys", {"total": "loss"}, facts.source("history.loss_keys")
                  + " (FG-CLIP's loss is the weighted sum of its terms)")
    if batch:
        gathered = facts.value("features.gathered")
        n = int(batch) * (world if gathered else 1)
        how = f"train_batch_size {batch}" + (f" x world {world}" if gathered else " (not gathered)")
        facts.set("candidates.global", n, f"{facts.source('train.per_device_batch')}; {wsrc}")
        parts, why = (2, "FG-CLIP sums the long- and short-caption losses") if subject else (1, "")
        facts.set("loss.chance.global", parts * math.log(n),
                  f"{parts} x ln {n} ({how}" + (f"; {why})" if why else ")"))
    terms = facts.value("loss.terms") or []
    if subject and batch and "region" in terms:
        k = int(batch) * MAX_BOXES
        ksrc = f"train_batch_size {batch} x {MAX_BOXES} boxes (max_boxes default, an upper bound)"
        est = _boxes_from_fill(facts)
        if est is not None:
            k, ksrc = est
        facts.set("candidates.region.in_batch", k, ksrc)
        queue = 0.0
        at, fill = facts.value("bank.enabled_at_call"), facts.value("bank.fill")
        if at is not None and int(at) >= 0 and fill:
            same = facts.value("bank.same_caption_mean") if facts.value("bank.mask_same_caption") else 0
            queue = max(0.0, float(fill) - float(same or 0))
            facts.set("candidates.region.with_bank", round(k + queue, 1),
                      f"{ksrc} + queue fill {fill} - {same or 0:.1f} same-caption (masked)")
        if k > 1:
            chance = (math.log(k + queue) + math.log(k)) / 2
            facts.set("loss.chance.region", chance, f"(ln {k + queue:.4g} box->caption + ln {k:.4g} "
                                                    f"caption->box) / 2; {ksrc}")
    hard = facts.value("data.num_hard_negatives")
    if subject and "hardneg" in terms and hard:
        facts.set("candidates.hardneg", 1 + int(hard), facts.source("data.num_hard_negatives"))
        facts.set("loss.chance.hardneg", math.log(1 + int(hard)), f"ln(1 + {hard} rewrites)")


def _boxes_from_fill(facts: Facts) -> tuple[float, str] | None:
    """Mean boxes per forward call, from the bank's fill before it first wrapped (fill / calls)."""
    series = (facts.value("history.series") or {}).get("memory_bank_fill", [])
    size, accum = facts.value("bank.size"), int(facts.value("train.grad_accum") or 1)
    for step, fill in series:
        if step > 0 and size and 0 < fill < size:
            k = round(fill / (step * accum), 1)
            return k, (f"{k} boxes per forward call: memory_bank_fill {fill:g} after {step * accum} "
                       "forward calls (trainer_state.json)")
    return None


def read_checkpoint(path: Path, scan: bool = False, progress: Progress | None = None) -> Checkpoint:
    """Facts of one checkpoint folder or weights file."""
    facts = Facts()
    config, csrc, history = None, "", None
    if path.is_dir():
        ds = find_weights(path).deepspeed
        ds_files = (ds.model_states, ds.optim_states) if ds else ([], [])
        config = read_config(path)
        csrc = display_path(path / "config.json")
        history = history_facts(path, facts, ds_files)
    weights = open_weights(path)
    row = weight_facts(weights, config, csrc, facts)
    if scan:
        done, total = [0], weights.data_bytes

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        row["nonfinite"] = sum(scan_facts(weights, facts, tick).values())
    _chance_facts(facts)
    step = checkpoint_step(path) if path.is_dir() else None
    step = facts.value("train.optimizer_steps_done", step)
    row.update(checkpoint=display_path(path), step=step,
               losses={t: v for t, k in (facts.value("history.loss_keys") or {}).items()
                       if (v := _at(facts, k, step)) is not None},
               lr=_at(facts, "learning_rate", step), groups=len(facts.value("optim.group_lrs") or []))
    if history is None and path.is_dir():
        row["note"] = "no trainer_state.json"
    return Checkpoint(path, step, facts, row)


def _at(facts: Facts, key: str, step: int | None) -> float | None:
    points = [(int(s), float(v)) for s, v in (facts.value("history.series") or {}).get(key, [])]
    if step is None:
        return points[-1][1] if points else None
    hit = value_at([p for p in points if p[0] <= step], step)
    return hit[1] if hit else None


def _trajectory_facts(ckpts: list[Checkpoint], facts: Facts) -> None:
    """Across checkpoints: names, optimizer group counts, and (for layouts whose config does not
    give the true init) the earliest checkpoint's scales as the baseline of logit-scale-frozen."""
    facts.set("ckpt.checkpoints", [c.row["checkpoint"] for c in ckpts], "the targets given")
    counts = {c.row["checkpoint"]: c.row["groups"] for c in ckpts if c.row["groups"]}
    if len(counts) > 1:
        facts.set("optim.group_counts", counts, "optimizer.pt of each checkpoint")
    first, last = ckpts[0], ckpts[-1]
    if len(ckpts) < 2 or first.step is None or last.step is None:
        return
    for scale, value in first.row["scales"].items():
        if f"scale.{scale}.init" not in facts and f"scale.{scale}.value" in facts:
            facts.set(f"scale.{scale}.init", value, f"{first.facts.source(f'scale.{scale}.value')}"
                                                    f" (step {first.step}, the earliest checkpoint)")


def build_report(paths: list[Path], settings: Settings, scan: bool = False, plot: Path | None = None,
                 output: Path | None = None, progress: Progress | None = None) -> Report:
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
    _trajectory_facts(ckpts, facts)
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
    lines = [f"fgclip-doctor inspect-ckpt · {target} · {layout} · step {latest.step} · "
             f"{len(ckpts)} checkpoint{'s' if len(ckpts) > 1 else ''}"]
    if layout not in ("fgclip", "fgclip-v1"):
        lines.append(f"{layout} layout: not FG-CLIP; the rules that need FG-CLIP's scales, bank or "
                     "region head SKIP with the reason")
    if not targets[-1].is_dir():
        lines.append("a bare weights file: no trainer_state.json, config or optimizer state; "
                     "history and schedule rules SKIP")
    return Report("inspect-ckpt", target, facts, findings, title_lines=lines, sections=sections,
                  extra={"trajectory": [c.row for c in ckpts]})


# ---- tables -------------------------------------------------------------------------------------

def _scale_text(facts: Facts, scale: str) -> str:
    text = fmt_scale(float(facts.value(f"scale.{scale}.value")))
    init = facts.value(f"scale.{scale}.init")
    if init is not None:
        text += f" · init {fmt_scale(float(init))} · drift {float(facts.value(f'scale.{scale}.value')) - float(init):+.4f}"
    return text


def _bank_text(facts: Facts) -> str | None:
    if not facts.value("bank.enabled"):
        return None
    saved = facts.value("bank.persisted") or {}
    if not saved.get("queue"):
        return "not saved in the checkpoint"
    parts = [f"{k} {facts.value('bank.' + k)}" for k in ("size", "fill", "ptr", "forward_calls")
             if facts.value("bank." + k) is not None]
    at, accum = facts.value("bank.enabled_at_call"), int(facts.value("train.grad_accum") or 1)
    if at is not None:
        parts.append(f"on at forward call {at} = optimizer step {-(-int(at) // accum)}"
                     if int(at) >= 0 else "never on (enabled_at_call -1)")
    c = facts.value("bank.queue_cosine") or {}
    if c:
        state = "still random" if facts.value("bank.queue_random") else "filled"
        parts.append(f"queue cosine {c['mean']:.3f} ± {c['std']:.3f} (random 0 ± "
                     f"{c['random_std']:.3f}): {state}")
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
    add("weights", f"{facts.value('ckpt.layout')} · {facts.value('ckpt.tensors')} tensors · "
        f"{mb:.1f} MB" + (" · keys prefixed module." if facts.value("ckpt.prefix") else ""), "ckpt.layout")
    step, total = facts.value("train.optimizer_steps_done"), facts.value("train.max_steps")
    if step is not None:
        epoch = facts.value("train.epoch")
        add("step", f"{step}" + (f" of {total}" if total else "") +
            (f" · epoch {epoch:.3g}" if epoch is not None else ""), "train.optimizer_steps_done")
    for scale in ("global", "finegrained", "hardneg"):
        if f"scale.{scale}.value" in facts:
            add(f"scale: {scale}", _scale_text(facts, scale), f"scale.{scale}.value", f"scale.{scale}.init")
    add("memory bank", _bank_text(facts), "bank.persisted", "bank.enabled_at_call")
    if "roi.identity_distance" in facts:
        add("roi_projection", f"|W - I| / |I| {facts.value('roi.identity_distance'):.4g} · bias norm "
            f"{facts.value('roi.bias_norm', math.nan):.4g}", "roi.identity_distance")
    if "train.per_device_batch" in facts:
        add("batch", f"{facts.value('train.per_device_batch')} per device · world "
            f"{facts.value('run.world_size', '?')} · accumulation {facts.value('train.grad_accum', '?')}",
            "train.per_device_batch", "run.world_size")
    cands = [f"{t} {facts.value(n)}" for t, n in (("global", "candidates.global"),
             ("region", "candidates.region.in_batch"), ("hardneg", "candidates.hardneg")) if n in facts]
    if "candidates.region.with_bank" in facts:
        cands.append(f"region with the bank {facts.value('candidates.region.with_bank')}")
    add("candidates", " · ".join(cands) or None, "candidates.global", "candidates.region.in_batch")
    if "schedule.type" in facts:
        lrs = facts.value("optim.group_lrs") or []
        add("LR schedule", f"{facts.value('schedule.type')} · warmup {facts.value('schedule.warmup_steps')} · "
            f"{facts.value('schedule.total_steps')} steps · base {facts.value('schedule.base_lr')}"
            + (f" · saved LR {lrs[0]:.4g}" if lrs else ""), "schedule.type", "optim.group_lrs")
    names = facts.value("optim.group_names")
    add("optimizer groups", f"{len(names)}: {', '.join(names)}" if names else None, "optim.group_names")
    gn = [v for _, v in (facts.value("history.series") or {}).get("grad_norm", [])]
    add("grad_norm", f"last {gn[-1]:.4g} · max {max(gn):.4g} {sparkline(gn, 24)}" if gn else None,
        "history.series")
    return table


def loss_table(facts: Facts, findings: list) -> Table:
    """Per loss term: candidates, chance, first -> last with a sparkline, ratio, verdict."""
    verdict = {f.subject: f for f in findings if f.rule == "loss-chance"}
    table = Table(header_style="bold", box=None, pad_edge=False)
    for name in ("term", "key", "chance", "first → last", "trend", "ratio", "verdict"):
        table.add_column(name)
    series = facts.value("history.series") or {}
    for term, key in (facts.value("history.loss_keys") or {}).items():
        vals = [v for _, v in series.get(key, [])]
        chance = facts.value(f"loss.chance.{term}")
        f = verdict.get(term)
        table.add_row(term, key, f"{chance:.3g}" if chance is not None else "?",
                      f"{vals[0]:.4g} → {vals[-1]:.4g} {sparkline(vals, 24)}" if vals else "—",
                      _trend([tuple(p) for p in series.get(key, [])]),
                      f.measured if f and f.status is not Status.SKIP else "—",
                      f.status.value if f else "—")
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
        btext = (f"{bank.get('fill', '?')}/{bank.get('size', '?')} "
                 + ("on" if bank.get("enabled_at_call", -1) >= 0 else "off")) if bank else "—"
        table.add_row(Path(r["checkpoint"]).name, str(r["step"]),
                      *[fmt_scale(r["scales"][s]) if s in r["scales"] else "—" for s in scales],
                      btext, *[f"{r['losses'][t]:.4g}" if t in r["losses"] else "—" for t in terms],
                      f"{r['lr']:.3g}" if r.get("lr") is not None else "—")
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
        raise DoctorUsageError("--plot needs matplotlib, which is not installed "
                               "(pip install 'fgclip-doctor[plot]')") from None


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

            self._bar = Progress(TextColumn("scanning for NaN/Inf"), BarColumn(), DownloadColumn(),
                                 console=Console(stderr=True), transient=True)
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
