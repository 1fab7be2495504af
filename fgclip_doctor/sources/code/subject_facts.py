"""Facts that only the bundled subject's code can tell: its model, built as fgclip.train builds it.

The model is built on the meta device (fgclip_doctor/sources/effective.py), so the values are
the ones the code really uses (a warmup hard-coded in `__init__` beats the flag). Pretrained
weights are read lazily: only the scalars (logit scales) leave the file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from fgclip_doctor.facts import Facts, unknown_flag
from fgclip_doctor.sources.code.effective import build_subject_model, built_optimizer
from fgclip_doctor.vocabulary import SCALE_PARAMS

#: `read_scalars(path, names)` -> {name: (value, source)}: the single-element tensors of a model's
#: weights (sources/checkpoint/layout.py); given by the caller, so reading code needs no checkpoint code
ScalarReader = Callable[..., dict]

BUILT = "fgclip.train build_model (built on meta)"


def _cite(value, flag: str, sources: dict, values: dict, what: str) -> str:
    """Cite the flag when the code uses its value; otherwise say the code overrides it."""
    if flag in values and values[flag] == value:
        return sources[flag]
    if flag in values:
        return f"{BUILT}: {what} = {value} (the code overrides {sources[flag]} = {values[flag]})"
    return f"{BUILT}: {what}"


def _tokenizer(path: str | None):
    if not path or not Path(path).is_dir():
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError):
        return None


def dataclass_subset(cls, values: dict):
    """Instantiate a plain dataclass from the typed values (for the subject's own builders)."""
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


#: What the model build decides: absent (with the reason) when the model cannot be built here.
MODEL_FACTS = (
    "model.",
    "scale.",
    "loss.terms",
    "data.max_boxes",
    "data.num_hard_negatives",
    "candidates.hardneg",
    "candidates.region",
    "bank.",
    "optim.groups",
    "text.",
)
#: Flags outside Model/DataArguments that still shape the built model.
BUILD_FLAGS = ("preset", "from_openai")


def _read_subject_behaviour(facts: Facts) -> None:
    """train.auto_resume, code.refuses_fp16, features.gathered and loss.world_size_from, read from the
    subject's code, not asserted."""
    from fgclip import losses, train
    from fgclip_doctor.sources.code.reader.precision import find_fp16_refusal
    from fgclip_doctor.sources.code.reader.resume import find_resume
    from fgclip_doctor.sources.code.reader.source import Notes, parse_file

    parsed = parse_file(Path(train.__file__), "fgclip.train", Path.cwd(), Notes())
    resume = find_resume([parsed]) if parsed is not None else None
    refusal = find_fp16_refusal([parsed]) if parsed is not None else None
    if refusal is not None:
        facts.set("code.refuses_fp16", True, f"{refusal}: the code stops an fp16 run (static reader)")
    if resume is None:
        facts.mark_unknown("train.auto_resume", "fgclip/train.py: no trainer.train() call read")
    else:
        facts.set("train.auto_resume", resume.auto, f"{resume.source} ({resume.how}, static reader)")
    gathers = "gather_features" in losses.GlobalContrastiveLoss.forward.__code__.co_names
    facts.set("features.gathered", gathers, "fgclip/losses.py GlobalContrastiveLoss.forward (calls gather_features)")
    # The world the loss counts: gather_features asks world(), which asks torch.distributed.
    if "world" in losses.gather_features.__code__.co_names and "get_world_size" in losses.world.__code__.co_names:
        facts.set("loss.world_size_from", "torch.distributed", "fgclip/losses.py world() (dist.get_world_size)")
    else:
        facts.mark_unknown("loss.world_size_from", "fgclip/losses.py: gather_features's world size not read")


def _bank_wraps() -> bool:
    """Whether the subject's queue writes modulo its size: 3 rows into a 2-row queue leave the pointer at 1."""
    import torch

    from fgclip.memory_bank import RegionMemoryBank

    bank = RegionMemoryBank(2, size=2, warmup_forward_calls=0)
    bank.enqueue(torch.eye(2), torch.arange(2))
    bank.enqueue(torch.eye(2)[:1], torch.arange(1))
    return int(bank.ptr) == 1 and int(bank.fill) == 2


BY_SUBJECT = "fgclip.train at start-up"


def _refusal(err, source: str) -> dict[str, object]:
    """A value fgclip.train refuses (fgclip.arguments.ArgumentError), as a rejected flag (FGD303)."""
    return {"flag": f"--{err.flag}", "value": err.value, "reason": err.reason, "source": source, "by": BY_SUBJECT}


def refused_values(values: dict, sources: dict) -> list[dict[str, object]]:
    """The typed flag values fgclip.train refuses before it builds anything (fgclip.arguments.refused)."""
    from fgclip.arguments import refused

    return [_refusal(err, sources.get(err.flag, f"--{err.flag}")) for err in refused(values)]


def _not_built(facts: Facts, why: str) -> None:
    for name in MODEL_FACTS:
        facts.mark_unknown(name, why)


def subject_facts(
    facts: Facts,
    values: dict,
    sources: dict,
    read_scalars: ScalarReader,
    unknown: dict[str, str] | None = None,
    refused: dict[str, str] | None = None,
) -> list[dict[str, object]]:
    """Fill model, scale, bank, optimizer and text facts for a launch of fgclip.train; return the
    values its model build refuses (fgclip.arguments.ArgumentError: a long position table that is
    not the stretch of the base's, a bank that cannot be made), as rejected flags.

    `unknown`: flags given with a value the doctor cannot know (name -> source); `refused`: flags
    whose value fgclip.train refuses at start-up (name -> why). When one of them shapes the model
    (a Model/DataArguments field, --preset, --from_openai), the model is not built: a guess handed
    to the subject would become a fact. Its facts stay absent, and the rules that need them SKIP
    naming the flag.
    """
    from fgclip import train
    from fgclip.arguments import ArgumentError

    _read_subject_behaviour(facts)
    shaping = {f.name for cls in (train.ModelArguments, train.DataArguments) for f in dataclasses.fields(cls)}
    blocked = [unknown_flag(src) for name, src in (unknown or {}).items() if name in shaping or name in BUILD_FLAGS]
    blocked += [why for name, why in (refused or {}).items() if name in shaping]
    if blocked:
        _not_built(facts, "; ".join(blocked) + ": the model was not built")
        return []
    try:
        _built_facts(facts, values, sources, read_scalars)
    except ArgumentError as err:  # the subject's own refusal, raised where the model is built
        source = sources.get(err.flag, f"--{err.flag}")
        _not_built(
            facts,
            f"{source}: --{err.flag} {err.value} is refused by fgclip.train ({err.reason}): the model was not built",
        )
        return [_refusal(err, source)]
    return []


def _built_facts(facts: Facts, values: dict, sources: dict, read_scalars: ScalarReader) -> None:
    from fgclip import train
    from fgclip.config import FGCLIPConfig

    margs = dataclass_subset(train.ModelArguments, values)
    dargs = dataclass_subset(train.DataArguments, values)
    base = margs.model_name_or_path
    base_here = bool(base) and Path(base).is_dir()
    facts.set(
        "model.fine_tuning",
        bool(base),
        sources.get("model_name_or_path", "fgclip/train.py default")
        if base
        else "no --model_name_or_path: training from scratch",
    )
    if base:
        facts.set("model.base", base, sources["model_name_or_path"])

    tokenizer = _tokenizer(margs.base_model or base)
    if tokenizer is None and not base:  # fgclip.train builds from scratch with the tokenizer's vocabulary
        where = margs.base_model or "no --base_model / --model_name_or_path"
        _not_built(
            facts,
            f"fgclip.train needs a tokenizer folder to build from scratch ({where} is "
            "not one here): the model was not built",
        )
        return
    if base and not base_here:
        # The base is not on this machine (a GPU path): the code's defaults + flags, no weights.
        from fgclip.model import FGCLIPModel
        from fgclip_doctor.sources.code.effective import lazy_build

        with lazy_build(read_scalars):
            cfg = FGCLIPConfig(**train.config_overrides(margs, dargs))
            model = FGCLIPModel(cfg)
        note = f"{base} is not readable here: architecture and base scale unknown"
        facts.set("model.base_readable", False, note)
        absent = f"the base model {base} ({sources['model_name_or_path']}) is not on this machine"
        for name in ("scale.", "text.eos_token_id"):  # what only the base's weights and config give
            facts.mark_unknown(name, absent)
        if tokenizer is None:
            given = margs.base_model or base
            where = sources.get("base_model" if margs.base_model else "model_name_or_path")
            why = f"the tokenizer folder {given} ({where}) is not on this machine"
            facts.mark_unknown("text.tokenizer_eos_id", why)
        if margs.logit_scale_init_value is not None:
            for s in ("finegrained", "hardneg"):
                facts.set(f"scale.{s}.init", margs.logit_scale_init_value, sources["logit_scale_init_value"])
    else:
        model = build_subject_model(margs, dargs, bool(values.get("from_openai")), tokenizer, read_scalars)
        if base_here:
            facts.set("model.base_readable", True, base)
            base_scalars = read_scalars(base, ["logit_scale"])
            if "logit_scale" in base_scalars:
                value, src = base_scalars["logit_scale"]
                facts.set("scale.global.base", float(value), src)
        for s, param in SCALE_PARAMS.items():
            v = float(getattr(model, param).detach())
            flag = "logit_scale_init_value"
            if s != "global" and values.get(flag) is not None:
                # the parameter holds the flag's value in float32: equal to 7 digits is the flag's own value
                same = math.isclose(v, float(values[flag]), rel_tol=1e-6, abs_tol=1e-6)
                src = _cite(values[flag] if same else round(v, 4), flag, sources, values, param)
            elif base and values.get("from_openai"):
                src = f"{BUILT}: {param} = the base's learned logit_scale (from_clip copies it)"
            else:
                src = f"{BUILT}: {param} init"
            facts.set(f"scale.{s}.init", round(v, 6), src)

    cfg = model.config
    groups = None
    unset = [f"--{f}" for f in ("learning_rate", "weight_decay") if not isinstance(values.get(f), (int, float))]
    if unset:  # refused (a negative LR: the optimizer raises at start-up) or not known: no optimizer to read
        for name in ("optim.groups", "scale.clamp", "scale.clamp_max"):
            facts.mark_unknown(name, f"{' and '.join(unset)} not known or refused: the optimizer was not built")
    else:
        groups, clamps = built_optimizer(model, values)
        hooks = "fgclip/trainer.py FGCLIPTrainer.create_optimizer (its optimizer's post-step hooks, run on the scales)"
        ceilings = {v for v in clamps.values() if v is not None}
        facts.set("scale.clamp", bool(clamps) and all(v is not None for v in clamps.values()), hooks)
        if ceilings:
            facts.set(
                "scale.clamp_max", max(ceilings), f"{hooks}: a scale set to 1e3 comes back at {max(ceilings):.4f}"
            )
    terms = ["global"] + (["region"] if cfg.add_box_loss else []) + (["hardneg"] if cfg.use_hard_neg else [])
    facts.set("loss.terms", terms, f"{sources.get('add_box_loss')} / {sources.get('use_hard_neg')}")
    for term in terms:
        facts.set(f"loss.{term}.errors_swallowed", False, "fgclip/losses.py: no except around a loss")
    facts.set("data.max_boxes", dargs.max_boxes, sources.get("max_boxes", BUILT))
    facts.set("data.num_hard_negatives", cfg.num_hard_negatives, f"{BUILT}: config.num_hard_negatives")
    if cfg.use_hard_neg:
        facts.set("candidates.hardneg", 1 + cfg.num_hard_negatives, "1 positive + config.num_hard_negatives")
    bank = model.memory_bank
    facts.set(
        "bank.enabled", bank is not None, _cite(bank is not None, "use_memory_bank", sources, values, "memory_bank")
    )
    if bank is not None:
        facts.set("bank.size", bank.size, _cite(bank.size, "memory_bank_size", sources, values, "memory_bank.size"))
        facts.set(
            "bank.warmup_forward_calls",
            bank.warmup_forward_calls,
            _cite(
                bank.warmup_forward_calls,
                "memory_bank_warmup_steps",
                sources,
                values,
                "memory_bank.warmup_forward_calls",
            ),
        )
        facts.set("bank.mask_same_caption", bank.mask_same_caption, f"{BUILT}: memory_bank.mask_same_caption")
        wraps = _bank_wraps()
        facts.set("bank.wraps", wraps, "fgclip/memory_bank.py RegionMemoryBank.enqueue (run on a 2-row queue)")
    facts.set("model.parameters", [n for n, p in model.named_parameters() if p.requires_grad], BUILT)
    if groups is not None:
        facts.set(
            "optim.groups", groups, "fgclip/trainer.py FGCLIPTrainer.create_optimizer (its param_groups, on meta)"
        )
    if not base or base_here:  # the architecture is known only from a readable base (or scratch)
        facts.set("text.eos_token_id", model.text_model.eos_token_id, f"{BUILT}: text_config.eos_token_id")
    if tokenizer is not None:
        facts.set("text.tokenizer_eos_id", tokenizer.eos_token_id, f"{margs.base_model or base}: tokenizer eos_token")
    facts.set(
        "text.long_positions",
        model.text_model.embeddings.long_position_embedding.num_embeddings,
        f"{BUILT}: long position table rows",
    )
    facts.set("text.max_seq_length", dargs.max_seq_length, sources.get("max_seq_length", BUILT))
