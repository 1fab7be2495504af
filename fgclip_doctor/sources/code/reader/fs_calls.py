"""Calls whose value is the machine's, for the abstract run (interp.py): a join of known parts is a
path; a test of a known path (`os.path.isfile(latest)`) is what this machine shows, from the
launch's working directory, as the resume rules see it; the GPUs a process counts
(`torch.cuda.device_count()`) are the training machine's, never this one's. Nothing is opened."""

from __future__ import annotations

import os
from pathlib import Path

from fgclip_doctor.sources.code.reader.values import Const, Unknown, Val

TESTS = {"isfile": os.path.isfile, "isdir": os.path.isdir, "exists": os.path.exists}


def os_path_call(dotted: str, args: list[Val], cwd: Path, at: str) -> Val | None:
    """The value of `os.path.<name>(*args)` when every argument is a known string; None otherwise."""
    module, _, name = dotted.rpartition(".")
    if name == "device_count" and module.endswith("cuda"):
        return Unknown(f"{at}: torch.cuda.device_count() counts the GPUs of the machine that trains, not known here")
    if module not in ("os.path", "path") or not args:
        return None
    if not all(isinstance(a, Const) and isinstance(a.value, str) for a in args):
        return None
    parts = [a.value for a in args]
    if name == "join":
        return Const(os.path.join(*parts), at)
    if name in TESTS and len(parts) == 1:
        held = TESTS[name](Path(cwd) / os.path.expanduser(parts[0]))
        state = "exists" if held else "does not exist"
        return Const(held, f"{at}: {parts[0]} {state} on this machine (from {cwd})")
    return None
