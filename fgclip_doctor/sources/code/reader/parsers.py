"""The training code's argument parser, read statically: HfArgumentParser dataclasses or argparse.

HfArgumentParser turns each dataclass field into options the way transformers' hf_argparser
does (`--name` and `--name-with-dashes`, bools as `--flag [BOOL]` plus `--no_flag` when they
default to True, `Optional[X]` as X, `list[X]` as nargs "+", Literal / Enum as choices). Fields
of a base `transformers.TrainingArguments` come from the INSTALLED transformers (imported only
then); without transformers they are unknown and the spec says so.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from fgclip_doctor.environment import quiet_transformers_without_torch
from fgclip_doctor.sources.code.reader.astutil import (
    UNKNOWN,
    call_name,
    constant,
    enclosing_function,
    keyword,
    last,
)
from fgclip_doctor.sources.code.reader.program import Defn, External, Program, dotted
from fgclip_doctor.sources.code.reader.source import SourceFile

_KINDS = {"int": "int", "float": "float", "str": "str", "bool": "bool"}


@dataclass
class Option:
    """One option the real parser accepts."""

    dest: str
    options: tuple[str, ...]  # ("--learning_rate", "--learning-rate")
    kind: str = "any"  # int | float | str | bool (HF string_to_bool) | any (a type the reader cannot run)
    nargs: Any = None  # None, "?", "+", "*", an int
    action: str = "store"  # store | store_true | store_false | store_const | count | append
    const: Any = None
    choices: tuple | None = None
    default: Any = UNKNOWN
    declared: str = ""  # `file:line`, or `transformers <version> TrainingArguments`


@dataclass
class ParserSpec:
    """The options of the training code's parser and where it is built."""

    kind: str  # "hf" (HfArgumentParser) | "argparse" | "class" (a config class the launch names: config_class.py)
    where: str  # file:line of the parser's construction
    classes: list[str] = field(default_factory=list)  # HF: the dataclasses, in order
    options: list[Option] = field(default_factory=list)
    allow_abbrev: bool = True
    unknown_base: str = ""  # why some fields are unknown (base TrainingArguments not importable)

    def describe(self) -> str:
        if self.kind == "class":
            return f"config class {self.classes[0]} (named by the launch)"
        return f"HfArgumentParser({', '.join(self.classes)})" if self.kind == "hf" else "argparse.ArgumentParser"

    def option(self, dest: str) -> Option | None:
        for o in self.options:
            if o.dest == dest and o.action != "store_false":
                return o
        return None


# --- HfArgumentParser ---------------------------------------------------------------------
def _hf_option(
    name: str, kind: str, nargs: Any, choices: tuple | None, default: Any, declared: str, optional: bool
) -> list[Option]:
    """The options HfArgumentParser registers for one field (mirrors hf_argparser)."""
    opts = (f"--{name}",) + ((f"--{name.replace('_', '-')}",) if "_" in name else ())
    if kind == "bool":
        takes_const = not optional or (default is not None and default is not UNKNOWN)
        out = [
            Option(
                name,
                opts,
                "bool",
                "?" if takes_const else None,
                "store",
                True if takes_const else None,
                None,
                default,
                declared,
            )
        ]
        if default is True:
            no = (f"--no_{name}", f"--no-{name.replace('_', '-')}")
            out.append(Option(name, no, "bool", 0, "store_false", None, None, default, declared))
        return out
    return [Option(name, opts, kind, nargs, "store", None, choices, default, declared)]


def _spec_from_ast(ann: ast.expr | None) -> tuple[str, Any, tuple | None, bool]:
    """(kind, nargs, choices, optional) for a field annotation written in the user's code."""
    if ann is None:
        return "any", None, None, False
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):  # "int" as a string annotation
        try:
            ann = ast.parse(ann.value, mode="eval").body
        except SyntaxError:
            return "any", None, None, False
    if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):  # X | None
        parts = [ann.left, ann.right]
        rest = [p for p in parts if not (isinstance(p, ast.Constant) and p.value is None)]
        if len(rest) == 1:
            kind, nargs, choices, _ = _spec_from_ast(rest[0])
            return kind, nargs, choices, True
        return "any", None, None, False
    if isinstance(ann, ast.Subscript):
        head = last(dotted(ann.value) or "")
        args = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
        if head == "Optional":
            kind, nargs, choices, _ = _spec_from_ast(args[0])
            return kind, nargs, choices, True
        if head == "Union":
            rest = [a for a in args if not (isinstance(a, ast.Constant) and a.value is None)]
            if len(rest) == 1:
                kind, nargs, choices, _ = _spec_from_ast(rest[0])
                return kind, nargs, choices, len(rest) < len(args)
            return "any", None, None, False
        if head in ("List", "list"):
            kind, _, choices, _ = _spec_from_ast(args[0])
            return kind, "+", choices, False
        if head == "Literal":
            values = tuple(constant(a) for a in args)
            return "str", None, None if UNKNOWN in values else values, False
    return _KINDS.get(last(dotted(ann) or ""), "any"), None, None, False


