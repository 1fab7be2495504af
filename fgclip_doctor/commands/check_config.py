"""check-config: target -> facts (parse + meta build) -> C rules -> report. Never runs training."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from fgclip_doctor.checks.registry import run_rules
from fgclip_doctor.checks.temperature import fmt_scale
from fgclip_doctor.environment import require_subject
from fgclip_doctor.facts import Facts
from fgclip_doctor.report import Report
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.launch.target import TargetView, launch_directory, read_target
from fgclip_doctor.sources.run_config import collect_facts
from fgclip_doctor.terminal import notice_stream
from fgclip_doctor.units import forward_calls_text

# The run summary shown above the findings: (label, fact name, formatter).
SUMMARY = [
    ("launcher", "run.launcher", str),
    ("world size", "run.world_size", str),
    ("per-device batch", "train.per_device_batch", str),
    ("grad accumulation", "train.grad_accum", str),
    ("global batch", "train.global_batch", str),
    ("optimizer steps", "train.optimizer_steps", str),
    ("forward calls / process", "train.forward_calls", str),
    ("precision", None, None),
    ("fine-tuning from", "model.base", str),
    ("base global scale", "scale.global.base", None),
    ("global scale init", "scale.global.init", None),
    ("finegrained scale init", "scale.finegrained.init", None),
    ("hardneg scale init", "scale.hardneg.init", None),
    ("bank size", "bank.size", str),
    ("bank warmup", "bank.warmup_forward_calls", None),
    ("candidates: global", "candidates.global", str),
    ("candidates: region", "candidates.region.in_batch", None),
    ("candidates: hardneg", "candidates.hardneg", str),
    ("resume would restore", "resume.checkpoint", str),
]


#: Rows shown as "unknown", with the reason, when their fact is absent for a recorded reason.
UNKNOWN_SHOWN = ("run.world_size", "candidates.global", "train.per_device_batch", "train.grad_accum")


def _row(facts: Facts, label: str, name: str | None, fmt) -> tuple[str, str, str] | None:
    if name is None:  # precision
        if "train.fp16" not in facts and "train.bf16" not in facts:
            return None
        p = "fp16" if facts.value("train.fp16") else "bf16" if facts.value("train.bf16") else "fp32"
        src = facts.source("train.fp16" if p == "fp16" else "train.bf16")
        return label, p, src
    if name not in facts:
        why = facts.why_unknown(name) if name in UNKNOWN_SHOWN else []
        return (label, "unknown", why[0]) if why else None
    v = facts.value(name)
    if name.startswith("scale."):
        text = fmt_scale(v)
    elif name == "bank.warmup_forward_calls":
        step = facts.value("bank.switch_on_step")
        text = forward_calls_text(v, step)
    elif name == "candidates.region.in_batch":
        after = facts.value("candidates.region.with_bank")
        text = f"{v}" + (f" → {after} with the bank" if after is not None else "")
    else:
        text = fmt(v)
    return label, text, facts.source(name)


def summary_table(facts: Facts) -> Table:
    """What the run will use, each value with its source."""
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("run")
    table.add_column("value")
    table.add_column("source", style="dim")
    for label, name, fmt in SUMMARY:
        row = _row(facts, label, name, fmt)
        if row:
            table.add_row(*row)
    return table


def _code_line(facts: Facts, view: TargetView) -> str:
    """What was read of code that is not the bundled subject, and from where."""
    if view.entry is None:
        return "no training code named: facts come from the args file's keys by name, without defaults"
    files = facts.value("code.files_read")
    if not files:
        return f"{view.entry}: its code was not read (see the notes); facts come from the launch's flags only"
    parser = facts.value("code.parser", "no argument parser found")
    count = f"{len(files)} {'file' if len(files) == 1 else 'files'}"
    where = launch_directory(view) or "an unknown directory"
    return (
        f"{view.entry} is not the bundled subject: its code was read as text, never run "
        f"({count} from {where}; {parser}). "
        "Use `live` on a GPU box to measure."
    )


def build_report(
    target: Path | None,
    settings: Settings,
    dataset_size: int | None = None,
    view: TargetView | None = None,
) -> Report:
    """The whole check-config pipeline for one target, or for an already read `view` (a training
    script or module with its arguments). Raises DoctorInputError on bad input."""
    if view is None:
        view = read_target(target)
    if target is None and view.target is None:  # the bundled default run: its data and tiny base, made on first use
        require_subject()
        from fgclip.presets import ensure_synthetic

        ensure_synthetic(say=notice_stream(settings.format))
    facts = collect_facts(view, dataset_size)
    findings = run_rules(facts, "C", settings, command="check-config")
    name = view.target or "default run (fgclip.train --preset tiny)"
    lines = [f"fgclip-doctor check-config · {name} · {view.entry or 'no training code'} via {view.launcher}"]
    if not view.is_subject:
        lines.append(_code_line(facts, view))
    lines += [f"note: {n}" for n in view.notes]
    if view.unresolved:
        lines.append("unresolved in the script: " + ", ".join(view.unresolved))
    return Report(
        "check-config", view.target, facts, findings, title_lines=lines, sections=[("Run", summary_table(facts))]
    )
