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
    tree: str | None = None  # check-config or live in a copy of tests/trees/<tree>, on its launch `script`
    edits: tuple[tuple[str, str, str], ...] = ()  # (file in the tree, old text, new text), applied to the copy


@dataclass(frozen=True)
class Expect:
    rule: str
    subject: str
    status: str  # FAIL | WARN (| PASS in twin_passes)
    words: str = ""  # text the finding's message must hold ("" = any)


@dataclass(frozen=True)
class Case:
    name: str
    citation: str  # where the fault is known from
    command: str  # check-config | live | inspect-ckpt | check-data
    fault: Launch
    twin: Launch
    expected: tuple[Expect, ...]  # findings the fault must produce
    twin_warns: tuple[Expect, ...] = ()  # the twin's WARNs, exactly (it never FAILs)
    twin_passes: tuple[Expect, ...] = ()  # findings the twin must PASS (status "PASS"): its evidence too
    twin_why: str = ""  # why the twin's WARNs are right for a healthy run (required when it has any)
    cost: str = "cheap"  # cheap: in the test suite; expensive: bench only
    steps: int = 0  # live: --steps; inspect-ckpt: optimizer steps trained before the checkpoint
    args: tuple[str, ...] = ()  # extra arguments of the doctor's command
    pending: str | None = None  # why it cannot pass on this branch yet (runners skip it)
    # What decides the verdict (EVIDENCE); "" = "read" for check-config, "measured" for the others.
    evidence: str = ""
    near_miss: bool = False  # fault just past the rule's threshold, twin just inside it

    def __post_init__(self) -> None:
        if not self.evidence:
            object.__setattr__(self, "evidence", "read" if self.command == "check-config" else "measured")
        if self.twin_warns and not self.twin_why:
            raise ValueError(f"{self.name}: the twin WARNs; say why (twin_why)")
        if self.evidence not in EVIDENCE:
            raise ValueError(f"{self.name}: evidence {self.evidence!r}, not one of {sorted(EVIDENCE)}")


#: How a case's fault is found. Only measured and read count as evidence the doctor found itself.
EVIDENCE = {
    "measured": "seen in a real run, checkpoint or annotation file",
    "read": "read from the training code, or from what it builds (the model and optimizer, on meta)",
    "flag": "arithmetic on the launch's flags: the flag that injects the fault also decides the verdict",
}


F, W = "FAIL", "WARN"
