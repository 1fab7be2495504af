"""Facts from the model the launch builds (model_read.py): scale start values by provenance, the
memory bank, absent parts, clamp bounds.

A scale's start value is the last write before training: a constant or a flag (`Const`), or a
weight load (`Weights`): those stay pending here (`WeightRead`) and are read lazily from the
file by the layer that may read checkpoints (sources/launch_code.py); the reader never opens
weights. A constant a load replaces is never reported as the start value.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

from fgclip_doctor.facts import Facts
from fgclip_doctor.sources.code.families import hard_negative_attrs, is_bias, representation, scale_of
from fgclip_doctor.sources.code.reader.model_read import ModelRead
from fgclip_doctor.sources.code.reader.program import Defn
from fgclip_doctor.sources.code.reader.values import Const, Frame, Loaded, Obj, Tensor, Unknown, Weights


@dataclass
class WeightRead:
    """A start value that a weight load decides: `name` in the weights at `path` if they hold it,
    else `before` (a Const, another WeightRead's Weights, or Unknown)."""

    fact: str  # scale.<scale>.init
    value: Any  # Weights


def describe(value: Any) -> str:
    """One line for a value's provenance (init_from)."""
    if isinstance(value, Const):
        if value.flag:
            return f"flag {value.flag}"
        return f"config {value.config.partition(' ')[2]}" if value.config else "constant"
    if isinstance(value, Weights):
        return f"pretrained weights ({value.at})"
    return "unknown"


def describe_for(attr: str, value: Any) -> str:
    """init_from of `attr`: a tensor of another name from the weights is a copy of that one
    (`logit_scale_finegraind = Parameter(ones * model.logit_scale)` after from_pretrained)."""
    if isinstance(value, Weights) and value.name != attr and scale_of(value.name) == "global":
        return "copy of logit_scale"
    return describe(value)


def model_facts(facts: Facts, unknown: dict[str, str], read: ModelRead, complete: bool) -> list[WeightRead]:
    """Set scale / bias / bank facts the model read establishes; returns the pending weight reads."""
    pending: list[WeightRead] = []
    model = read.model
    if model is None:
        return pending
    cls_at = model.cls.file.at(model.cls.node) if model.cls else model.at
    facts.set("code.model", f"{model.cls.node.name} ({cls_at}), built at {model.at}", model.at)
    for attr, value in read.scales.items():
        value = _before_resume(facts, value)
        if isinstance(value, Const) and value.value is None:  # `self.logit_bias = None` on this launch
            name = "bias.global.init_from" if is_bias(attr) else f"scale.{scale_of(attr)}.init_from"
            facts.forget(name)
            facts.forget(name.replace("_from", ""))
            continue
        if is_bias(attr):
            facts.set("bias.global.init_from", describe(value), _at(value, model.at))
            continue
        scale = scale_of(attr)
        if scale is None:
            continue
        init = f"scale.{scale}.init"
        facts.forget(init)
        shown = describe_for(attr, value)
        at = model.where.get(attr, model.at) if shown.startswith("copy of") else _at(value, model.at)
        facts.set(f"scale.{scale}.init_from", shown, at)
        if isinstance(value, Const) and isinstance(value.value, (int, float)) and not isinstance(value.value, bool):
            if representation(attr) == "temperature":  # logits / temp: the ln-scale is ln(1 / temp)
                if value.value > 0:
                    facts.set(init, -math.log(value.value), f"ln(1 / {attr} {value.value:g}) ({_cite(value)})")
                else:
                    unknown[init] = f"{value.at}: {attr} = {value.value:g} is no temperature (logits / 0)"
                continue
            facts.set(init, float(value.value), _cite(value))
        elif isinstance(value, Weights):
            pending.append(WeightRead(init, value))
        else:
            why = value.why if isinstance(value, Unknown) else f"{model.at}: {attr} is not a number here"
            unknown[init] = f"{attr} start value not known: {why}"
    if complete:  # the model read whole: a scale it lacks is absent, not unknown
        held = sorted({s for a in read.scales if (s := scale_of(a)) and not _is_none(read.scales[a])})
        facts.set("model.scales", held, f"{model.at}: the scales {model.cls.node.name} holds")
    _bank_facts(facts, read, complete)
    _hard_negatives(facts, read)
    _library_parts(unknown, read)
    _positions(facts, read)
    return pending


def _before_resume(facts: Facts, value: Any) -> Any:
    """The value a resume load replaces: the run's own init, which resume-override holds against
    the checkpoint's (a load of the auto-resume path, or of the path the resume flag gives)."""
    auto, flag = facts.value("train.auto_resume_path"), facts.value("code.resume_flag")
    while isinstance(value, Weights) and isinstance(value.path, Const):
        if not ((auto and value.path.value == auto) or (flag and value.path.flag == flag)):
            break
        value = value.before
    return value


def _positions(facts: Facts, read: ModelRead) -> None:
    """Rows of the longest position table the model's own modules build (nn.Embedding named *position*)."""
    best = None
    for obj in read.interp.created:
        for attr, v in obj.attrs.items():
            if "position" in attr and isinstance(v, Tensor) and v.shape and isinstance(v.shape[0], Const):
                rows = v.shape[0].value
                if isinstance(rows, int) and (best is None or rows > best[0]):
                    best = (rows, f"{v.at}: {attr} rows ({v.shape[0].at})")
    if best is not None:
        facts.set("text.long_positions", best[0], best[1])


def _cite(value: Const) -> str:
    """A value's line, and the config line it is computed from when that is another."""
    return value.at if not value.config or value.config == value.at else f"{value.at} ({value.config})"


def _is_none(value: Any) -> bool:
    return isinstance(value, Const) and value.value is None


def _at(value: Any, default: str) -> str:
    return getattr(value, "at", "") or default


def _bank_facts(facts: Facts, read: ModelRead, complete: bool) -> None:
    bank = read.bank
    if bank is None:
        if read.bank_absent:
            facts.set("bank.enabled", False, read.bank_absent)
        elif complete:
            names = ", ".join(dict.fromkeys(m.cls.node.name for m in [read.model, *read.models] if m.cls))
            facts.set(
                "bank.enabled",
                False,
                f"{read.model.at}: no memory bank in this code ({names}: no queue of negatives, read whole)",
            )
        return
    facts.set("bank.enabled", True, f"{bank.at}: {bank.attr} ({bank.cls})")
    if isinstance(bank.size, Const) and isinstance(bank.size.value, int):
        facts.set("bank.size", bank.size.value, bank.size.at)
    if bank.unit == "forward calls" and isinstance(bank.warmup, Const) and isinstance(bank.warmup.value, int):
        facts.set(
            "bank.warmup_forward_calls",
            bank.warmup.value,
            f"{bank.warmup.at} (counted at {bank.counter}, once per forward call)",
        )
    if bank.wraps:
        facts.set("bank.wraps", True, f"{bank.wraps}: writes modulo the queue size")


def _hard_negatives(facts: Facts, read: ModelRead) -> None:
    """Rewrites per box: the model config's (or the dataset's) hard-negative count."""
    holders = [read.model.attrs.get("config"), *read.interp.created]
    for obj in holders:
        if not isinstance(obj, Obj):
            continue
        for attr in hard_negative_attrs():
            value = obj.attrs.get(attr)
            if value is None and obj.cls is not None:
                value = read.interp.class_default(obj.cls, attr)
            if isinstance(value, Const) and isinstance(value.value, int):
                facts.set("data.num_hard_negatives", value.value, f"{value.at} ({attr})")
                return


def loaded_path(value: Any) -> Any:
    """The path Val of a Weights / Loaded value (for the lazy reader)."""
    return value.path if isinstance(value, (Weights, Loaded)) else None


def hardneg_candidates(facts: Facts) -> None:
    """1 positive + the rewrites per box, when the run has a hard-negative term."""
    n = facts.value("data.num_hard_negatives")
    if n is not None and "hardneg" in (facts.value("loss.terms") or ()):
        facts.set("candidates.hardneg", 1 + int(n), f"1 positive + {facts.source('data.num_hard_negatives')}")


def resolve_clamps(read: ModelRead | None, clamps: list) -> None:
    """Upper bounds that are not literals (`self.config.max_logit_scale`), evaluated on the
    instance of the clamp's class the launch builds."""
    if read is None:
        return
    for c in clamps:
        if c.max is not None or c.bound is None or c.file is None:
            continue
        line = int(c.at.rpartition(":")[2])
        owners = [
            n
            for n in ast.walk(c.file.tree)
            if isinstance(n, ast.ClassDef) and n.lineno <= line <= (n.end_lineno or n.lineno)
        ]
        obj = next((o for o in read.interp.created if o.cls is not None and owners and o.cls.node is owners[-1]), None)
        if obj is None:
            continue
        value = read.interp.expr(c.bound, Frame(c.file, {"self": obj}))
        if isinstance(value, Const) and isinstance(value.value, (int, float)) and not isinstance(value.value, bool):
            bound = float(value.value)
            if c.temperature:  # the smallest temperature bounds the ln-scale: ln(1 / t_min)
                c.max = -math.log(bound) if bound > 0 else None
            else:
                c.max = math.log(bound) if c.on_exp and bound > 0 else bound
            c.bound_at = value.config
        elif isinstance(value, Unknown):
            c.unknown = value.why


def _library_parts(unknown: dict[str, str], read: ModelRead) -> None:
    """Parameter names and optimizer groups of a model that holds library modules (a transformers
    tower built in its __init__): those names live in library code, which is never read."""
    model = read.model
    init = read.interp.program.method(model.cls, "__init__") if model.cls else None
    for n in ast.walk(init.node) if init else ():
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call):
            sym = read.interp.program.resolve(init.file, n.value.func)
            if sym is not None and not isinstance(sym, Defn) and "." in getattr(sym, "dotted", ""):
                if sym.dotted.split(".")[0] in ("torch",):
                    continue
                why = (
                    f"{init.file.at(n)}: {ast.unparse(n.value.func)} builds a library module whose parameter "
                    "names are in library code, not read"
                )
                unknown.setdefault("model.parameters", why)
                unknown.setdefault("optim.groups", f"{why}; the groups split those names")
                return


def data_dependent_rows(unknown: dict[str, str], losses) -> None:
    """Region rows are the valid boxes of each batch: a count only a box cap (--max_boxes) bounds."""
    term = (losses.terms if losses else {}).get("region")
    if term is not None:
        at = next(iter(term.kinds.values()), "")
        unknown.setdefault(
            "candidates.region.in_batch",
            f"{at}: region rows are the valid boxes of each batch (data-dependent, padded rows dropped): "
            "no count unless the launch caps the boxes",
        )
