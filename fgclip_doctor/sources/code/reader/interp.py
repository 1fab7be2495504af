"""Interp: runs the user's setup code on abstract values (see values.py for what a value is)."""

from __future__ import annotations

import ast
from collections.abc import Callable

from fgclip_doctor.sources.code.reader.config_loads import ConfigSource, is_config_loader
from fgclip_doctor.sources.code.reader.config_values import WRAPPERS, load_config
from fgclip_doctor.sources.code.reader.exprs import Exprs
from fgclip_doctor.sources.code.reader.fs_calls import os_path_call
from fgclip_doctor.sources.code.reader.program import Defn, Program
from fgclip_doctor.sources.code.reader.source import SourceFile
from fgclip_doctor.sources.code.reader.use_sites import Use, record_use
from fgclip_doctor.sources.code.reader.values import (
    BUDGET,
    FACTORIES,
    MATH,
    MAX_DEPTH,
    MODEL_SELF,
    PASS_THROUGH,
    SHAPE_KEEP,
    Const,
    DictV,
    FileV,
    FlagLookup,
    Frame,
    Loaded,
    Obj,
    Ref,
    Seq,
    Tensor,
    Unknown,
    Val,
    Weights,
    merge,
    owner_class,
    truth,
)


class Interp(Exprs):
    """Runs the user's setup code on abstract values (see the module docstring)."""

    def __init__(
        self, program: Program, flag: FlagLookup, is_param: Callable[[str], bool], configs: ConfigSource | None = None
    ) -> None:
        self.program, self.flag, self.is_param, self.configs = program, flag, is_param, configs
        self.config_unknown: dict[str, str] = {}  # loading line -> why that config's values are unknown
        self.assigned: dict[int, Val] = {}  # id(`name = ...` statement) -> the value it bound (last run)
        self.conds: dict[int, Val] = {}  # id(test node) -> its value (Unknown when it differed)
        self.branches: dict[int, ast.If | ast.IfExp] = {}  # id(test node) -> its If / IfExp
        self._classes: dict[str, list] = {}  # module -> its classes (owner_class)
        self.created: list[Obj] = []
        self.module_calls: list[tuple[Obj, ast.Call, ast.AST | None, SourceFile]] = []  # (module, call, caller, file)
        self.edited: dict[str, str] = {}  # line of a torch.load -> line that writes into what it loaded
        self.arg_writes: dict[str, Val] = {}  # `args.n_gpu = n_gpu`: the parsed arguments' attributes set later
        self.uses: dict[str, list[Use]] = {}  # "batch_size" / "lr" -> what a DataLoader / optimizer gets
        self.unpicked: dict[str, str] = {}  # file:line -> why what a getattr on a module picks is not known
        self.unsure: dict[int, str] = {}  # id(test node) -> why a test on a flag / config value is not known
        self.unknown_flags: dict[str, str] = {}  # dest -> first line that tests a flag whose value is not known
        # (library callable, path Val, line) of each weight / tokenizer load
        self.loads: list[tuple[str, Val, str]] = []
        self.steps, self.depth, self.reached = 0, 0, set()  # reached: id of every function called (train_step.py)
        self._module_values: dict[tuple[str, str], Val] = {}

    # --- calls ---------------------------------------------------------------------------
    def call(self, fn: Defn, args: list[Val], kwargs: dict[str, Val], self_obj: Val = None, data: bool = False) -> Val:
        """Run `fn` on these arguments; `data`: every argument is the run's data (unknown, never
        its default), as for a forward or a training-loop hook called by the library."""
        if self.depth > MAX_DEPTH or self.steps > BUDGET:
            return Unknown(f"{fn.file.at(fn.node)}: not followed (depth / budget)")
        env = self._bind(fn, args, kwargs, self_obj)
        self.reached.add(id(fn.node))
        if data:
            first = [p.arg for p in fn.node.args.posonlyargs + fn.node.args.args][:1] if self_obj is not None else []
            why = f"{fn.file.at(fn.node)}: an argument the run passes at each call"
            env = {k: (v if k in first else Unknown(why)) for k, v in env.items()}
        frame = Frame(fn.file, env)
        frame.fn = fn.node
        self.depth += 1
        try:
            self.block(fn.node.body, frame)
        finally:
            self.depth -= 1
        ret = frame.ret if frame.returned else Const(None, fn.file.at(fn.node))
        for alt, why in frame.alt:
            ret = merge(alt, ret, why)
        return ret

    def _bind(self, fn: Defn, args: list[Val], kwargs: dict[str, Val], self_obj: Val) -> dict[str, Val]:
        a = fn.node.args
        pos = [p.arg for p in a.posonlyargs + a.args]
        env: dict[str, Val] = {}
        if self_obj is not None and pos:
            env[pos[0]] = self_obj
            pos = pos[1:]
        defaults = (
            dict(zip([p.arg for p in (a.posonlyargs + a.args)][-len(a.defaults) :], a.defaults)) if a.defaults else {}
        )
        defaults.update({k.arg: d for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
        for name, value in zip(pos, args):
            env[name] = value
        if a.vararg:
            env[a.vararg.arg] = Seq(tuple(args[len(pos) :]))
        extra = {}
        for k, v in kwargs.items():
            if k in pos or k in [p.arg for p in a.kwonlyargs]:
                env.setdefault(k, v)
            else:
                extra[k] = v
        if a.kwarg:
            env[a.kwarg.arg] = DictV(extra)
        for name in pos + [p.arg for p in a.kwonlyargs]:
            if name not in env:
                env[name] = (
                    self.expr(defaults[name], Frame(fn.file, {}))
                    if name in defaults
                    else Unknown(f"{fn.file.at(fn.node)}: argument {name} not known")
                )
        return env

    def instantiate(self, cls: Defn, args: list[Val], kwargs: dict[str, Val], at: str) -> Obj:
        obj = Obj(cls, at)
        self.created.append(obj)
        init = self.program.method(cls, "__init__")
        if init is not None:
            self.call(init, args, kwargs, obj)
        else:  # a dataclass / config: its fields by keyword (positional ones in declared order)
            fields = [
                n.target.id for n in cls.node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            ]
            obj.attrs.update(zip(fields, args))
            obj.attrs.update(kwargs)
        return obj

    def _super_init(self, obj: Obj, owner: Defn, args: list[Val], kwargs: dict[str, Val], named: dict) -> None:
        """`super().__init__(...)`: the next user base's __init__, else a library base (config
        classes keep their keyword arguments as attributes)."""
        for base in self.program.bases(owner):
            if isinstance(base, Defn) and isinstance(base.node, ast.ClassDef):
                init = self.program.method(base, "__init__")
                if init is not None:
                    self.call(init, args, kwargs, obj)
                    return
        for k, v in {**named, **kwargs}.items():
            obj.attrs.setdefault(k, v)

    # --- statements ----------------------------------------------------------------------
    def block(self, stmts: list[ast.stmt], frame: Frame) -> None:
        for stmt in stmts:
            if frame.returned or self.steps > BUDGET:
                return
            self.stmt(stmt, frame)

    def stmt(self, s: ast.stmt, frame: Frame) -> None:
        if isinstance(s, ast.Assign):
            value = self.expr(s.value, frame)
            if len(s.targets) == 1 and isinstance(s.targets[0], ast.Name):
                self.assigned[id(s)] = value
            for t in s.targets:
                self.assign(t, value, frame)
        elif isinstance(s, ast.AnnAssign) and s.value is not None:
            self.assign(s.target, self.expr(s.value, frame), frame)
        elif isinstance(s, ast.AugAssign) and isinstance(s.target, ast.Name):
            frame.env[s.target.id] = self._binop(s.op, frame.env.get(s.target.id), self.expr(s.value, frame), s, frame)
        elif isinstance(s, ast.Expr):
            self.expr(s.value, frame)
        elif isinstance(s, ast.Return):
            frame.ret = self.expr(s.value, frame) if s.value is not None else Const(None, frame.file.at(s))
            frame.returned = True
        elif isinstance(s, ast.Raise):
            frame.ret, frame.returned = Unknown(f"{frame.file.at(s)}: raises"), True
        elif isinstance(s, ast.If):
            self._if(s, frame)
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            for item in s.items:  # `with open(args.config) as f:` binds f
                value = self.expr(item.context_expr, frame)
                if item.optional_vars is not None:
                    self.assign(item.optional_vars, value, frame)
            self.block(s.body, frame)
        elif isinstance(s, (ast.For, ast.AsyncFor, ast.While)):  # the body once, on an unknown item
            if not isinstance(s, ast.While):  # ...or on the one item of a one-item sequence (ALBEF's loaders)
                it, why = self.expr(s.iter, frame), Unknown(f"{frame.file.at(s)}: a loop item")
                self.assign(s.target, it.items[0] if isinstance(it, Seq) and len(it.items) == 1 else why, frame)
            self.block(s.body, frame)
        elif isinstance(s, ast.Try):
            self.block(s.body + s.orelse + s.finalbody, frame)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            frame.env[s.name] = Ref(Defn(frame.file, s))

    def _if(self, s: ast.If, frame: Frame) -> None:
        test = self.expr(s.test, frame)
        self._note_cond(s, test)
        known = truth(test)
        if known is not None:
            self.block(s.body if known else s.orelse, frame)
            return
        why = f"{frame.file.at(s)}: `{ast.unparse(s.test)[:60]}` is not known for this launch"
        a, b = Frame(frame.file, dict(frame.env)), Frame(frame.file, dict(frame.env))
        a.fn = b.fn = frame.fn
        before = {id(o): dict(o.attrs) for o in self.created}
        self.block(s.body, a)
        after_a = {id(o): dict(o.attrs) for o in self.created}
        for o in self.created:  # the other branch starts from the same objects
            if id(o) in before:
                o.attrs = dict(before[id(o)])
        self.block(s.orelse, b)
        for o in self.created:  # an attribute either branch may set differently is unknown after
            if id(o) in after_a:
                other = after_a[id(o)]
                o.attrs = {
                    k: merge(other.get(k, Unknown(why)), o.attrs.get(k, Unknown(why)), why)
                    for k in other.keys() | o.attrs.keys()
                }
        live = [f for f in (a, b) if not f.returned]
        for f in (a, b):
            if f.returned:
                frame.alt.append((f.ret, why))
            frame.alt += f.alt
        if not live:
            frame.returned, frame.ret = True, merge(a.ret, b.ret, why)
            frame.alt = [x for x in frame.alt if x[0] is not a.ret and x[0] is not b.ret]
            return
        env = live[0].env
        if len(live) == 2:
            env = {
                k: merge(a.env.get(k, Unknown(why)), b.env.get(k, Unknown(why)), why)
                for k in a.env.keys() | b.env.keys()
            }
        frame.env = env

    def _note_cond(self, node: ast.If | ast.IfExp, value: Val) -> None:
        """Keep the value the test of `node` had (Unknown once two runs disagree)."""
        key = id(node.test)
        self.branches[key] = node
        if isinstance(value, Unknown) and (
            value.why in self.config_unknown.values() or value.why.endswith(("value not known", "default not known"))
        ):  # a branch taken or not by a flag / config value not known here: code in it may not run
            self.unsure.setdefault(key, f"`{ast.unparse(node.test)[:60]}` depends on {value.why}")
        if key in self.conds and self.conds[key] != value:
            self.conds[key] = Unknown("differs between calls")
        else:
            self.conds.setdefault(key, value)

    def assign(self, target: ast.expr, value: Val, frame: Frame) -> None:
        if isinstance(target, ast.Name):
            frame.env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = value.items if isinstance(value, Seq) and len(value.items) == len(target.elts) else None
            for i, t in enumerate(target.elts):
                self.assign(t, items[i] if items else Unknown(f"{frame.file.at(target)}: unpacked"), frame)
        elif isinstance(target, ast.Subscript):
            self.edit_loaded(target, frame)
        elif isinstance(target, ast.Attribute) and not self.arg_write(target, value, frame):
            owner = self.expr(target.value, frame)
            if isinstance(owner, Obj):
                owner.attrs[target.attr] = value
                owner.where[target.attr] = frame.file.at(target)

    # --- expressions ---------------------------------------------------------------------
    def _call(self, node: ast.Call, frame: Frame, at: str) -> Val:
        func = node.func
        grown = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if grown and func.attr in ("append", "extend") and isinstance(frame.env.get(grown), Seq):  # filled per item
            frame.env[grown] = Unknown(f"{at}: {grown} grows as the code runs")
        if isinstance(func, ast.Attribute) and func.attr == "__init__" and isinstance(func.value, ast.Call):
            if isinstance(func.value.func, ast.Name) and func.value.func.id == "super":  # super().__init__(...)
                args, kwargs = self._args(node, frame)
                me = frame.env.get("self")
                owner = owner_class(frame.file, node, self._classes)
                if isinstance(me, Obj) and owner is not None:
                    # a library base keeps what it is given by name (PreTrainedModel(config) sets self.config)
                    named = {a.id: v for a, v in zip(node.args, args) if isinstance(a, ast.Name)}
                    self._super_init(me, owner, args, kwargs, named)
                return Const(None, at)
        if isinstance(func, ast.Attribute) and func.attr == "register_buffer" and len(node.args) >= 2:
            owner, name = self.expr(func.value, frame), self.expr(node.args[0], frame)
            if isinstance(owner, Obj) and isinstance(name, Const) and isinstance(name.value, str):
                owner.attrs[name.value] = self.expr(node.args[1], frame)
            return Const(None, at)
        if isinstance(func, ast.Attribute) and func.attr in ("fill_", "copy_") and node.args:
            self._fill(func.value, self.expr(node.args[0], frame), frame)
            return Const(None, at)
        owner = self.expr(func.value, frame) if isinstance(func, ast.Attribute) else None  # evaluated once
        callee = self._attribute(func, frame, at, owner) if owner is not None else self.expr(func, frame)
        args, kwargs = self._args(node, frame)
        if isinstance(callee, Obj):  # a module called: its forward runs (the loss heads' call sites)
            self.module_calls.append((callee, node, frame.fn, frame.file))
            return Unknown(f"{at}: a module's output")
        if isinstance(callee, Ref):
            return self._call_ref(callee, func, args, kwargs, at)
        if owner is not None:
            return self._method(owner, func.attr, args, kwargs, at)
        return Unknown(f"{at}: {ast.unparse(func)[:60]}(...) not known")

    def _args(self, node: ast.Call, frame: Frame) -> tuple[list[Val], dict[str, Val]]:
        args: list[Val] = []
        for a in node.args:
            v = self.expr(a.value if isinstance(a, ast.Starred) else a, frame)
            if isinstance(a, ast.Starred):
                args += list(v.items) if isinstance(v, Seq) else []
            else:
                args.append(v)
        kwargs: dict[str, Val] = {}
        for k in node.keywords:
            v = self.expr(k.value, frame)
            if k.arg is not None:
                kwargs[k.arg] = v
            elif isinstance(v, DictV):
                kwargs.update(v.items)
        return args, kwargs

    def _call_ref(self, ref: Ref, func: ast.expr, args: list[Val], kwargs: dict[str, Val], at: str) -> Val:
        target = ref.target
        if isinstance(target, Defn):
            if isinstance(target.node, ast.ClassDef):
                return self.instantiate(target, args, kwargs, at)
            return self.call(target, args, kwargs, ref.self_obj)
        record_use(self.uses, target.dotted, args, kwargs, at)
        name = target.dotted.rpartition(".")[2]
        first = args[0] if args else kwargs.get("pretrained_model_name_or_path") or kwargs.get("f")
        if name == "from_pretrained" and isinstance(ref.self_obj, Ref) and isinstance(ref.self_obj.target, Defn):
            # UserModel.from_pretrained(path): built from the folder's config, then its weights loaded over it
            path = first if first is not None else Unknown(f"{at}: no path")
            self.loads.append((f"{ref.self_obj.target.node.name}.from_pretrained", path, at))
            obj = self.instantiate(ref.self_obj.target, [Unknown(f"{at}: the config saved with the weights")], {}, at)
            self.load_into(obj, path, at)
            return obj
        if name == "from_pretrained" or (name == "load" and target.dotted.startswith("torch")):
            path = first if first is not None else Unknown(f"{at}: no path")
            self.loads.append((target.dotted, path, at))
            return Loaded(path, at)
        if (tested := os_path_call(target.dotted, args, self.program.cwd, at)) is not None:
            return tested
        if target.dotted == "zip" and any(isinstance(a, Seq) for a in args):  # `zip([ds], samplers, [bs])`
            n, why = min(len(a.items) for a in args if isinstance(a, Seq)), Unknown(f"{at}: an item zipped")
            return Seq(tuple(Seq(tuple(a.items[i] if isinstance(a, Seq) else why for a in args)) for i in range(n)))
        if name == "dict" or (name in WRAPPERS and not args):
            return DictV(dict(kwargs))
        if name == "open" and args:
            return FileV(args[0], at)
        if is_config_loader(target.dotted) and args:
            return load_config(self.configs, args[0], target.dotted, at, self.config_unknown)
        if name in WRAPPERS and len(args) == 1 and isinstance(args[0], (DictV, Unknown)):
            return args[0]
        if name in PASS_THROUGH and args:
            v = args[0]
            if name == "int" and isinstance(v, Const) and isinstance(v.value, (int, float)):
                return Const(int(v.value), v.at, v.flag, v.config)
            return v
        if name in MATH and args and isinstance(args[0], Const) and isinstance(args[0].value, (int, float)):
            try:
                return Const(MATH[name](args[0].value), at, config=args[0].config)
            except (ArithmeticError, ValueError):
                return Unknown(f"{at}: {name} of {args[0].value}")
        if name in MATH and args and isinstance(args[0], Unknown):  # why the argument is unknown, not "library"
            return args[0]
        if name in FACTORIES:
            shape = tuple(args[0].items) if len(args) == 1 and isinstance(args[0], Seq) else tuple(args)
            if name.startswith("ones") and not shape:
                return Const(1.0, at)  # torch.ones([]) * x
            return Tensor(shape, at)
        if name in SHAPE_KEEP and args and isinstance(args[0], Tensor):
            return args[0]
        if name == "getattr" and len(args) >= 2 and isinstance(args[1], Const) and isinstance(args[0], Obj):
            return args[0].attrs.get(args[1].value, args[2] if len(args) > 2 else Unknown(f"{at}: not set"))
        return Unknown(f"{at}: {target.dotted}(...) is library code, not read")

    def _method(self, owner: Val, name: str, args: list[Val], kwargs: dict[str, Val], at: str) -> Val:
        if self.from_config(owner):  # cfg.get(...) of a config not read
            return owner
        if isinstance(owner, Obj):
            if name in ("load_state_dict", "load_weights") and args:
                # weights from a file read lazily; from anything else the loaded values are unknown
                path = self.loaded_path(args[0], at)
                self.load_into(owner, path, at)
                return Unknown(f"{at}: load result")
            if name in MODEL_SELF:
                return owner
        if isinstance(owner, Loaded) and name == "state_dict":
            return owner
        if isinstance(owner, DictV) and name == "get" and args and isinstance(args[0], Const):
            return owner.items.get(args[0].value, args[1] if len(args) > 1 else Const(None, at))
        if isinstance(owner, (Const, Weights)) and name in PASS_THROUGH:
            return owner
        if isinstance(owner, Const) and name in MATH and isinstance(owner.value, (int, float)):
            try:
                return Const(MATH[name](owner.value), at, config=owner.config)
            except (ArithmeticError, ValueError):
                return Unknown(f"{at}: {name} of {owner.value}")
        return Unknown(f"{at}: .{name}(...) not known")

    def _fill(self, target: ast.expr, value: Val, frame: Frame) -> None:
        """`model.logit_scale.data.fill_(v)` / `.copy_(v)`: the attribute now holds v."""
        node = target.value if isinstance(target, ast.Attribute) and target.attr == "data" else target
        if isinstance(node, ast.Attribute):
            owner = self.expr(node.value, frame)
            if isinstance(owner, Obj) and self.is_param(node.attr):
                owner.attrs[node.attr] = value
