"""The transformers this environment has, and what each part of the doctor needs of it.

The doctor is installed beside the user's own training code and must not move its transformers:
- the reading commands (inspect-ckpt, check-data, rules, check-config on code the doctor does not
  know) need none: 4.x, 5.x or no transformers at all;
- `live` and DoctorCallback run the user's Trainer with the transformers installed: 4.46 or later;
- the bundled subject (fgclip/) needs transformers 5 (`transformers.initialization`, gone before
  5): the `subject` extra, `pip install "fgclip-doctor[subject]"`.
The version comes from the package metadata, without importing transformers (seconds of start-up).
"""

from __future__ import annotations

import importlib.util
import re
from importlib import metadata

from fgclip_doctor.errors import DoctorUsageError

LIVE_MIN = (4, 46)  # the oldest transformers `live` and DoctorCallback are used with
SUBJECT_MIN = (5, 0)  # what fgclip/ imports (pyproject's `subject` extra)
SUBJECT_EXTRA = "pip install 'fgclip-doctor[subject]'"


def transformers_version() -> str | None:
    """The importable transformers' version, or None when there is none."""
    try:
        if importlib.util.find_spec("transformers") is None:  # also None when sys.modules blocks it
            return None
    except (ImportError, ValueError):
        return None
    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:  # importable but not installed (a source tree on sys.path)
        import transformers

        return getattr(transformers, "__version__", "0")


def version_tuple(version: str) -> tuple[int, int]:
    """'4.57.6' -> (4, 57); '5.0.0rc1' -> (5, 0); unparsable -> (0, 0)."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def subject_unavailable() -> str | None:
    """Why the bundled subject cannot run here (one line), or None when it can."""
    version = transformers_version()
    if version is not None and version_tuple(version) >= SUBJECT_MIN:
        return None
    have = f"transformers {version} is installed" if version else "transformers is not installed"
    return (
        f"the bundled FG-CLIP subject (fgclip.train) needs transformers>={_text(SUBJECT_MIN)} and {have}: "
        f"{SUBJECT_EXTRA} in a separate venv (it upgrades transformers); check-config and live on your "
        "own training script, inspect-ckpt and check-data work here as they are"
    )


def require_subject() -> None:
    """Raise DoctorUsageError (one line, exit 2) unless the bundled subject can run here."""
    why = subject_unavailable()
    if why:
        raise DoctorUsageError(why)


def require_trainer(command: str) -> None:
    """Raise DoctorUsageError unless transformers' Trainer (LIVE_MIN or later) is importable."""
    version = transformers_version()
    if version is None:
        raise DoctorUsageError(
            f"{command} runs the training under transformers' Trainer, and transformers is not installed here: "
            f"pip install 'transformers>={_text(LIVE_MIN)}' (or use the environment your training runs in)"
        )
    if version_tuple(version) < LIVE_MIN:
        raise DoctorUsageError(f"{command} needs transformers>={_text(LIVE_MIN)} (installed: {version})")
