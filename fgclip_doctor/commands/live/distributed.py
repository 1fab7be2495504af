"""`live` in child processes: one (`python probes/child.py SPEC`) or N under torchrun (`--nproc N`).

The parent writes the launch's entry, directory and arguments (with live's overrides) to a spec
file and starts the bootstrap (probes/child.py) with the launch's interpreter (`--python`, else
this one): it imports only the probes, never the bundled subject, so a checkout whose own package
is called `fgclip` runs there as it would under `python`. Each rank writes its probe record
(history, columns, scales, groups) and the Trainer's log dicts to `<tmp>/rank<r>.json`; the parent
merges: rank 0's record for the run, every rank's DDP target offsets for ddp-targets, and the
world size for negatives-count. On the CPU the ranks use gloo (the Trainer needs `use_cpu=True`
for DDP there, which a CPU live run passes). While the children run, the parent draws the
progress bar from rank 0's `progress.json`, from the first second on.

The children run in a session of their own, so a Ctrl-C in the terminal reaches the doctor only;
the doctor then interrupts their process group (torchrun passes SIGINT on to the ranks, which
remove their probes and exit 130), waits, and kills whatever is left after a grace period: no
child outlives the doctor. Their output goes to a file in the spec's folder (`--log`), never to
the terminal, never to a pipe that could fill while nobody reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fgclip_doctor.bundled import ROOT
from fgclip_doctor.errors import DoctorInputError, DoctorUsageError
from fgclip_doctor.probes.program import last_line
from fgclip_doctor.probes.record import ProbeRecord

BOOTSTRAP = Path(__file__).resolve().parents[2] / "probes" / "child.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_children(
    origin: str,
    entry: str,
    kind: str,
    directory: Path,
    argv: list[str],
    paths: list[str],
    nproc: int,
    device: str,
    interval: int,
    python: str | None = None,
    progress=None,
    log: Path | None = None,
    timeout: float = 1800,
    sites: tuple[list[dict] | None, dict | None] = (None, None),
) -> tuple[list[ProbeRecord], list[dict]]:
    """Run the launch in `nproc` child processes (torchrun when more than one); return each rank's
    record (rank order) and rank 0's Trainer log dicts. `argv` already holds live's overrides;
    `paths`: the launch's PYTHONPATH.
    `progress`: a ProgressBar. What the children print goes to `log` when given (also on failure).
    `sites`: (probe sites, unplaced) from the static reader (runner.probe_sites), as JSON to each rank."""
    python = python or sys.executable
    with tempfile.TemporaryDirectory(prefix="fgclip-doctor-child-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "root": str(ROOT),
                    "entry": entry,
                    "kind": kind,
                    "directory": str(directory),
                    "argv": argv,
                    "paths": paths,
                    "interval": interval,
                    "device": device,
                    "out": tmp,
                    "sites": sites[0],
                    "unplaced": sites[1],
                }
            )
        )
        cmd = [python, str(BOOTSTRAP), str(spec)]
        if nproc > 1:
            launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1"]
            cmd = [python, *launcher, "--master_port", str(_free_port()), str(BOOTSTRAP), str(spec)]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        output = Path(tmp) / "output.log"
        if progress is not None:
            progress.status(f"starting {nproc} process{'es' if nproc > 1 else ''}")
        try:
            returncode = _run(cmd, env, output, directory, timeout, origin, Path(tmp) / "progress.json", progress)
        finally:
            if log is not None:
                log.write_bytes(output.read_bytes() if output.exists() else b"")
        said = output.read_text(encoding="utf-8", errors="replace") if output.exists() else ""
        results = []
        for rank in range(nproc):
            path = Path(tmp) / f"rank{rank}.json"
            if not path.exists():
                lines = said.strip().splitlines()
                errors = [ln for ln in lines if "Error" in ln or "Exception" in ln]
                tail = (errors or lines)[-1:] or ["no output"]
                who = f"rank {rank} of the --nproc {nproc} run" if nproc > 1 else "the training process"
                raise DoctorInputError(origin, f"{who} wrote nothing (exit {returncode}: {tail[0][:200]})")
            results.append(json.loads(path.read_text()))
    for result in results:
        error = result["error"]
        if error:
            if error.startswith("the training exited with") and last_line(said):
                error += f": {last_line(said)}"
            raise DoctorInputError(origin, error)
    return [ProbeRecord.from_json(r["record"]) for r in results], results[0]["logs"]


def _run(cmd, env, output: Path, cwd: Path, timeout: float, origin: str, progress_file: Path, progress) -> int:
    """Run `cmd` in its own session from `cwd`, output to `output`, drawing progress from
    `progress_file`; on Ctrl-C (or the timeout) stop its whole process group. Its exit code."""
    end = time.monotonic() + timeout
    seen = None
    with open(output, "wb") as sink:
        try:
            proc = subprocess.Popen(
                cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
            )
        except OSError as err:  # --python names no interpreter, or the launch's folder is gone
            raise DoctorUsageError(f"cannot start {cmd[0]}: {err.strerror or err}") from None
        try:
            while True:
                try:
                    return proc.wait(0.25)
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() > end:
                    stop_process_group(proc)
                    raise DoctorInputError(origin, f"the live run did not finish within {timeout:.0f} s: stopped")
                if progress is not None:
                    seen = _show(progress_file, seen, progress)
        except BaseException:  # KeyboardInterrupt, SystemExit: no child outlives the doctor
            if proc.poll() is None:
                stop_process_group(proc)
            raise


def _show(path: Path, seen, progress):
    """Update the bar from rank 0's latest progress.json (when it changed)."""
    with contextlib.suppress(OSError, ValueError):
        stamp = path.stat().st_mtime_ns
        if stamp != seen:
            data = json.loads(path.read_text())
            progress.update(data["step"], [{"terms": data["terms"]}] if data["terms"] else [])
            return stamp
    return seen


def stop_process_group(proc: subprocess.Popen, grace: float = 60) -> None:
    """SIGINT to `proc`'s process group (its own session), wait up to `grace` s, then SIGKILL the
    group and any descendant still running (torchrun starts each rank in a session of its own)."""
    descendants = _descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    try:
        import psutil
    except ImportError:
        return
    _gone, alive = psutil.wait_procs(descendants, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)


def _descendants(pid: int) -> list:
    """psutil.Process objects of every descendant of `pid` now ([] without psutil)."""
    try:
        import psutil
    except ImportError:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:  # the process already gone (NoSuchProcess), or not ours (AccessDenied)
        return []
