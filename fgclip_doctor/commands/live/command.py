"""live: target -> config facts -> a short real run under the probes -> L rules -> report."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from rich.table import Table
from rich.text import Text

from fgclip_doctor.checks.registry import Status, run_rules
from fgclip_doctor.commands.live.progress import ProgressBar
from fgclip_doctor.commands.live.runner import (
    entry_kind,
    launch_paths,
    live_argv,
    output_folder,
    probe_sites,
    resolve_device,
    run_directory,
    run_training,
)
from fgclip_doctor.environment import require_subject
from fgclip_doctor.report import Report, sparkline
from fgclip_doctor.sources.derived import derive_world
from fgclip_doctor.sources.files import display_path
from fgclip_doctor.sources.launch.target import Flag, TargetView, live_own_fgclip, preset_flags, read_target
from fgclip_doctor.sources.live import grad_summary, observed_facts, summarize_terms, term_series
from fgclip_doctor.sources.run_config import collect_facts
from fgclip_doctor.terminal import notice_stream
from fgclip_doctor.units import forward_call_text, level_text, temperature
from fgclip_doctor.vocabulary import TERM_SCALE

ORDER = {"global": 0, "global/reverse": 1, "region": 2, "region/reverse": 3, "hardneg": 4}
STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIP: "dim"}


def resolve_view(target: Path | None, preset: str | None, say: TextIO | None = None) -> TargetView:
    """The launch to run: a script / args file, a subject preset, or the bundled default run (a
    first use says on `say` that it generates the data and base)."""
    if target is not None and preset is not None:
        from fgclip_doctor.errors import DoctorUsageError

        raise DoctorUsageError("give a TARGET or --preset, not both")
    if target is not None:
        return read_target(target)  # a launch of the subject: collect_facts checks it can run here
    require_subject()
    from fgclip.presets import ensure_synthetic

    name = preset or "tiny"
    flags = preset_flags(name)  # a bad name is rejected here, before any data is generated
    ensure_synthetic(say=say)
    return TargetView(None, "fgclip.train", flags={"preset": Flag(name, f"--preset {name}"), **flags})


def _candidates(t: dict) -> str:
    first, last = t["columns_first"], t["columns_last"]
    if t["columns_max"] is None:
        return "?"
    if first != last and last is not None and first is not None and last - (t["rows"] or 0) > first - (t["rows"] or 0):
        return f"{first} → {last}"
    return str(t["columns_max"])


def _verdict(findings, term: str) -> Text:
    """The term's loss-chance (FGD701) status: the one judgement of the ratio the row shows."""
    mine = [f for f in findings if f.subject == term and f.rule == "loss-chance"]
    if not mine:
        return Text("—", style="dim")
    return Text(mine[0].status.value, style=STYLE[mine[0].status])


def _others(findings, term: str) -> Text:
    """Other rules' FAIL / WARN about this term (their blocks below say why)."""
    problems = (Status.FAIL, Status.WARN)
    shown = [f for f in findings if f.subject == term and f.rule != "loss-chance" and f.status in problems]
    if not shown:
        return Text("—", style="dim")
    worst = Status.FAIL if any(f.status is Status.FAIL for f in shown) else Status.WARN
    return Text(", ".join(f"{f.rule} {f.status.value}" for f in shown), style=STYLE[worst])


#: why live's chance differs from inspect-ckpt's for the same run (issue 20): shown under the table
CHANCE_NOTE = (
    "chance = ln(columns) of each cross-entropy call, one direction at a time, over the columns this "
    "process's logits had (the batch, gathered across ranks when the loss gathers, + the queue once on); "
    "inspect-ckpt shows the logged term's level instead (FG-CLIP's global sums the long- and short-caption "
    "losses: twice this row). ratio = loss / chance, judged by loss-chance (FGD701): its status is the "
    "ratio verdict; other rules' verdicts on the term are in the last column."
)


