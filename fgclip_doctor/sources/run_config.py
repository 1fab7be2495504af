"""check-config's source: a target -> Facts about the run it launches, with provenance.

Three layers, each citing where its numbers come from:
1. the flags (launch script / args file / preset), typed the way HfArgumentParser types them;
2. for the bundled subject, the effective values of its code (model built on the meta device,
   the trainer's real parameter groups); for code the doctor does not know, the parsed flags
   with transformers' TrainingArguments defaults, and a note saying so;
3. derived facts: world size, batches, run length in both step units, the bank's switch-on
   point, candidates per loss, and what a resume would restore (scales read lazily).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.facts import Facts
from fgclip_doctor.sources import checkpoint as ckpt
from fgclip_doctor.sources.annotations import annotation_stats
from fgclip_doctor.sources.target import TargetView
from fgclip_doctor.vocabulary import SCALE_ALIASES, SCALE_PARAMS

HF_DEFAULT = "transformers.TrainingArguments default"


def _parser_for(view: TargetView):
    """HfArgumentParser over the subject's dataclasses, or transformers' TrainingArguments only."""
    from transformers import HfArgumentParser, TrainingArguments

    if view.is_subject:
        from fgclip import train

        return HfArgumentParser((train.ModelArguments, train.DataArguments, train.TrainingArguments))
    return HfArgumentParser((TrainingArguments,))


def typed_args(view: TargetView) -> tuple[dict[str, object], dict[str, str]]:
    """Every argument the parser knows: value (typed, default when not given) and its source."""
    parser = _parser_for(view)

    def error(message: str):
        raise DoctorInputError(view.origin(), f"bad arguments for {view.entry}: {message}")

    parser.error = error
    argv, skipped = [], []
    for name, flag in view.flags.items():
        if name in ("deepspeed", "preset"):  # a path / a name: nothing to type, and no DeepSpeed needed
            continue
        if flag.value is None:
            skipped.append(name)
            continue
        value = flag.value
        argv += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    ns, unknown = parser.parse_known_args(argv)
    unknown_flags = [u for u in unknown if u.startswith("--")]
    if unknown_flags and view.is_subject:
        raise DoctorInputError(view.origin(), f"unknown flags for {view.entry}: {' '.join(unknown_flags)}")
    defaults_from = "fgclip/train.py default" if view.is_subject else HF_DEFAULT
    values, sources = {}, {}
    for name, value in vars(ns).items():
        values[name] = value
        sources[name] = view.flags[name].source if name in view.flags else defaults_from
    for name in skipped:
        values[name] = None  # depends on something unresolved in the script
    preset = view.flags.get("preset")
    if view.is_subject and preset is not None and preset.value is None:
        for name in values:  # an unknown preset may set any of them: a default would be a guess
            if name not in view.flags:
                values[name], sources[name] = None, preset.source
    if "deepspeed" in view.flags:
        values["deepspeed"], sources["deepspeed"] = view.flags["deepspeed"].value, view.flags["deepspeed"].source
    return values, sources


def _set_arg(facts: Facts, fact: str, values: dict, sources: dict, name: str) -> None:
    if values.get(name) is not None:
        facts.set(fact, values[name], sources[name])
    elif name in values:  # given, but its value depends on something the doctor cannot know
        facts.mark_unknown(fact, unknown_flag(sources.get(name, f"--{name}")))


def unknown_flag(source: str) -> str:
    """Why a fact set by the flag at `source` is absent: its value exists only when the script runs."""
    return f"{source} has a value known only when the script runs (not guessed)"


def collect_facts(view: TargetView, dataset_size: int | None = None) -> Facts:
    """All check-config facts for `view` (see fgclip_doctor/vocabulary.py for the names)."""
    facts = Facts()
    values, sources = typed_args(view)
    facts.set("run.launcher", view.launcher, view.origin())
    facts.set("run.entry", view.entry, view.origin())
    facts.set("run.subject_known", view.is_subject,
              "fgclip-doctor: recognised fgclip.train" if view.is_subject
              else f"fgclip-doctor: {view.entry} is not known; flags parsed with TrainingArguments defaults")
    nproc, nproc_src = view.nproc
    nnodes, nnodes_src = view.nnodes
    facts.set("run.nproc_per_node", nproc, nproc_src)
    facts.set("run.nnodes", nnodes, nnodes_src)
    if nproc is not None and nnodes is not None:
        facts.set("run.world_size", nproc * nnodes, f"{nproc_src} × {nnodes_src}")

    for fact, arg in (("train.per_device_batch", "per_device_train_batch_size"),
                      ("train.grad_accum", "gradient_accumulation_steps"),
                      ("train.epochs", "num_train_epochs"), ("train.learning_rate", "learning_rate"),
                      ("train.weight_decay", "weight_decay"), ("train.fp16", "fp16"), ("train.bf16", "bf16"),
                      ("train.output_dir", "output_dir"), ("train.resume_from_checkpoint", "resume_from_checkpoint")):
        _set_arg(facts, fact, values, sources, arg)
    unknown = {n: f.source for n, f in view.flags.items() if f.value is None}
    if unknown:
        facts.set("run.unresolved_flags", [f"--{n}" for n in unknown], "; ".join(unknown.values()))
    if (values.get("max_steps") or -1) > 0:
        facts.set("train.max_steps", values["max_steps"], sources["max_steps"])

    if view.is_subject:
        from fgclip_doctor.sources.subject_facts import subject_facts

        subject_facts(facts, values, sources, unknown)
    _derive(facts, values, sources, dataset_size)
    _resume(facts)
    return facts


def _derive(facts: Facts, values: dict, sources: dict, dataset_size: int | None) -> None:
    world = facts.value("run.world_size")
    per_device, accum = facts.value("train.per_device_batch"), facts.value("train.grad_accum")
    if None in (world, per_device, accum):
        return
    ws, ps, acs = (facts.source(n) for n in ("run.world_size", "train.per_device_batch", "train.grad_accum"))
    facts.set("train.global_batch", per_device * world * accum, "per_device × world × accumulation")
    # Dataset size: --dataset-size, else the annotations when readable here.
    data_path = values.get("data_path")
    if dataset_size is not None:
        facts.set("train.dataset_size", dataset_size, "--dataset-size")
    elif data_path and Path(data_path).exists():
        stats = annotation_stats(Path(data_path), max_boxes=values.get("max_boxes") or 4)
        facts.set("train.dataset_size", stats.records, f"{data_path} ({stats.records} records counted)")
        if stats.sampled:
            facts.set("data.boxes_per_image", round(stats.boxes_per_image, 3),
                      f"{data_path} (mean valid boxes, capped at max_boxes, over {stats.sampled} records)")
    if "train.max_steps" in facts:
        steps, src = facts.value("train.max_steps"), facts.source("train.max_steps")
    elif "train.dataset_size" in facts and "train.epochs" in facts:
        # As HF Trainer: batches per epoch per process, then optimizer steps per epoch.
        batches = math.ceil(facts.value("train.dataset_size") / (per_device * world))
        steps = math.ceil(facts.value("train.epochs") * max(batches // accum, 1))
        src = "num_train_epochs × ceil(dataset_size ÷ (per_device × world)) ÷ accumulation"
    else:
        steps = None
    if steps is not None:
        facts.set("train.optimizer_steps", steps, src)
        facts.set("train.forward_calls", steps * accum, "optimizer_steps × accumulation")
    # Candidates per loss row.
    if facts.value("features.gathered", False) or world == 1:
        facts.set("candidates.global", per_device * world, f"per_device ({ps}) × world ({ws})")
    else:
        facts.set("candidates.global", per_device, f"per_device ({ps}); features not gathered across ranks")
    if "data.max_boxes" in facts and "region" in facts.value("loss.terms", ()):
        per_image = min(facts.value("data.boxes_per_image", facts.value("data.max_boxes")), facts.value("data.max_boxes"))
        k = max(1, round(per_device * per_image))
        how = "mean boxes per image" if "data.boxes_per_image" in facts else "max_boxes (upper bound)"
        facts.set("candidates.region.in_batch", k, f"per_device × {how}, this rank's boxes")
        if facts.value("bank.enabled"):
            facts.set("candidates.region.with_bank", k + facts.value("bank.size"), "in-batch + bank.size")
    if "bank.warmup_forward_calls" in facts:
        facts.set("bank.switch_on_step", math.ceil(facts.value("bank.warmup_forward_calls") / accum),
                  f"{facts.source('bank.warmup_forward_calls')} ÷ accumulation ({acs})")


def _resume(facts: Facts) -> None:
    out = facts.value("train.output_dir")
    if not out:
        return
    if not Path(out).is_dir():
        facts.set("resume.checkpoints", [], f"{out} does not exist yet (relative to {Path.cwd()})")
        return
    found = ckpt.list_checkpoints(Path(out))
    facts.set("resume.checkpoints", [str(p) for p in found], f"{out} (listed)")
    explicit = facts.value("train.resume_from_checkpoint")
    target = None
    if explicit and str(explicit).lower() not in ("true", "false", "none"):
        target = Path(str(explicit))
        if not target.is_dir():
            raise DoctorInputError(target, "--resume_from_checkpoint names no checkpoint dir")
    elif facts.value("train.auto_resume") or str(explicit).lower() == "true":
        target = ckpt.latest_checkpoint(Path(out))
    if target is None:
        return
    facts.set("resume.checkpoint", str(target), facts.source("train.auto_resume") or facts.source("train.resume_from_checkpoint"))
    step = ckpt.checkpoint_step(target)
    if step is not None:
        facts.set("resume.step", step, f"{target}/trainer_state.json")
    names = list(SCALE_PARAMS.values()) + list(SCALE_ALIASES)
    scalars = ckpt.read_scalars(target, names)
    for scale, param in SCALE_PARAMS.items():
        for key in [param] + [a for a, p in SCALE_ALIASES.items() if p == param]:
            if key in scalars:
                value, source = scalars[key]
                facts.set(f"resume.scale.{scale}", float(value), source)
                break


def dataclass_subset(cls, values: dict):
    """Instantiate a plain dataclass from the typed values (for the subject's own builders)."""
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})
