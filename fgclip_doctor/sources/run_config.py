"""check-config's source: a target -> Facts about the run it launches, with provenance.

Three layers, each citing where its numbers come from:
1. the flags (launch script / args file / preset), typed the way HfArgumentParser types them;
2. for the bundled subject, the effective values of its code (model built on the meta device,
   the trainer's real parameter groups); for any other code, that code read statically
   (sources/launch_code.py: its own parser, defaults, scales, losses, resume), never HF defaults
   it does not use;
3. derived facts: world size, batches, run length in both step units, the bank's switch-on
   point, candidates per loss, and what a resume would restore (scales read lazily).
"""

from __future__ import annotations

from pathlib import Path

from fgclip_doctor.environment import require_subject
from fgclip_doctor.facts import Facts, unknown_flag
from fgclip_doctor.sources.checkpoint.layout import read_scalars
from fgclip_doctor.sources.checkpoint.resume import resume_facts
from fgclip_doctor.sources.data.annotations import annotation_stats
from fgclip_doctor.sources.derived import derive_config_levels, derive_run
from fgclip_doctor.sources.launch.flags import rejected_flags, typed_args
from fgclip_doctor.sources.launch.target import TargetView, launch_directory, launch_path, unknown_directory
from fgclip_doctor.sources.launch_code import code_facts, settle_args_file

#: Why a launcher's process count may be absent from a script.
WORLD_UNKNOWN = {
    "deepspeed": "deepspeed without --num_gpus / --include / a hostfile in the script runs one process "
    "per visible GPU of each host: the world size is unknown here",
    "accelerate": "accelerate without --num_processes takes it from its config file: the world size is unknown here",
}


def _set_arg(facts: Facts, fact: str, values: dict, sources: dict, name: str, why: dict[str, str]) -> None:
    if values.get(name) is not None:
        facts.set(fact, values[name], sources[name])
    elif name in why:  # a value the training refuses at start-up: it never trains with it
        facts.mark_unknown(fact, why[name])
    elif name in values:  # given, but its value depends on something the doctor cannot know
        facts.mark_unknown(fact, unknown_flag(sources.get(name, f"--{name}")))


def _subject_flag_facts(facts: Facts, view: TargetView, unknown: dict[str, str]) -> dict:
    """The subject's flags typed by its own HfArgumentParser, then its model built on meta.

    Values the subject refuses at start-up (fgclip.arguments) are rejected flags too (unknown-flag
    FAILs on them) and leave their facts unknown, saying why; the model is not built on them."""
    from fgclip_doctor.sources.code.subject_facts import refused_values, subject_facts

    rejected = rejected_flags(view)  # each flag parsed alone, once
    values, sources = typed_args(view, rejected)
    refused = refused_values(values, sources)
    why = {}
    for r in refused:
        name = str(r["flag"])[2:]
        values[name] = None
        why[name] = f"{r['source']}: {r['flag']} {r['value']} is refused by fgclip.train ({r['reason']})"
    parser_src = "fgclip/train.py HfArgumentParser (each flag parsed alone)"
    facts.set("code.flags_accepted", {n: values[n] for n in view.flags if values.get(n) is not None}, parser_src)
    for fact, arg in (
        ("train.per_device_batch", "per_device_train_batch_size"),
        ("train.grad_accum", "gradient_accumulation_steps"),
        ("train.epochs", "num_train_epochs"),
        ("train.learning_rate", "learning_rate"),
        ("train.weight_decay", "weight_decay"),
        ("train.fp16", "fp16"),
        ("train.bf16", "bf16"),
        ("train.output_dir", "output_dir"),
        ("train.resume_from_checkpoint", "resume_from_checkpoint"),
    ):
        _set_arg(facts, fact, values, sources, arg, why)
    if (values.get("max_steps") or -1) > 0:
        facts.set("train.max_steps", values["max_steps"], sources["max_steps"])
    refused += subject_facts(facts, _from_launch_directory(view, values), sources, read_scalars, unknown, why)
    refused_src = " · fgclip/arguments.py (values fgclip.train refuses)" if refused else ""
    facts.set("code.flags_rejected", rejected + refused, parser_src + refused_src)
    return values


def _from_launch_directory(view: TargetView, values: dict) -> dict:
    """The subject's model folders as its process opens them: a relative --model_name_or_path /
    --base_model that is a folder from the launch's directory (after its `cd`) is that folder;
    anything else stays as written (a hub id, or not on this machine)."""
    out = dict(values)
    for name in ("model_name_or_path", "base_model"):
        given = values.get(name)
        where = launch_path(view, given) if given else None
        if where is not None and not Path(str(given)).is_absolute() and where.is_dir():
            out[name] = str(where)
    return out


