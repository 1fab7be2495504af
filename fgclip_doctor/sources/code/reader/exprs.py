"""Expressions on abstract values (values.py): names, attributes, operators, conditions."""

from __future__ import annotations

import ast

from fgclip_doctor.sources.code.reader.astutil import UNKNOWN, arithmetic
from fgclip_doctor.sources.code.reader.program import Defn, External, dotted
from fgclip_doctor.sources.code.reader.source import SourceFile
from fgclip_doctor.sources.code.reader.values import (
    BINOPS,
    BUILTINS,
    COMPARE,
    Const,
    DictV,
    Frame,
    Loaded,
    Obj,
    Ref,
    Seq,
    Unknown,
    Val,
    Weights,
    assigned_at_top,
    is_none,
    merge,
    none_state,
    truth,
)


class Exprs:
    """The expression half of Interp (interp.py): needs program, flag, conds, steps, call paths."""

    def expr(self, node: ast.expr | None, frame: Frame) -> Val:
        self.steps += 1
        if node is None:
            return Const(None, frame.file.at(1))
        at = frame.file.at(node)
        if isinstance(node, ast.Constant):
            return Const(node.value, at)
        if isinstance(node, ast.Name):
            return self._name(node.id, frame, at)
        if isinstance(node, ast.Attribute):
            return self._attribute(node, frame, at)
        if isinstance(node, ast.Call):
            picked = self._getattr_of_module(node, frame, at)
            return picked if picked is not None else self._call(node, frame, at)
        if isinstance(node, ast.IfExp):
            test = self.expr(node.test, frame)
            self._note_cond(node, test)
            known = truth(test)
            if known is not None:
                return self.expr(node.body if known else node.orelse, frame)
            a, b = self.expr(node.body, frame), self.expr(node.orelse, frame)
            return merge(a, b, f"{at}: `{ast.unparse(node.test)[:60]}` is not known for this launch")
        if isinstance(node, ast.BoolOp):
            return self._boolop(node, frame, at)
        if isinstance(node, ast.UnaryOp):
            v = self.expr(node.operand, frame)
            if isinstance(node.op, ast.Not):
                t = truth(v)
                return Const(not t, at) if t is not None else Unknown(f"{at}: not known")
            if isinstance(v, Const) and isinstance(v.value, (int, float)) and isinstance(node.op, ast.USub):
                return Const(-v.value, v.at, config=v.config)
            return v if isinstance(node.op, ast.UAdd) else Unknown(f"{at}: not known")
        if isinstance(node, ast.BinOp):
            return self._binop(node.op, self.expr(node.left, frame), self.expr(node.right, frame), node, frame)
        if isinstance(node, ast.Compare):
            return self._compare(node, frame, at)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return Seq(tuple(self.expr(e, frame) for e in node.elts))
        if isinstance(node, ast.Dict):
            items = {}
            for k, v in zip(node.keys, node.values):
                value = self.expr(v, frame)
                if k is None and isinstance(value, DictV):
                    items.update(value.items)
                elif isinstance(k, ast.Constant) and isinstance(k.value, str):
                    items[k.value] = value
            return DictV(items)
        if isinstance(node, ast.Subscript):
            base, key = self.expr(node.value, frame), self.expr(node.slice, frame)
            if self.from_config(base):  # cfg["optim"] of a config not read: that reason, kept
                return base
            if isinstance(base, Loaded):  # checkpoint["state_dict"]: still the weights of that file
                return base
            if isinstance(key, Const):
                if isinstance(base, DictV) and key.value in base.items:
                    return base.items[key.value]
                if (
                    isinstance(base, Seq)
                    and isinstance(key.value, int)
                    and -len(base.items) <= key.value < len(base.items)
                ):
                    return base.items[key.value]
            return Unknown(f"{at}: not known")
        return Unknown(f"{at}: not evaluated")

    def from_config(self, v: Val) -> bool:
        """`v` is a config the launch's directory does not hold (its values stay unknown, saying why)."""
        return isinstance(v, Unknown) and v.why in self.config_unknown.values()

    def _name(self, name: str, frame: Frame, at: str) -> Val:
        if name in frame.env:
            return frame.env[name]
        return self.module_value(frame.file, name, at)

    def module_value(self, file: SourceFile, name: str, at: str, depth: int = 0) -> Val:
        """A module-level name: a user class / function, a library name, or a module constant."""
        key = (file.module, name)
        if key in self._module_values:
            return self._module_values[key]
        sym = self.program.resolve(file, ast.Name(id=name))
        if sym is not None:
            return Ref(sym)
        if name in BUILTINS and name not in self.program.imports(file) and not assigned_at_top(file, name):
            return Ref(External(name))
        value: Val = Unknown(f"{at}: {name} not known")
        for stmt in file.tree.body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
                self._module_values[key] = value  # a cycle reads Unknown
                value = self.expr(stmt.value, Frame(file, {}))
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
                value = self.expr(stmt.value, Frame(file, {}))
        target = self.program.imports(file).get(name)
        if isinstance(value, Unknown) and target and depth < 6:
            module, _, attr = target.rpartition(".")
            other = self.program.load(module) if module and self.program.locate_quiet(module) else None
            if other is not None:
                value = self.module_value(other, attr, at, depth + 1)
            elif not module or not self.program.locate_quiet(module):
                value = Ref(External(target))
        self._module_values[key] = value
        return value

    def _attribute(self, node: ast.Attribute, frame: Frame, at: str, base: Val | None = None) -> Val:
        """`x.attr`; `base`: the value of `x` when the caller evaluated it already (a call's owner)."""
        base_node = node.value
        base = self.expr(base_node, frame) if base is None else base
        if node.attr == "data" or self.from_config(base):
            return base
        if isinstance(base, Obj):
            if node.attr in base.attrs:
                return base.attrs[node.attr]
            if base.cls is not None:
                method = self.program.method(base.cls, node.attr)
                if method is not None:
                    return Ref(method, base)
                default = self.class_default(base.cls, node.attr)
                if default is not None:
                    return default
            return Unknown(f"{at}: {ast.unparse(node)[:60]} not set in the code read")
        if isinstance(base, DictV) and node.attr in base.items:  # cfg.optim.lr (OmegaConf, EasyDict)
            return base.items[node.attr]
        if isinstance(base, Loaded):
            return Weights(
                base.path, node.attr, base.at, Unknown(f"{base.at}: the weights loaded there lack {node.attr}")
            )
        if isinstance(base, Ref) and isinstance(base.target, External):
            full = f"{base.target.dotted}.{node.attr}"  # `losses.SLIPLoss` of a user module `import losses`
            sym = self.program.lookup(full) if self.program.locate_quiet(base.target.dotted) else None
            return Ref(sym if isinstance(sym, Defn) else External(full))
        if isinstance(base, Ref) and isinstance(base.target, Defn) and isinstance(base.target.node, ast.ClassDef):
            method = self.program.method(base.target, node.attr)
            if method is not None:
                return Ref(method, base)  # a classmethod / staticmethod: cls bound to the class
            if node.attr == "from_pretrained":  # the library's loader on the user's class (interp.py)
                return Ref(External("from_pretrained"), base)
            return self.class_default(base.target, node.attr) or Unknown(f"{at}: not known")
        name = dotted(base_node) or ""
        if name.rpartition(".")[2].endswith("args") and not isinstance(base, (Obj, DictV)):
            if node.attr in self.arg_writes:  # set by the code after parsing (program order)
                return self.arg_writes[node.attr]
            flag = self.flag(node.attr)
            if isinstance(flag, Unknown):
                self.unknown_flags.setdefault(node.attr, at)
            if flag is not None:
                return flag
        return Unknown(f"{at}: {ast.unparse(node)[:60]} not known")

    def class_default(self, cls: Defn, attr: str, depth: int = 0) -> Val | None:
        for stmt in cls.node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == attr:
                return self.expr(stmt.value, Frame(cls.file, {})) if stmt.value is not None else None
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == attr for t in stmt.targets):
                return self.expr(stmt.value, Frame(cls.file, {}))
        if depth < 6:
            for base in self.program.bases(cls):
                if isinstance(base, Defn) and isinstance(base.node, ast.ClassDef):
                    found = self.class_default(base, attr, depth + 1)
                    if found is not None:
                        return found
        return None

    def _boolop(self, node: ast.BoolOp, frame: Frame, at: str) -> Val:
        is_and = isinstance(node.op, ast.And)
        unknown = None
        result: Val = Const(is_and, at)
        for v_node in node.values:
            v = self.expr(v_node, frame)
            t = truth(v)
            if t is None:
                unknown = unknown or Unknown(f"{at}: `{ast.unparse(v_node)[:60]}` not known")
                continue
            if t != is_and:  # `False and ...` / `True or ...` decides
                return v
            result = v
        return unknown or result

    def _binop(self, op: ast.operator, a: Val, b: Val, node: ast.AST, frame: Frame) -> Val:
        at = frame.file.at(node)
        if isinstance(op, ast.Mult):  # torch.ones([]) * x: x, with its own provenance (a flag's line)
            if isinstance(a, Const) and a.value == 1.0 and not isinstance(a.value, bool):
                return b
            if isinstance(b, Const) and b.value == 1.0 and not isinstance(b.value, bool):
                return a
        if isinstance(a, Const) and isinstance(b, Const) and type(op) in BINOPS:
            value = arithmetic(type(op), a.value, b.value)  # bounded: never a hang on 10 ** 10 ** 10
            if value is UNKNOWN:
                return Unknown(f"{at}: not computed")
            return Const(value, at, config=a.config or b.config)
        operand = next((v for v in (a, b) if isinstance(v, Unknown)), None)  # say why the operand is unknown
        return (
            operand if operand is not None and not operand.why.endswith(": not known") else Unknown(f"{at}: not known")
        )

    def _compare(self, node: ast.Compare, frame: Frame, at: str) -> Val:
        left = self.expr(node.left, frame)
        result = True
        for op, right_node in zip(node.ops, node.comparators):
            right = self.expr(right_node, frame)
            if isinstance(op, (ast.Is, ast.IsNot)) and is_none(right):
                none = none_state(left)
                if none is None:
                    return Unknown(f"{at}: `{ast.unparse(node)[:60]}` not known")
                result = result and (none if isinstance(op, ast.Is) else not none)
            elif isinstance(left, Const) and isinstance(right, Const):
                try:
                    result = result and bool(COMPARE[type(op)](left.value, right.value))
                except Exception:  # noqa: BLE001 - a comparison of odd constants is unknown
                    return Unknown(f"{at}: not known")
            else:
                operand = next((v for v in (left, right) if isinstance(v, Unknown)), None)  # say why, when known
                if operand is not None and not operand.why.endswith("not known"):
                    return operand
                return Unknown(f"{at}: `{ast.unparse(node)[:60]}` not known")
            left = right
        return Const(result, at)

    def _getattr_of_module(self, node: ast.Call, frame: Frame, at: str) -> Val | None:
        """`getattr(models, args.model)`: the user's definition the flag's value names in that module
        (SLIP's model factories), Unknown citing the flag when its value is not known; None when the
        call is not a getattr on one of the user's modules."""
        if not (isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2):
            return None
        head = dotted(node.args[0])
        target = self.program.imports(frame.file).get(head) if head else None
        if not target or not self.program.locate_quiet(target):
            return None
        name = self.expr(node.args[1], frame)
        shown = ast.unparse(node)[:80]
        sym = None
        if isinstance(name, Unknown):
            why = f"{at}: {shown} picks what it builds by a value not known here ({name.why})"
        elif not (isinstance(name, Const) and isinstance(name.value, str) and name.value.isidentifier()):
            why = f"{at}: {shown}: not a name"
        else:
            attr = ast.Attribute(value=node.args[0], attr=name.value, ctx=ast.Load())
            sym = self.program.resolve(frame.file, attr)
            why = f"{at}: {shown} = {target}.{name.value} ({name.at}), not defined in the code read"
        if isinstance(sym, Defn):
            return Ref(sym)
        self.unpicked.setdefault(at, why)  # what the launch builds there is not known: nothing is absent
        return Unknown(why)

    def load_into(self, obj: Obj, path: Val, at: str, prefix: str = "", depth: int = 0) -> None:
        """Weights loaded over `obj` replace every parameter the file holds: each logit parameter,
        in `obj` and in the modules it holds (`self.clip.logit_scale` as `clip.logit_scale`),
        becomes Weights (the file's value if it holds the tensor, else what was there)."""
        if not prefix:
            obj.loads.append((path, at))
        for attr, value in list(obj.attrs.items()):
            if isinstance(value, Obj) and value is not obj and depth < 4:
                self.load_into(value, path, at, f"{prefix}{attr}.", depth + 1)
            elif self.is_param(attr) and not (isinstance(value, Const) and value.value is None):
                obj.attrs[attr] = Weights(path, prefix + attr, at, value)

    def arg_write(self, target: ast.Attribute, value: Val, frame: Frame) -> bool:
        """`args.n_gpu = torch.cuda.device_count()`: the parsed arguments (a namespace the reader
        holds as flags, not as an object) keep the value written, for every later read."""
        owner = target.value
        name = dotted(owner) or ""
        if not name.rpartition(".")[2].endswith("args") or isinstance(self.expr(owner, frame), (Obj, DictV)):
            return False
        self.arg_writes[target.attr] = value
        return True

    def edit_loaded(self, target: ast.Subscript, frame: Frame) -> None:
        """`state_dict["clip." + key] = val` on what a torch.load returned: its tensors are no
        longer the file's (CLIP4Clip writes the CLIP weights over an --init_model's)."""
        owner = self.expr(target.value, frame)
        if isinstance(owner, Loaded):
            self.edited.setdefault(owner.at, frame.file.at(target))

    def loaded_path(self, value: Val, at: str) -> Val:
        """The file a `load_state_dict(value)` loads from: Unknown when not a file's dict as loaded."""
        if not isinstance(value, Loaded):
            return Unknown(f"{at}: weights from code not read")
        if value.at in self.edited:
            return Unknown(f"{at}: the weights loaded at {value.at} are changed at {self.edited[value.at]} first")
        return value.path
