"""Static reader of training code the doctor has never seen: stdlib `ast`, never import, never run.

    reading = read_training_code("fgclip/train/train_mem.py", "script", cwd=checkout,
                                 pythonpath=[],
                                 flags=[FlagInput("--learning_rate", "1e-6", "scripts/train.sh:31 --learning_rate")])
    reading.facts       # Facts, every one with file:line provenance (names in vocabulary.FACTS)
    reading.notes       # what could not be read, `path:line: why` (never a traceback)
    reading.parser      # ParserSpec: the real options, types and defaults (None: no parser found)
    reading.flags       # FlagTyping: accepted {dest: value+source}, rejected [flag, reason, source]
    reading.default("learning_rate")   # (value, "file:line") of the code's own default, or None
    reading.model       # ModelRead: the model the launch builds, run on abstract values with the
                        # launch's flag values (model_read.py; branches not taken are `dead`)
    reading.weights     # start values a weight load decides: read lazily by launch_code.py, which
                        # may open checkpoints (this package never does)
    reading.unknown     # {fact: why} for facts the code hides (a library tower, data-dependent rows)

How check-config uses it (the lead wires this; the reader imports only the ground floor):
1. From the launch (sources/launch): entry + entry_kind, the working directory the launch runs
   in (the script's `cd` / `pushd`, else the directory check-config runs from), and the
   launch's PYTHONPATH (`export PYTHONPATH=...` in the script, else the environment's, with
   the doctor's own install dir left out). Flags: one FlagInput per `Launch.args` item, with
   `option=ArgValue.flag`, `value=None` when the raw text has no value (`--do_train`),
   `known=False` when `ArgValue.value is None`.
2. When the entry is the bundled subject (`fgclip.train` in the doctor's own checkout), keep
   the meta build; otherwise call read_training_code instead of falling back to HF defaults.
3. Typed values and code defaults replace HF defaults: train.per_device_batch, train.grad_accum,
   train.learning_rate, train.weight_decay, train.fp16 / bf16, train.epochs, train.max_steps,
   train.output_dir come from `reading.flags.accepted[dest]` (source = the launch's line) or,
   not given, from `reading.default(dest)` (source = the code's file:line, or the installed
   TrainingArguments when the code's dataclass inherits it). A dest the parser does not have
   gives no fact (open_clip: --batch-size -> batch_size, --precision amp is not fp16/bf16 in
   HF's sense: map `precision` values amp/fp16 -> train.fp16, bf16/amp_bf16 -> train.bf16).
4. Rules read: unknown-flag FGD303 <- code.flags_rejected (FAIL per item, PASS on []);
   world-size FGD209 <- loss.world_size_from + loss.world_size (+ run.world_size);
   loss-errors-swallowed FGD704 <- loss.<term>.errors_swallowed; resume-auto <- train.auto_resume;
   logit-scale-decay <- scale.<scale>.decayed; logit-scale-clamp <- scale.clamp / clamp_max;
   logit-scale-init: scale.<scale>.init_from == "copy of logit_scale" -> init = scale.global.base;
   negatives-count: features.gathered.global False -> candidates.global = per_device_batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgclip_doctor.facts import Facts
from fgclip_doctor.sources.code.families import library_model_kind, scale_of
from fgclip_doctor.sources.code.reader.astutil import UNKNOWN
from fgclip_doctor.sources.code.reader.config_class import find_config_class
from fgclip_doctor.sources.code.reader.config_loads import ConfigSource
from fgclip_doctor.sources.code.reader.decay_rule import find_decay_rule
from fgclip_doctor.sources.code.reader.entry import (
    find_entry,
    load_reachable,
    search_roots,
)
from fgclip_doctor.sources.code.reader.flag_types import (
    FlagInput,
    FlagTyping,
    flag_lookup,
    type_flags,
)
from fgclip_doctor.sources.code.reader.group_lrs import group_lr_facts
from fgclip_doctor.sources.code.reader.losses import LossReading, call_bindings, loss_detector, read_losses
from fgclip_doctor.sources.code.reader.model_facts import (
    WeightRead,
    data_dependent_rows,
    hardneg_candidates,
    model_facts,
    resolve_clamps,
)
from fgclip_doctor.sources.code.reader.model_read import ModelRead, read_model
from fgclip_doctor.sources.code.reader.parsers import ParserSpec, find_parser
from fgclip_doctor.sources.code.reader.paths import PathEval
from fgclip_doctor.sources.code.reader.precision import find_fp16_refusal
from fgclip_doctor.sources.code.reader.program import Program
from fgclip_doctor.sources.code.reader.queues import queue_facts
from fgclip_doctor.sources.code.reader.resume import flag_value_of, resume_facts
from fgclip_doctor.sources.code.reader.run_shape import run_shape_facts
from fgclip_doctor.sources.code.reader.scales import (
    ScaleParam,
    find_clamps,
    find_scale_params,
    is_logit_param,
)
from fgclip_doctor.sources.code.reader.sites import probe_sites
from fgclip_doctor.sources.code.reader.source import Notes
from fgclip_doctor.sources.code.reader.train_step import StepReading, read_train_step

__all__ = ["CodeReading", "FlagInput", "read_training_code"]


@dataclass
class CodeReading:
    facts: Facts
    notes: list[str]
    files: list[str] = field(default_factory=list)  # user files read, as shown
    parser: ParserSpec | None = None
    flags: FlagTyping | None = None
    losses: LossReading | None = None
    entry_missing: str = ""  # why the entry itself was not found (where it was looked for)
    model: ModelRead | None = None  # the model the launch builds, read on abstract values
    weights: list[WeightRead] = field(default_factory=list)  # start values a weight load decides (read lazily)
    unknown: dict[str, str] = field(default_factory=dict)  # fact -> why it is not known
    step: StepReading = field(default_factory=StepReading)  # accumulation / precision of the code's own step

    def default(self, dest: str) -> tuple[Any, str] | None:
        """The code's own default for `dest` and where it is declared (None: unknown)."""
        opt = self.parser.option(dest) if self.parser else None
        if opt is None or opt.default is UNKNOWN:
            return None
        return opt.default, opt.declared


