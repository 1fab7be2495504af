"""One module per training convention (family); the reader's generic engine takes the registry.

A family is data, never code paths: the names and spellings a convention uses for the things
the doctor reads. Adding a family is one module here (plus one tree and one casebook case).

    from fgclip_doctor.sources.code.families import REGISTRY, scale_of, term_of_scale

    REGISTRY                      # tuple[Family, ...], every convention the reader knows
    scale_of("logit_scale_finegraind")   # "finegrained": the scale a parameter holds (any family)
    representation("logit_scale")        # "log-scale" | "temperature" | "plain"
    is_logit_param("logit_bias")         # True: a scale or a bias the loss multiplies / adds
    term_of_scale("finegrained")         # "region": the loss term that scale belongs to
    SOFTMAX, SIGMOID, GATHER             # loss and gather primitives (call names)
    sigmoid_model("SiglipModel")         # True: a library model whose built-in loss is sigmoid
    fact_dests("train.per_device_batch") # dests that give a run fact, first match in the parser
    precision("amp_bf16")                # ("bf16", "bf16 autocast") for a --precision value
    fix_for(family_name, "fp16")         # how that family spells the fix ("--precision amp_bf16")

Each `Family` field (see Family below) holds: its scale parameters and their representation,
bias parameters, term names per scale, loss / gather primitives, flag destinations per fact,
precision map, world-size idioms, checkpoint layout keys, and fix spellings. Live probes (which
place hooks by the same findings) should read this registry rather than their own lists.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Family:
    name: str
    #: where this family's spellings rank when two families name the same thing (lower first)
    priority: int = 50
    #: parameter attribute -> the scale it holds (`logit_scale_finegrained` -> "finegrained")
    scale_params: dict[str, str] = field(default_factory=dict)
    #: parameter attribute -> "log-scale" (exp() multiplies the logits) | "temperature" (divides) | "plain"
    representation: dict[str, str] = field(default_factory=dict)
    bias_params: tuple[str, ...] = ()
    #: scale -> loss term ("finegrained" -> "region")
    terms: dict[str, str] = field(default_factory=dict)
    softmax: frozenset = frozenset()
    sigmoid: frozenset = frozenset()
    gather: frozenset = frozenset()
    #: library model classes (by name prefix) that compute the loss themselves: prefix -> kind
    library_models: dict[str, str] = field(default_factory=dict)
    #: run fact -> parser dests that give it, in this family's spelling
    flag_dests: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: --precision value -> (fp16 | bf16 | fp32, what it means)
    precision: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: how the loss learns the world size (`dist.get_world_size()`, `args.world_size`)
    world_size_idioms: tuple[str, ...] = ()
    #: tensor names that identify a checkpoint of this family (sources/checkpoint/layout.py reads them)
    checkpoint_keys: tuple[str, ...] = ()
    #: problem -> how this family's launch spells the fix
    fixes: dict[str, str] = field(default_factory=dict)
    #: attributes whose value is the hard negatives per box (model config or dataset)
    hard_negative_attrs: tuple[str, ...] = ()


def _load() -> tuple[Family, ...]:
    """Every module of this package that defines FAMILY, in name order: a new family is a new module."""
    out = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if isinstance(getattr(module, "FAMILY", None), Family):
            out.append(module.FAMILY)
    return tuple(sorted(out, key=lambda f: (f.priority, f.name)))


REGISTRY: tuple[Family, ...] = _load()


def _union(attr: str) -> frozenset:
    out: set = set()
    for f in REGISTRY:
        out |= set(getattr(f, attr))
    return frozenset(out)


SOFTMAX = _union("softmax")
SIGMOID = _union("sigmoid")
GATHER = _union("gather")


def scale_of(attr: str) -> str | None:
    for f in REGISTRY:
        if attr in f.scale_params:
            return f.scale_params[attr]
    return None


def representation(attr: str) -> str:
    for f in REGISTRY:
        if attr in f.representation:
            return f.representation[attr]
    return "log-scale"


def is_logit_param(attr: str) -> bool:
    return scale_of(attr) is not None or any(attr in f.bias_params for f in REGISTRY) or "logit_scale" in attr


def is_bias(attr: str) -> bool:
    return any(attr in f.bias_params for f in REGISTRY)


def term_of_scale(scale: str) -> str | None:
    for f in REGISTRY:
        if scale in f.terms:
            return f.terms[scale]
    return None


def library_model_kind(name: str) -> str | None:
    """ "sigmoid" / "softmax" for a library model that computes its own loss (longest prefix), else None."""
    best = None
    for f in REGISTRY:
        for prefix, kind in f.library_models.items():
            if name.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, kind)
    return best[1] if best else None


def fact_dests(fact: str) -> tuple[str, ...]:
    out: list[str] = []
    for f in REGISTRY:
        out += [d for d in f.flag_dests.get(fact, ()) if d not in out]
    return tuple(out)


def precision(value: str) -> tuple[str, str] | None:
    for f in REGISTRY:
        if value in f.precision:
            return f.precision[value]
    return None


def hard_negative_attrs() -> tuple[str, ...]:
    return tuple(a for f in REGISTRY for a in f.hard_negative_attrs)


def fix_for(family: str, problem: str) -> str | None:
    for f in REGISTRY:
        if f.name == family:
            return f.fixes.get(problem)
    return None
