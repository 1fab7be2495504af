"""Logit scales and biases in the code: where each starts, whether it is clamped, whether it decays.

- Start: every `X.<name> = nn.Parameter(expr)` whose name holds `logit_scale` (FG-CLIP's
  `logit_scale_finegraind` included) or `logit_bias`. `expr` says where the value comes from:
  `config.logit_scale_init_value`, a constant (`np.log(1 / 0.07)`, `torch.ones([]) * 4.6052`),
  a copy of the global scale (`torch.ones([]) * model.logit_scale`), a flag
  (`torch.ones([]) * model_args.log_scale`), or random (`torch.randn(1)`). An assignment in the
  training function, after `from_pretrained`, overrides the model's `__init__`.
- Clamp: `.clamp(...)` / `.clamp_(...)` / `torch.clamp(...)` on a scale, its `.data`, or its
  `.exp()` (a bound on exp(s) is a bound ln(bound) on s).
- Decay: decay_rule.py.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

from fgclip_doctor.sources.code import families
from fgclip_doctor.sources.code.reader.astutil import (
    UNKNOWN,
    call_name,
    calls_run,
    constant,
    enclosing_function,
    keyword,
    last,
)
from fgclip_doctor.sources.code.reader.program import Defn, Program, dotted
from fgclip_doctor.sources.code.reader.source import SourceFile


@dataclass
class ScaleParam:
    attr: str  # logit_scale_finegraind
    # "config.logit_scale_init_value" | "copy of logit_scale" | "flag <dest>" | "constant" | "random" | "unknown"
    init_from: str
    value: Any  # the constant (ln-value), or the flag's dest for "flag"
    at: str  # file:line of the assignment
    in_init: bool  # assigned in a class's __init__ (weights loaded with from_pretrained replace it)


@dataclass
class Clamp:
    at: str
    max: float | None  # ln-value bound, None when only a minimum is given (or not a literal)
    bound: ast.expr | None = None  # the upper bound's expression when it is not a literal
    file: SourceFile | None = None
    on_exp: bool = False
    temperature: bool = False  # a clamp of a temperature (logits / t): its minimum bounds the ln-scale
    bound_at: str = ""  # where a bound that is not a literal comes from (a config's file:line)
    unknown: str = ""  # why a bound that is not a literal is not known
    maybe: str = ""  # why the clamp may not run: it sits in a branch on a flag / config value not known


def is_logit_param(attr: str) -> bool:
    return families.is_logit_param(attr) or "logit_bias" in attr


def _ones_times(expr: ast.expr) -> ast.expr | None:
    """`torch.ones([]) * x` / `x * torch.ones([])` -> x."""
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mult):
        for a, b in ((expr.left, expr.right), (expr.right, expr.left)):
            if isinstance(a, ast.Call) and last(call_name(a)) in ("ones", "ones_like", "full"):
                return b
    return None


def _param_default(fn: ast.FunctionDef | ast.AsyncFunctionDef | None, name: str) -> Any:
    if fn is None:
        return UNKNOWN
    args = fn.args
    pos = args.posonlyargs + args.args
    for a, d in zip(pos[len(pos) - len(args.defaults) :], args.defaults):
        if a.arg == name:
            return constant(d)
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        if a.arg == name and d is not None:
            return constant(d)
    return UNKNOWN


def classify_init(expr: ast.expr, fn: ast.FunctionDef | ast.AsyncFunctionDef | None) -> tuple[str, Any]:
    """(init_from, value) of the expression a scale Parameter is built from."""
    for n in ast.walk(expr):
        if isinstance(n, ast.Attribute) and n.attr.endswith("logit_scale_init_value"):
            return "config.logit_scale_init_value", None
    for n in ast.walk(expr):
        if isinstance(n, ast.Attribute) and n.attr == "logit_scale":
            return "copy of logit_scale", None
    for n in ast.walk(expr):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id.endswith("args"):
            return f"flag {n.attr}", n.attr
    for n in ast.walk(expr):
        if isinstance(n, ast.Call) and last(call_name(n)) in ("randn", "rand", "randn_like", "empty"):
            return "random", None
    inner = _ones_times(expr) or expr
    if isinstance(inner, ast.Call) and last(call_name(inner)) == "tensor" and inner.args:
        inner = inner.args[0]
    value = constant(inner)
    if value is UNKNOWN and isinstance(inner, ast.Name):
        value = _param_default(fn, inner.id)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "constant", float(value)
    return "unknown", ast.unparse(expr)[:80]


def find_scale_params(files: list[SourceFile]) -> list[ScaleParam]:
    """Every logit scale / bias Parameter assignment, model __init__ ones first."""
    out: list[ScaleParam] = []
    for f in files:
        for fn in [n for n in ast.walk(f.tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            own, stack = [], list(fn.body)  # this function's own statements, not those of functions inside it
            while stack:
                node = stack.pop()
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                    own.append(node)
                    stack.extend(ast.iter_child_nodes(node))
            for node in sorted((n for n in own if isinstance(n, ast.Assign)), key=lambda n: n.lineno):
                if not (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Call)
                    and last(call_name(node.value)) == "Parameter"
                    and node.value.args
                ):
                    continue
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and is_logit_param(target.attr):
                        init_from, value = classify_init(node.value.args[0], fn)
                        out.append(ScaleParam(target.attr, init_from, value, f.at(node), fn.name == "__init__"))
    out.sort(key=lambda p: not p.in_init)
    return out


def _scale_ref(node: ast.AST) -> str | None:
    """The logit-scale attribute an expression reads (through `.data`, `.exp()`), if any."""
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and ("logit_scale" in n.attr or families.scale_of(n.attr)):
            return n.attr
    return None


def _bound_expr(call: ast.Call, method: bool, side: str = "max") -> ast.expr | None:
    """The `max` (or `min`) bound of x.clamp_(min, max) / torch.clamp(x, min, max)."""
    kw = keyword(call, side)
    if kw is not None:
        return kw
    index = (1 if method else 2) - (side == "min")
    return call.args[index] if len(call.args) > index else None


def find_clamps(
    files: list[SourceFile],
    program: Program | None = None,
    dead: frozenset | set = frozenset(),
    unsure: dict[int, str] | None = None,
) -> list[Clamp]:
    """Every clamp of a logit scale: on the attribute itself (`self.logit_scale.clamp_(0, 4.6052)`)
    or on parameters a function gets from the scales by name (`for p in self.scales().values():
    p.clamp_(...)` where `scales` returns `getattr(self, n)` over a tuple of logit-scale names).
    A clamp in a branch the launch does not take (`dead`) does not count; one in a branch whose
    test is not known (`unsure`: node id -> why) says so in `Clamp.maybe`."""
    out = []
    for f in files:
        for node in ast.walk(f.tree):
            if id(node) in dead or not isinstance(node, ast.Call):
                continue
            if last(call_name(node)) not in ("clamp", "clamp_", "clip", "clip_"):
                continue
            method = isinstance(node.func, ast.Attribute) and dotted(node.func.value) not in ("torch",)
            subject = node.func.value if method else (node.args[0] if node.args else None)
            if subject is None:
                continue
            if _scale_ref(subject) is None:
                fn = enclosing_function(f.tree, node) if program else None
                if fn is None or not _aliases_scale(program, f, fn, subject):
                    continue
            temp = families.representation(_scale_ref(subject) or "") == "temperature"
            expr = _bound_expr(node, method, "min" if temp else "max")
            bound = constant(expr) if expr is not None else UNKNOWN
            on_exp = any(isinstance(n, ast.Call) and last(call_name(n)) == "exp" for n in ast.walk(subject))
            if isinstance(bound, (int, float)) and not isinstance(bound, bool):
                if temp:
                    value = -math.log(bound) if bound > 0 else None
                else:
                    value = math.log(bound) if on_exp and bound > 0 else float(bound)
                out.append(Clamp(f.at(node), value, temperature=temp))
            else:
                out.append(Clamp(f.at(node), None, expr, f, on_exp, temp))
            out[-1].maybe = (unsure or {}).get(id(node), "")
            if id(node) not in (unsure or {}) and (fn := enclosing_function(f.tree, node)) is not None:
                ran = calls_run(files, fn.name, dead, unsure or {})
                if ran is False:  # every call of its function is in a branch the launch does not take
                    out.pop()
                elif ran:
                    out[-1].maybe = ran
    return out


def _aliases_scale(program: Program, f: SourceFile, fn: ast.AST, subject: ast.expr, depth: int = 0) -> bool:
    """`subject` is a logit-scale parameter under another name: a loop variable over parameters got
    by scale name (`for p in self.scales().values()`), or a name bound to one (`s = self.logit_scale`).
    A value computed from the scales (`loss, threshold = self.hard_loss(..., self.logit_scale_hardneg)`,
    then `torch.clamp(threshold, 0, 10)`) is not the scale: clamping it bounds something else."""
    if _scale_ref(subject) is not None:
        return True
    if depth > 4:
        return False
    if isinstance(subject, ast.Attribute) and subject.attr == "data":
        return _aliases_scale(program, f, fn, subject.value, depth + 1)
    if not isinstance(subject, ast.Name):
        return False
    for n in ast.walk(fn):
        if isinstance(n, (ast.For, ast.comprehension)) and isinstance(n.target, ast.Name):
            if n.target.id == subject.id and _mentions_scales(program, f, n.iter, within=fn):
                return True
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            if n.targets[0].id == subject.id and isinstance(n.value, (ast.Attribute, ast.Name)):
                if _aliases_scale(program, f, fn, n.value, depth + 1):
                    return True
    return False


def _mentions_scales(
    program: Program, file: SourceFile, fn: ast.AST, depth: int = 0, within: ast.AST | None = None
) -> bool:
    """The code under `fn` reads logit scales by name: an attribute, a string, a module constant of
    such names, or a method it calls on `self` that does (`within`: the function `fn` sits in)."""
    owner = None
    within = within or fn
    for n in ast.walk(fn):
        if isinstance(n, ast.Attribute) and is_logit_param(n.attr):
            return True
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and is_logit_param(n.value):
            return True
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and constant_names(program, file, n.id):
            return True
        if depth < 2 and isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            if not (isinstance(n.func.value, ast.Name) and n.func.value.id == "self"):
                continue
            owner = owner or next(
                (c for c in ast.walk(file.tree) if isinstance(c, ast.ClassDef) and within in c.body), False
            )
            m = program.method(Defn(file, owner), n.func.attr) if owner else None
            if m is not None and m.node is not fn and _mentions_scales(program, m.file, m.node, depth + 1):
                return True
    return False


def constant_names(program: Program, file: SourceFile, name: str, depth: int = 0) -> list[str]:
    """The logit-scale names in module-level tuple / list `name` (here or imported), else []."""
    for s in file.tree.body:
        if isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in s.targets):
            value = constant(s.value)
            ok = isinstance(value, (tuple, list))
            return [v for v in value if isinstance(v, str) and is_logit_param(v)] if ok else []
    target = program.imports(file).get(name)
    if target and depth < 4:
        module, _, attr = target.rpartition(".")
        other = program.load(module) if module and program.locate_quiet(module) else None
        return constant_names(program, other, attr, depth + 1) if other is not None else []
    return []
