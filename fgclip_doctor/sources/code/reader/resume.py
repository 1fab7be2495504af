"""Does the training code resume by itself, from where, and what does a resume load?

Shapes, followed by the values they pass (through variables, not literal call shapes):
- HF Trainer: `trainer.train(resume_from_checkpoint=X)` where X is True under a `glob("checkpoint-*")`
  test (FG-CLIP), comes from `get_last_checkpoint(...)` (transformers examples), or is a variable
  assigned from either (`resume = bool(list(Path(out).glob("checkpoint-*")))`);
- a resume flag (open_clip's `--resume`): values compared in the code (`args.resume == "latest"`)
  pick the newest checkpoint of a folder the code builds from flags
  (`<logs>/<name>/checkpoints/epoch_latest.pt`, evaluated with the launch's values); any other value
  is a path, `torch.load(args.resume)`, whose dict the code loads into the model, optimizer, scaler.
The flags in a guarding `if` (`not args.overwrite_output_dir`) are returned, so a launch that sets
them can turn the resume off.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from fgclip_doctor.sources.code.reader.astutil import (
    UNKNOWN,
    call_name,
    constant,
    enclosing_function,
    functions,
    keyword,
    last,
)
from fgclip_doctor.sources.code.reader.paths import PathEval, feeding, scope_of
from fgclip_doctor.sources.code.reader.source import SourceFile

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass
class Resume:
    auto: bool
    source: str  # file:line of the detection (or of the train() call when it does not auto-resume)
    how: str  # "glob checkpoint-*" | "get_last_checkpoint" | "explicit only" | "--resume latest" ...
    guards: list[str] = field(default_factory=list)  # args attributes in the guarding condition


@dataclass
class FlagResume:
    """A resume driven by a flag: `--resume latest` resumes by itself, `--resume PATH` loads PATH."""

    dest: str
    auto_values: tuple[str, ...]  # values compared in the code that pick the newest checkpoint
    compared_at: str  # file:line of the comparison
    latest: tuple[SourceFile, ast.expr] | None  # the path the auto value resumes from
    restores: list[str] = field(default_factory=list)  # model, optimizer, scaler, epoch ...
    load_at: str = ""  # file:line of the torch.load of the resume path
    always: tuple[SourceFile, ast.expr] | None = None  # `if os.path.isfile(latest): torch.load(latest)`


def _is_checkpoint_glob(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or last(call_name(node)) not in ("glob", "iglob", "rglob"):
        return False
    for arg in ast.walk(node):
        v = constant(arg) if isinstance(arg, ast.Constant) else None
        if isinstance(v, str) and v.startswith("checkpoint") and "*" in v:
            return True
    return False


def _guard_attrs(test: ast.expr) -> list[str]:
    """Flags whose truth turns the resume off: `not args.overwrite_output_dir` in the if-test."""
    out = []
    for neg in ast.walk(test):
        if isinstance(neg, ast.UnaryOp) and isinstance(neg.op, ast.Not):
            for n in ast.walk(neg.operand):
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id.endswith("args"):
                    out.append(n.attr)
    return list(dict.fromkeys(out))


def _train_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and last(call_name(n)) == "train"
        and keyword(n, "resume_from_checkpoint") is not None
    ]


def _auto_value(f: SourceFile, call: ast.Call) -> tuple[str, ast.AST] | None:
    """("glob checkpoint-*" | "get_last_checkpoint", where) when the value passed as
    resume_from_checkpoint comes from a checkpoint glob or get_last_checkpoint."""
    scope = enclosing_function(f.tree, call) or f.tree
    for value in feeding(scope, keyword(call, "resume_from_checkpoint")):
        for n in ast.walk(value):
            if _is_checkpoint_glob(n):
                return "glob checkpoint-*", n
            if isinstance(n, ast.Call) and last(call_name(n)) == "get_last_checkpoint":
                return "get_last_checkpoint", n
    return None


def find_resume(files: list[SourceFile]) -> Resume | None:
    """The auto-resume in the code, or None when no `train(resume_from_checkpoint=...)` is seen."""
    explicit: Resume | None = None
    for f in files:
        for node in ast.walk(f.tree):
            if isinstance(node, ast.If) and any(_is_checkpoint_glob(n) for n in ast.walk(node.test)):
                for call in _train_calls(ast.Module(body=node.body, type_ignores=[])):
                    if constant(keyword(call, "resume_from_checkpoint")) is True:
                        return Resume(True, f.at(node), "glob checkpoint-*", _guard_attrs(node.test))
            if isinstance(node, ast.Call) and last(call_name(node)) == "get_last_checkpoint":
                guards: list[str] = []
                for parent in ast.walk(f.tree):
                    if isinstance(parent, ast.If) and any(c is node for s in parent.body for c in ast.walk(s)):
                        guards += _guard_attrs(parent.test)
                if _train_calls(f.tree):
                    return Resume(True, f.at(node), "get_last_checkpoint", list(dict.fromkeys(guards)))
        for call in _train_calls(f.tree):
            found = _auto_value(f, call)
            if found is not None:  # `resume = bool(glob(...)); train(resume_from_checkpoint=resume)`
                how, at = found
                return Resume(True, f.at(at), f"{how}, passed to train() at {f.at(call)}")
        if explicit is None and (calls := _train_calls(f.tree)):
            explicit = Resume(False, f.at(calls[0]), "explicit only")
    return explicit


# --------------------------------------------------------------------------- a resume flag
def _reads(node: ast.AST, dest: str) -> bool:
    return any(
        isinstance(n, ast.Attribute) and n.attr == dest and isinstance(n.value, ast.Name) for n in ast.walk(node)
    )


def _compared_values(test: ast.expr, dest: str) -> list[str]:
    """`args.resume == "latest"`, `args.resume in ("latest", "auto")`, `args.resume.lower() == "auto"`."""
    out = []
    for n in ast.walk(test):
        if isinstance(n, ast.Compare) and _reads(n.left, dest) and isinstance(n.ops[0], (ast.Eq, ast.In)):
            v = constant(n.comparators[0])
            out += [v] if isinstance(v, str) else [x for x in v if isinstance(x, str)] if isinstance(v, tuple) else []
    return out


def find_flag_resume(files: list[SourceFile], dests: list[str], evaluator: PathEval) -> FlagResume | None:
    """The resume flag among `dests` (the parser's) that the code compares or loads, if any."""
    named = [d for d in dests if ("resume" in d or d in ("checkpoint", "ckpt")) and d != "resume_from_checkpoint"]
    for dest in named:
        found = FlagResume(dest, (), "", None)
        for f in files:
            for node in ast.walk(f.tree):
                if isinstance(node, ast.If) and (values := _compared_values(node.test, dest)) and not found.auto_values:
                    found.auto_values, found.compared_at = tuple(values), f.at(node)
                    found.latest = _latest_path(f, node.body, evaluator)
                if isinstance(node, ast.Call) and _checkpoint_load(node):
                    if any(_reads(v, dest) for a in node.args for v in feeding(scope_of(f, node), a)):
                        found.load_at = found.load_at or f.at(node)
                        found.restores = found.restores or _restores(f, node)
                if isinstance(node, ast.If) and found.always is None:
                    found.always = _loaded_if_present(f, node, dest)
        if found.auto_values or found.load_at:
            return found
    return None


#: modules whose `load` reads a config or a data index, never a checkpoint (EVA-CLIP's `if
#: os.path.exists(sizes_filename): json.load(...)` counts its shards)
TEXT_LOADERS = ("json", "yaml", "toml", "tomllib", "OmegaConf", "omegaconf")


def _checkpoint_load(call: ast.Call) -> bool:
    """`torch.load(p)`, `load_checkpoint(p)`: not `json.load(open(p))`."""
    name = call_name(call)
    return last(name) in ("load", "load_checkpoint") and name.partition(".")[0] not in TEXT_LOADERS


def _loaded_if_present(f: SourceFile, node: ast.If, dest: str) -> tuple[SourceFile, ast.expr] | None:
    """`if os.path.isfile(latest): ckpt = torch.load(latest)`: the code resumes whenever `latest`
    (a path of its own, not the resume flag's) exists."""
    test = node.test
    if not (isinstance(test, ast.Call) and last(call_name(test)) in ("isfile", "exists", "is_file") and test.args):
        return None
    if not isinstance(test.args[0], ast.Name) or any(_reads(v, dest) for v in feeding(scope_of(f, test), test.args[0])):
        return None
    probed = {n.id for n in ast.walk(test.args[0]) if isinstance(n, ast.Name)}
    for n in (c for s in node.body for c in ast.walk(s)):
        if isinstance(n, ast.Call) and _checkpoint_load(n) and n.args:
            if {x.id for x in ast.walk(n.args[0]) if isinstance(x, ast.Name)} & probed:
                return f, test.args[0]
    return None


def _latest_path(f: SourceFile, body: list[ast.stmt], evaluator: PathEval) -> tuple[SourceFile, ast.expr] | None:
    """The checkpoint file (or the folder globbed) that the auto branch picks: the first value
    assigned there that ends like a checkpoint (`epoch_latest.pt`), else a folder it globs."""
    values = [n.value for s in body for n in ast.walk(s) if isinstance(n, ast.Assign)]
    for v in values:
        got = evaluator.evaluate(f, v)
        if isinstance(got, str) and got.endswith(CHECKPOINT_SUFFIXES):
            return f, v
    for s in body:
        for n in ast.walk(s):
            if isinstance(n, ast.Call) and last(call_name(n)) in ("glob", "iglob", "listdir") and n.args:
                return f, n.args[0]
    return (f, values[0]) if values else None


def _restores(f: SourceFile, load: ast.Call) -> list[str]:
    """What the loaded checkpoint goes into: `model.load_state_dict(ckpt["state_dict"])` -> model,
    `optimizer.load_state_dict(ckpt["optimizer"])` -> optimizer, `start_epoch = ckpt["epoch"]` -> epoch."""
    scope = scope_of(f, load)
    held = {
        t.id
        for a in ast.walk(scope)
        if isinstance(a, ast.Assign) and any(n is load for n in ast.walk(a.value))
        for t in a.targets
        if isinstance(t, ast.Name)
    }
    grown = True
    while grown:  # `state_dict = checkpoint["model"]` holds the checkpoint too
        before = len(held)
        for a in ast.walk(scope):
            if isinstance(a, ast.Assign) and any(isinstance(x, ast.Name) and x.id in held for x in ast.walk(a.value)):
                held |= {t.id for t in a.targets if isinstance(t, ast.Name)}
        grown = len(held) > before
    out: list[str] = []
    for n in ast.walk(scope):
        if isinstance(n, ast.Call) and last(call_name(n)) == "load_state_dict" and isinstance(n.func, ast.Attribute):
            if any(isinstance(x, ast.Name) and x.id in held for a in n.args for x in ast.walk(a)):
                target = n.func.value
                name = target.id if isinstance(target, ast.Name) else last(call_name(target)) or ast.unparse(target)
                out.append(name)
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id in held:
            key = constant(n.slice)
            if key == "epoch":
                out.append("epoch")
    if any(n is load for s in functions(f.tree) for n in ast.walk(s)) and not out and held:
        out.append("(its dict, used beyond load_state_dict)")
    return list(dict.fromkeys(out))


def flag_value_of(reading: Any, dest: str) -> Any:
    """The launch's typed value of `dest`, else the code's default; UNKNOWN when neither is known."""
    if reading.flags and dest in reading.flags.accepted:
        value = reading.flags.accepted[dest].value
        return UNKNOWN if value is None else value
    default = reading.default(dest)
    return UNKNOWN if default is None else default[0]


def resume_facts(reading: Any, files: list[SourceFile], complete: bool) -> None:
    """train.auto_resume (+ guards), train.auto_resume_path and code.resume_restores of the code read."""
    facts = reading.facts
    dests = [o.dest for o in reading.parser.options] if reading.parser else []
    evaluator = PathEval(files, lambda d: flag_value_of(reading, d))
    flag = find_flag_resume(files, dests, evaluator)
    if flag is not None:
        _flag_resume_facts(reading, flag, evaluator)
        return
    resume = find_resume(files)
    if resume is None:
        if complete and files:
            facts.set(
                "train.auto_resume",
                False,
                f"{files[0].rel}: no checkpoint-* glob, get_last_checkpoint nor resume flag in the code read",
            )
        return
    guards_given = [
        g for g in resume.guards if reading.flags and g in reading.flags.accepted and reading.flags.accepted[g].value
    ]
    if resume.auto and guards_given:
        a = reading.flags.accepted[guards_given[0]]
        facts.set("train.auto_resume", False, f"{resume.source} {resume.how}, off by {a.source}")
    else:
        facts.set("train.auto_resume", resume.auto, f"{resume.source} {resume.how}")
    if resume.guards:
        facts.set("train.auto_resume_guards", resume.guards, resume.source)


def _flag_resume_facts(reading: Any, flag: FlagResume, evaluator: PathEval) -> None:
    facts = reading.facts
    value = flag_value_of(reading, flag.dest)
    given = reading.flags.accepted[flag.dest].source if reading.flags and flag.dest in reading.flags.accepted else ""
    where = given or (reading.default(flag.dest) or (None, "its default"))[1]
    facts.set("code.resume_flag", flag.dest, flag.load_at or flag.compared_at)
    if flag.restores:
        facts.set("code.resume_restores", flag.restores, flag.load_at)
    if value is UNKNOWN:
        facts.mark_unknown("train.auto_resume", f"--{flag.dest}'s value is unknown ({where})")
        return
    if not value and flag.always is not None:  # no path given: the checkpoint it finds by itself
        file, node = flag.always
        facts.set("train.auto_resume", True, f"{file.at(node)} loads {ast.unparse(node)} whenever it exists")
        _auto_path(facts, evaluator, file, node)
        return
    if not (isinstance(value, str) and value in flag.auto_values):
        off = f"--{flag.dest} {value}" if value else f"--{flag.dest} not given"
        facts.set("train.auto_resume", False, f"{flag.compared_at or flag.load_at} ({off}: {where})")
        return
    how = f"--{flag.dest} {value} resumes from the newest checkpoint by itself ({where})"
    facts.set("train.auto_resume", True, f"{flag.compared_at} {how}")
    if flag.latest is None:
        facts.mark_unknown("train.auto_resume_path", f"{flag.compared_at}: the folder it resumes from was not read")
        return
    _auto_path(facts, evaluator, *flag.latest)


def _auto_path(facts: Any, evaluator: PathEval, file: SourceFile, node: ast.expr) -> None:
    evaluator.missing.clear()
    path = evaluator.evaluate(file, node)
    if isinstance(path, str):
        facts.set("train.auto_resume_path", path, f"{file.at(node)} {ast.unparse(node)}")
    else:
        missing = ", ".join(dict.fromkeys(evaluator.missing)) or "a value computed at run time"
        facts.mark_unknown("train.auto_resume_path", f"{file.at(node)} {ast.unparse(node)}: depends on {missing}")
