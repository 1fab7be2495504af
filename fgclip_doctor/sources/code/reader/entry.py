"""Which code a launch runs: the entry file, the function its `__main__` calls, the modules it imports.

`python -m pkg.mod` runs `pkg/mod.py` (or `pkg/mod/__main__.py`) with the working directory as
sys.path[0]; `python path/x.py` (and deepspeed / torchrun with a script) runs the file with its
folder as sys.path[0]. A thin wrapper such as FG-CLIP's `train_mem.py`
(`from fgclip.train.train_fgclip import train` ... `train()`) is followed into the function it calls.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from fgclip_doctor.sources.code.reader.packages import project_roots
from fgclip_doctor.sources.code.reader.program import Defn, Program
from fgclip_doctor.sources.code.reader.source import SourceFile, display


@dataclass
class Entry:
    """The launch's code: the file it runs and the function that file's `__main__` calls."""

    file: SourceFile
    main: Defn | None  # e.g. train() in train_fgclip.py, main() in run_clip.py
    call_site: str  # `train_mem.py:5` where the entry calls it


def search_roots(entry: str, kind: str, cwd: Path, pythonpath: list[str]) -> list[Path]:
    """sys.path as the launch builds it, minus site-packages: [sys.path[0], *PYTHONPATH], then the
    folders an editable install of the project at `cwd` adds (`src/`, package-dir)."""
    first = cwd if kind == "module" else (cwd / entry).parent
    roots = [first.resolve()]
    for p in pythonpath:
        if p:
            path = (cwd / p).resolve()
            if path not in roots:
                roots.append(path)
    for path, _why in project_roots(cwd):
        if path not in roots:
            roots.append(path)
    if kind != "module":  # `sys.path.append("./")` at the entry's top (MetaCLIP): the launch's directory
        for extra in _entry_sys_path(cwd / entry):
            path = (cwd / extra).resolve()
            if path not in roots:
                roots.append(path)
    return roots


def _entry_sys_path(path: Path) -> list[str]:
    """Literal folders the entry script adds to sys.path at module level (relative: to the cwd)."""
    try:
        if not path.is_file():  # a FIFO would block the read
            return []
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError, RecursionError):
        return []
    out = []
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) else None
        if call is None or ast.unparse(call.func) not in ("sys.path.append", "sys.path.insert") or not call.args:
            continue
        arg = call.args[-1]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            out.append(arg.value)
    return out


def where_looked(program: Program) -> str:
    """The search roots as shown in a "not found" line: `., src (pyproject.toml ...), PYTHONPATH x`."""
    why = {p: w for p, w in project_roots(program.cwd)}
    shown = [(display(r, program.cwd) or ".") + (f" ({why[r]})" if r in why else "") for r in program.roots]
    return ", ".join(shown)


def entry_file(program: Program, entry: str, kind: str) -> SourceFile | None:
    """Parse the entry (noting why when it cannot be found or read)."""
    if kind == "module":
        path = program.locate(entry)
        if path is not None and path.name == "__init__.py":
            main = path.parent / "__main__.py"
            if not main.is_file():
                program.notes.add(
                    f"{entry}: {display(path.parent, program.cwd)} is a package without __main__.py: "
                    "`python -m` cannot run it (the launch would stop there); the training code was not read"
                )
                return None
            path = main
        if path is None:
            program.notes.add(
                f"{entry}: module not found under {where_looked(program)} from the working directory "
                f"{program.cwd} (no PYTHONPATH, src/ layout or package-dir names it); the training code was not read"
            )
            return None
        return program.load(entry, path)
    path = program.cwd / entry
    if not path.is_file():
        program.notes.add(
            f"{entry}: no such file from the launch's working directory {program.cwd}; the training code was not read"
        )
        return None
    return program.load("__main__", path)


def _main_calls(tree: ast.Module) -> list[ast.Call]:
    """Calls in the `if __name__ == "__main__":` block, else calls at the top level. In the block,
    a call that is a statement of its own (`main(args)`) comes before calls whose value is used
    (`ArgumentParser(parents=[get_args_parser()])`), the last such statement first: the run."""
    guarded, top = [], []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            runs = [s.value for s in reversed(node.body) if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)]
            guarded += runs + [n for s in node.body for n in ast.walk(s) if isinstance(n, ast.Call) and n not in runs]
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            top.append(node.value)
    return guarded or top


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def find_entry(program: Program, entry: str, kind: str) -> Entry | None:
    """The entry file and the user function its main block calls (None when not read)."""
    file = entry_file(program, entry, kind)
    if file is None:
        return None
    for call in _main_calls(file.tree):
        sym = program.resolve(file, call.func)
        if isinstance(sym, Defn) and isinstance(sym.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return Entry(file, sym, file.at(call))
    program.notes.add(
        f"{file.rel}:1: no call of a training function found under "
        '`if __name__ == "__main__":`; only its module-level code is read'
    )
    return Entry(file, None, file.at(1))


def load_reachable(program: Program, start: list[SourceFile]) -> list[SourceFile]:
    """Every user module imported, directly or not, from `start` (each parsed once)."""
    seen = {f.module for f in start}
    queue = list(start)
    while queue:
        f = queue.pop(0)
        for module in program.imported_modules(f):
            if module in seen:
                continue
            seen.add(module)
            loaded = program.load(module)
            if loaded is not None:
                queue.append(loaded)
    return program.loaded()
