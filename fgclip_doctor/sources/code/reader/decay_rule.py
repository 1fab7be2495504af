"""Weight decay on the logit scales: how the code splits its parameters into decay / no-decay groups.

The functions that build optimizer groups (dicts with a "weight_decay" key, such as a Trainer's
`create_optimizer` override or open_clip's `exclude` lambda): a scale stays out of weight decay
only when a name test (`"logit_scale" in n`) or a shape test (`p.ndim < 2`) excludes it, in that
function or in a predicate it calls (followed through the code's own functions, as open_clip's

    no_wd = exclude_fn(name, p)      # exclude_fn = exclude_fn or make_wd_exclude(model)
    def exclude(name, param): return exclude_from_wd(name, param) or ...
    def exclude_from_wd(name, param): return param.ndim <= 1

excludes every scalar). A transformers Trainer without such an override decays every parameter but
norms and biases, logit scales included.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from fgclip_doctor.sources.code.reader.astutil import calls_run, last
from fgclip_doctor.sources.code.reader.program import Defn, External, Program
from fgclip_doctor.sources.code.reader.scales import constant_names
from fgclip_doctor.sources.code.reader.source import SourceFile

MAX_FOLLOW = 4  # predicate -> helper -> helper: open_clip's chain is three deep

HF_DEFAULT_DECAY = "transformers Trainer.create_optimizer default: weight decay on every parameter but norms and biases"


@dataclass
class DecayRule:
    at: str  # the function building the groups (or the HF default)
    excluded_names: list[str] = field(default_factory=list)
    excludes_scalars: bool = False
    lr_flags: list[str] = field(default_factory=list)  # per-group LRs from args (text_model_lr)
    names_at: str = ""  # where a list of no-decay names comes from when the code reads it (a config's line)
    unknown: str = ""  # why a list of no-decay names the code tests is not known (its config not read)
    maybe: str = ""  # why the grouping may not be the one the launch uses (its call is in a branch)
    dicts: list = field(default_factory=list)  # the group dict literals (their own "lr": group_lrs.py)
    file: SourceFile | None = None

    def decays(self, param: str) -> bool:
        return not (self.excludes_scalars or any(s in param for s in self.excluded_names))


def _exclusions(fn: ast.AST, program: Program | None = None, file: SourceFile | None = None) -> tuple[list[str], bool]:
    """Name substrings tested with `in` (`"logit_scale" in n`, or `n in SCALE_NAMES`, a module
    tuple of scale names) and whether a shape test (`p.ndim < 2`) excludes scalars."""
    names, scalars = [], False
    for n in ast.walk(fn):
        if isinstance(n, ast.Compare) and len(n.ops) == 1:
            left, op = n.left, n.ops[0]
            if isinstance(op, (ast.In, ast.NotIn)) and isinstance(left, ast.Constant) and isinstance(left.value, str):
                names.append(left.value)
            right = n.comparators[0]
            if isinstance(op, ast.In) and isinstance(right, ast.Name) and program is not None and file is not None:
                names += constant_names(program, file, right.id)
            if isinstance(left, ast.Attribute) and left.attr == "ndim" and isinstance(op, (ast.Lt, ast.LtE)):
                scalars = True
    return list(dict.fromkeys(names)), scalars


def _listed_names(fn: ast.AST, values: dict[int, Any], unread: set[str]) -> tuple[list[str], str, str]:
    """No-decay names held in a local list the code computed (`no_decay = cfg["optim"]["no_decay"]`)
    and tested with `in` (`n in no_decay`, `any(k in n for k in no_decay)`): (names, where they
    come from, why not known). `values`: what the abstract run bound each assignment to."""
    tested: set[str] = set()
    loops = {g.target.id: g.iter.id for g in ast.walk(fn) if isinstance(g, ast.comprehension)
             and isinstance(g.target, ast.Name) and isinstance(g.iter, ast.Name)}  # fmt: skip
    for n in ast.walk(fn):
        if isinstance(n, ast.Compare) and len(n.ops) == 1 and isinstance(n.ops[0], (ast.In, ast.NotIn)):
            right, left = n.comparators[0], n.left
            if isinstance(right, ast.Name):
                tested.add(right.id)
            if isinstance(left, ast.Name) and left.id in loops:
                tested.add(loops[left.id])
    names, at, why = [], "", ""
    for n in ast.walk(fn):
        if not (isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)):
            continue
        if n.targets[0].id not in tested or id(n) not in values:
            continue
        value = values[id(n)]
        items = getattr(value, "items", None)
        if isinstance(items, tuple):
            strings = [getattr(i, "value", None) for i in items]
            names += [v for v in strings if isinstance(v, str)]
            at = at or next((c for i in items if (c := getattr(i, "config", ""))), "")
        elif isinstance(getattr(value, "value", None), (list, tuple, set)):
            names += [v for v in value.value if isinstance(v, str)]
            at = at or getattr(value, "config", "")
        elif hasattr(value, "why") and value.why in unread:  # a list from a config not read
            why = why or value.why
    return names, at, why


def _group_dicts(fn: ast.AST) -> list[ast.Dict]:
    return [
        n
        for n in ast.walk(fn)
        if isinstance(n, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "weight_decay" for k in n.keys)
    ]


def _lr_flags(dicts: list[ast.Dict]) -> list[str]:
    out = []
    for d in dicts:
        for k, v in zip(d.keys, d.values):
            if isinstance(k, ast.Constant) and k.value == "lr" and isinstance(v, ast.Attribute):
                out.append(v.attr)
    return list(dict.fromkeys(out))


def find_decay_rule(
    program: Program,
    files: list[SourceFile],
    values: dict | None = None,
    unread: set[str] = frozenset(),
    dead: frozenset | set = frozenset(),
    unsure: dict[int, str] | None = None,
) -> DecayRule | None:
    """How the code splits parameters into decay / no-decay groups (None: not seen); `values`:
    the abstract run's value of each assignment (a no-decay list read from a config). A grouping
    called only in branches the launch does not take, or may not take (`dead` / `unsure` ids),
    is no fact about this launch: `maybe` says why."""
    for f in files:
        for fn in [n for n in ast.walk(f.tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            dicts = _group_dicts(fn)
            if not dicts:
                continue
            names, scalars = _exclusions(fn, program, f)
            more, s = _followed(fn, program, f, set())  # the predicates it calls (open_clip's exclude_fn)
            names, scalars = names + more, scalars or s
            for sub in ast.walk(f.tree):  # module-level `exclude = lambda n, p: ...` used by fn
                if isinstance(sub, ast.Lambda) and sub.lineno < fn.lineno:
                    more, s = _exclusions(sub)
                    names, scalars = names + more, scalars or s
            listed, at, why = _listed_names(fn, values or {}, set(unread))
            rule = DecayRule(f.at(fn), list(dict.fromkeys(names + listed)), scalars, _lr_flags(dicts), at, why)
            rule.dicts, rule.file = dicts, f
            ran = calls_run(files, fn.name, dead, unsure or {})
            if ran is False:
                rule.maybe = (
                    f"{f.at(fn)}: {fn.name}() builds the groups, but every call of it is in a branch "
                    "this launch does not take: the groups used instead are not read"
                )
            elif ran:
                rule.maybe = f"{f.at(fn)}: {fn.name}() builds the groups only if {ran}"
            return rule
    if _uses_hf_trainer(program, files):
        return DecayRule(HF_DEFAULT_DECAY, ["bias", "layernorm", "norm"], False)
    return None


def _uses_hf_trainer(program: Program, files: list[SourceFile]) -> bool:
    for f in files:
        for node in ast.walk(f.tree):
            if isinstance(node, ast.ClassDef):
                for base in program.bases(Defn(f, node)):
                    if (
                        isinstance(base, External)
                        and base.dotted.startswith("transformers")
                        and last(base.dotted).endswith("Trainer")
                    ):
                        return True
            if isinstance(node, ast.Call):
                sym = program.resolve(f, node.func)
                if (
                    isinstance(sym, External)
                    and sym.dotted.startswith("transformers")
                    and last(sym.dotted) == "Trainer"
                ):
                    return True
    return False


def _followed(
    fn: ast.AST, program: Program, file: SourceFile, seen: set[int], depth: int = 0
) -> tuple[list[str], bool]:
    """Exclusions in the predicates `fn` reaches through calls of the code's own functions: each
    function called (and each function it defines, as a factory returning its predicate) whose
    result is a test (`return p.ndim <= 1 or "logit_scale" in n`)."""
    names, scalars = [], False
    if depth >= MAX_FOLLOW:
        return names, scalars
    for call in [n for n in ast.walk(fn) if isinstance(n, ast.Call)]:
        target = program.resolve(file, call.func)
        if not isinstance(target, Defn) or isinstance(target.node, ast.ClassDef) or id(target.node) in seen:
            continue
        seen.add(id(target.node))
        for sub in ast.walk(target.node):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and _is_predicate(sub):
                more, s = _exclusions(sub, program, target.file)
                names, scalars = names + more, scalars or s
        more, s = _followed(target.node, program, target.file, seen, depth + 1)
        names, scalars = names + more, scalars or s
    return names, scalars


def _is_predicate(fn: ast.AST) -> bool:
    """A function (or lambda) whose result is a test: a comparison, `and` / `or`, `not`."""
    tests = (ast.Compare, ast.BoolOp, ast.UnaryOp)
    if isinstance(fn, ast.Lambda):
        return isinstance(fn.body, tests)
    returns = [n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]
    return bool(returns) and all(isinstance(r, tests) for r in returns)
