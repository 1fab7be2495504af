"""The model the launch builds, read by running its setup on abstract values (values.py).

    read = read_model(program, entry_file, main, flag_lookup, family, has_loss)
    read.model            # Obj of the outermost loss-computing module the training function builds
    read.scales           # {attr: Val} of its logit scales / biases as training starts
    read.bank             # BankRead (size, warmup, counted in, where) or None: no bank in that model
    read.dead             # ids of AST nodes in branches this launch does not take
    read.notes            # tests whose value is not known for this launch (both branches kept)

"The model" is found by meaning, not by name: every instance of a user class the training
function creates (in the branches the launch takes) whose `forward` computes a loss; an instance
held by another such instance (a loss head inside the model) is part of that one. Its `forward`
and the training loop's hooks (a Trainer subclass's create_optimizer / training_step) are then
run on the same values so that their conditions are known too.

A memory bank is a module held by the model that keeps a 2-D buffer (the queue) and counts
calls of one of its methods (`self.n += 1`) against a threshold attribute (`n >= self.warmup`):
the threshold is the warmup, the queue's first dimension the size, and the unit is forward calls
when the counting method is reached from the model's `forward`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field

from fgclip_doctor.sources.code.reader.config_loads import ConfigSource
from fgclip_doctor.sources.code.reader.interp import Interp
from fgclip_doctor.sources.code.reader.program import Defn, External, Program
from fgclip_doctor.sources.code.reader.source import SourceFile
from fgclip_doctor.sources.code.reader.use_sites import Use
from fgclip_doctor.sources.code.reader.values import (
    Const,
    FlagLookup,
    Frame,
    Obj,
    Tensor,
    Unknown,
    Val,
    truth,
)

HOOKS = ("create_optimizer", "training_step", "optimizer_step", "compute_loss")


@dataclass
class BankRead:
    cls: str  # file:line of the bank's class
    attr: str  # the model attribute holding it
    at: str  # where the model builds it
    size: Val = None
    warmup: Val = None
    counter: str = ""  # file:line of `self.n += 1`
    unit: str = ""  # "forward calls" when the counting method runs in the model's forward
    wraps: str = ""  # file:line of the `% size` the enqueue writes with


@dataclass
class ModelRead:
    interp: Interp
    model: Obj | None = None
    models: list[Obj] = field(default_factory=list)
    scales: dict[str, Val] = field(default_factory=dict)
    bank: BankRead | None = None
    bank_absent: str = ""  # why the model holds no bank (file:line), when it was read whole
    dead: set[int] = field(default_factory=set)
    unsure: dict[int, str] = field(default_factory=dict)  # node id -> why its branch may or may not run
    notes: list[str] = field(default_factory=list)


def read_model(
    program: Program,
    entry: SourceFile,
    main: Defn | None,
    flag: FlagLookup,
    is_param: Callable[[str], bool],
    has_loss: Callable[[Defn], bool],
    configs: ConfigSource | None = None,
) -> ModelRead:
    interp = Interp(program, flag, is_param, configs)
    read = ModelRead(interp)
    try:
        _run(program, entry, main, interp, has_loss, read)
    except RecursionError:  # expressions nested deeper than Python's stack: what was read so far stands
        read.notes.append(f"{entry.rel}:1: code nested too deep to follow; what it builds is not known")
        read.models, read.dead = [], set()
        return read
    read.dead = dead_nodes(program, interp)
    read.unsure = unsure_nodes(interp)
    read.notes = [
        f"{at}: --{dest.replace('_', '-')} has no value known here: the code that depends on it is read "
        "on every branch, and what differs between them is unknown"
        for dest, at in interp.unknown_flags.items()
    ]
    holders = [o for o in interp.created if o.cls is not None and any(is_param(a) for a in o.attrs)]
    holders = [o for o in holders if not any(o is not h and o in _held(h) for h in holders)]
    # the scales live in the module that holds them (the model), which may differ from the loss module
    read.model = next((o for o in read.models if o in holders), None) or (holders or read.models or [None])[0]
    if read.model is not None:
        read.scales = {a: v for a, v in read.model.attrs.items() if is_param(a)}
        for candidate in [read.model, *read.models]:
            _bank(program, read, candidate)
            if read.bank is not None:
                break
    return read


def _run(program: Program, entry: SourceFile, main: Defn | None, interp: Interp, has_loss, read: ModelRead) -> None:
    """The training function, then each loss-computing module's forward and the Trainer hooks."""
    if main is not None and not _main_given_values(entry, main):
        interp.call(main, [], {})
    else:  # the module body: what it computes (`config = yaml.load(open(args.config))`) reaches main
        interp.block(entry.tree.body, Frame(entry, {"__name__": Const("__main__", entry.at(1))}))
    losses = []
    for obj in interp.created:
        fwd = program.method(obj.cls, "forward") if obj.cls else None
        if fwd is not None and has_loss(fwd):
            losses.append(obj)
    held = {id(v) for o in losses for v in o.attrs.values() if isinstance(v, Obj)}
    read.models = [o for o in losses if id(o) not in held]
    for obj in read.models:
        interp.call(program.method(obj.cls, "forward"), [], {}, obj, data=True)
    for obj in list(interp.created):  # the Trainer subclass's hooks: their conditions too
        if obj.cls is not None and _is_trainer(program, obj.cls):
            interp.uses.setdefault("trainer", []).append(Use(Const(obj.cls.node.name, obj.at), obj.at, "Trainer", True))
            for name in HOOKS:
                method = program.method(obj.cls, name)
                if method is not None:
                    interp.call(method, [], {}, obj, data=True)