def read_training_code(
    entry: str,
    kind: str,
    cwd: str | Path,
    pythonpath: Sequence[str] = (),
    flags: Sequence[FlagInput] = (),
    configs: ConfigSource | None = None,
    positionals: Sequence[str] = (),
) -> CodeReading:
    """Read the code a launch runs (`kind`: "module" for `-m`, else "script") into facts;
    `configs` reads a config file the code loads from a flag (config_loads.py), None: not read."""
    cwd = Path(cwd).resolve()
    notes = Notes()
    program = Program(cwd, search_roots(entry, kind, cwd, list(pythonpath)), notes)
    facts = Facts()
    found = find_entry(program, entry, kind)
    if found is None:
        return CodeReading(facts, notes.lines, entry_missing=notes.lines[-1] if notes.lines else entry)
    files = load_reachable(program, [found.file])
    complete = not notes.unread  # False facts ("no clamp") only from code read in full
    facts.set("code.entry_file", found.file.rel, f"{found.file.rel}:1")
    if found.main is not None:
        fn = found.main
        facts.set("code.train_function", f"{fn.file.rel}:{fn.node.lineno} {fn.node.name}", found.call_site)
    facts.set("code.files_read", [f.rel for f in files], f"{found.file.rel}:1 and its imports")
    reading = CodeReading(facts, notes.lines, [f.rel for f in files])
    by_class = lambda: find_config_class(program, found.file, list(positionals))  # read only without a parser
    _parser_facts(reading, program, files, list(flags), by_class)
    resume_facts(reading, files, complete)
    run_shape_facts(reading, files)
    refusal = find_fp16_refusal(files)
    if refusal is not None:
        facts.set("code.refuses_fp16", True, f"{refusal}: the code stops an fp16 run")
    _meaning(reading, program, files, found, complete, configs)
    read = reading.model
    if read is not None and not read.interp.uses.get("trainer"):  # a Trainer steps (and casts) by its own args
        evaluator = PathEval(files, lambda d: flag_value_of(reading, d))
        reading.step = read_train_step(program, files, read.interp.reached, read.dead, evaluator)
    return reading