def terms_table(terms: dict, facts, findings) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False, caption=CHANCE_NOTE, caption_justify="left")
    for col in (
        "term",
        "candidates",
        "T",
        "logits min..max",
        "pos − hardest",
        "loss first→last",
        "chance",
        "floor",
        "ratio",
        "ratio verdict",
        "other findings",
    ):
        table.add_column(col, no_wrap=True)
    for term in sorted(terms, key=lambda t: (ORDER.get(t, 9), t)):
        t = terms[term]
        scale = facts.value(f"scale.{TERM_SCALE.get(term.split('/')[0], '')}.value")
        known = [n for n in facts if n.startswith("scale.") and n.endswith(".value")]
        if scale is None and len(known) == 1:  # code the doctor does not know, with one scale
            scale = facts.value(known[0])
        temp = f"{temperature(scale):.3g}" if scale is not None else "?"
        losses = [r["loss"] for r in t["series"]]
        table.add_row(
            term,
            _candidates(t),
            temp,
            f"{t['logit_min']:.1f}..{t['logit_max']:.1f}",
            f"{t['margin_last']:+.2f}",
            f"{t['loss_first']:.3f} → {t['loss_last']:.3f} {sparkline(losses, 12)}",
            level_text(t["chance_last"]) + (" σ" if t["kind"] == "sigmoid" else ""),
            level_text(facts.value(f"loss.floor.{term}")),
            f"{t['ratio_last']:.2f}",
            _verdict(findings, term),
            _others(findings, term),
        )
    return table


def bank_line(facts) -> Text | None:
    if facts.value("bank.enabled") is not True or "bank.fill" not in facts:
        return None
    at, accum = facts.value("bank.enabled_at_call"), facts.value("train.grad_accum") or 1
    on = f"on at {forward_call_text(at, accum)}" if at is not None and at >= 0 else "never switched on in this run"
    masked = facts.value("observed.bank.same_caption_rows")
    extra = (
        f" · rows with a queued copy of their caption {100 * masked:.0f} %"
        + (" (masked)" if facts.value("bank.mask_same_caption") else "")
        if masked is not None
        else ""
    )
    return Text(f"{on} · fill {facts.value('bank.fill')}/{facts.value('bank.size')}{extra}")


def grads_table(history) -> Table | None:
    grads = grad_summary(history)
    if not grads:
        return None
    table = Table(header_style="bold", box=None, pad_edge=False)
    for col in ("group", "grad norm (mean)", "max", "non-finite steps"):
        table.add_column(col)
    for name, g in grads.items():
        table.add_row(name, f"{g['norm']:.3g}", f"{g['max']:.3g}", str(int(g["nonfinite"])))
    return table


#: what each placed part lets the live rules measure (probes/placed.py)
PART_WORDS = {"roi": "RoIAlign", "box_features": "box features"}


def placement_notes(placement: dict) -> list[str]:
    """Where the probes were placed in code the doctor did not write, what was not, and whether the
    cross-entropy fallback (the F.* patch naming calls by call site) was needed."""
    if not placement:
        return []
    placed, missing = placement.get("placed", {}), placement.get("missing", {})
    notes = []
    if placed:
        where = ", ".join(f"{PART_WORDS.get(k, k)} at {v}" for k, v in placed.items())
        notes.append(f"probes placed by reading the code: {where}")
    notes += [f"{PART_WORDS[k]} not hooked: {why}" for k, why in missing.items() if k in PART_WORDS]
    if placement.get("fallback"):
        notes.append(
            "loss calls outside the placed terms are named by call site (the cross-entropy fallback): "
            + placement["fallback"]
        )
    return notes


def child_reason(view: TargetView, python: str | None) -> str | None:
    """Why the launch runs in a child process rather than in the doctor's (None: it need not)."""
    if python is not None:
        return f"ran with {python} (--python), in a child process"
    own = live_own_fgclip(view)
    if own is not None:
        return (
            f"ran in a child process: the launch's own package `fgclip` ({display_path(own)}) has the name "
            "of the doctor's bundled subject"
        )
    return None