def _spec_from_type(tp: Any) -> tuple[str, Any, tuple | None, bool]:
    """(kind, nargs, choices, optional) for a real type object (installed TrainingArguments)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or isinstance(tp, types.UnionType):
        args = typing.get_args(tp)
        rest = [a for a in args if a is not type(None)]
        if type(None) not in args:  # Union[X, str]: HF keeps the non-str member
            rest = [a for a in rest if a is not str] or [str]
        kind, nargs, choices, _ = _spec_from_type(rest[0])
        return kind, nargs, choices, type(None) in args
    if origin is typing.Literal:
        return "str", None, typing.get_args(tp), False
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "str", None, tuple(x.value for x in tp), False
    if origin is list:
        kind, _, choices, _ = _spec_from_type((typing.get_args(tp) or (str,))[0])
        return kind, "+", choices, False
    return _KINDS.get(getattr(tp, "__name__", ""), "any"), None, None, False


def installed_training_arguments() -> tuple[list[Option], str]:
    """Options of the installed transformers.TrainingArguments, or ([], why not)."""
    quiet_transformers_without_torch()
    try:
        import transformers
        from transformers import TrainingArguments
    # not installed (ImportError), or installed against another torch / with a missing library
    # (transformers' and torch's own version checks raise RuntimeError / OSError at import)
    except (ImportError, OSError, RuntimeError) as err:
        return (
            [],
            f"transformers is not importable here ({type(err).__name__}): the fields of "
            "the base TrainingArguments are unknown (the transformers your training uses types "
            "them, and needs no torch for it)",
        )
    try:
        hints = typing.get_type_hints(TrainingArguments)
    except (NameError, TypeError, AttributeError):  # an annotation naming what this Python lacks
        hints = {}
    declared = f"transformers {transformers.__version__} TrainingArguments"
    out: list[Option] = []
    for f in dataclasses.fields(TrainingArguments):
        if not f.init:
            continue
        kind, nargs, choices, optional = _spec_from_type(hints.get(f.name, f.type))
        default = f.default if f.default is not dataclasses.MISSING else UNKNOWN
        out += _hf_option(f.name, kind, nargs, choices, default, f"{declared}.{f.name}", optional)
    return out, ""


def _is_training_arguments(sym: External) -> bool:
    return sym.dotted.startswith("transformers") and last(sym.dotted) == "TrainingArguments"


def _field_default(value: ast.expr | None) -> tuple[Any, bool]:
    """(default, required) of `x: int = <value>` including `field(default=...)`."""
    if value is None:
        return UNKNOWN, True
    if isinstance(value, ast.Call) and last(call_name(value)) == "field":
        d = keyword(value, "default")
        if d is not None:
            return constant(d), False
        return UNKNOWN, keyword(value, "default_factory") is None
    return constant(value), False


def dataclass_options(program: Program, cls: Defn, spec: ParserSpec, depth: int = 0) -> list[Option]:
    """Options of one dataclass: its bases' fields first, its own override them by name."""
    fields: dict[str, list[Option]] = {}
    for base in cls.node.bases:
        sym = program.resolve(cls.file, base)
        if isinstance(sym, External) and _is_training_arguments(sym):
            opts, why = installed_training_arguments()
            spec.unknown_base = why
            for o in opts:
                fields.setdefault(o.dest, []).append(o)
        elif isinstance(sym, Defn) and isinstance(sym.node, ast.ClassDef) and depth < 8:
            for o in dataclass_options(program, sym, spec, depth + 1):
                fields.setdefault(o.dest, []).append(o)
    for stmt in cls.node.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        if "ClassVar" in ast.unparse(stmt.annotation):
            continue
        kind, nargs, choices, optional = _spec_from_ast(stmt.annotation)
        default, required = _field_default(stmt.value)
        if kind == "bool" and required and not optional:
            default = False  # hf_argparser: a bool without default defaults to False
        fields[stmt.target.id] = _hf_option(stmt.target.id, kind, nargs, choices, default, cls.file.at(stmt), optional)
    return [o for opts in fields.values() for o in opts]


