"""Run the casebook (fgclip_doctor/casebook.py): every fault and its healthy twin, end to end.

    python bench/casebook.py                 # all cases (a few minutes on 2 cores)
    python bench/casebook.py --cheap         # only the cheap ones (what the test suite runs)
    python bench/casebook.py seed-scale-init eos-cut

Each launch is written as a script (or a checkpoint, or an annotation file) in a temporary
folder and judged by the command a user would run (check-config, live, inspect-ckpt on the
checkpoint the run wrote, check-data), in-process through the CLI with `--format json`.
Prints the detection table and the headline `casebook: D/N faults detected (M measured, F by flag),
S/T near-miss twins silent, P/Q near-miss faults caught, 0 false FAILs`; exits 1 on any miss, any
twin FAIL, any twin WARN the case does not list, any twin PASS it asks for and does not get.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from fgclip_doctor.casebook import CASES, Case, Expect, Launch  # noqa: E402

DATA_SAMPLE = 64  # check-data cases judge the first records of the synthetic train.jsonl
TRAINED: dict[tuple[Launch, int], Path] = {}  # (launch, steps) -> its checkpoint, for this process


@dataclass
class Outcome:
    """One run of the doctor on one launch: exit code and (rule, subject, status) of every finding."""

    exit_code: int
    findings: list[tuple[str, str, str]]
    seconds: float
    messages: dict[tuple[str, str, str], str] = field(default_factory=dict)  # finding -> its message

    def shows(self, e: Expect) -> bool:
        """The run has the expected finding (rule, subject, status) and its message holds e.words."""
        key = (e.rule, e.subject, e.status)
        return key in self.findings and e.words in self.messages.get(key, "")

    def with_status(self, status: str) -> set[tuple[str, str, str]]:
        return {f for f in self.findings if f[2] == status}


@dataclass
class CaseResult:
    case: Case
    fault: Outcome
    twin: Outcome

    @property
    def missing(self) -> list[Expect]:
        """Expected findings the fault run did not produce."""
        return [e for e in self.case.expected if not self.fault.shows(e)]

    @property
    def twin_unproven(self) -> list[Expect]:
        """Findings the twin must PASS (its own evidence) that it did not."""
        return [e for e in self.case.twin_passes if not self.twin.shows(e)]

    @property
    def twin_silent(self) -> bool:
        """No FAIL, exactly the expected WARNs, and every PASS the case asks of the twin."""
        return not self.twin_fails and not self.twin_warns_unexpected and not self.twin_unproven

    @property
    def ok(self) -> bool:
        return self.detected and self.twin_silent

    @property
    def twin_fails(self) -> set[tuple[str, str, str]]:
        return self.twin.with_status("FAIL")

    @property
    def twin_warns_unexpected(self) -> set[tuple[str, str, str]]:
        """WARNs of the twin that differ from the case's expected ones (either way)."""
        expected = {(e.rule, e.subject, e.status) for e in self.case.twin_warns}
        return self.twin.with_status("WARN") ^ expected

    @property
    def detected(self) -> bool:
        return not self.missing and self.fault.exit_code in (0, 1)


