"""Where the table goes: its width and whether it is coloured, decided once from the environment.

Width: `COLUMNS` when set, else the terminal's (stdout), else 80; on a terminal never wider than
it. Colour: `NO_COLOR` (any non-empty value) turns it off; `FORCE_COLOR` (non-empty) turns it on
even off a terminal; otherwise colour only when stdout is a terminal. No colour means no ANSI
codes at all (no bold either), so piped output and files are plain text.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from rich.console import Console

DEFAULT_WIDTH = 80
MIN_WIDTH = 20  # below this no layout is readable; COLUMNS=5 is taken as 20


def notice_stream(format: str | None) -> TextIO:
    """Where a line said before the report goes (a first use's "generating ..."): stdout above a
    table, stderr when stdout carries a JSON or JUnit document, which must stay parseable."""
    return sys.stdout if (format or "table") == "table" else sys.stderr


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed or replaced streams
        return False


def _terminal_columns(stream: TextIO) -> int | None:
    if not _isatty(stream):
        return None
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, ValueError, OSError):
        return None


def terminal_width(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Columns the table may use (see the module docstring)."""
    env = os.environ if environ is None else environ
    stream = sys.stdout if stream is None else stream
    columns = env.get("COLUMNS", "").strip()
    asked = int(columns) if columns.isdigit() and int(columns) > 0 else None
    term = _terminal_columns(stream)
    if term is not None:
        width = min(term, asked) if asked else term
    else:
        width = asked or DEFAULT_WIDTH
    return max(MIN_WIDTH, width)


def colour_wanted(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """NO_COLOR wins, then FORCE_COLOR, then: is stdout a terminal."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR", ""):
        return False
    if env.get("FORCE_COLOR", ""):
        return True
    return _isatty(sys.stdout if stream is None else stream)


def make_console(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> Console:
    """The console every command prints through: fixed width, colour as decided above."""
    stream = sys.stdout if stream is None else stream
    colour = colour_wanted(stream, environ)
    return Console(
        file=EncodableText(stream),
        width=terminal_width(stream, environ),
        force_terminal=colour,
        color_system=("auto" if _isatty(stream) else "standard") if colour else None,
        no_color=not colour,
        highlight=False,
        soft_wrap=False,
        emoji=False,
        force_jupyter=False,
    )


class EncodableText:
    """A text stream that writes what its encoding cannot hold as backslash escapes instead of
    raising: a lone surrogate from a hostile input file (`"\\ud800"` in a YAML key) is shown as
    `\\ud800`, never a UnicodeEncodeError after the checks ran."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._encoding = getattr(stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except UnicodeEncodeError:
            safe = text.encode(self._encoding, "backslashreplace").decode(self._encoding, "replace")
            return self._stream.write(safe)

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding, ...
        return getattr(self._stream, name)
