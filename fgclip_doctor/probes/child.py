"""The bootstrap of a live run in a child process: `python child.py SPEC` (or under torchrun).

`live` runs the training here when the doctor's own process cannot import it cleanly: a launch
of a package that is itself called `fgclip` (FG-CLIP's checkout: in the doctor's process that
name is the bundled subject), another interpreter (`--python`, another venv and transformers),
or `--nproc N`. This file is run by path, so nothing of the doctor is imported before it says
so: it puts the doctor's folder LAST on sys.path (the launch's own packages, an `fgclip` among
them, come first), imports only the probes (stdlib, torch, transformers; never the bundled
subject, never the checks or the CLI), then runs the launch as probes/program.py does in-process.

The spec (JSON) names: `root` (the folder holding fgclip_doctor/), `entry`, `kind` ("script" /
"module"), `directory` (where the launch runs), `argv` (its arguments with live's overrides),
`paths` (its PYTHONPATH), `interval`, `device`, `out` (a folder), `sites` / `unplaced` (where the
static reader placed the probes, reader/sites.py; null: the probes find the bundled subject's
classes). Each rank writes `out/rank<R>.json`: {"record": a ProbeRecord as JSON, "logs": the
Trainer's log dicts, "error": one line or null}; rank 0 also
keeps `out/progress.json` ({"step", "terms"}: the latest read-back's loss sums) up to date for
the parent's progress bar. What the training prints goes where the parent sends stdout / stderr.
Ctrl-C (SIGINT from the parent) exits 130 after the probes are removed.
"""

from __future__ import annotations

import json
import os
import sys


def _import_probes(root: str):
    """The probe modules, imported from `root` placed last on sys.path (the launch's own first)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # python put this folder first
    if root not in sys.path:
        sys.path.append(root)
    from fgclip_doctor.probes import program
    from fgclip_doctor.probes.callback import ProbeCallback

    return program, ProbeCallback


def _write(path: str, data: dict) -> None:
    """Write JSON atomically (the parent may read it at any moment)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def main(spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    program, ProbeCallback = _import_probes(spec["root"])
    rank = int(os.environ.get("RANK", "0"))
    out = spec["out"]

    def progress(step: int, history: list[dict]) -> None:
        if rank == 0:
            _write(os.path.join(out, "progress.json"), {"step": step, "terms": history[-1]["terms"] if history else {}})

    callback = ProbeCallback(
        interval=spec["interval"],
        rank=rank,
        step_observer=progress,
        sites=spec.get("sites"),
        unplaced=spec.get("unplaced"),
    )
    error = None
    try:
        with program.working_directory(spec["directory"]), program.registered(callback):
            try:
                program.run_entry(spec["entry"], spec["kind"], spec["argv"], spec.get("paths", []))
            except SystemExit as err:
                error = program.exit_message(err.code, "")
            except ImportError as err:
                error = f"cannot import the training code: {err}"
            except KeyboardInterrupt:
                raise
            # the boundary with the user's own training code, which may raise anything: one line for the parent
            except Exception as err:  # noqa: BLE001
                error = program.training_error(err, spec["device"])
    except KeyboardInterrupt:
        return 130
    except OSError as err:  # the launch's folder cannot be entered
        error = f"the launch runs in {spec['directory']}, and it cannot be entered: {err.strerror or err}"
    _write(
        os.path.join(out, f"rank{rank}.json"),
        {"record": callback.record().to_json(), "logs": callback.logs, "error": error},
    )
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