@contextlib.contextmanager
def fault_env(fault: str | None):
    """FGCLIP_FAULT=fault for the duration (the subject reads it at each call), then as before."""
    before = os.environ.get("FGCLIP_FAULT")
    if fault:
        os.environ["FGCLIP_FAULT"] = fault
    else:
        os.environ.pop("FGCLIP_FAULT", None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FGCLIP_FAULT", None)
        else:
            os.environ["FGCLIP_FAULT"] = before


def train_checkpoint(launch: Launch, steps: int) -> Path:
    """A real run of `launch` for `steps` optimizer steps that saved checkpoint-<steps>. Runs are kept
    for the process (the doctor never writes into what it inspects), so cases that share a launch, and
    a case's fault and twin when they coincide, train it once."""
    key = (launch, steps)
    if key not in TRAINED:
        out = Path(tempfile.mkdtemp(prefix="casebook-run-"))
        atexit.register(shutil.rmtree, out, True)
        common = ["--max_steps", str(steps), "--save_steps", str(steps), "--logging_steps", "1"]
        if launch.script:  # another family's script, in its own process as a user runs it
            argv = [sys.executable, str(ROOT / launch.script), *common, "--output_dir", str(out)]
            argv += ["--report_to", "none", "--use_cpu", "True", *launch.flags]
            env = {k: v for k, v in os.environ.items() if k != "FGCLIP_FAULT"}
            subprocess.run(argv, check=True, capture_output=True, cwd=ROOT, env=env, timeout=600)
        else:
            from fgclip import train

            # the launch's flags last: one that sets --max_steps trains that long (checkpoint-<steps> on the way)
            argv = ["--preset", "tiny", *common, "--output_dir", str(out), *launch.flags]
            with fault_env(launch.fault), contextlib.redirect_stdout(sys.stderr):
                train.main(argv)
        TRAINED[key] = out / f"checkpoint-{steps}"
    return TRAINED[key]


def tree_copy(launch: Launch, work: Path) -> Path:
    """A copy of tests/trees/<tree> in `work` with the launch's edits applied (each must match once)."""
    root = work / launch.tree
    shutil.copytree(ROOT / "tests" / "trees" / launch.tree, root)
    for name, old, new in launch.edits:
        path = root / name
        text = path.read_text()
        if text.count(old) != 1:
            raise ValueError(f"edit of {name}: {old!r} found {text.count(old)} times, not once")
        path.write_text(text.replace(old, new))
    return root


def launch_script(launch: Launch, work: Path, command: str) -> Path:
    """The launch as a bash script in `work` (its output_dir is `work/out`)."""
    out = work / "out"
    if launch.prior is not None:  # a checkpoint of an earlier run waits in output_dir
        shutil.copytree(train_checkpoint(Launch(launch.prior), steps=1), out / "checkpoint-1")
    if launch.script:
        program = str(ROOT / launch.script)
        runner = "python"
        if launch.nproc > 1 and command == "check-config":
            runner = f"torchrun --nproc_per_node {launch.nproc}"
        line = f"{runner} {program} --output_dir {out} --report_to none --use_cpu True"
    else:
        line = f"python -m fgclip.train --preset tiny --output_dir {out}"
    script = work / "launch.sh"
    script.write_text("#!/usr/bin/env bash\n" + " ".join([line, *launch.flags]) + "\n")
    return script


def _square(box: list[float], side: float) -> list[float]:
    """A `side` x `side` box around `box`'s centre, moved inside [0, 1]."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = min(max(cx - side / 2, 0.0), 1 - side), min(max(cy - side / 2, 0.0), 1 - side)
    return [round(x0, 4), round(y0, 4), round(x0 + side, 4), round(y0 + side, 4)]


def rewrite_data(name: str, work: Path, root: Path) -> Path:
    """Records of the synthetic annotations with one named fault written into them. `name@N`: the first
    N records (the 512 generated ones repeated as needed), else the first DATA_SAMPLE."""
    name, _, count = name.partition("@")
    lines = (root / "train.jsonl").read_text().splitlines()
    n = int(count) if count else DATA_SAMPLE
    records = [json.loads(lines[i % len(lines)]) for i in range(n)]
    boxes = [b for r in records for b in r["bbox_info"]]
    if name == "pixel-boxes":  # boxes in pixels of the 64-pixel images instead of [0, 1]
        for b in boxes:
            b["bbox"] = [round(v * 64, 1) for v in b["bbox"]]
    elif name == "one-pixel-box":  # one box of one record in pixels: 1 bad box among thousands
        records[n // 2]["bbox_info"][0]["bbox"] = [round(v * 64, 1) for v in records[n // 2]["bbox_info"][0]["bbox"]]
    elif name in ("extra-boxes", "boxes-5", "boxes-4"):  # more boxes than the loader keeps (max_boxes 4)?
        keep = {"extra-boxes": 6, "boxes-5": 5, "boxes-4": 4}[name]
        for r in records:
            r["bbox_info"] = (r["bbox_info"] * keep)[:keep]
    elif name == "tiny-boxes":  # every box shrunk to 0.03 x 0.03 around its centre: under one cell of 14
        for b in boxes:
            b["bbox"] = _square(b["bbox"], 0.03)
    elif name in ("cell-0.068", "cell-0.075"):  # every box a square just under / over one cell (1/14 = 0.0714)
        for b in boxes:
            b["bbox"] = _square(b["bbox"], float(name.split("-")[1]))
    elif name == "no-captions":  # the first box of every record without short_expr or long_expr
        for r in records:
            r["bbox_info"][0]["short_expr"] = r["bbox_info"][0]["long_expr"] = ""
    elif name.startswith("negatives-"):  # every flagged box keeps the first N of its 10 rewrites
        keep = int(name.split("-")[1])
        for b in boxes:
            b["short_expr_negs"] = {k: v for k, v in list(b["short_expr_negs"].items())[:keep]}
    elif name == "missing-images":  # every 8th record names an image that was never written
        for r in records[::8]:
            r["f_path"] = r["f_path"].replace("train_", "lost_")
    elif name and name != "truncated-line":
        raise KeyError(f"unknown data rewrite {name!r}")
    text = "".join(json.dumps(r) + "\n" for r in records)
    if name == "truncated-line":  # an interrupted write: the last line stops half way, no newline
        text = text[: len(text) - len(json.dumps(records[-1])) // 2 - 1]
    path = work / "train.jsonl"
    path.write_text(text)
    return path


def target_of(case: Case, launch: Launch, work: Path, root: Path) -> tuple[list[str], Path | None]:
    """The doctor's argv for this launch (command, target, options) and the folder it runs in."""
    if case.command == "check-data":
        return ["check-data", str(rewrite_data(launch.data or "", work, root)), "--image-root", str(root)], None
    if case.command == "inspect-ckpt":
        return ["inspect-ckpt", str(train_checkpoint(launch, case.steps))], None
    if launch.tree:  # check-config reads, live runs, the tree's launch from the folder it runs in, as a user does
        if case.command == "live":
            return ["live", str(launch.script), "--steps", str(case.steps)], tree_copy(launch, work)
        return ["check-config", str(launch.script)], tree_copy(launch, work)
    script = launch_script(launch, work, case.command)
    if case.command == "live":
        argv = ["live", str(script), "--steps", str(case.steps)]
        if launch.nproc > 1:
            argv += ["--nproc", str(launch.nproc)]
        return argv, None
    return ["check-config", str(script)], None


def judge(case: Case, launch: Launch, root: Path) -> Outcome:
    """Run the doctor on one launch and read its JSON report."""
    from typer.testing import CliRunner

    from fgclip_doctor.cli import app

    with tempfile.TemporaryDirectory(prefix=f"casebook-{case.name}-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        argv, cwd = target_of(case, launch, work, root)
        report = work / "report.json"
        with fault_env(launch.fault), contextlib.chdir(cwd or os.getcwd()):
            result = CliRunner().invoke(app, [*argv, *case.args, "--format", "json", "--output", str(report)])
        if result.exit_code not in (0, 1) or not report.exists():
            raise RuntimeError(f"{case.name}: {' '.join(argv)} exited {result.exit_code}: {result.output[-2000:]}")
        doc = json.loads(report.read_text())
        findings = [(f["rule"], f["subject"], f["status"]) for f in doc["findings"]]
        messages = {(f["rule"], f["subject"], f["status"]): f["message"] for f in doc["findings"]}
        return Outcome(result.exit_code, findings, time.perf_counter() - start, messages)


def run_case(case: Case, root: Path) -> CaseResult:
    return CaseResult(case, judge(case, case.fault, root), judge(case, case.twin, root))


def table(results: list[CaseResult]) -> str:
    head = ("fault", "source", "command", "evidence", "margin", "expected rule", "detected", "steps", "twin alarms")
    rows = []
    for r in results:
        c = r.case
        alarms = [f"{s} {rule}/{subj}" for rule, subj, s in sorted(r.twin_fails | r.twin_warns_unexpected)]
        alarms += [f"no PASS {e.rule}/{e.subject} ({e.words})" for e in r.twin_unproven]
        rows.append(
            (
                c.name,
                c.citation.split(":")[0][:38],
                c.command,
                c.evidence,
                "near-miss" if c.near_miss else "",
                ", ".join(sorted({e.rule for e in c.expected})),
                "yes" if r.detected else "NO: " + ", ".join(f"{e.rule}/{e.subject}" for e in r.missing),
                str(c.steps) if c.command in ("live", "inspect-ckpt") else "0",
                ", ".join(alarms) or "none",
            )
        )
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    fmt = lambda row: "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)])


def summary(results: list[CaseResult]) -> str:
    """The headline, every count from the results: faults found (by evidence the doctor found itself vs
    by the injecting flag), near-miss twins silent and near-miss faults caught, twins that FAILed."""
    n = len(results)
    detected = [r for r in results if r.detected]
    by_flag = sum(r.case.evidence == "flag" for r in detected)
    margin = [r for r in results if r.case.near_miss]
    silent = sum(r.twin_silent for r in margin)
    caught = sum(r.detected for r in margin)
    false_fails = sum(bool(r.twin_fails) for r in results)
    odd_warns = sum(bool(r.twin_warns_unexpected) for r in results)  # exit 1 too: say so in the headline
    return (
        f"casebook: {len(detected)}/{n} faults detected ({len(detected) - by_flag} measured, {by_flag} by flag), "
        f"{silent}/{len(margin)} near-miss twins silent, {caught}/{len(margin)} near-miss faults caught, "
        f"{false_fails} false FAILs" + (f", {odd_warns} twins with WARNs the case does not list" if odd_warns else "")
    )


def margin_line(results: list[CaseResult]) -> str:
    """Sensitivity and specificity of the near-miss pairs (faults just past a threshold, twins just inside)."""
    margin = [r for r in results if r.case.near_miss]
    if not margin:
        return "at the margin: no near-miss pairs run"
    sens = sum(r.detected for r in margin) / len(margin)
    spec = sum(r.twin_silent for r in margin) / len(margin)
    return f"at the margin ({len(margin)} near-miss pairs): sensitivity {sens:.0%}, specificity {spec:.0%}"


LEGEND = (
    "evidence: measured = seen in a real run, checkpoint or annotation file; read = read from the training "
    "code or what it builds (model, optimizer); flag = arithmetic on the flag that injects the fault "
    "(counted as detected, not as measured). 'measured' in the headline counts measured and read."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these cases")
    parser.add_argument("--cheap", action="store_true", help="only the cheap cases (the test suite's)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from fgclip.presets import ensure_synthetic

    root = ensure_synthetic()
    chosen = [c for c in CASES if (not args.names or c.name in args.names) and (not args.cheap or c.cost == "cheap")]
    pending = [c for c in chosen if c.pending]
    results = []
    for c in chosen:
        if c.pending:
            continue
        r = run_case(c, root)
        seconds = r.fault.seconds + r.twin.seconds
        print(f"  {c.name}: {'detected' if r.detected else 'MISSED'} ({seconds:.0f} s)", file=sys.stderr)
        results.append(r)
    print(table(results))
    for c in pending:
        print(f"pending: {c.name} ({c.pending})")
    for r in results:  # a twin's WARNs are expected only with a reason, shown beside the table
        if r.case.twin_warns:
            warns = ", ".join(f"{e.rule}/{e.subject}" if e.subject else e.rule for e in r.case.twin_warns)
            print(f"twin WARNs of {r.case.name} ({warns}): {r.case.twin_why}")
    print(LEGEND)
    print(margin_line(results))
    print(summary(results))
    return 0 if all(r.ok for r in results) and not pending else 1


if __name__ == "__main__":
    sys.exit(main())
