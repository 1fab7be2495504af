"""Settings: rule selection, strictness and thresholds from `[tool.fgclip-doctor]`, then the CLI.

    [tool.fgclip-doctor]
    select = ["FGD1", "negatives-count"]   # slugs, codes or code prefixes; empty = all
    ignore = ["grad-accum-negatives"]
    strict = true                           # warnings fail (exit 1)
    expect = ["region@50<1.0"]              # opt-in expectations (loss-milestones)
    format = "table"                        # table | json | junit

    [tool.fgclip-doctor.thresholds.logit-scale-clamp]
    max = 4.6052

The file is the nearest `pyproject.toml` at or above the start directory that has a
`[tool.fgclip-doctor]` table (like ruff, pyproject files without one are passed over).
Rule names inside select / ignore / thresholds are checked against the registry when rules run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from fgclip_doctor.errors import DoctorInputError, DoctorUsageError

FORMATS = ("table", "json", "junit")
_SECTION = "tool.fgclip-doctor"


@dataclass
class Settings:
    """Effective settings of one command (file values, then CLI overrides)."""

    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    strict: bool = False
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    expect: list[str] = field(default_factory=list)
    format: str | None = None

    def merge(self, cli_values: Mapping[str, Any]) -> Settings:
        """A copy with CLI values applied; a value of None (or an empty list) means "not given".

        Lists given on the command line replace the file's lists; `thresholds` given are merged
        per rule over the file's.
        """
        changes: dict[str, Any] = {}
        for key, value in cli_values.items():
            if key not in _FIELDS:
                raise DoctorUsageError(f"unknown setting {key!r}")
            if value is None or (isinstance(value, (list, tuple, dict)) and not value):
                continue
            if key == "thresholds":
                merged = {k: dict(v) for k, v in self.thresholds.items()}
                for rule_name, table in value.items():
                    merged.setdefault(rule_name, {}).update(table)
                value = merged
            elif key in ("select", "ignore", "expect"):
                value = list(value)
            elif key == "format" and value not in FORMATS:
                raise DoctorUsageError(f"--format must be one of {', '.join(FORMATS)}, got {value!r}")
            changes[key] = value
        return replace(self, **changes)


_FIELDS = ("select", "ignore", "strict", "thresholds", "expect", "format")


def find_pyproject(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest pyproject.toml at or above `start` with a [tool.fgclip-doctor] table, and that table."""
    start = start.resolve()
    for folder in [start, *start.parents] if start.is_dir() else list(start.parents):
        candidate = folder / "pyproject.toml"
        if not candidate.is_file():
            continue
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise DoctorInputError(candidate, f"not valid TOML: {err}") from err
        except UnicodeDecodeError as err:
            raise DoctorInputError(candidate, f"not UTF-8 text: {err}") from err
        except RecursionError:  # `x = [[[[...]]]]`: tomllib recurses once per level
            raise DoctorInputError(candidate, "not usable TOML: arrays or tables nested too deeply") from None
        table = data.get("tool", {}).get("fgclip-doctor")
        if table is not None:
            return candidate, table
    return None


def load_settings(start: Path) -> tuple[Settings, str | None]:
    """Settings from the nearest configured pyproject.toml at or above `start`, and its path.

    Defaults and None when there is none. Unknown keys or wrong types raise DoctorUsageError
    naming the file and the key.
    """
    found = find_pyproject(start)
    if found is None:
        return Settings(), None
    path, table = found
    return parse_settings(table, str(path)), str(path)


def parse_settings(table: Any, origin: str) -> Settings:
    """Validate a `[tool.fgclip-doctor]` table (already parsed) into Settings."""

    def bad(key: str, problem: str) -> DoctorUsageError:
        return DoctorUsageError(f"{origin}: [{_SECTION}] {key}: {problem}")

    if not isinstance(table, dict):
        raise bad("", "must be a table")
    settings = Settings()
    for key, value in table.items():
        if key in ("select", "ignore", "expect"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad(key, f"must be a list of strings, got {value!r}")
            setattr(settings, key, list(value))
        elif key == "strict":
            if not isinstance(value, bool):
                raise bad(key, f"must be true or false, got {value!r}")
            settings.strict = value
        elif key == "format":
            if value not in FORMATS:
                raise bad(key, f"must be one of {', '.join(FORMATS)}, got {value!r}")
            settings.format = value
        elif key == "thresholds":
            settings.thresholds = _parse_thresholds(value, bad)
        else:
            raise bad(key, f"unknown key (known: {', '.join(_FIELDS)})")
    return settings


def _parse_thresholds(value: Any, bad) -> dict[str, dict[str, float]]:
    if not isinstance(value, dict):
        raise bad("thresholds", "must be a table of per-rule tables")
    out: dict[str, dict[str, float]] = {}
    for rule_name, table in value.items():
        where = f"thresholds.{rule_name}"
        if not isinstance(table, dict):
            raise bad(where, f"must be a table of numbers, got {table!r}")
        out[rule_name] = {}
        for k, v in table.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad(f"{where}.{k}", f"must be a number, got {v!r}")
            out[rule_name][k] = float(v)
    return out