def _meaning(reading: CodeReading, program: Program, files, found, complete: bool, configs=None) -> None:
    """The model the launch builds (model_read.py), its loss terms from what it builds, then the
    facts of both; the structural readers (scales.py) fill what the build does not decide."""
    read = reading.model = read_model(
        program, found.file, found.main, flag_lookup(reading), is_logit_param, loss_detector(program), configs
    )
    unpicked = next(iter(read.interp.unpicked.values()), "")  # `getattr(models, args.model)` not known
    complete = complete and not unpicked
    roots = []  # the models, then loss modules they hold by a value (`SLIPLoss(SIMCLRLoss(), ...)`)
    detect = loss_detector(program)
    fwds = [(o, program.method(o.cls, "forward")) for o in read.interp.created if o.cls and o not in read.models]
    held = [o for o, fwd in fwds if fwd is not None and detect(fwd)]
    for m in [*read.models, *held]:
        fwd = program.method(m.cls, "forward")
        roots.append((fwd, call_bindings(fwd, [(c, fn) for o, c, fn, _ in read.interp.module_calls if o is m])))
    reading.losses = read_losses(program, files, roots, read.dead)
    _scale_facts(reading, program, files, complete)
    _loss_facts(reading, complete)
    reading.weights = model_facts(reading.facts, reading.unknown, read, complete)
    queue_facts(reading.facts, reading.unknown, read, reading.losses)
    if unpicked:  # the model is one of several: no start value, scale list or absence from any one of them
        _forget_scales(reading, unpicked)
    sites, unplaced = probe_sites(reading.losses, read, program)
    if sites:  # where live hooks this code (sites.py)
        reading.facts.set("code.probe_sites", sites, sites[0]["at"])
    if unplaced:
        reading.facts.set("code.probe_unplaced", unplaced, next(iter(unplaced.values())).partition(": ")[0])
    if not complete:  # what a module not read might hold stays unknown, naming that module
        why = next((n for n in reading.notes if any(n.startswith(u) for u in program.notes.unread)), "")
        for name in ("bank.enabled", "model.scales"):
            reading.unknown.setdefault(name, f"{why}: the code was not read whole, so what it lacks is not known")
    reading.notes += read.notes
    reading.notes += [f"{why}: every value read from it is unknown" for why in read.interp.config_unknown.values()]
    hardneg_candidates(reading.facts)
    if "ssl" in reading.losses.terms:  # rows and columns are the augmented views the data pipeline makes
        at = next(iter(reading.losses.terms["ssl"].kinds.values()), "")
        why = "an image-image (NT-Xent) term: its candidates depend on the augmentation batch (views per image)"
        reading.unknown["candidates.ssl"] = f"{at}: {why}, not read"
    data_dependent_rows(reading.unknown, reading.losses)


def _forget_scales(reading: CodeReading, why: str) -> None:
    inits = [n for n in reading.facts if n.startswith("scale.") and n.endswith((".init", ".init_from"))]
    for name in [*inits, *(f"scale.{s}.init" for s in ("global", "finegrained", "hardneg"))]:
        reading.facts.forget(name)
        reading.unknown[name] = why
    for name in ("bank.enabled", "model.scales"):
        reading.facts.forget(name)
        reading.unknown[name] = why


def _parser_facts(reading: CodeReading, program: Program, files, flags: list[FlagInput], by_class=None) -> None:
    spec = find_parser(program, files) or (by_class() if by_class else None)  # else a config class the launch names
    if spec is None:
        return
    facts = reading.facts
    reading.parser = spec
    facts.set("code.parser", spec.describe(), spec.where)
    if spec.unknown_base:
        reading.notes.append(f"{spec.where}: {spec.unknown_base}")
    else:
        facts.set("code.flags_known", sorted({o.dest for o in spec.options}), spec.where)
    if not flags:
        return
    reading.flags = typed = type_flags(spec, flags)
    if spec.unknown_base:
        return  # a flag may be one of the unknown base fields: nothing can be called rejected
    facts.set(
        "code.flags_rejected",
        [{"flag": r.option, "value": r.value, "reason": r.reason, "source": r.source} for r in typed.rejected],
        typed.rejected[0].source if typed.rejected else spec.where,
    )
    facts.set("code.flags_accepted", {d: a.value for d, a in typed.accepted.items()}, spec.where)


