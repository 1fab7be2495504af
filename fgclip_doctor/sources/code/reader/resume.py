"""Does the training code resume by itself when output_dir already holds checkpoint-* ?

Two shapes seen in the wild:
- FG-CLIP: `if list(pathlib.Path(args.output_dir).glob("checkpoint-*")):
  trainer.train(resume_from_checkpoint=True)`;
- transformers examples: `last_checkpoint = get_last_checkpoint(args.output_dir)` under
  `if ... and not args.overwrite_output_dir`, later `trainer.train(resume_from_checkpoint=...)`.
The flags in the guarding `if` (overwrite_output_dir) are returned, so a launch that sets them
can turn the resume off.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from fgclip_doctor.sources.code.reader.astutil import call_name, constant, keyword, last
from fgclip_doctor.sources.code.reader.source import SourceFile


@dataclass
class Resume:
    auto: bool
    source: str  # file:line of the detection (or of the train() call when it does not auto-resume)
    how: str  # "glob checkpoint-*" | "get_last_checkpoint" | "explicit only"
    guards: list[str] = field(default_factory=list)  # args attributes in the guarding condition


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
        if explicit is None and (calls := _train_calls(f.tree)):
            explicit = Resume(False, f.at(calls[0]), "explicit only")
    return explicit
