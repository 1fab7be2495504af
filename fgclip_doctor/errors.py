"""Domain errors: caught once in the CLI and turned into one line on stderr and exit code 2."""

from __future__ import annotations

import os


class DoctorInputError(Exception):
    """Unusable input: a missing file, a corrupt checkpoint, broken JSON, no launch in a script.

    `str(err)` is the one line the user sees: `<path>: <problem>`.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{shown(self.path)}: {problem}")


def shown(path: str) -> str:
    """`path` as the user would type it: relative when it lies below the working directory (a
    reader that resolved it still names it as the other errors do)."""
    cwd = os.getcwd().rstrip(os.sep)
    return path[len(cwd) + 1 :] if os.path.isabs(path) and path.startswith(cwd + os.sep) else path


def read_error(path: object, err: OSError, expected: str = "a file") -> DoctorInputError:
    """The one-line DoctorInputError for an OSError met while opening or reading `path`."""
    if isinstance(err, FileNotFoundError):
        return DoctorInputError(path, "no such file")
    if isinstance(err, IsADirectoryError):
        return DoctorInputError(path, f"is a directory, expected {expected}")
    return DoctorInputError(path, f"cannot read: {err.strerror or err}")


class DoctorUsageError(Exception):
    """Bad usage the CLI parser could not catch (e.g. an unknown rule name in --select)."""


def one_line(err: BaseException) -> str:
    """The error as the one line the CLI prints after `fgclip-doctor: error: `."""
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
