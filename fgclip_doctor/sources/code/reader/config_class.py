"""A run configured by a class the launch names, not by flags (MetaCLIP):

    torchrun --nproc_per_node=8 src/training/main.py b32_400m      # the launch
    config = search_config(sys.argv[1])                             # the entry: a class by that name
    class b32_400m(Config): batch_size = 512; ...                   # configs/metaclip_v1.py
    class Config: batch_size = 64; lr = 5.0e-4; precision = "amp"   # its base

Read only when the entry hands `sys.argv[k]` to a call and the launch's k-th argument after the
script is the name of exactly one class in the checkout's Python files. That class's values, over its
bases' (the class's own win, as Python's attribute lookup does), are the run's options with their
values as defaults, each declared at its line. The class is found by its name in the files, never
imported; a name defined twice, or not at all, reads nothing.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from fgclip_doctor.sources.code.reader.astutil import UNKNOWN, constant
from fgclip_doctor.sources.code.reader.parsers import Option, ParserSpec
from fgclip_doctor.sources.code.reader.program import Defn, Program
from fgclip_doctor.sources.code.reader.source import SourceFile

MAX_FILES = 3000  # a checkout's own .py files; data or vendored trees beyond this are not searched
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "site-packages", "build", "dist"}
_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


def find_config_class(program: Program, entry: SourceFile, positionals: list[str]) -> ParserSpec | None:
    index = _argv_index(entry)
    if index is None or index > len(positionals) or not positionals[index - 1].isidentifier():
        return None
    name = positionals[index - 1]
    found = _classes_named(program, name)
    if len(found) != 1:
        return None
    cls = found[0]
    spec = ParserSpec("class", f"{cls.file.at(cls.node)} class {name}", [name])
    spec.options = list(_options(program, cls, set()).values())
    return spec if spec.options else None


def _argv_index(entry: SourceFile) -> int | None:
    """k of the first `f(sys.argv[k])` in the entry (k >= 1: an argument after the script)."""
    for node in ast.walk(entry.tree):
        if not isinstance(node, ast.Call):
            continue
        for arg in node.args:
            if (
                isinstance(arg, ast.Subscript)
                and ast.unparse(arg.value) == "sys.argv"
                and isinstance(k := constant(arg.slice), int)
                and not isinstance(k, bool)
                and k >= 1
            ):
                return k
    return None


def _classes_named(program: Program, name: str) -> list[Defn]:
    """Every `class <name>` in the checkout's .py files (a cheap text test before parsing)."""
    out, seen = [], 0
    for root, dirs, files in os.walk(program.cwd):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for fname in sorted(files):
            if not fname.endswith(".py"):
                continue
            seen += 1
            if seen > MAX_FILES:
                return out
            path = Path(root) / fname
            try:  # a FIFO or device named *.py would block a read: regular files only
                if not path.is_file() or f"class {name}" not in path.read_text(encoding="utf-8", errors="replace"):
                    continue
            except OSError:
                continue
            module = ".".join(path.relative_to(program.cwd).with_suffix("").parts)
            source = program.load(module.removesuffix(".__init__"), path)
            if source is None:
                continue
            out += [Defn(source, n) for n in source.tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    return out


def _options(program: Program, cls: Defn, seen: set[int], depth: int = 0) -> dict[str, Option]:
    """{name: Option} of the class's values: its user bases' first, its own over them."""
    out: dict[str, Option] = {}
    if id(cls.node) in seen or depth > 8:
        return out
    seen.add(id(cls.node))
    for base in cls.node.bases:
        sym = program.resolve(cls.file, base)
        if isinstance(sym, Defn) and isinstance(sym.node, ast.ClassDef):
            out.update(_options(program, sym, seen, depth + 1))
    for stmt in cls.node.body:
        one = isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
        target, value = stmt.targets[0] if one else getattr(stmt, "target", None), getattr(stmt, "value", None)
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign)) or not isinstance(target, ast.Name) or value is None:
            continue
        default = constant(value)
        kind = _KINDS.get(type(default), "any") if default is not UNKNOWN else "any"
        # no flag spells these: the launch sets them by naming the class, not by options
        out[target.id] = Option(target.id, (), kind, default=default, declared=cls.file.at(stmt))
    return out
