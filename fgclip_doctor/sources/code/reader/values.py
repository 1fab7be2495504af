"""Partial evaluation of the user's code with the launch's flag values: where a value comes from.

The training function is followed statement by statement, in program order, into the user's own
functions, classes and methods (arguments bound to parameters, defaults and `**kwargs` dicts
included), by Interp (interp.py, expressions in exprs.py). A value is one of:

    Const(3.0, "train.sh:12 --lr", flag="lr")  a literal, a flag's value, arithmetic on them
    Const(0.07, "cfg.yaml:4 temp", config=...) a config file's value (config_values.py), kept
                                          through arithmetic (`math.log(1 / cfg["temp"])`)
    Weights(path, "logit_scale", at, before)   a tensor as a weight load left it: the file's
                                               value when it holds the tensor, else `before`
    Loaded(path, at)                      weights / a model loaded from `path` (from_pretrained,
                                          torch.load): its attributes are Weights
    Obj(cls, attrs)                       an instance of a user class (a config, a model, a bank)
    Tensor(shape, at)                     a tensor the code builds (`torch.randn(size, dim)`)
    Unknown(why)                          anything else, saying why

Conditions (`if args.siglip:`, `a if cfg.x else b`, `x is None`) are evaluated: a known value
runs one branch, an unknown one runs both and a value that differs between them becomes
Unknown. The value each test had is kept (`Interp.conds`), so other readers can drop code in
branches the launch does not take. Nothing is imported or executed: only `ast` nodes are looked
at, with a step budget, so a large program costs at most that.
"""

from __future__ import annotations

import ast
import builtins
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fgclip_doctor.sources.code.reader.astutil import BINOPS, MATH  # noqa: F401 (re-exported)
from fgclip_doctor.sources.code.reader.program import Defn, External
from fgclip_doctor.sources.code.reader.source import SourceFile

BUILTINS = frozenset(dir(builtins))
BUDGET = 60_000  # expression evaluations per reading: a training program's setup needs a few thousand
MAX_DEPTH = 24
PASS_THROUGH = {"float", "int", "tensor", "as_tensor", "Parameter", "detach", "item", "clone", "cpu", "cuda", "to"}
FACTORIES = {"randn", "rand", "zeros", "empty", "ones", "ones_like", "Embedding"}
SHAPE_KEEP = {"normalize", "detach", "clone", "contiguous", "float"}
MODEL_SELF = {"to", "cuda", "cpu", "train", "eval", "float", "half", "bfloat16", "requires_grad_"}
COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


@dataclass(frozen=True)
class Unknown:
    why: str


@dataclass(frozen=True)
class Const:
    value: Any
    at: str
    flag: str = ""  # the flag's dest when the value is a flag's
    config: str = ""  # `file:line key` of the config value it is (or is computed from)


@dataclass(frozen=True)
class Tensor:
    shape: tuple  # Val per dimension (`torch.randn(size, dim)` -> (size, dim))
    at: str


@dataclass(frozen=True)
class Loaded:
    path: Any  # Val of the path / hub name
    at: str  # the loading line


@dataclass(frozen=True)
class Weights:
    path: Any
    name: str  # tensor name in the weights
    at: str
    before: Any  # the value the load replaces (it holds when the weights lack `name`)


@dataclass(eq=False)
class Obj:
    cls: Defn | None
    at: str
    attrs: dict[str, Any] = field(default_factory=dict)
    loads: list[tuple[Any, str]] = field(default_factory=list)  # (path Val, loading line)
    where: dict[str, str] = field(default_factory=dict)  # attribute -> file:line of its last assignment


@dataclass(frozen=True)
class Ref:
    target: Defn | External
    self_obj: Obj | None = None


@dataclass(eq=False)
class DictV:
    items: dict[str, Any]


@dataclass(frozen=True)
class FileV:
    """`open(path)`: a file handle, kept so that a config loader on it knows the path."""

    path: Any  # Val of the path
    at: str


@dataclass(frozen=True)
class Seq:
    items: tuple


Val = Any
FlagLookup = Callable[[str], "Const | Unknown | None"]  # dest -> its value this launch (None: no such flag)


def truth(v: Val) -> bool | None:
    """Python truth of a value, None when unknown."""
    if isinstance(v, Const):
        try:
            return bool(v.value)
        except Exception:  # noqa: BLE001 - an odd constant has no known truth
            return None
    if isinstance(v, (Obj, Loaded, Weights, Ref, FileV)):
        return True
    if isinstance(v, (DictV, Seq)):
        return bool(v.items)
    return None


def merge(a: Val, b: Val, why: str) -> Val:
    """The value after two branches: the same one, else Unknown saying which test decides."""
    if a is b or (isinstance(a, Const) and isinstance(b, Const) and a.value == b.value):
        return a
    if isinstance(a, Unknown):
        return a
    return Unknown(why)


class Frame:
    """One function call: its file (for names and lines), locals, and what it returned."""

    def __init__(self, file: SourceFile, env: dict[str, Val]) -> None:
        self.file, self.env = file, env
        self.fn: ast.AST | None = None  # the function running (None: a module body)
        self.returned = False
        self.ret: Val = None
        self.alt: list[tuple[Val, str]] = []  # returns in branches of an unknown test


def assigned_at_top(file: SourceFile, name: str) -> bool:
    """A module-level assignment binds `name` (it shadows a builtin of that name)."""
    for s in file.tree.body:
        targets = s.targets if isinstance(s, ast.Assign) else [s.target] if isinstance(s, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


def is_none(v: Val) -> bool:
    return isinstance(v, Const) and v.value is None


def none_state(v: Val) -> bool | None:
    """Whether `v is None` (None: not known)."""
    if isinstance(v, Const):
        return v.value is None
    if isinstance(v, (Obj, Loaded, Weights, Ref, DictV, Seq, Tensor)):
        return False
    return None


def owner_class(file: SourceFile, node: ast.AST, cache: dict) -> Defn | None:
    """The innermost class whose lines hold `node` (`cache`: one reading's {module: its classes})."""
    classes = cache.get(file.module)
    if classes is None:
        classes = cache[file.module] = [n for n in ast.walk(file.tree) if isinstance(n, ast.ClassDef)]
    line = getattr(node, "lineno", -1)
    best = None
    for n in classes:
        if n.lineno <= line <= (n.end_lineno or n.lineno):
            if best is None or n.lineno > best.lineno:
                best = n
    return Defn(file, best) if best is not None else None
