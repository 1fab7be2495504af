"""The bundled subject as a user's checkout: the same code under other names (issue 18 item 1).

`make_checkout(dst, package="mytrain")` copies `fgclip/` to `dst/<package>/` and renames, with
`ast` (definitions, imports, names, method calls and `getattr(x, "name")` change together):

- the package (`fgclip` -> `mytrain`) and every module but `train` (`losses` -> `mod3`);
- every top-level class and function (`GlobalContrastiveLoss` -> `K2`, `roi_align` -> `fn7`);
- every method a subject class defines that no library base class defines (`box_features`,
  `tick`, `clamp_logit_scales_` -> `m4` ...): what the library calls (`forward`, `compute_loss`,
  `create_optimizer`, `_init_weights`, `log`) keeps its name, as it must to run.

The names are generated (K1, fn1, m1, mod1), never chosen: nothing the static reader learns may
hang on the subject's names. Attribute names (parameters, buffers, config fields) and flags stay:
they are the checkpoint layout and the command line the launches pass. The README launches are
copied with `fgclip.train` -> `<package>.train` and their helper files (scripts/zero2.json).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shutil
from pathlib import Path

SUBJECT = Path(__file__).resolve().parents[2] / "fgclip"
SCRIPTS = SUBJECT.parent / "scripts"
LAUNCHES = ("seed_bug.sh", "train_tiny.sh", "train_ucf_full.sh")


def _library_names(module: str, cls_name: str) -> set[str]:
    """Names the class's library (non-subject) bases define: those must keep their spelling."""
    mod = importlib.import_module(f"fgclip.{module}")
    cls = getattr(mod, cls_name)
    out: set[str] = set()
    for base in inspect.getmro(cls)[1:]:
        if not base.__module__.startswith("fgclip"):
            out |= set(vars(base))
    return out


def method_names() -> set[str]:
    """Names of the subject classes' own methods (renamed where an attribute reads them, also when
    a function of the same name took the rename first: `faults.active` and `RegionMemoryBank.active`)."""
    out: set[str] = set()
    for path in SUBJECT.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                keep = _library_names(path.stem, node.name) if path.stem != "__init__" else set()
                out |= {
                    item.name
                    for item in node.body
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and not item.name.startswith("__")
                    and item.name not in keep
                }
    return out


def renames(package: str = "mytrain") -> dict[str, str]:
    """{old name: new name} over the subject's modules, classes, functions and own methods."""
    table: dict[str, str] = {"fgclip": package}
    counters = {"K": 0, "fn": 0, "m": 0, "mod": 0}

    def fresh(kind: str) -> str:
        counters[kind] += 1
        return f"{kind}{counters[kind]}"

    files = sorted(p for p in SUBJECT.glob("*.py") if p.name != "__init__.py")
    for path in files:
        if path.stem != "train":
            table[path.stem] = fresh("mod")
    for path in files:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                table.setdefault(node.name, fresh("K"))
                keep = _library_names(path.stem, node.name)
                for item in node.body:
                    if (
                        isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and not item.name.startswith("__")
                        and item.name not in keep
                    ):
                        table.setdefault(item.name, fresh("m"))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "main":
                table.setdefault(node.name, fresh("fn"))
    return table


class _Renamer(ast.NodeTransformer):
    """Definitions and their uses renamed; library names (`transformers.TrainingArguments`) kept."""

    def __init__(self, table: dict[str, str], package: str, module: str) -> None:
        self.table, self.package, self.module = table, package, module
        self.defs = {k: v for k, v in table.items() if not v.startswith("mod") and k != "fgclip"}
        self.methods = {k for k, v in table.items() if v.startswith("m") and not v.startswith("mod")}
        self.methods |= method_names() & self.defs.keys()
        self.user_modules: set[str] = set()  # local names bound to a subject module

    def _module(self, dotted: str) -> str:
        parts = dotted.split(".")
        if parts[0] != "fgclip":
            return dotted
        return ".".join([self.package, *(self.table.get(p, p) for p in parts[1:])])

    def visit_Import(self, node: ast.Import) -> ast.AST:
        for a in node.names:
            if a.name.split(".")[0] == "fgclip":
                a.asname = a.asname or (a.name if "." not in a.name else None)
                a.name = self._module(a.name)
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.level or (node.module or "").split(".")[0] != "fgclip":
            return node
        package_level = node.module == "fgclip"
        node.module = self._module(node.module)
        for a in node.names:
            local = a.asname or a.name
            if package_level and a.name in self.table:  # `from fgclip import faults`: a module
                a.asname, a.name = local, self.table[a.name]
                self.user_modules.add(local)
            elif a.name in self.defs:
                a.name = self.defs[a.name]
                a.asname = None if a.asname is None else self.defs.get(a.asname, a.asname)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.defs:
            node.id = self.defs[node.id]
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        owner = node.value
        if node.attr in self.methods or (isinstance(owner, ast.Name) and owner.id in self.user_modules):
            node.attr = self.defs.get(node.attr, node.attr)
        return node

    def _def(self, node):
        node.name = self.defs.get(node.name, node.name)
        _drop_docstring(node)
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _def

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        if name in ("getattr", "hasattr", "setattr") and len(node.args) > 1:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and arg.value in self.methods:
                arg.value = self.defs[arg.value]
        return node


def _drop_docstring(node) -> None:
    """Docstrings name the subject's classes: gone, so only code is left to read."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]


def rename_source(text: str, table: dict[str, str], package: str = "mytrain", module: str = "") -> str:
    """The module with every subject definition and its uses renamed (comments and docstrings are dropped)."""
    tree = ast.parse(text)
    _drop_docstring(tree)
    tree = _Renamer(table, package, module).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def make_checkout(dst: Path, package: str = "mytrain") -> dict[str, str]:
    """Write `dst/<package>/` and `dst/scripts/` (the three README launches); returns the renames."""
    table = renames(package)
    pkg = dst / package
    pkg.mkdir(parents=True)
    for path in SUBJECT.glob("*.py"):
        stem = path.stem if path.stem in ("__init__", "train") else table[path.stem]
        (pkg / f"{stem}.py").write_text(rename_source(path.read_text(), table, package, path.stem))
    scripts = dst / "scripts"
    scripts.mkdir()
    for name in LAUNCHES:
        text = (SCRIPTS / name).read_text()
        (scripts / name).write_text(re.sub(r"\bfgclip\.train\b", f"{package}.train", text))
    for helper in SCRIPTS.glob("*.json"):
        shutil.copy(helper, scripts / helper.name)
    return table