def _main_given_values(entry: SourceFile, main: Defn) -> bool:
    """The entry's `__main__` block calls the training function with values it computed first
    (`main(args, config)`), so the module body is run rather than the function alone."""
    for node in entry.tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            for n in ast.walk(node):
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == main.node.name:
                    return len(n.args) + len(n.keywords) > 1
    return False


def _held(obj: Obj) -> list[Obj]:
    return [v for v in obj.attrs.values() if isinstance(v, Obj)]


def _is_trainer(program: Program, cls: Defn) -> bool:
    return any(isinstance(b, External) and b.dotted.rpartition(".")[2].endswith("Trainer") for b in program.bases(cls))


def unsure_nodes(interp: Interp) -> dict[int, str]:
    """id of every node in a branch of a test on a flag / config value not known here -> why."""
    out: dict[int, str] = {}
    for key, why in interp.unsure.items():
        n = interp.branches[key]
        for part in (n.body, n.orelse) if isinstance(n, ast.If) else ([n.body], [n.orelse]):
            for stmt in part:
                out.update((id(x), why) for x in ast.walk(stmt))
    return out


def dead_nodes(program: Program, interp: Interp) -> set[int]:
    """ids of every node in a branch whose test had a known value that does not take it."""
    dead: set[int] = set()
    for key, n in interp.branches.items():
        t = truth(interp.conds[key])
        if t is None:
            continue
        branch = (n.orelse if t else n.body) if isinstance(n, ast.If) else [n.orelse if t else n.body]
        for stmt in branch:
            dead.update(id(x) for x in ast.walk(stmt))
    return dead


def _bank(program: Program, read: ModelRead, model: Obj) -> None:
    for attr, value in model.attrs.items():
        if isinstance(value, Obj) and value.cls is not None and (bank := _as_bank(program, value, attr)):
            fwd = program.method(model.cls, "forward")
            if fwd is not None and _reaches(program, fwd, bank[1]):
                bank[0].unit = "forward calls"
            read.bank = bank[0]
            return
    for attr, value in model.attrs.items():  # built only in a branch this launch does not take
        if isinstance(value, Const) and value.value is None and attr in _bank_attrs(program, model):
            read.bank_absent = f"{value.at}: {attr} is None for this launch"
            return


def _bank_attrs(program: Program, model: Obj) -> set[str]:
    """Model attributes some branch assigns a bank-like module to (`self.bank = Bank(...) if c else None`)."""
    out = set()
    init = program.method(model.cls, "__init__") if model.cls else None
    for n in ast.walk(init.node) if init else ():
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.IfExp):
            for t in n.targets:
                if isinstance(t, ast.Attribute):
                    out.add(t.attr)
    return out