def build_report(
    target: Path | None,
    preset: str | None,
    steps: int,
    device: str,
    keep_run: Path | None,
    interval: int,
    settings,
    nproc: int = 1,
    log: Path | None = None,
    python: str | None = None,
) -> Report:
    """The whole live pipeline: in this process, or in child processes (`nproc` ranks under
    torchrun, another interpreter, a launch this process cannot import). The training's own
    output (its log dicts, progress bars, prints) goes to `log`, never to the terminal."""
    view = resolve_view(target, preset, notice_stream(settings.format))
    base = collect_facts(view)
    reason = child_reason(view, python)
    if nproc > 1 or reason is not None:
        return _in_children(view, base, nproc, steps, device, keep_run, interval, settings, log, python, reason)
    with ProgressBar(steps) as bar:
        run = run_training(
            view, steps, device, keep_run, interval, progress=bar.update, settings=settings, base_facts=base, log=log
        )
    record = run.callback.record()
    facts = observed_facts(record, base, world_size=1)
    return live_report(
        view,
        facts,
        record.history,
        summarize_terms(record),
        steps,
        run.device,
        1,
        [*run.notes, *placement_notes(record.placement)],
        settings,
        trainer_logs=run.callback.logs,
    )


def live_report(view, facts, history, terms, steps, device, world, notes, settings, trainer_logs=()) -> Report:
    """Rules and report from observed facts (shared by one process and --nproc)."""
    findings = run_rules(facts, "L", settings, command="live")
    name = view.target or f"fgclip.train --preset {view.flags['preset'].value}"
    lines = [f"fgclip-doctor live · {name} · {steps} optimizer steps · {device} · world {world}"]
    lines += [f"note: {n}" for n in notes]
    sections = [("Loss terms", terms_table(terms, facts, findings))]
    bank = bank_line(facts)
    if bank is not None:
        sections.append(("Memory bank", bank))
    grads = grads_table(history)
    if grads is not None:
        sections.append(("Gradients", grads))
    extra = {
        "live": {
            "steps": steps,
            "device": device,
            "world_size": world,
            "notes": list(notes),
            "terms": {k: {kk: vv for kk, vv in v.items()} for k, v in terms.items()},
            "history": history,
            "trainer_logs": list(trainer_logs),  # the Trainer's own log dicts, with their step
        }
    }
    return Report("live", view.target, facts, findings, title_lines=lines, sections=sections, extra=extra)


def _in_children(view, base, nproc, steps, device, keep_run, interval, settings, log, python, reason) -> Report:
    from fgclip_doctor.commands.live.distributed import run_children

    device = resolve_device(device)
    here = run_directory(view)
    if nproc > 1:
        derive_world(base, nproc)
    notes: list[str] = [] if reason is None else [reason]
    entry, kind = entry_kind(view)
    with output_folder(keep_run) as out, ProgressBar(steps) as bar:
        argv = live_argv(view, steps, out, keep_run is not None, device, base, notes)
        records, logs = run_children(
            view.origin(),
            entry,
            kind,
            here,
            argv,
            launch_paths(view),
            nproc,
            device,
            interval,
            python,
            bar,
            log,
            sites=probe_sites(view, base),
        )
    terms = summarize_terms(records[0])
    offsets = {}
    for term in terms:
        per_rank = []
        for rec in records:
            series = term_series(rec.history, term)
            per_rank.append(series[-1]["offset_ok"] if series else float("nan"))
        offsets[term] = per_rank
    facts = observed_facts(records[0], base, world_size=nproc, offsets=offsets)
    notes += placement_notes(records[0].placement)
    return live_report(view, facts, records[0].history, terms, steps, device, nproc, notes, settings, trainer_logs=logs)
