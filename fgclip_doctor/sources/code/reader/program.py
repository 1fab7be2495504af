"""The user's program as the launch would import it: module search roots, imports, names.

Python finds `import fgclip.train.x` in sys.path[0] (the working directory for `-m`, the
script's folder for a script), then PYTHONPATH, then site-packages. The reader searches the
first two only: site-packages is library code, not the user's. A top-level package found in
neither but present in the launch's working directory is read from there, with a note (that
is what `pip install -e .` of a checkout provides, as FG-CLIP's README asks).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from fgclip_doctor.sources.code.reader.source import (
    Notes,
    SourceFile,
    display,
    parse_file,
)

MAX_FILES = 400  # a training program imports tens of its own modules; stop well above that


@dataclass(frozen=True)
class Defn:
    """A class or function defined in a user file."""

    file: SourceFile
    node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class External:
    """A name from a module outside the user's code, by its dotted path (`transformers.AutoModel`)."""

    dotted: str


Symbol = Defn | External


def dotted(node: ast.AST) -> str | None:
    """`a.b.c` for Name / Attribute chains, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class Program:
    """Locates, parses (once) and links the user's modules."""

    def __init__(self, cwd: Path, roots: list[Path], notes: Notes) -> None:
        self.cwd, self.roots, self.notes = cwd, roots, notes
        self.files: dict[str, SourceFile | None] = {}  # module name -> parsed file (None: unreadable)
        self._imports: dict[str, dict[str, str]] = {}
        self._found: dict[str, bool] = {}

    # --- finding modules -------------------------------------------------------------------
    def locate(self, module: str) -> Path | None:
        """The file of `module` under the search roots, or (top-level package) the working dir."""
        parts = module.split(".")
        for root in self.roots:
            found = _in_root(root, parts)
            if found:
                return found
        found = _in_root(self.cwd, parts)
        if found and self.cwd not in self.roots:
            top = _in_root(self.cwd, parts[:1]) or found
            self.notes.add(
                f"{display(top, self.cwd)}:1: package `{parts[0]}` is on neither sys.path[0] "
                "nor PYTHONPATH of the launch; read from the working directory, as an "
                "editable install (pip install -e .) of the checkout provides it"
            )
        return found

    def load(self, module: str, path: Path | None = None) -> SourceFile | None:
        """Parse `module` once; None when it is not the user's or cannot be read."""
        if module in self.files:
            return self.files[module]
        if len(self.files) >= MAX_FILES:
            return None
        path = path or self.locate(module)
        self.files[module] = parse_file(path, module, self.cwd, self.notes) if path else None
        return self.files[module]

    def loaded(self) -> list[SourceFile]:
        return [f for f in self.files.values() if f is not None]

    # --- imports and names -----------------------------------------------------------------
    def imports(self, file: SourceFile) -> dict[str, str]:
        """{local name: dotted target} from every import in the file (functions included)."""
        if file.module in self._imports:
            return self._imports[file.module]
        table: dict[str, str] = {}
        package = file.module if file.is_package else file.module.rpartition(".")[0]
        for node in ast.walk(file.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    table[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(package, node.module, node.level)
                for a in node.names:
                    if a.name != "*":
                        table[a.asname or a.name] = f"{base}.{a.name}" if base else a.name
        self._imports[file.module] = table
        return table

    def imported_modules(self, file: SourceFile) -> list[str]:
        """User modules this file imports (a `from m import x` may name a module or a name in m)."""
        out: list[str] = []
        for target in self.imports(file).values():
            for candidate in (target, target.rpartition(".")[0]):
                if candidate and self.locate_quiet(candidate):
                    parts = candidate.split(".")  # importing a.b.c runs a/__init__ and a/b/__init__ first
                    out += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
                    break
        return [m for m in out if self.locate_quiet(m)]

    def locate_quiet(self, module: str) -> bool:
        if module not in self._found:  # asked for every dotted name the code uses: ask the disk once
            parts = module.split(".")
            self._found[module] = any(_in_root(r, parts) for r in [*self.roots, self.cwd])
        return self._found[module]

    def resolve(self, file: SourceFile, node: ast.AST, depth: int = 0) -> Symbol | None:
        """What a Name / Attribute expression names: a user class or function, or an external."""
        name = dotted(node)
        if name is None or depth > 8:
            return None
        head, _, rest = name.partition(".")
        local = _top_level(file.tree).get(head)
        if local is not None:
            return Defn(file, local) if not rest else None
        target = self.imports(file).get(head)
        if target is None:
            return None
        return self.lookup(f"{target}.{rest}" if rest else target, depth + 1)

    def lookup(self, full: str, depth: int = 0) -> Symbol | None:
        """`pkg.mod.Name` -> the user definition (following re-exports) or External."""
        parts = full.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module, names = ".".join(parts[:cut]), parts[cut:]
            if not self.locate_quiet(module):
                continue
            f = self.load(module)
            if f is None or len(names) != 1:
                return None
            local = _top_level(f.tree).get(names[0])
            if local is not None:
                return Defn(f, local)
            target = self.imports(f).get(names[0])
            return self.lookup(target, depth + 1) if target and depth < 8 else None
        return External(full)

    def method(self, cls: Defn, name: str, depth: int = 0) -> Defn | None:
        """`name` defined in class `cls` or its user base classes (first found, as the MRO)."""
        for item in cls.node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == name:
                return Defn(cls.file, item)
        if depth > 8:
            return None
        for base in getattr(cls.node, "bases", []):
            sym = self.resolve(cls.file, base)
            if isinstance(sym, Defn) and isinstance(sym.node, ast.ClassDef):
                found = self.method(sym, name, depth + 1)
                if found:
                    return found
        return None

    def bases(self, cls: Defn, depth: int = 0) -> list[Symbol]:
        """Every base class, user ones followed recursively (for 'is this a Trainer subclass')."""
        out: list[Symbol] = []
        for base in getattr(cls.node, "bases", []):
            sym = self.resolve(cls.file, base)
            if sym is None:
                continue
            out.append(sym)
            if isinstance(sym, Defn) and isinstance(sym.node, ast.ClassDef) and depth < 8:
                out += self.bases(sym, depth + 1)
        return out


def _in_root(root: Path, parts: list[str]) -> Path | None:
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _absolute(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    pkg = package.split(".") if package else []
    pkg = pkg[: len(pkg) - (level - 1)] if level > 1 else pkg
    return ".".join([*pkg, *([module] if module else [])])


def _top_level(tree: ast.Module) -> dict[str, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))}
