"""Domain errors: caught once in the CLI and turned into one line on stderr and exit code 2."""
from __future__ import annotations


class DoctorInputError(Exception):
    """Unusable input: a missing file, a corrupt checkpoint, broken JSON, no launch in a script.

    `str(err)` is the one line the user sees: `<path>: <problem>`.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DoctorUsageError(Exception):
    """Bad usage the CLI parser could not catch (e.g. an unknown rule name in --select)."""
