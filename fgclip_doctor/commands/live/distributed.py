"""`live --nproc N`: the same run under torchrun, one probe record per rank, merged in the parent.

The parent writes the parsed launch to a spec file and starts `torchrun --nproc_per_node N -m
fgclip_doctor.commands.live.distributed`; each rank runs the training in-process under the probes (as a
single-process live run does) and writes its record (history, columns, scales, groups) to
`<out>/rank<r>.json`. The parent merges: rank 0's record for the run, every rank's DDP target
offsets for ddp-targets, and the world size for negatives-count. On the CPU the ranks use gloo
(the Trainer needs `use_cpu=True` for DDP there, which a CPU live run forces).

torchrun runs in a session of its own, so a Ctrl-C in the terminal reaches the doctor only; the
doctor then interrupts torchrun's process group (torchrun passes SIGINT on to the ranks, which
clean up as a single-process run does), waits for it, and kills whatever is left after a grace
period: no rank outlives the doctor. Its output goes to a file in the spec's folder, never to a
pipe that could fill while nobody reads it.
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
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.probes.record import ProbeRecord
from fgclip_doctor.sources.launch.target import Flag, TargetView


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_distributed(
    view: TargetView,
    nproc: int,
    steps: int,
    device: str,
    interval: int,
    timeout: float = 1800,
    log: Path | None = None,
) -> tuple[list[ProbeRecord], list[str]]:
    """Run the launch on `nproc` processes; return each rank's record (rank order) and notes.
    What torchrun and the ranks print goes to `log` when given (also when the run fails)."""
    with tempfile.TemporaryDirectory(prefix="fgclip-doctor-nproc-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "target": view.target,
                    "entry": view.entry,
                    "launcher": view.launcher,
                    "flags": {k: [f.value, f.source] for k, f in view.flags.items()},
                    "steps": steps,
                    "device": device,
                    "interval": interval,
                    "directory": None if view.directory is None else str(view.directory),
                    "directory_source": view.directory_source,
                }
            )
        )
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            "-m",
            "fgclip_doctor.commands.live.distributed",
            str(spec),
            tmp,
        ]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        output = Path(tmp) / "torchrun.log"
        try:
            returncode = _run_torchrun(cmd, env, output, timeout, view.origin())
        finally:
            if log is not None:
                _gather_logs(log, [Path(tmp) / f"rank{r}.log" for r in range(nproc)] + [output])
        records = []
        for rank in range(nproc):
            path = Path(tmp) / f"rank{rank}.json"
            if not path.exists():
                lines = output.read_text(encoding="utf-8", errors="replace").strip().splitlines()
                errors = [ln for ln in lines if "Error" in ln or "Exception" in ln]
                tail = (errors or lines)[-1:] or ["no output"]
                raise DoctorInputError(
                    view.origin(),
                    f"rank {rank} of the --nproc {nproc} run wrote nothing "
                    f"(torchrun exit {returncode}: {tail[0][:200]})",
                )
            records.append(json.loads(path.read_text()))
    notes = [r.pop("notes", []) for r in records][0]  # every rank notes the same launch
    return [ProbeRecord.from_json(r) for r in records], notes


def _gather_logs(log: Path, parts: list[Path]) -> None:
    """`--log FILE` for a --nproc run: each rank's training output, then torchrun's own."""
    with open(log, "w", encoding="utf-8") as sink:
        for part in parts:
            if part.exists():
                sink.write(f"==> {part.name} <==\n")
                sink.write(part.read_text(encoding="utf-8", errors="replace"))


def _run_torchrun(cmd: list[str], env: dict, output: Path, timeout: float, origin: str) -> int:
    """Run torchrun in its own session, output to `output`; on Ctrl-C (or the timeout) stop its
    whole process group before going on. Returns its exit code."""
    with open(output, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process_group(proc)
            raise DoctorInputError(origin, f"the --nproc run did not finish within {timeout:.0f} s: stopped") from None
        except BaseException:  # KeyboardInterrupt, SystemExit: no rank outlives the doctor
            stop_process_group(proc)
            raise


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


def _worker(spec_path: str, out: str) -> None:
    from fgclip_doctor.commands.live.runner import run_training

    spec = json.loads(Path(spec_path).read_text())
    view = TargetView(
        spec["target"], spec["entry"], spec["launcher"], {k: Flag(v, s) for k, (v, s) in spec["flags"].items()}
    )
    view.directory = None if spec["directory"] is None else Path(spec["directory"])
    view.directory_source = spec["directory_source"]
    rank = int(os.environ.get("RANK", "0"))
    log = Path(out, f"rank{rank}.log")  # what this rank's training prints (gathered into --log)
    run = run_training(view, spec["steps"], spec["device"], None, spec["interval"], rank=rank, log=log)
    rec = run.callback.record().to_json()
    rec["notes"] = run.notes
    Path(out, f"rank{rank}.json").write_text(json.dumps(rec))


if __name__ == "__main__":
    try:
        _worker(sys.argv[1], sys.argv[2])
    except KeyboardInterrupt:  # the parent's Ctrl-C, passed on by torchrun: cleaned up, quietly
        sys.exit(130)
