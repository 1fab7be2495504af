"""Evaluate the path and text expressions of training code with the launch's flag values.

    log_base_path = os.path.join(args.logs, args.name)          # --logs ./logs --name run1
    args.checkpoint_path = os.path.join(log_base_path, "checkpoints")
    resume_from = os.path.join(args.checkpoint_path, LATEST)    # LATEST = "epoch_latest.pt"
    -> "./logs/run1/checkpoints/epoch_latest.pt"

Values are followed through variables (the assignment to a name in the same function, a module
constant in any file read), attributes set on the parsed arguments (`args.x = ...`, else the flag's
value), `os.path.join`, `Path(...) / ...`, f-strings, `+`, `a or b`, `x if test else y` and
comparisons. Anything else (a call of user code, a subscript, the clock) is unknown: `evaluate`
returns None and names what was missing.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable
from typing import Any

from fgclip_doctor.sources.code.reader.astutil import UNKNOWN, call_name, enclosing_function, last
from fgclip_doctor.sources.code.reader.source import SourceFile

MAX_DEPTH = 40  # nested expressions and the assignments they follow; `seen` stops cycles
MAX_JSON_BYTES = 1 << 20  # a model config is a few hundred bytes

#: dest -> the flag's value (launch or the code's default), UNKNOWN when it cannot be known.
FlagValue = Callable[[str], Any]


class PathEval:
    """Evaluates expressions of `files` against `flag_value`; `missing` collects what was unknown."""

    def __init__(self, files: list[SourceFile], flag_value: FlagValue) -> None:
        self.files, self.flag_value = files, flag_value
        self.missing: list[str] = []
        self.bindings: dict[str, Any] = {}  # names given a value by the caller (a loop variable)
        self._arg_sets: dict[str, list[tuple[SourceFile, ast.expr]]] = {}
        self._constants: dict[str, list[tuple[SourceFile, ast.expr]]] = {}
        for f in files:
            for node in ast.walk(f.tree):
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    t = node.targets[0]
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and _is_args(t.value.id):
                        self._arg_sets.setdefault(t.attr, []).append((f, node.value))
            for node in f.tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    self._constants.setdefault(node.targets[0].id, []).append((f, node.value))

    def evaluate(self, file: SourceFile, node: ast.expr) -> Any:
        """The value of `node` (str / number / None), or UNKNOWN."""
        return self._ev(file, node, 0, frozenset())

    def _ev(self, f: SourceFile, node: ast.expr, depth: int, seen: frozenset) -> Any:
        if depth > MAX_DEPTH:
            return UNKNOWN
        ev = lambda n: self._ev(f, n, depth + 1, seen)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.JoinedStr):
            parts = [ev(v.value) if isinstance(v, ast.FormattedValue) else v.value for v in node.values]
            return UNKNOWN if any(p is UNKNOWN for p in parts) else "".join(str(p) for p in parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, tuple(_NUMERIC)):
            a, b = ev(node.left), ev(node.right)
            if _number(a) and _number(b):
                try:
                    return _NUMERIC[type(node.op)](a, b)
                except (ArithmeticError, ValueError):
                    return UNKNOWN
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            a = ev(node.operand)
            return -a if _number(a) else UNKNOWN
        if isinstance(node, (ast.Dict, ast.List, ast.Tuple)):
            try:
                return ast.literal_eval(node)
            except (ValueError, SyntaxError, TypeError):
                return UNKNOWN
        if isinstance(node, ast.Subscript):  # MODEL_CFGS[args.model]["layers"]
            container, key = ev(node.value), ev(node.slice)
            try:
                return container[key] if isinstance(container, (dict, list, tuple)) else UNKNOWN
            except (KeyError, IndexError, TypeError):
                return UNKNOWN
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Div)):
            a, b = ev(node.left), ev(node.right)
            if a is UNKNOWN or b is UNKNOWN or not isinstance(a, str) or not isinstance(b, str):
                return UNKNOWN
            return a + b if isinstance(node.op, ast.Add) else os.path.join(a, b)
        if isinstance(node, ast.BoolOp):  # `a or b` / `a and b`, Python's short-circuit values
            for v in node.values:
                value = ev(v)
                if value is UNKNOWN or (bool(value) if isinstance(node.op, ast.Or) else not value):
                    return value
            return value
        if isinstance(node, ast.IfExp):  # `args.visual_ld if args.visual_ld else args.ld`
            test = ev(node.test)
            return UNKNOWN if test is UNKNOWN else ev(node.body if test else node.orelse)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            a = ev(node.operand)
            return UNKNOWN if a is UNKNOWN else not a
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            a, b = ev(node.left), ev(node.comparators[0])
            try:
                return UNKNOWN if a is UNKNOWN or b is UNKNOWN else _COMPARE[type(node.ops[0])](a, b)
            except TypeError:
                return UNKNOWN
        if isinstance(node, ast.Call):
            name = last(call_name(node))
            if name == "load" and call_name(node).startswith("json") and node.args:  # json.load(open(P))
                inner = opened_by_with(f, node.args[0])
                path = ev(inner.args[0]) if isinstance(inner, ast.Call) and inner.args else UNKNOWN
                return _read_json(f, path)
            args = [ev(a) for a in node.args]
            if name in ("int", "float") and len(args) == 1 and (_number(args[0]) or isinstance(args[0], str)):
                try:
                    return int(args[0]) if name == "int" else float(args[0])
                except ValueError:
                    return UNKNOWN
            if any(a is UNKNOWN or not isinstance(a, str) for a in args) or not args:
                return UNKNOWN
            if name == "join" or name in ("Path", "PurePath", "PosixPath"):
                return os.path.join(*args)
            if name in ("str", "expanduser", "normpath", "abspath", "fspath", "realpath") and len(args) == 1:
                return args[0]
            if name in ("dirname", "basename") and len(args) == 1:
                return getattr(os.path, name)(args[0])
            return UNKNOWN
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _is_args(node.value.id):
            return self._arg(f, node.attr, depth, seen)
        if isinstance(node, ast.Attribute) and node.attr == "parent":  # Path(__file__).parent
            base = ev(node.value)
            return os.path.dirname(base) if isinstance(base, str) else UNKNOWN
        if isinstance(node, ast.Name):
            if node.id == "__file__":
                return str(f.path)
            if node.id in self.bindings:
                return self.bindings[node.id]
            return self._name(f, node, depth, seen)
        return UNKNOWN

    def _arg(self, f: SourceFile, attr: str, depth: int, seen: frozenset) -> Any:
        """`args.attr`: the code's own `args.attr = ...` (other than `args.attr or ...` of itself), else the flag."""
        key = ("args", attr)
        if key not in seen:
            for file, value in reversed(self._arg_sets.get(attr, [])):
                got = self._ev(file, value, depth + 1, seen | {key})
                if got is not UNKNOWN:
                    return got
        value = self.flag_value(attr)
        if value is UNKNOWN:
            self.missing.append(f"--{attr}")
        return value

    def _name(self, f: SourceFile, node: ast.Name, depth: int, seen: frozenset) -> Any:
        key = ("name", node.id, f.rel)
        if key in seen:
            return UNKNOWN
        scope = enclosing_function(f.tree, node)
        if scope is not None:
            writes = [
                n
                for n in ast.walk(scope)
                if isinstance(n, ast.Assign)
                and len(n.targets) == 1
                and isinstance(n.targets[0], ast.Name)
                and n.targets[0].id == node.id
                and n.lineno <= node.lineno
            ]
            if writes:  # the last write above the read, in program order
                return self._ev(f, writes[-1].value, depth + 1, seen | {key})
        for file, value in self._constants.get(node.id, []):  # a module constant, here or imported
            if file is f or node.id.isupper():
                return self._ev(file, value, depth + 1, seen | {key})
        return UNKNOWN


