"""The user's Python files, read as text and parsed with `ast`: never imported, never executed.

Each file is read once (so circular imports cost nothing). A file the reader cannot use (over
2 MB, not UTF-8, a syntax error, nesting deeper than the parser's recursion limit) becomes a
note `path:line: why`; the facts it would have given stay absent.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path

MAX_BYTES = 2 * 1024 * 1024  # a training module is a few hundred KB at most; larger is data or generated


@dataclass
class SourceFile:
    """One parsed user module: its path, its name as the launch imports it, and its tree."""

    path: Path
    module: str  # dotted name (`fgclip.train.train_fgclip`), or `__main__` for a script entry
    tree: ast.Module
    rel: str  # path as shown to the user (relative to the launch's working directory)
    is_package: bool = False  # an __init__.py

    def at(self, node: ast.AST | int) -> str:
        """`rel:line` of a node (or a line number)."""
        line = node if isinstance(node, int) else getattr(node, "lineno", 1)
        return f"{self.rel}:{line}"


@dataclass
class Notes:
    """What could not be read, one line each (`path:line: why`), in the order met, no repeats."""

    lines: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # user files that could not be parsed

    def add(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)

    def unreadable(self, rel: str, line: str) -> None:
        """A user file the reader could not use: facts that need all the code become unknown."""
        self.unread.append(rel)
        self.add(line)


def display(path: Path, cwd: Path) -> str:
    """`path` relative to `cwd` when inside it, else as given."""
    try:
        return os.path.relpath(path, cwd) if path.is_relative_to(cwd) else str(path)
    except ValueError:
        return str(path)


def _longest_line(text: str) -> int:
    """1-based number of the longest line: where deep nesting that breaks the parser usually is."""
    lines = text.splitlines() or [""]
    return max(range(len(lines)), key=lambda i: len(lines[i])) + 1


def parse_file(path: Path, module: str, cwd: Path, notes: Notes) -> SourceFile | None:
    """Parse `path` or note why not (never raises for a bad file)."""
    rel = display(path, cwd)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            notes.unreadable(
                rel,
                f"{rel}:1: {size / 2**20:.1f} MB, over the {MAX_BYTES // 2**20} MB the code "
                "reader reads; facts from it are unknown",
            )
            return None
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        notes.unreadable(rel, f"{rel}:1: cannot read: {err.strerror or err}")
        return None
    except UnicodeDecodeError:
        notes.unreadable(rel, f"{rel}:1: not UTF-8 text; facts from it are unknown")
        return None
    try:
        tree = ast.parse(text, filename=rel)
    except SyntaxError as err:  # IndentationError and "too many nested parentheses" included
        notes.unreadable(rel, f"{rel}:{err.lineno or 1}: {err.msg}; facts from it are unknown")
        return None
    except (RecursionError, MemoryError):
        notes.unreadable(rel, f"{rel}:{_longest_line(text)}: nesting too deep to parse; facts from it are unknown")
        return None
    except ValueError as err:  # source with NUL bytes
        notes.unreadable(rel, f"{rel}:1: {err}; facts from it are unknown")
        return None
    return SourceFile(path, module, tree, rel, path.name == "__init__.py")
