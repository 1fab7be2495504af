"""Layer-wise learning-rate decay (LLRD), read from the parameter-group builder:

    num_layers = MODEL_CFGS[args.model]["layers"]                      # 12 for --model EVA02-B-16
    scales = list(args.layer_decay ** (num_layers + 1 - i) for i in range(num_layers + 2))

Layer i's group trains at lr x scales[i]: the embeddings (layer 0) at lr x 0.75^13, the head at lr.
The comprehension is evaluated for each i with the launch's values (sources/code/reader/paths.py);
a layer count the reader cannot evaluate (`model.visual.get_num_layers()`) leaves the range
unknown and says which expression hides it.
"""

from __future__ import annotations

import ast
from typing import Any

from fgclip_doctor.sources.code.reader.astutil import UNKNOWN, call_name, last
from fgclip_doctor.sources.code.reader.paths import PathEval, feeding, scope_of
from fgclip_doctor.sources.code.reader.source import SourceFile

MAX_LAYERS = 1000


def is_decay_dest(dest: str) -> bool:
    """`--layer_decay`, `--layer-decay`, EVA-CLIP's `--visual-ld` / `--text-ld`, `--lr_layer_decay`."""
    return "layer_decay" in dest or dest.endswith("_ld") or dest in ("ld", "llrd", "lr_decay_rate")


def layer_decay_facts(facts: Any, files: list[SourceFile], dests: list[str], evaluator: PathEval) -> None:
    """optim.layer_decay (each decay flag and its value) and optim.layer_decay_scales (lowest and
    highest scale, with their layer), or why the range is unknown."""
    wanted = [d for d in dests if is_decay_dest(d)]
    if not wanted:
        return
    for f in files:
        for comp in ast.walk(f.tree):
            if not isinstance(comp, (ast.ListComp, ast.GeneratorExp)) or len(comp.generators) != 1:
                continue
            gen = comp.generators[0]
            pows = [n for n in ast.walk(comp.elt) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow)]
            dest = next((d for p in pows for d in wanted if _reads(f, p.left, d)), None)
            if dest is None or not isinstance(gen.target, ast.Name):
                continue
            _read_range(facts, f, comp, gen, dest, evaluator)
            return


def _reads(f: SourceFile, node: ast.expr, dest: str) -> bool:
    return any(
        isinstance(n, ast.Attribute) and n.attr == dest for v in feeding(scope_of(f, node), node) for n in ast.walk(v)
    )


def _read_range(facts: Any, f: SourceFile, comp: ast.AST, gen: ast.comprehension, dest: str, ev: PathEval) -> None:
    at = f"{f.at(comp)} {ast.unparse(comp)}"
    base = next(p.left for p in ast.walk(comp.elt) if isinstance(p, ast.BinOp) and isinstance(p.op, ast.Pow))
    ev.missing.clear()
    decay = ev.evaluate(f, base)  # `visual_ld = args.visual_ld if args.visual_ld else args.ld`: the one taken
    if isinstance(decay, (int, float)) and not isinstance(decay, bool):
        dest = next((d for d in _flags_in(f, base) if ev.flag_value(d) == decay), dest)
    else:
        decay = ev.flag_value(dest)
    if decay is UNKNOWN:
        facts.mark_unknown("optim.layer_decay", f"{at}: --{dest}'s value is unknown")
        return
    facts.set("optim.layer_decay", {dest: decay}, at)
    it = gen.iter
    if not (isinstance(it, ast.Call) and last(call_name(it)) == "range" and len(it.args) == 1):
        facts.mark_unknown("optim.layer_decay_scales", f"{at}: the layers it runs over are not a range(n)")
        return
    ev.missing.clear()
    count = ev.evaluate(f, it.args[0])
    if not isinstance(count, int) or not 0 < count <= MAX_LAYERS:
        missing = ", ".join(dict.fromkeys(ev.missing)) or f"{ast.unparse(it.args[0])}, computed at run time"
        facts.mark_unknown("optim.layer_decay_scales", f"{at}: the number of layers is not read (depends on {missing})")
        return
    scales = []
    name = gen.target.id
    for i in range(count):
        ev.bindings[name] = i
        scales.append(ev.evaluate(f, comp.elt))
    ev.bindings.pop(name, None)
    if any(not isinstance(s, (int, float)) for s in scales):
        facts.mark_unknown("optim.layer_decay_scales", f"{at}: a layer's scale is not read")
        return
    low = min(range(count), key=lambda i: scales[i])
    high = max(range(count), key=lambda i: scales[i])
    facts.set(
        "optim.layer_decay_scales",
        {"lowest": [float(scales[low]), _group(low, count)], "highest": [float(scales[high]), _group(high, count)]},
        f"{at} ({count} groups, --{dest} {decay})",
    )


def _flags_in(f: SourceFile, node: ast.expr) -> list[str]:
    """The attributes read by `node` and by the values assigned to the names in it."""
    return [n.attr for v in feeding(scope_of(f, node), node) for n in ast.walk(v) if isinstance(n, ast.Attribute)]


def _group(i: int, count: int) -> str:
    return f"layer {i}" + (" (embeddings)" if i == 0 else " (the last: head and final norm)" if i == count - 1 else "")
