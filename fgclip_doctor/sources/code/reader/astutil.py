"""Small `ast` helpers shared by the readers: constants, call names, attribute reads.

`constant` evaluates only literals and arithmetic on them (`77*4-60`, `np.log(1 / 0.07)`,
`math.log(100)`): nothing of the user's runs.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Iterator
from typing import Any

from fgclip_doctor.sources.code.reader.program import dotted

UNKNOWN = object()  # a value the reader cannot establish statically

BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}
MATH = {"log": math.log, "exp": math.exp, "sqrt": math.sqrt, "log10": math.log10}  # np.log, torch.log ...
_MAX_REPEAT = 1 << 16  # "x" * n / [0] * n: longer than any value a rule reads


def arithmetic(op: type[ast.operator], a: object, b: object) -> object:
    """`a <op> b` on two constants the code wrote, or UNKNOWN; bounded, so reading never hangs on
    `10 ** 10 ** 10` or `"x" * 10 ** 12`: an int power beyond 64 bits is computed in float (it
    overflows instead of building a huge int), a repeated sequence longer than _MAX_REPEAT is not built."""
    if op not in BINOPS or isinstance(a, bool) or isinstance(b, bool):
        return UNKNOWN
    try:
        if op is ast.Pow and isinstance(a, int) and isinstance(b, int) and (abs(b) > 64 or abs(a) >= 1 << 64):
            a = float(a)
        if op is ast.Mult:
            seq, n = (a, b) if isinstance(a, (str, bytes, list, tuple)) else (b, a)
            if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and len(seq) * n > _MAX_REPEAT:
                return UNKNOWN
        return BINOPS[op](a, b)
    except (ArithmeticError, ValueError, TypeError):
        return UNKNOWN


def constant(node: ast.AST | None, depth: int = 0) -> Any:
    """The value of a literal expression, or UNKNOWN."""
    if node is None or depth > 50:
        return UNKNOWN
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = constant(node.operand, depth + 1)
        return v if v is UNKNOWN or not isinstance(v, (int, float)) else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
        a, b = constant(node.left, depth + 1), constant(node.right, depth + 1)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return arithmetic(type(node.op), a, b)
        return UNKNOWN
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [constant(e, depth + 1) for e in node.elts]
        return (
            UNKNOWN
            if any(i is UNKNOWN for i in items)
            else (list(items) if isinstance(node, ast.List) else tuple(items))
        )
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        fn = (dotted(node.func) or "").rpartition(".")[2]
        v = constant(node.args[0], depth + 1)
        if fn in MATH and isinstance(v, (int, float)):
            try:
                return MATH[fn](v)
            except (ArithmeticError, ValueError):
                return UNKNOWN
        if fn in ("tensor", "float", "int") and isinstance(v, (int, float)):
            return float(v) if fn != "int" else int(v)
    return UNKNOWN


def call_name(call: ast.Call) -> str:
    """Dotted name of the called thing (`torch.nn.functional.cross_entropy`, `self.clip_loss`);
    `<expr>.glob` when the receiver is not a plain name (`Path(d).glob`); '' for other calls."""
    name = dotted(call.func)
    if name is None and isinstance(call.func, ast.Attribute):
        return f"<expr>.{call.func.attr}"
    return name or ""


def last(name: str) -> str:
    """Last component of a dotted name."""
    return name.rpartition(".")[2]


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def attr_reads(node: ast.AST) -> Iterator[ast.Attribute]:
    """Every Attribute node under `node` (iterative: deep trees do not recurse)."""
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute):
            yield n


def names_in(node: ast.AST) -> set[str]:
    """Every bare name and attribute name referenced under `node`."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
    return out


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield n


def enclosing_function(tree: ast.Module, target: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The innermost function whose body holds `target`."""
    best = None
    for fn in functions(tree):
        if fn.lineno <= getattr(target, "lineno", -1) <= (fn.end_lineno or fn.lineno):
            if best is None or fn.lineno >= best.lineno:
                best = fn
    return best


def calls_run(files: list, name: str, dead, unsure: dict[int, str]) -> bool | str | None:
    """Whether the calls of function `name` in the code read run in this launch: False when every
    one is in a branch not taken, why when none surely runs (a branch on a value not known), None
    when one surely runs or no call is found (the function may be run from code not read)."""
    calls = [
        n
        for f in files
        for n in ast.walk(f.tree)
        if isinstance(n, ast.Call) and last(call_name(n)) == name and name not in ("forward", "__init__")
    ]
    if not calls or any(id(c) not in dead and id(c) not in unsure for c in calls):
        return None
    return next((unsure[id(c)] for c in calls if id(c) in unsure), False)