def _as_bank(program: Program, obj: Obj, attr: str) -> tuple[BankRead, Defn] | None:
    queue = next((v for v in obj.attrs.values() if isinstance(v, Tensor) and len(v.shape) == 2), None)
    if queue is None:
        return None
    for item in obj.cls.node.body:
        if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        counter = next(
            (
                n
                for n in ast.walk(item)
                if isinstance(n, ast.AugAssign)
                and isinstance(n.op, ast.Add)
                and isinstance(n.target, ast.Attribute)
                and _is_self(n.target.value)
            ),
            None,
        )
        if counter is None:
            continue
        warm = _threshold(item, counter.target.attr) or _threshold_call(
            program, obj.cls.file, item, counter.target.attr
        )
        if warm is None:
            continue
        bank = BankRead(
            obj.cls.file.at(obj.cls.node),
            attr,
            obj.at,
            queue.shape[0],
            obj.attrs.get(warm, Unknown(f"{obj.cls.file.at(item)}: self.{warm} not set")),
            obj.cls.file.at(counter),
        )
        bank.wraps = _wrap_site(obj, queue)
        return bank, Defn(obj.cls.file, item)
    return None


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _threshold(fn: ast.AST, counter: str) -> str | None:
    """The attribute the counter is compared against (`calls >= self.warmup_forward_calls`)."""
    aliases = {counter}
    for n in ast.walk(fn):
        if isinstance(n, ast.Assign) and any(
            isinstance(x, ast.Attribute) and x.attr in aliases and _is_self(x.value) for x in ast.walk(n.value)
        ):
            aliases |= {t.id for t in n.targets if isinstance(t, ast.Name)}
    for n in ast.walk(fn):
        if isinstance(n, ast.Compare) and len(n.ops) == 1 and isinstance(n.ops[0], (ast.GtE, ast.Gt, ast.Lt, ast.LtE)):
            sides = [n.left, n.comparators[0]]
            names = [{x.id for x in ast.walk(s) if isinstance(x, ast.Name)} | _self_attrs(s) for s in sides]
            for i in (0, 1):
                other = sides[1 - i]
                if names[i] & aliases and isinstance(other, ast.Attribute) and _is_self(other.value):
                    if other.attr != counter:
                        return other.attr
    return None


def _threshold_call(program: Program, file: SourceFile, fn: ast.AST, counter: str) -> str | None:
    """The same comparison made by a helper (`reached(calls, self.warmup)`): a user function given
    the counter and `self.<attr>` whose body compares (>= / >) its parameters."""
    aliases = {counter} | {
        t.id
        for n in ast.walk(fn)
        if isinstance(n, ast.Assign)
        and any(isinstance(x, ast.Attribute) and x.attr == counter for x in ast.walk(n.value))
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    for n in ast.walk(fn):
        if not (isinstance(n, ast.Call) and len(n.args) == 2):
            continue
        first, second = n.args
        names = {x.id for x in ast.walk(first) if isinstance(x, ast.Name)} | _self_attrs(first)
        if not (names & aliases and isinstance(second, ast.Attribute) and _is_self(second.value)):
            continue
        sym = program.resolve(file, n.func)
        if isinstance(sym, Defn) and any(
            isinstance(c, ast.Compare) and any(isinstance(o, (ast.GtE, ast.Gt)) for o in c.ops)
            for c in ast.walk(sym.node)
        ):
            return second.attr
    return None


def _self_attrs(node: ast.AST) -> set[str]:
    return {x.attr for x in ast.walk(node) if isinstance(x, ast.Attribute) and _is_self(x.value)}


def _wrap_site(obj: Obj, queue: Tensor) -> str:
    """`(ptr + i) % self.size` with self.size the queue's length: writes wrap around."""
    size = queue.shape[0]
    for n in ast.walk(obj.cls.node):
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod):
            right = n.right
            if isinstance(right, ast.Attribute) and _is_self(right.value):
                held = obj.attrs.get(right.attr)
                if held is size or (isinstance(held, Const) and isinstance(size, Const) and held.value == size.value):
                    return obj.cls.file.at(n)
    return ""


def _reaches(program: Program, start: Defn, target: Defn, depth: int = 0, seen: set | None = None) -> bool:
    """Whether `start` calls `target` (through the user's functions and methods, by name)."""
    seen = seen if seen is not None else set()
    if id(start.node) in seen or depth > 10:
        return False
    seen.add(id(start.node))
    for n in ast.walk(start.node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == target.node.name:
            return True
        if isinstance(n, ast.Attribute) and n.attr == target.node.name:
            return True  # `bank.tick() if self.training else bank.active`: a property or a method read
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and _is_self(n.func.value):
            cls = _class_of(start)
            nxt = program.method(cls, n.func.attr) if cls else None
            if nxt is not None and _reaches(program, nxt, target, depth + 1, seen):
                return True
    return False


def _class_of(fn: Defn) -> Defn | None:
    for node in ast.walk(fn.file.tree):
        if isinstance(node, ast.ClassDef) and fn.node in node.body:
            return Defn(fn.file, node)
    return None
