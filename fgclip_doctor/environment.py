"""The torch and transformers this environment has, and what each part of the doctor needs of them.

The doctor is installed beside the user's own training code and must not move its transformers:
- the reading commands (inspect-ckpt on safetensors, check-data, rules, check-config on code the
  doctor does not know) need neither: the core install, `pip install -e .`;
- inspect-ckpt on `.bin` / `.pt` pickles reads them with torch's weights-only loader: torch;
- `live` and DoctorCallback run the user's Trainer with the transformers installed: torch and
  transformers 4.46 or later, the `live` extra;
- the bundled subject (fgclip/) needs transformers 5 (`transformers.initialization`, gone before
  5): the `subject` extra.
Each need that is not met is one line naming the command that meets it (`install_command`), from
this checkout. Versions come from the package metadata, without importing anything (seconds of
start-up).
"""

from __future__ import annotations

import importlib.util
import os
import re
from importlib import metadata
from pathlib import Path

from fgclip_doctor.errors import DoctorUsageError

LIVE_MIN = (4, 46)  # the oldest transformers `live` and DoctorCallback are used with
SUBJECT_MIN = (5, 0)  # what fgclip/ imports (pyproject's `subject` extra)
#: torch's CPU wheels (the public index's default torch on Linux is the CUDA build, several GB)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: the folder holding fgclip_doctor/: a checkout when it has the pyproject.toml (pip install -e)
_ROOT = Path(__file__).resolve().parent.parent


def install_command(extra: str) -> str:
    """`pip install -e "<checkout>[extra]"`, the checkout this doctor runs from ("." when it is the
    working folder): fgclip-doctor is installed from a checkout, never from an index."""
    if (_ROOT / "pyproject.toml").is_file():
        try:
            here = _ROOT == Path.cwd().resolve()
        except OSError:
            here = False
        where = "." if here else str(_ROOT)
    else:  # a copy installed without its checkout
        where = "/path/to/fgclip-doctor"
    return f'pip install -e "{where}[{extra}]"'


def torch_install_command() -> str:
    """The command that installs torch's CPU build anywhere pip reaches the public indexes."""
    return f"pip install torch --index-url {TORCH_CPU_INDEX}"


def importable(name: str) -> bool:
    """True when `import name` would find a module (False when sys.modules blocks it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def quiet_transformers_without_torch() -> None:
    """Call before importing transformers: without torch its import warns on stderr that models are
    unavailable, which is true and nothing the reading commands use (TrainingArguments and
    HfArgumentParser import without torch); the advisory would be a stray line under the report."""
    if not importable("torch"):
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def transformers_version() -> str | None:
    """The importable transformers' version, or None when there is none."""
    if not importable("transformers"):
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


def _missing(version: str | None, minimum: tuple[int, int]) -> str | None:
    """What of torch + transformers>=minimum this environment lacks, in words, or None."""
    torch = importable("torch")
    if version is None:
        return "transformers is not installed" if torch else "torch and transformers are not installed"
    if version_tuple(version) < minimum:
        return f"transformers {version} is installed" + ("" if torch else " and torch is not")
    return None if torch else "torch is not installed"


def subject_unavailable() -> str | None:
    """Why the bundled subject cannot run here (one line), or None when it can."""
    have = _missing(transformers_version(), SUBJECT_MIN)
    if have is None:
        return None
    return (
        f"the bundled FG-CLIP subject (fgclip.train) needs torch and transformers>={_text(SUBJECT_MIN)}, "
        f"and {have}: {install_command('subject')} in a separate venv (it upgrades transformers); "
        "check-config on your own training script, inspect-ckpt on safetensors and check-data work "
        "here as they are"
    )


def require_subject() -> None:
    """Raise DoctorUsageError (one line, exit 2) unless the bundled subject can run here."""
    why = subject_unavailable()
    if why:
        raise DoctorUsageError(why)


def require_trainer(command: str) -> None:
    """Raise DoctorUsageError unless torch and transformers' Trainer (LIVE_MIN or later) are importable."""
    have = _missing(transformers_version(), LIVE_MIN)
    if have is None:
        return
    raise DoctorUsageError(
        f"{command} runs the training under transformers' Trainer (torch, transformers>={_text(LIVE_MIN)}), "
        f"and {have}: {install_command('live')} (or use the environment your training runs in)"
    )


def require_torch(what: str) -> None:
    """Raise DoctorUsageError (one line, exit 2) naming `what` needs torch, unless torch is importable."""
    if not importable("torch"):
        raise DoctorUsageError(
            f"{what} needs torch, which is not installed here: {torch_install_command()} (its CPU build; "
            "the CUDA one from the public index), or read a safetensors copy"
        )
