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
from fgclip_doctor.sources.code.reader.source import SourceFile
from fgclip_doctor.sources.code.reader.values import Const, Seq, Unknown


def group_lr_facts(facts: Facts, unknown: dict[str, str], dicts: list, file: SourceFile | None, assigned: dict) -> None:
    """Set optim.code_group_lrs from the grouping's dict literals (`dicts`) and what the run bound them to."""
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
        else:  # a dict the run did not bind (built in a hook the library calls): the groups stay as read
            return
    facts.set("optim.code_group_lrs", groups, file.at(own[0]))