def collect_facts(view: TargetView, dataset_size: int | None = None) -> Facts:
    """All check-config facts for `view` (see fgclip_doctor/vocabulary.py for the names)."""
    facts = Facts()
    settle_args_file(view)
    if view.is_subject:  # its parser and meta build import it: transformers 5, or one line + exit 2
        require_subject()
    facts.set("run.launcher", view.launcher, view.origin())
    facts.set("run.entry", view.entry, view.origin())
    if launch_directory(view) is None:
        facts.mark_unknown("run.directory", view.directory_source)
    else:
        facts.set("run.directory", str(launch_directory(view)), view.directory_source)
    facts.set(
        "run.subject_known",
        view.is_subject,
        "fgclip-doctor: recognised fgclip.train"
        if view.is_subject
        else f"fgclip-doctor: {view.entry or 'no training code'} is not the bundled subject: its code is read as text",
    )
    nproc, nproc_src = view.nproc
    nnodes, nnodes_src = view.nnodes
    facts.set("run.nproc_per_node", nproc, nproc_src)
    facts.set("run.nnodes", nnodes, nnodes_src)
    if nproc is not None and nnodes is not None:
        both = nproc_src if nproc_src == nnodes_src else f"{nproc_src} × {nnodes_src}"  # one flag gives both
        facts.set("run.world_size", nproc * nnodes, both)
    else:
        facts.mark_unknown(
            "run.world_size", WORLD_UNKNOWN.get(view.launcher, nproc_src if nproc is None else nnodes_src)
        )
    unknown = {n: f.source for n, f in view.flags.items() if f.value is None}
    if unknown:
        facts.set("run.unresolved_flags", [f"--{n}" for n in unknown], "; ".join(unknown.values()))
    if view.is_subject:
        values = _subject_flag_facts(facts, view, unknown)
    else:
        values = code_facts(facts, view)
        _world_from_environment(facts, view)
    if None not in (
        facts.value("run.world_size"),
        facts.value("train.per_device_batch"),
        facts.value("train.grad_accum"),
    ):
        _dataset_size(facts, view, values, dataset_size)
    derive_run(facts)
    derive_config_levels(facts)
    resume_facts(facts, launch_directory(view), view.directory_source)
    return facts


def _world_from_environment(facts: Facts, view: TargetView) -> None:
    """Code that takes its world size from WORLD_SIZE / SLURM_NTASKS, started as one plain python
    process: the launch's own value of that variable when it sets one, else unknown, never 1."""
    names = facts.value("code.world_size_env") or []
    if not names or view.launcher != "python":
        return
    env = view.launch.env if view.launch is not None else {}
    for name in names:
        if name in env and env[name].value and env[name].value.isdigit():
            where = f"{view.origin()}:{env[name].line} {name}"
            facts.set("run.nproc_per_node", int(env[name].value), where)
            facts.set("run.nnodes", 1, where)
            facts.set(
                "run.world_size", int(env[name].value), f"{where} (read by {facts.source('code.world_size_env')})"
            )
            return
    for name in ("run.world_size", "run.nproc_per_node"):
        facts.forget(name)
    facts.mark_unknown(
        "run.world_size",
        f"the code takes its world size from ${' / $'.join(names)} ({facts.source('code.world_size_env')}), "
        "which this launch does not set: whatever starts it (srun, a scheduler) decides",
    )


def _dataset_size(facts: Facts, view: TargetView, values: dict, dataset_size: int | None) -> None:
    """Training records: --dataset-size, else the annotations when readable here (a relative
    data_path from the launch's directory)."""
    data_path = values.get("data_path")
    where = launch_path(view, data_path) if data_path else None
    if dataset_size is not None:
        facts.set("train.dataset_size", dataset_size, "--dataset-size")
    elif data_path and where is None:
        facts.mark_unknown("train.dataset_size", unknown_directory(view, data_path))
    elif where is not None and not where.exists():
        flag = view.flags.get("data_path")
        cited = f" ({flag.source})" if flag is not None else ""
        facts.mark_unknown("train.dataset_size", f"the annotations {data_path}{cited} are not on this machine")
    elif where is not None:
        stats = annotation_stats(where, max_boxes=4 if values.get("max_boxes") is None else values["max_boxes"])
        facts.set("train.dataset_size", stats.records, f"{data_path} ({stats.records} records counted)")
        if stats.sampled:
            facts.set(
                "data.boxes_per_image",
                round(stats.boxes_per_image, 3),
                f"{data_path} (mean valid boxes, capped at max_boxes, over {stats.sampled} records)",
            )