def feeding(scope: ast.AST, node: ast.expr, depth: int = 0) -> list[ast.AST]:
    """`node` and, for each name in it, the values assigned to that name in `scope`, recursively."""
    out: list[ast.AST] = [node]
    if depth > 6:
        return out
    for name in {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}:
        for a in ast.walk(scope):
            if isinstance(a, (ast.Assign, ast.AnnAssign)) and a.value is not None:
                targets = a.targets if isinstance(a, ast.Assign) else [a.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    out += feeding(scope, a.value, depth + 1)
    return out


def scope_of(f: SourceFile, node: ast.AST) -> ast.AST:
    return enclosing_function(f.tree, node) or f.tree


_NUMERIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b if abs(b) <= 1024 else UNKNOWN,
}


_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Is: lambda a, b: a is b if a is None or b is None else a == b,
    ast.IsNot: lambda a, b: a is not b if a is None or b is None else a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def opened_by_with(f: SourceFile, node: ast.expr) -> ast.expr:
    """`f` of `with open(P) as f:` -> the `open(P)` call (the nearest such `with` above); else `node`."""
    if not isinstance(node, ast.Name):
        return node
    best = None
    for w in ast.walk(f.tree):
        if isinstance(w, ast.With) and w.lineno <= node.lineno:
            for item in w.items:
                if isinstance(item.optional_vars, ast.Name) and item.optional_vars.id == node.id:
                    if best is None or w.lineno > best[0]:
                        best = (w.lineno, item.context_expr)
    return best[1] if best else node


def _read_json(f: SourceFile, path: Any) -> Any:
    """A JSON file the code reads (a model config beside its module), from the folder it would be
    opened in: absolute, or relative to the code's checkout. Small files only; never executed."""
    if not isinstance(path, str):
        return UNKNOWN
    full = path if os.path.isabs(path) else os.path.join(os.path.dirname(str(f.path)), path)
    try:
        if not os.path.isfile(full) or os.path.getsize(full) > MAX_JSON_BYTES:  # a FIFO would block
            return UNKNOWN
        with open(full, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, RecursionError):
        return UNKNOWN


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_args(name: str) -> bool:
    return name.endswith("args") or name in ("opt", "opts", "cfg", "config")
