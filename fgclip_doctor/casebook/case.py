"""A casebook case: a launch with exactly one fault, its healthy twin, and the findings that must
catch the fault (fgclip_doctor/casebook/__init__.py says how the cases are run).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    flags: tuple[str, ...] = ()  # appended to the subject's `--preset tiny` (or to `script`)
    fault: str | None = None  # FGCLIP_FAULT for this run (fgclip/faults.py)
    script: str | None = None  # a training script of another family, relative to the repo root (or to `tree`)
    nproc: int = 1  # processes (live --nproc; torchrun in the launch for check-config)
    prior: tuple[str, ...] | None = None  # output_dir already holds a checkpoint of a run with these flags
    data: str | None = None  # check-data: a named rewrite of the synthetic train.jsonl ("" = as generated)
    tree: str | None = None  # check-config in a copy of tests/trees/<tree>, on its launch `script`
    edits: tuple[tuple[str, str, str], ...] = ()  # (file in the tree, old text, new text), applied to the copy


@dataclass(frozen=True)
class Expect:
    rule: str
    subject: str
    status: str  # FAIL | WARN


@dataclass(frozen=True)
class Case:
    name: str
    citation: str  # where the fault is known from
    command: str  # check-config | live | inspect-ckpt | check-data
    fault: Launch
    twin: Launch
    expected: tuple[Expect, ...]  # findings the fault must produce
    twin_warns: tuple[Expect, ...] = ()  # the twin's WARNs, exactly (it never FAILs)
    cost: str = "cheap"  # cheap: in the test suite; expensive: bench only
    steps: int = 0  # live: --steps; inspect-ckpt: optimizer steps trained before the checkpoint
    args: tuple[str, ...] = ()  # extra arguments of the doctor's command
    pending: str | None = None  # why it cannot pass on this branch yet (runners skip it)


F, W = "FAIL", "WARN"
