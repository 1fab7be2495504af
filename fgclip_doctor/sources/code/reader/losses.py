"""Each loss term in the code: its kind, whether its features are gathered, its world size,
whether errors around it are swallowed.

The walk starts at the model's `forward` (the class the training function loads with
`from_pretrained` or builds) and at every `*Loss` module's `forward`, and follows calls into the
user's functions, binding arguments to parameters. A loss primitive (`F.cross_entropy`,
`F.logsigmoid`, `binary_cross_entropy_with_logits`) belongs to the term of the logit scale its
function reads: `logit_scale` -> global, `logit_scale_finegraind` / `_finegrained` -> region,
`logit_scale_hardneg` -> hardneg, whether read as `self.<scale>`, through a local alias
(`logit_scale = self.logit_scale.exp()`), or as a parameter the caller passed it to.
A term is gathered when a function on the way to its primitive calls `all_gather`
(torch.distributed or torch.distributed.nn), `torch.distributed.nn.all_reduce`, or a helper
that does (a torch.autograd.Function's `apply` runs its `forward`). A transformers model
(AutoModel / CLIPModel ...) computes its loss on the local batch only (transformers#22252).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from fgclip_doctor.sources.code.families import GATHER, SIGMOID, SOFTMAX, library_model_kind, scale_of, term_of_scale
from fgclip_doctor.sources.code.reader.astutil import call_name, last
from fgclip_doctor.sources.code.reader.loss_world import world_size
from fgclip_doctor.sources.code.reader.program import Defn, External, Program
from fgclip_doctor.sources.code.reader.source import SourceFile

MAX_DEPTH = 12
#: a KL divergence between two distributions (a teacher's and a student's logits): the distill term
KL = frozenset({"kl_div", "KLDivLoss"})


@dataclass
class Term:
    """What the walk learned about one loss term (merged over its primitives)."""

    kinds: dict[str, str] = field(default_factory=dict)  # softmax|sigmoid -> file:line of the primitive
    gathered: dict[bool, str] = field(default_factory=dict)  # gathered? -> file:line (the gather or the primitive)
    swallowed: str = ""  # file:line of an `except` that swallows errors around it
    bias: str = ""  # file:line where a logit_bias enters it
    world_size_attr: str = ""  # file:line where it reads a `.world_size` attribute
    stacks: list[tuple[Defn, ...]] = field(default_factory=list)  # the functions from a root to each primitive


@dataclass
class LossReading:
    terms: dict[str, Term] = field(default_factory=dict)
    hf_model: str = ""  # "AutoModel" when a transformers model computes the loss
    hf_at: str = ""
    model_at: str = ""  # where the model is loaded / built
    world_size_from: str = ""  # "flag <dest>" | "torch.distributed" | "constant N" | "local batch only"
    world_size_at: str = ""


def _scale_of(attr: str) -> str | None:
    """The scale an attribute is (`logit_scale_finegraind` -> finegrained); "bias" for a logit_bias."""
    return "bias" if "logit_bias" in attr else scale_of(attr)


def _swallowing(handler: ast.ExceptHandler) -> bool:
    """A bare `except:` / `except Exception:` (or BaseException) whose body never re-raises."""
    names = []
    if handler.type is not None:
        items = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names = [last(ast.unparse(i)) for i in items]
    broad = handler.type is None or any(n in ("Exception", "BaseException") for n in names)
    return broad and not any(isinstance(n, ast.Raise) for s in handler.body for n in ast.walk(s))


def _swallow_sites(fn: ast.AST, file: SourceFile) -> dict[int, str]:
    """{id(node): file:line of the except} for every node inside a swallowing try body."""
    out: dict[int, str] = {}
    for t in ast.walk(fn):
        if isinstance(t, ast.Try):
            bad = next((h for h in t.handlers if _swallowing(h)), None)
            if bad is not None:
                for stmt in t.body:
                    for n in ast.walk(stmt):
                        out.setdefault(id(n), file.at(bad))
    return out


class _Walker:
    def __init__(self, program: Program, dead: frozenset | set = frozenset()) -> None:
        self.program, self.dead = program, dead
        self.reading = LossReading()
        self._seen: set[tuple] = set()
        self._gathers: dict[int, bool] = {}
        self._has_loss: dict[int, bool] = {}
        self._frame_gather: dict[int, str] = {}  # id(function node) -> file:line of its gather

    # --- per-function summaries (memoised, cycle-safe) --------------------------------------
    def _callees(self, fn: Defn) -> list[tuple[ast.Call, Defn]]:
        out = []
        for n in ast.walk(fn.node):
            if isinstance(n, ast.Call):
                callee = self._resolve_call(fn, n)
                if callee is not None:
                    out.append((n, callee))
        return out

    def _resolve_call(self, fn: Defn, call: ast.Call) -> Defn | None:
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
            cls = self._class_of(fn)
            if cls is None:
                return None
            method = self.program.method(cls, func.attr)
            if method is None and (held := self._held_module(cls, func.attr)) is not None:
                return self.program.method(held, "forward")  # self.head(...) runs the held module's forward
            return method
        if isinstance(func, ast.Attribute) and func.attr == "apply":  # autograd.Function.apply runs its forward
            owner = self.program.resolve(fn.file, func.value)
            if isinstance(owner, Defn) and isinstance(owner.node, ast.ClassDef):
                return self.program.method(owner, "forward")
        if isinstance(func, ast.Name) and (applied := _applied(fn.file, func.id)) is not None:
            owner = self.program.resolve(fn.file, applied)  # `allgather = AllGather.apply` (CLIP4Clip)
            if isinstance(owner, Defn) and isinstance(owner.node, ast.ClassDef):
                return self.program.method(owner, "forward")
        sym = self.program.resolve(fn.file, func)
        if isinstance(sym, Defn) and isinstance(sym.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return sym
        return None

    def _returned(self, fn: Defn, aliases: dict, bindings: dict) -> None:
        """`sim = self.similarity(a, b)`: the scales the callee's return value carries (its own
        `logit_scale = self.clip.logit_scale.exp()`, or one passed in) flow into `sim`."""
        for n in ast.walk(fn.node):
            if not (isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)):
                continue
            if not isinstance(n.value, ast.Call) or (callee := self._resolve_call(fn, n.value)) is None:
                continue
            bound = _bind(callee, n.value, bindings, aliases)
            own = _aliases(callee.node, bound)
            rets = [r.value for r in ast.walk(callee.node) if isinstance(r, ast.Return) and r.value is not None]
            scales = frozenset().union(*(_expr_scales(r, bound, own) for r in rets))
            if scales:
                aliases[n.targets[0].id] = aliases.get(n.targets[0].id, frozenset()) | scales

    def _held_module(self, cls: Defn, attr: str) -> Defn | None:
        """The user module class `self.<attr> = Cls(...)` holds (in __init__, this class or a base)."""
        init = self.program.method(cls, "__init__")
        for n in ast.walk(init.node) if init else ():
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == attr for t in n.targets):
                for c in ast.walk(n.value):
                    if isinstance(c, ast.Call) and id(c) not in self.dead:
                        sym = self.program.resolve(init.file, c.func)
                        if isinstance(sym, Defn) and isinstance(sym.node, ast.ClassDef):
                            return sym
        return None

    def _class_of(self, fn: Defn) -> Defn | None:
        for node in ast.walk(fn.file.tree):
            if isinstance(node, ast.ClassDef) and fn.node in node.body:
                return Defn(fn.file, node)
        return None

    def _summary(self, fn: Defn, memo: dict[int, bool], direct, stack: frozenset = frozenset()) -> bool:
        key = id(fn.node)
        if key in memo:
            return memo[key]
        if key in stack:
            return False
        found = direct(fn) or any(self._summary(c, memo, direct, stack | {key}) for _, c in self._callees(fn))
        memo[key] = found
        return found

    def gathers(self, fn: Defn) -> bool:
        return self._summary(fn, self._gathers, _direct_gather)

    def has_loss(self, fn: Defn) -> bool:
        return self._summary(fn, self._has_loss, _direct_loss)

    # --- the walk ---------------------------------------------------------------------------
    def walk(self, fn: Defn, bindings: dict[str, frozenset], stack: list[Defn], swallowed: str) -> None:
        key = (id(fn.node), tuple(sorted(bindings.items())), swallowed)
        if key in self._seen or len(stack) > MAX_DEPTH:
            return
        self._seen.add(key)
        stack = [*stack, fn]
        aliases = _aliases(fn.node, bindings)
        self._returned(fn, aliases, bindings)
        scales_here = _scales(fn.node, bindings, aliases)
        sites = _swallow_sites(fn.node, fn.file)
        gather_at = ""
        for n in ast.walk(fn.node):
            if not isinstance(n, ast.Call) or id(n) in self.dead:
                continue
            name = last(call_name(n))
            if name in GATHER or call_name(n).endswith("nn.all_reduce"):
                gather_at = gather_at or fn.file.at(n)
            elif (callee := self._resolve_call(fn, n)) and self.gathers(callee) and not self.has_loss(callee):
                gather_at = gather_at or fn.file.at(n)  # a gather helper (open_clip's gather_features)
        self._frame_gather[id(fn.node)] = gather_at
        for n in ast.walk(fn.node):
            if not isinstance(n, ast.Call) or id(n) in self.dead:
                continue
            here = swallowed or sites.get(id(n), "")
            name = last(call_name(n))
            if name in KL:  # distillation: its own term, whatever scale the logits it compares carry
                self._record(fn, n, "kl", frozenset({"distill"}), stack, here)
            elif name in SOFTMAX or name in SIGMOID:
                own = _expr_scales(n, bindings, aliases)  # the logits' own scale, through aliases
                scales = own if own - {"bias"} else own | scales_here
                if not scales - {"bias"} and name in SOFTMAX and _self_masked(fn.node):
                    scales = frozenset({"ssl"})  # NT-Xent: views against views, each row's own view masked
                self._record(fn, n, "softmax" if name in SOFTMAX else "sigmoid", scales, stack, here)
            elif (callee := self._resolve_call(fn, n)) is not None and self.has_loss(callee):
                self.walk(callee, _bind(callee, n, bindings, aliases), stack, here)

    def _record(
        self, fn: Defn, call: ast.Call, kind: str, scales: frozenset, stack: list[Defn], swallowed: str
    ) -> None:
        at = fn.file.at(call)
        gather = next(
            (self._frame_gather[id(f.node)] for f in reversed(stack) if self._frame_gather.get(id(f.node))), ""
        )
        bias = at if "bias" in scales else ""
        world = next(
            (
                f.file.at(n)
                for f in stack[1:] or stack
                for n in ast.walk(f.node)
                if isinstance(n, ast.Attribute) and n.attr == "world_size"
            ),
            "",
        )
        for scale in scales - {"bias"}:
            term = self.reading.terms.setdefault(term_of_scale(scale) or scale, Term())
            term.kinds.setdefault(kind, at)
            term.gathered.setdefault(bool(gather), gather or at)
            term.swallowed = term.swallowed or swallowed
            term.bias = term.bias or bias
            term.world_size_attr = term.world_size_attr or world
            term.stacks.append(tuple(stack))


def _applied(file: SourceFile, name: str) -> ast.expr | None:
    """X of a module-level `name = X.apply` (a torch.autograd.Function called by another name)."""
    for s in file.tree.body:
        if isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in s.targets):
            if isinstance(s.value, ast.Attribute) and s.value.attr == "apply":
                return s.value.value
    return None


def loss_detector(program: Program):
    """`has_loss(fn)`: whether a user function computes a loss, itself or through what it calls."""
    return _Walker(program).has_loss


#: calls that mask a similarity matrix's diagonal (a view against itself) in NT-Xent / SimCLR
_SELF_MASKS = frozenset({"one_hot", "eye", "fill_diagonal_", "masked_fill", "masked_fill_"})


def _self_masked(fn: ast.AST) -> bool:
    """An image-image (SimCLR-style) term: an unscaled cross-entropy whose function masks the
    diagonal of a similarity matrix (`F.one_hot(labels) * 1e9`, `torch.eye`, `fill_diagonal_`)."""
    return any(isinstance(n, ast.Call) and last(call_name(n)) in _SELF_MASKS for n in ast.walk(fn))


def _direct_gather(fn: Defn) -> bool:
    return any(
        isinstance(n, ast.Call) and (last(call_name(n)) in GATHER or call_name(n).endswith("nn.all_reduce"))
        for n in ast.walk(fn.node)
    )


def _direct_loss(fn: Defn) -> bool:
    return any(isinstance(n, ast.Call) and last(call_name(n)) in SOFTMAX | SIGMOID | KL for n in ast.walk(fn.node))


def _expr_scales(expr: ast.AST, bindings: dict[str, frozenset], aliases: dict[str, frozenset]) -> frozenset:
    out: set[str] = set()
    for n in ast.walk(expr):
        if isinstance(n, ast.Attribute) and _scale_of(n.attr):
            out.add(_scale_of(n.attr))
        elif isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str):
            if s := _scale_of(n.slice.value):  # the model's outputs by key: SLIP's `outputs["logit_scale"]`
                out.add(s)
        elif isinstance(n, ast.Name):
            out |= bindings.get(n.id, aliases.get(n.id, frozenset()))
    return frozenset(out)


def _aliases(fn: ast.AST, bindings: dict[str, frozenset]) -> dict[str, frozenset]:
    """Local names assigned from a scale (`logit_scale = self.logit_scale.exp()`), two passes for chains."""
    aliases: dict[str, frozenset] = {}
    for _ in range(2):
        for n in ast.walk(fn):
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                s = _expr_scales(n.value, bindings, aliases)
                if s:
                    aliases[n.targets[0].id] = s
    return aliases


def _scales(fn: ast.AST, bindings: dict[str, frozenset], aliases: dict[str, frozenset]) -> frozenset:
    """Scales a function reads: its own attributes, its bound parameters, its aliases."""
    return _expr_scales(fn, bindings, aliases)


def _bind(callee: Defn, call: ast.Call, bindings: dict, aliases: dict) -> dict[str, frozenset]:
    params = [a.arg for a in callee.node.args.posonlyargs + callee.node.args.args]
    if params and params[0] in ("self", "cls"):
        params = params[1:]
    out = {}
    for p, arg in zip(params, call.args):
        s = _expr_scales(arg, bindings, aliases)
        if s:
            out[p] = s
    for kw in call.keywords:
        if kw.arg and (s := _expr_scales(kw.value, bindings, aliases)):
            out[kw.arg] = s
    return out


def _from_pretrained_models(program: Program, files: list[SourceFile]) -> list[tuple[SourceFile, ast.Call, object]]:
    """(file, call, class symbol) for `X.from_pretrained(...)` / `X(config)` of a model class."""
    out = []
    for f in files:
        for n in ast.walk(f.tree):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "from_pretrained":
                sym = program.resolve(f, n.func.value)
                if (
                    isinstance(sym, External)
                    and sym.dotted.startswith("transformers")
                    and last(sym.dotted).endswith("Model")
                    or isinstance(sym, Defn)
                    and isinstance(sym.node, ast.ClassDef)
                    and program.method(sym, "forward")
                ):
                    out.append((f, n, sym))
    return out


def read_losses(
    program: Program,
    files: list[SourceFile],
    models: list[tuple[Defn, dict]] | None = None,
    dead: frozenset | set = frozenset(),
) -> LossReading:
    """Loss terms from `models` (the forwards of the modules the launch builds, model_read.py) or,
    when the build was not read, from every loaded model class and `*Loss` module; code in
    `dead` (branches the launch does not take) contributes nothing."""
    walker = _Walker(program, dead)
    reading = walker.reading
    if models:
        for root, bindings in models:
            walker.walk(root, bindings, [], "")
        world_size(reading, files)
        return reading
    roots: list[Defn] = []
    for f, call, sym in _from_pretrained_models(program, files):
        reading.model_at = reading.model_at or f.at(call)
        if isinstance(sym, External):
            reading.hf_model, reading.hf_at = last(sym.dotted), f.at(call)
        elif (fwd := program.method(sym, "forward")) is not None:
            roots.append(fwd)
    for f in files:
        for n in ast.walk(f.tree):
            if isinstance(n, ast.ClassDef) and n.name.endswith("Loss"):
                fwd = program.method(Defn(f, n), "forward")
                if fwd is not None:
                    roots.append(fwd)
    for root in roots:
        walker.walk(root, _scale_params(root), [], "")
    if reading.hf_model and not reading.terms:
        kind = library_model_kind(reading.hf_model)
        kind = "softmax" if kind is None else kind
        reading.terms["global"] = Term({kind: reading.hf_at} if kind else {}, {False: reading.hf_at})
        reading.world_size_from, reading.world_size_at = "local batch only", reading.hf_at
    else:
        world_size(reading, files)
    return reading


def call_bindings(callee: Defn, calls: list[tuple[ast.Call, ast.AST | None]]) -> dict[str, frozenset]:
    """The scales a loss module's forward gets: from its call sites (`region_loss(a, b,
    model.logit_scale_finegrained.exp())`), else by its parameters' names."""
    out = _scale_params(callee)
    for call, caller in calls:
        aliases = _aliases(caller, {}) if caller is not None else {}
        out.update(_bind(callee, call, {}, aliases))
    return out


def _scale_params(root: Defn) -> dict[str, frozenset]:
    """A root's own parameter named like a scale (`logit_scale`) is that scale."""
    params = [a.arg for a in root.node.args.args + root.node.args.kwonlyargs]
    return {p: frozenset({s}) for p in params if (s := _scale_of(p))}
