"""Run a training the doctor did not write, in-process, for N optimizer steps with probes.

The launch is parsed exactly as check-config parses it; the training module (or script) runs
with `runpy` and the launch's own arguments, followed by the run's overrides as flags of its own
parser (probes/program.py: `max_steps = N`, a temporary `output_dir`, never the user's, so never
resuming, no saving, no tqdm, `report_to` naming only the doctor, whose callback enters the
Trainer as that reporting integration). No method of transformers is replaced. What the training
prints goes to a file (`LiveRun.output`, `--log`), never to the terminal. The training runs from
the launch's directory (after its script's `cd`), as bash would run it. Everything is undone on
exit, also on error or Ctrl-C. A launch this process cannot import cleanly runs in a child
process instead (commands/live/child_run.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fgclip_doctor.callback import DoctorCallback
from fgclip_doctor.commands.live.engine import deepspeed_note
from fgclip_doctor.errors import DoctorInputError, DoctorUsageError
from fgclip_doctor.probes.program import (
    DROPPED,
    OVERRIDDEN,
    exit_message,
    output_to,
    override_flags,
    registered,
    run_entry,
    training_error,
)
from fgclip_doctor.sources.launch.target import TargetView, launch_directory, launch_path, launch_pythonpath


@dataclass
class LiveRun:
    """What one process of a live run observed."""

    callback: DoctorCallback
    output_dir: str
    device: str
    argv: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output: str = ""  # what the training itself printed (stdout and stderr), never echoed


def launch_argv(view: TargetView, notes: list[str], device: str = "cpu") -> list[str]:
    """The training program's own arguments, rebuilt from the parsed launch."""
    argv = []
    for name, flag in view.flags.items():
        if flag.value is None:
            notes.append(f"--{name} depends on something unresolved in the launch: left out")
            continue
        if name in DROPPED:
            notes.append(f"--{name} left out: a live run starts from the launch's model, never from a checkpoint")
            continue
        if name == "deepspeed":
            dropped = deepspeed_note(str(flag.value), launch_directory(view), device)
            if dropped is not None:
                notes.append(dropped)
                continue
        argv += flag.argv(flag.option or f"--{name}")  # as spelled: `--batch-size=-1`, a bare `--do_train`
    return argv


def checked_overrides(view: TargetView, base_facts, notes: list[str]) -> None:
    """live sets its overrides through the program's own flags: refuse, in one line, a parser the
    reader read in full that has none of them (an argparse script, TrainingArguments built in code)."""
    if view.is_subject or base_facts is None:
        return
    known = base_facts.value("code.flags_known")
    parser = base_facts.get("code.parser")
    if known is None:
        what = f"{parser.value} at {parser.source}" if parser else "the launch's argument parser was not read"
        notes.append(f"{what}: max_steps, output_dir and report_to are passed as flags, as HfArgumentParser takes them")
        return
    missing = [name for name in OVERRIDDEN if name not in known]
    if missing:
        raise DoctorInputError(
            view.origin(),
            f"live sets {', '.join(missing)} through the training's own flags, and its parser "
            f"({parser.value if parser else '?'} at {parser.source if parser else '?'}) has no such flag: "
            "add fgclip_doctor.callback.DoctorCallback to its Trainer instead",
        )


@contextlib.contextmanager
def entered(view: TargetView, here: Path):
    """chdir to the launch's directory for the block; one line when it cannot be entered."""
    before = os.getcwd()
    try:
        os.chdir(here)
    except OSError as err:
        raise DoctorInputError(here, f"the launch runs here, and it cannot be entered: {err.strerror or err}") from None
    try:
        yield
    finally:
        os.chdir(before)


