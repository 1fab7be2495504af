"""The bundled subject package `fgclip`, and the user's own package of the same name.

FG-CLIP's repository also calls its package `fgclip`. From such a checkout (`python -m
fgclip_doctor ...` puts the working directory first on sys.path, so does `PYTHONPATH=.`), a plain
`import fgclip` would run the user's code in the doctor's process. So the doctor's commands load
the bundled package by its file location (`pin_subject`): once it sits in `sys.modules`, every
`from fgclip.x import y` resolves inside it, whatever sys.path says. The user's `fgclip` is only
ever read as text (sources/code/reader).

    pin_subject()                       # at the CLI's start: the bundled package, or DoctorInputError
    is_bundled_package(Path("fgclip"))  # False for FG-CLIP's own package
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from fgclip_doctor.errors import DoctorInputError

#: The folder holding fgclip_doctor/ and, next to it, the bundled fgclip/ (checkout or site-packages).
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fgclip"
#: Files only the bundled subject has (FG-CLIP's `fgclip/train/` is a package, ours a module).
_MARKERS = ("train.py", "presets.py", "memory_bank.py")


def is_bundled_package(path: Path) -> bool:
    """True when `path` (a package folder) is the doctor's bundled subject."""
    try:
        return Path(path).resolve() == PACKAGE and _intact()
    except OSError:
        return False


def _intact() -> bool:
    return all((PACKAGE / m).is_file() for m in _MARKERS) and not (PACKAGE / "train").is_dir()


def _is_bundled_module(mod: ModuleType) -> bool:
    paths = [Path(p).resolve() for p in getattr(mod, "__path__", [])]
    return PACKAGE in paths


def pin_subject() -> ModuleType:
    """Load the bundled `fgclip` by location into sys.modules (once) and return it.

    Raises DoctorInputError when the bundled package is missing or replaced (FG-CLIP's own
    package installed over it), or when another `fgclip` was imported first in this process.
    """
    mod = sys.modules.get("fgclip")
    if mod is not None:
        if _is_bundled_module(mod):
            return mod
        where = getattr(mod, "__file__", None) or "fgclip"
        raise DoctorInputError(
            where,
            "another package named `fgclip` is imported in this process: the doctor's bundled subject cannot load",
        )
    if not _intact():
        raise DoctorInputError(
            PACKAGE,
            "the doctor's bundled subject package `fgclip` is missing or replaced (FG-CLIP's own "
            "`fgclip` installed over it?): reinstall fgclip-doctor",
        )
    spec = importlib.util.spec_from_file_location(
        "fgclip", PACKAGE / "__init__.py", submodule_search_locations=[str(PACKAGE)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fgclip"] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop("fgclip", None)
        raise
    return mod


def own_package_named_fgclip(roots: list[Path]) -> Path | None:
    """The first `fgclip` package or module in `roots` (a launch's sys.path) that is not the
    bundled subject: the user's own code of that name, or None."""
    for root in roots:
        for candidate in (root / "fgclip", root / "fgclip.py"):
            try:
                found = (candidate / "__init__.py").is_file() if candidate.suffix != ".py" else candidate.is_file()
            except OSError:
                continue
            if found and not is_bundled_package(candidate):
                return candidate
            if found:
                return None  # the bundled one comes first on this path
    return None
