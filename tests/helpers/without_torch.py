"""The fgclip-doctor CLI as the core install runs it: `python without_torch.py ARGS...`.

A finder first on sys.meta_path refuses torch, transformers and accelerate (ImportError, as where
they are not installed) and appends each refused import's top-level name to $FGCLIP_BLOCKED_LOG, so a
test can tell "never imported" from "imported, failed, and handled". A probe (importlib.util.find_spec:
is it installed?) is refused too, not logged. In the core venv (.ci/run) the block changes nothing.
"""

import os
import sys

BLOCKED = ("torch", "transformers", "accelerate")


class _Refuse:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in BLOCKED:
            return None
        log = os.environ.get("FGCLIP_BLOCKED_LOG")
        if log and not _probing():
            with open(log, "a") as fh:
                fh.write(top + "\n")
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _probing() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "find_spec" and frame.f_globals.get("__name__") == "importlib.util":
            return True
        frame = frame.f_back
    return False


sys.meta_path.insert(0, _Refuse())

from fgclip_doctor.cli import app  # noqa: E402 (after the block, which is the point)

sys.argv[0] = "fgclip-doctor"
app()
