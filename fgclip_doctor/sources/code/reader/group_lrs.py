"""Learning rates the code gives its optimizer groups, as the abstract run evaluated them.

    {"params": clip_params, "weight_decay": wd, "lr": args.lr * coef_lr}   # CLIP4Clip: 1e-4 x 1e-3
    {"params": new_params, "weight_decay": wd}                              # the optimizer's lr

`optim.code_group_lrs` lists each group dict of the grouping the code uses, with its own LR (None:
the optimizer's); only when some group has its own. An own LR the run cannot know (a flag with
no value) leaves the fact unknown, saying why, never the run's one LR for every group.
"""

from __future__ import annotations

import ast

from fgclip_doctor.facts import Facts
from fgclip_doctor.sources.code.reader.astutil import UNKNOWN
from fgclip_doctor.sources.code.reader.source import SourceFile
from fgclip_doctor.sources.code.reader.values import Const, Seq, Unknown


def group_lr_facts(
    facts: Facts, unknown: dict[str, str], dicts: list, file: SourceFile | None, assigned: dict, flags: dict
) -> None:
    """Set optim.code_group_lrs from the grouping's dict literals (`dicts`) and what the run bound them to;
    `flags`: every parser dest -> its value for this launch (UNKNOWN when not known)."""
    own = [d for d in dicts if any(isinstance(k, ast.Constant) and k.value == "lr" for k in d.keys)]
    if not own or file is None:
        return
    values = {}
    for stmt in ast.walk(file.tree):
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, (ast.List, ast.Tuple)):
            seq = assigned.get(id(stmt))
            if isinstance(seq, Seq) and len(seq.items) == len(stmt.value.elts):
                values.update({id(e): v for e, v in zip(stmt.value.elts, seq.items) if e in dicts})
    groups = []
    for i, d in enumerate(dicts):
        at = file.at(d)
        lr = getattr(values.get(id(d)), "items", {}).get("lr") if id(d) in values else None
        if d not in own:
            groups.append({"group": f"{i} ({at})", "lr": None})
        elif isinstance(lr, Const) and isinstance(lr.value, (int, float)) and not isinstance(lr.value, bool):
            groups.append({"group": f"{i} ({at})", "lr": float(lr.value)})
        elif isinstance(lr, Unknown):
            unknown["optim.code_group_lrs"] = f"{at}: group {i} has its own lr, not known: {lr.why}"
            return
        elif given := _other_lrs_given(file, flags):  # EVA-CLIP: `lr` picked per tower from --visual-lr / --text-lr
            said = f"{at}: group {i} has its own lr `{ast.unparse(_own_lr(d))[:40]}`"
            _from_lr_flags(facts, unknown, said, given, _scaled(file, given))
            return
        else:  # not bound by the run, and no other LR flag given: the groups stay as read (the run's LR)
            return
    facts.set("optim.code_group_lrs", groups, file.at(own[0]))


def _own_lr(d: ast.Dict) -> ast.expr:
    return next(v for k, v in zip(d.keys, d.values) if isinstance(k, ast.Constant) and k.value == "lr")


def _other_lrs_given(file: SourceFile, flags: dict) -> dict:
    """LR flags other than the run's one (`--visual-lr 2e-4`) that this file reads and this launch
    sets (UNKNOWN: set to a value not known here); {} when none: an unset `text_model_lr or lr`
    falls back to the run's LR."""
    read = {n.attr for n in ast.walk(file.tree) if isinstance(n, ast.Attribute)}
    read |= {n.id for n in ast.walk(file.tree) if isinstance(n, ast.Name)}
    return {d: v for d, v in flags.items() if d in read and d.endswith("_lr") and v is not None}


def _scaled(file: SourceFile, given: dict) -> str:
    """`args.visual_lr * 0.1`: arithmetic on an LR flag in this file (the group's LR is then not the
    flag's value); '' when the flags are only passed on."""
    for n in ast.walk(file.tree):
        if isinstance(n, ast.BinOp) and (
            hit := {a.attr for a in ast.walk(n) if isinstance(a, ast.Attribute)} & set(given)
        ):
            return f" and {file.at(n)} computes with {', '.join(sorted(hit))}"
    return ""


def _from_lr_flags(facts: Facts, unknown: dict[str, str], said: str, given: dict, scaled: str) -> None:
    """Groups whose own lr is one of the run's LR flags, which one per group not read: each flag's
    value is one group LR (the run's LR the rest). Unknown when a value is not known or 0 (`x or lr`
    would give the run's LR instead), when the code computes with a flag (`scaled`), or when a
    layer-wise decay scales them further."""
    shown = ", ".join(f"--{d.replace('_', '-')} {'(value not known)' if v is UNKNOWN else v}" for d, v in given.items())
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in given.values())
    if not numbers or scaled or "optim.layer_decay" in facts:
        decay = " and a layer-wise decay scales them" if "optim.layer_decay" in facts else ""
        why = f"{said}, and this launch gives {shown}{scaled}{decay}"
        unknown["optim.code_group_lrs"] = f"{why}: which group gets which is not read"
        return
    groups = [{"group": f"one at --{d.replace('_', '-')}", "lr": float(v)} for d, v in given.items()]
    facts.set("optim.code_group_lrs", [*groups, {"group": "the rest", "lr": None}], f"{said}; {shown}")