def resolve_device(device: str) -> str:
    """`auto` -> cuda when this process sees one, else cpu; `cuda` without one is refused."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise DoctorUsageError("--device cuda: no CUDA device is available here")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def run_directory(view: TargetView) -> Path:
    """Where the launch runs (its script's `cd` followed), or one line saying why it is unknown."""
    here = launch_directory(view)
    if here is None:
        raise DoctorInputError(view.origin(), f"live cannot run it from the folder it expects: {view.directory_source}")
    return here


@contextlib.contextmanager
def output_folder(keep_run: Path | None):
    """The run's output_dir: `keep_run` (the doctor's folder, never the launch's), else a temporary one."""
    if keep_run is not None:
        yield str(Path(keep_run).absolute())
        return
    with tempfile.TemporaryDirectory(prefix="fgclip-doctor-live-") as tmp:
        yield tmp


def live_argv(
    view: TargetView, steps: int, out: str, save: bool, device: str, base_facts, notes: list[str]
) -> list[str]:
    """The launch's arguments followed by live's overrides (they win: the last value of a flag)."""
    argv = launch_argv(view, notes, device)
    checked_overrides(view, base_facts, notes)
    return argv + override_flags(steps, out, save, device)


def launch_paths(view: TargetView) -> list[str]:
    """The launch's PYTHONPATH (its `export PYTHONPATH=...`), resolved from its directory."""
    found = (launch_path(view, p) for p in launch_pythonpath(view))
    return [str(p) for p in found if p is not None]


def probe_sites(view: TargetView, base_facts) -> tuple[list[dict] | None, dict | None]:
    """(sites, unplaced) where the probes hook the launch's code, as the static reader placed them
    (reader/sites.py): plain data for the probes. (None, None) for the bundled subject, whose
    probes find its own classes; ([], why) when the reader placed nothing."""
    if view.is_subject or base_facts is None:
        return None, None
    sites = [dict(s) for s in base_facts.value("code.probe_sites") or []]
    unplaced = dict(base_facts.value("code.probe_unplaced") or {})
    entry, kind = entry_kind(view)
    for site in sites if kind == "module" else ():  # `-m pkg.mod` runs pkg/mod.py as __main__ (runpy)
        for key in ("module", "caller"):
            if site.get(key) == entry:
                site[key] = "__main__"
    return sites, unplaced


def entry_kind(view: TargetView) -> tuple[str, str]:
    """(entry, "script" | "module") as the launcher runs it."""
    entry = view.entry or ""
    return entry, "script" if entry.endswith(".py") else "module"


def run_training(
    view: TargetView,
    steps: int,
    device: str = "auto",
    keep_run: Path | None = None,
    interval: int = 5,
    rank: int = 0,
    progress=None,
    settings=None,
    base_facts=None,
    log: Path | None = None,
) -> LiveRun:
    """Run the launch's training in this process for `steps` optimizer steps under the probes;
    what it prints goes to `log` (also when it fails), never to the terminal. `progress(step,
    history)` is called after every optimizer step."""
    device = resolve_device(device)
    here = run_directory(view)
    notes: list[str] = []
    sites, unplaced = probe_sites(view, base_facts)
    callback = DoctorCallback(
        interval=interval,
        rank=rank,
        settings=settings,
        base_facts=base_facts,
        step_observer=progress,
        sites=sites,
        unplaced=unplaced,
    )
    entry, kind = entry_kind(view)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(output_folder(keep_run))
        argv = live_argv(view, steps, out, keep_run is not None, device, base_facts, notes)
        printed = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fgclip-doctor-output-"))) / "output"
        printed.touch()
        try:
            with entered(view, here), registered(callback), output_to(printed):
                if kind == "script" and not Path(entry).is_file():
                    raise DoctorInputError(entry, f"training script not found in {here} (the launch's directory)")
                try:
                    run_entry(entry, kind, argv, launch_paths(view))
                except SystemExit as err:
                    failed = exit_message(err.code, printed.read_text(encoding="utf-8", errors="replace"))
                    if failed:
                        raise DoctorInputError(view.origin(), failed) from None
                except ImportError as err:
                    raise DoctorInputError(view.origin(), f"cannot import the training code: {err}") from None
                except (DoctorInputError, DoctorUsageError):
                    raise
                # the boundary with the user's own training code, which may raise anything: its crash
                # becomes one line naming where (--debug: the traceback); the doctor's own errors are above
                except Exception as err:
                    raise DoctorInputError(view.origin(), training_error(err, device)) from err
        finally:
            output = printed.read_text(encoding="utf-8", errors="replace")
            if log is not None:
                try:
                    log.write_text(output, encoding="utf-8")
                except OSError as err:
                    raise DoctorUsageError(f"--log {log}: cannot write: {err.strerror or err}") from None
    if not callback.history:
        raise DoctorInputError(view.origin(), "the training never reached a Trainer step: nothing was measured")
    return LiveRun(callback, out, device, argv, notes, output)