def read_hf_parser(program: Program, file: SourceFile, call: ast.Call) -> ParserSpec:
    arg = call.args[0] if call.args else keyword(call, "dataclass_types")
    items = arg.elts if isinstance(arg, (ast.Tuple, ast.List)) else [arg] if arg is not None else []
    spec = ParserSpec("hf", file.at(call))
    for item in items:
        sym = program.resolve(file, item)
        name = dotted(item) or ast.unparse(item)
        spec.classes.append(last(name))
        if isinstance(sym, Defn) and isinstance(sym.node, ast.ClassDef):
            spec.options += dataclass_options(program, sym, spec)
        elif isinstance(sym, External) and _is_training_arguments(sym):
            opts, spec.unknown_base = installed_training_arguments()
            spec.options += opts
    return spec


# --- argparse -----------------------------------------------------------------------------
_ACTION_NARGS = {
    "store_true": 0,
    "store_false": 0,
    "store_const": 0,
    "count": 0,
    "append_const": 0,
    "help": 0,
    "version": 0,
}


def _argparse_option(file: SourceFile, call: ast.Call) -> Option | None:
    flags = [constant(a) for a in call.args]
    flags = [f for f in flags if isinstance(f, str) and f.startswith("-")]
    if not flags:
        return None  # a positional argument: launches pass none worth typing
    dest_node = keyword(call, "dest")
    dest = constant(dest_node) if dest_node is not None else None
    if not isinstance(dest, str):
        longs = [f for f in flags if f.startswith("--")] or flags
        dest = longs[0].lstrip("-").replace("-", "_")
    action = constant(keyword(call, "action")) if keyword(call, "action") is not None else "store"
    action = action if isinstance(action, str) else "store"  # a custom Action class: takes values
    type_node = keyword(call, "type")
    kind = "str" if type_node is None else _KINDS.get(last(dotted(type_node) or ""), "any")
    if kind == "bool":
        kind = "any"  # argparse type=bool: bool("False") is True, any string passes
    nargs = constant(keyword(call, "nargs")) if keyword(call, "nargs") is not None else None
    nargs = _ACTION_NARGS.get(action, None if nargs is UNKNOWN else nargs)
    choices = constant(keyword(call, "choices")) if keyword(call, "choices") is not None else None
    default = (
        constant(keyword(call, "default"))
        if keyword(call, "default") is not None
        else (False if action == "store_true" else True if action == "store_false" else None)
    )
    return Option(
        dest,
        tuple(flags),
        kind,
        nargs,
        action,
        None,
        tuple(choices) if isinstance(choices, (list, tuple)) else None,
        default,
        file.at(call),
    )


def read_argparse(file: SourceFile, call: ast.Call, scope: ast.AST) -> ParserSpec:
    """Every `*.add_argument(...)` in the function that builds the parser."""
    abbrev = constant(keyword(call, "allow_abbrev"))
    spec = ParserSpec("argparse", file.at(call), allow_abbrev=abbrev if isinstance(abbrev, bool) else True)
    if isinstance(scope, ast.Module):  # built in the script's `__main__` block: its functions build others
        stmts = [s for s in scope.body if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        scope = ast.Module(body=stmts, type_ignores=[])
    for node in ast.walk(scope):
        if isinstance(node, ast.Call) and last(call_name(node)) == "add_argument":
            opt = _argparse_option(file, node)
            if opt is not None:
                spec.options.append(opt)
    return spec


def find_parser(program: Program, files: list[SourceFile]) -> ParserSpec | None:
    """The HfArgumentParser in the code, else the argparse parser with the most options."""
    best: ParserSpec | None = None
    for f in files:
        for fn in [n for n in ast.walk(f.tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module))]:
            for node in ast.walk(fn):
                if not isinstance(node, ast.Call):
                    continue
                name = last(call_name(node))
                if name == "HfArgumentParser":
                    return read_hf_parser(program, f, node)
                if name == "ArgumentParser" and (isinstance(fn, ast.Module) or fn is not f.tree):
                    if isinstance(fn, ast.Module) and enclosing_function(f.tree, node) is not None:
                        continue  # met again from its function
                    spec = read_argparse(f, node, fn)
                    if best is None or len(spec.options) > len(best.options):
                        best = spec
    return best