def _flag_value(reading: CodeReading, dest: str) -> tuple[Any, str] | None:
    if reading.flags and dest in reading.flags.accepted and reading.flags.accepted[dest].value is not None:
        a = reading.flags.accepted[dest]
        return a.value, a.source
    return reading.default(dest)


def _effective(params: list[ScaleParam], loaded_pretrained: bool) -> dict[str, ScaleParam]:
    """attr -> the assignment that holds at the start (a later one in the train code wins)."""
    out: dict[str, ScaleParam] = {}
    for p in params:
        canonical = scale_of(p.attr) or p.attr
        key = canonical if "logit_bias" not in p.attr else p.attr
        out[key] = p
    return out


def _scale_facts(reading: CodeReading, program: Program, files, complete: bool) -> None:
    facts, losses = reading.facts, reading.losses
    params = find_scale_params(files)
    pretrained = bool(losses and losses.model_at)
    if losses and losses.hf_model:
        at = losses.hf_at
        params.append(ScaleParam("logit_scale", "pretrained weights", None, at, True))
        if library_model_kind(losses.hf_model) == "sigmoid":  # its built-in loss adds a logit_bias
            params.append(ScaleParam("logit_bias", "pretrained weights", None, at, True))
    facts.set(
        "code.logit_params",
        {p.attr: {"init_from": p.init_from, "at": p.at} for p in params} or None,
        params[0].at if params else "",
    )
    for p in _effective(params, pretrained).values():
        if "logit_bias" in p.attr:
            facts.set("bias.global.init_from", p.init_from, p.at)
            continue
        scale = scale_of(p.attr)
        if scale is None:
            continue
        from_weights = p.in_init and pretrained  # from_pretrained replaces an __init__ value
        shown = (
            f"{p.init_from} (replaced by the pretrained weights when they hold {p.attr})"
            if from_weights and p.init_from != "pretrained weights"
            else p.init_from
        )
        facts.set(f"scale.{scale}.init_from", shown, p.at)
        if from_weights:
            continue
        if p.init_from == "constant":
            facts.set(f"scale.{scale}.init", p.value, p.at)
        elif p.init_from.startswith("flag ") and (v := _flag_value(reading, p.value)) is not None:
            if isinstance(v[0], (int, float)) and not isinstance(v[0], bool):
                facts.set(f"scale.{scale}.init", float(v[0]), f"{p.at} {p.init_from} = {v[1]}")
    read = reading.model
    clamps = find_clamps(files, program, read.dead if read else frozenset(), read.unsure if read else None)
    resolve_clamps(reading.model, clamps)
    if clamps and all(c.maybe for c in clamps):  # no PASS on a branch the launch may not take
        reading.unknown["scale.clamp"] = f"{clamps[0].at}: the clamp runs only if {clamps[0].maybe}"
        clamps = []
    clamps = [c for c in clamps if not c.maybe]
    if clamps:
        facts.set("scale.clamp", True, clamps[0].at)
        bounds = [c for c in clamps if c.max is not None]
        if bounds:
            top = max(bounds, key=lambda c: c.max)
            facts.set("scale.clamp_max", top.max, top.at + (f" (bound: {top.bound_at})" if top.bound_at else ""))
        elif why := next((c.unknown for c in clamps if c.unknown), ""):
            reading.unknown["scale.clamp_max"] = f"{clamps[0].at}: the clamp's bound is not known: {why}"
    elif complete and params and "scale.clamp" not in reading.unknown:
        facts.set("scale.clamp", False, f"{params[0].at}: no clamp of a logit scale in the code read")
    interp = reading.model.interp if reading.model else None
    rule = find_decay_rule(
        program,
        files,
        interp.assigned if interp else None,
        set(interp.config_unknown.values()) if interp else set(),
        read.dead if read else frozenset(),
        read.unsure if read else None,
    )
    if rule is not None:
        for p in _effective(params, pretrained).values():
            scale = scale_of(p.attr)
            if not scale:
                continue
            if rule.maybe:  # a grouping this launch may not use: no PASS on a branch not taken
                reading.unknown[f"scale.{scale}.decayed"] = rule.maybe
                continue
            if rule.unknown and rule.decays(p.attr):  # the names it tests are not known here
                reading.unknown[f"scale.{scale}.decayed"] = (
                    f"{rule.at}: the no-decay names are not known: {rule.unknown}"
                )
                continue
            cite = f"{rule.at} (no-decay names: {rule.names_at})" if rule.names_at else rule.at
            facts.set(f"scale.{scale}.decayed", rule.decays(p.attr), cite)
        if rule.lr_flags:
            facts.set("optim.group_lr_flags", rule.lr_flags, rule.at)
        if not rule.maybe and interp is not None:
            dests = {o.dest for o in reading.parser.options} if reading.parser else set()
            lr_flags = {d: flag_value_of(reading, d) for d in dests}
            group_lr_facts(facts, reading.unknown, rule.dicts, rule.file, interp.assigned, lr_flags)


#: loss terms the reader names (vocabulary `loss.<term>.present`)
READ_TERMS = ("global", "region", "hardneg", "distill", "ssl")


def _present(reading: CodeReading, complete: bool) -> None:
    """loss.<term>.present: True where the term is computed; False only where the model the
    launch builds was read whole (a term in a module not read stays unknown)."""
    facts, terms = reading.facts, reading.losses.terms
    model = reading.model.model if reading.model else None
    for name in READ_TERMS:
        if name in terms:
            term = terms[name]
            facts.set(f"loss.{name}.present", True, next(iter(term.kinds.values()), ""))
        elif complete and model is not None:
            cls = model.cls.node.name if model.cls else "the model"
            facts.set(f"loss.{name}.present", False, f"{model.at}: no {name} term in this code ({cls}, read whole)")


def _loss_facts(reading: CodeReading, complete: bool) -> None:
    facts, losses = reading.facts, reading.losses
    if losses is None or not losses.terms:
        return
    if losses.hf_model:
        facts.set("code.model", f"transformers {losses.hf_model}", losses.hf_at)
    facts.set(
        "loss.terms",
        sorted(losses.terms),
        next(iter(losses.terms.values())).gathered.get(True, next(iter(losses.terms.values())).gathered.get(False, "")),
    )
    for name, term in losses.terms.items():
        if len(term.kinds) == 1:
            kind, at = next(iter(term.kinds.items()))
            facts.set(f"loss.{name}.kind", kind, at)
        elif term.kinds:
            facts.set(f"loss.{name}.kind", "mixed", ", ".join(term.kinds.values()))
        if len(term.gathered) == 1:
            gathered, at = next(iter(term.gathered.items()))
            note = " (transformers#22252: HF models compute the loss on the local batch)" if losses.hf_model else ""
            facts.set(f"features.gathered.{name}", gathered, at + note)
        if term.bias:
            facts.set(f"loss.{name}.logit_bias", True, term.bias)
        if term.swallowed:
            facts.set(f"loss.{name}.errors_swallowed", True, term.swallowed)
        elif complete:
            where = next(iter(term.kinds.values()), "") or next(iter(term.gathered.values()), "")
            facts.set(f"loss.{name}.errors_swallowed", False, where)
    _present(reading, complete)
    if "features.gathered.global" in facts:
        facts.set(
            "features.gathered", facts.value("features.gathered.global"), facts.source("features.gathered.global")
        )
    if losses.world_size_from:
        facts.set("loss.world_size_from", losses.world_size_from, losses.world_size_at)
        if losses.world_size_from.startswith("flag "):
            dest = losses.world_size_from[5:]
            if (v := _flag_value(reading, dest)) is not None:
                facts.set("loss.world_size", v[0], f"{losses.world_size_at} = {v[1]}")
