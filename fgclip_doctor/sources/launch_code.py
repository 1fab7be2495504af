"""Facts for a launch whose code is not the bundled subject: its own code, read statically.

The launch's entry is resolved from the launch's directory (sources/launch/target.py
`launch_directory`), its code read with stdlib `ast` (sources/code/reader: never imported, never
run), and its flags typed against that code's real parser. Run facts come from the typed flags
or, not given, from the code's own defaults, each citing where it is declared; a default of the
installed `transformers.TrainingArguments` is used only for code whose parser inherits it, and
says so. A dest the code's parser does not have gives no fact: nothing is assumed.

An args file alone names no training code: it is read as fgclip.train's only when every key is
one of fgclip.train's arguments; otherwise its keys are read by name, without any defaults.
"""

from __future__ import annotations

import dataclasses

from fgclip_doctor.bundled import ROOT
from fgclip_doctor.environment import subject_unavailable
from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.facts import Facts, unknown_flag
from fgclip_doctor.sources.checkpoint.layout import read_scalars
from fgclip_doctor.sources.code.families import REGISTRY, fact_dests, precision
from fgclip_doctor.sources.code.reader import CodeReading, FlagInput, read_training_code
from fgclip_doctor.sources.code.reader.train_step import apply_step
from fgclip_doctor.sources.code.reader.use_sites import apply_uses
from fgclip_doctor.sources.launch.args import coerce
from fgclip_doctor.sources.launch.config_files import load_config_file
from fgclip_doctor.sources.launch.target import (
    TargetView,
    launch_directory,
    launch_path,
    launch_pythonpath,
    unknown_directory,
)
from fgclip_doctor.sources.lazy_values import text_ids, weight_read

#: What only a launch's code can say (absent when its reader did not establish it).
CODE_ONLY = (
    "code.",
    "scale.",
    "loss.",
    "features.",
    "bank.",
    "optim.",
    "model.",
    "text.",
    "train.auto_resume",
    "data.max_boxes",
    "data.num_hard_negatives",
)

#: Run facts and the dests that give them, first match in the code's parser (HF spelling, then
#: open_clip's argparse spelling).
FACT_DESTS = (
    ("train.per_device_batch", ("per_device_train_batch_size", "batch_size")),
    ("train.grad_accum", ("gradient_accumulation_steps", "accum_freq")),
    ("train.epochs", ("num_train_epochs", "epochs")),
    ("train.learning_rate", ("learning_rate", "lr")),
    ("train.weight_decay", ("weight_decay", "wd")),
    ("train.fp16", ("fp16",)),
    ("train.bf16", ("bf16",)),
    ("train.output_dir", ("output_dir",)),
    ("train.resume_from_checkpoint", ("resume_from_checkpoint", "resume")),
    ("train.max_steps", ("max_steps",)),
    ("schedule.warmup_steps", ("warmup_steps", "warmup")),
    ("schedule.warmup_ratio", ("warmup_ratio",)),
    ("schedule.warmup_epochs", ("warmup_epochs",)),
)
#: Keys of a config file the code loads from a flag (YAML / JSON / TOML) that give each fact, by
#: the last part of their dotted name; a top-level key first, then optimizer / scheduler sections.
CONFIG_KEYS = {
    "train.per_device_batch": ("batch_size", "batch_size_train", "per_device_train_batch_size", "train_batch_size"),
    "train.grad_accum": ("gradient_accumulation_steps", "accum_freq", "accum_iter"),
    "train.epochs": ("epochs", "num_train_epochs", "max_epoch", "max_epochs"),
    "train.learning_rate": ("lr", "learning_rate", "base_lr"),
    "train.weight_decay": ("weight_decay", "wd"),
    "train.fp16": ("fp16",),
    "train.bf16": ("bf16",),
    "schedule.warmup_steps": ("warmup_steps", "warmup_iters", "warmup"),
    "schedule.warmup_ratio": ("warmup_ratio",),
    "schedule.warmup_epochs": ("warmup_epochs",),
}
_SECTIONS = (
    "",
    "optimizer.",
    "optim.",
    "train.",
    "training.",
    "data.",
    "schedule.",
    "schedular.",
    "scheduler.",
    "lr_scheduler.",
)
#: HF TrainingArguments types of the keys an args file is read by, when no code is known.
BY_NAME = {
    "per_device_train_batch_size": int,
    "gradient_accumulation_steps": int,
    "num_train_epochs": float,
    "learning_rate": float,
    "weight_decay": float,
    "fp16": bool,
    "bf16": bool,
    "output_dir": str,
    "resume_from_checkpoint": str,
    "max_steps": int,
}


def flag_inputs(view: TargetView) -> list[FlagInput]:
    """The launch's flags as the reader types them (JSON values as the text a launch would hold)."""
    out = []
    for name, flag in view.flags.items():
        value = flag.value
        if isinstance(value, (list, dict)):
            out.append(FlagInput(flag.option or f"--{name}", None, flag.source, known=False))
            continue
        text = None if flag.bare else (str(value).lower() if isinstance(value, bool) else value)
        out.append(FlagInput(flag.option or f"--{name}", text, flag.source, known=value is not None))
    return out


def read_launch_code(view: TargetView) -> CodeReading:
    """Read the code `view` launches, from the launch's directory (never imported; not read when
    that directory is unknown: which file Python would run is then unknown too)."""
    here = launch_directory(view)
    if here is None:
        return CodeReading(Facts(), [f"{view.entry}: not read: {unknown_directory(view, view.entry)}"])
    own = [p for p in launch_pythonpath(view) if (here / p).resolve() != ROOT]
    positionals = [a.value or "" for a in view.launch.positionals] if view.launch else []
    return read_training_code(
        view.entry or "", view.kind, here, own, flag_inputs(view), _config_source(view), positionals
    )


def _config_source(view: TargetView):
    """The reader's ConfigSource: a config path as the code gets it, read from the launch's directory."""

    def read(text: str) -> dict[str, tuple[object, str]] | str:
        path = launch_path(view, text)
        if path is None:
            return unknown_directory(view, text)
        if not path.is_file():
            return f"{text} is not on this machine"
        try:
            return load_config_file(path)
        except DoctorInputError as err:
            return str(err)

    return read


def code_facts(facts: Facts, view: TargetView) -> dict[str, object]:
    """Fill the run facts of a launch of code the doctor does not know; returns {dest: value}."""
    if view.entry is None:
        return _by_name(facts, view)
    reading = read_launch_code(view)
    if reading.entry_missing:  # never a report of SKIPs on code nobody read
        given = " ".join(f"{f.option or '--' + n} {f.value}" for n, f in view.flags.items())
        raise DoctorInputError(view.origin(), f"{reading.entry_missing}; flags read: {given or 'none'}")
    view.notes += reading.notes
    if launch_directory(view) is None:  # what only the code says: absent, and why
        for prefix in ("code.", "scale.", "loss."):
            facts.mark_unknown(prefix, unknown_directory(view, view.entry))
    else:
        unread = [n for n in reading.notes if "the training code was not read" in n]
        why = unread[0] if unread else f"{view.entry} was read as text (never run) and does not establish it"
        for prefix in CODE_ONLY:
            facts.mark_unknown(prefix, why)
        if reading.parser is None:  # run facts only from the launch's flags: a default is unknown
            facts.mark_unknown("train.", unread[0] if unread else f"{view.entry}: no argument parser read")
    for name, fact in reading.facts.items():
        facts.set(name, fact.value, fact.source)
    for name, why in reading.facts.unknowns().items():
        facts.mark_unknown(name, why)
    for name, why in reading.unknown.items():
        facts.mark_unknown(name, why)
    if reading.parser is None:
        view.notes.append(f"{view.entry}: no argument parser read: run facts come from the launch's flags by name")
        return _by_name(facts, view)
    values: dict[str, object] = {}
    config = _config_values(facts, view, reading)
    resume_flag = facts.value("code.resume_flag")  # the flag the code loads a checkpoint from
    for fact, dests in FACT_DESTS:
        if fact == "train.resume_from_checkpoint" and resume_flag:
            dests = (resume_flag,)
        dest = next((d for d in dests if reading.parser.option(d) is not None), None)
        given = dest is not None and reading.flags is not None and dest in reading.flags.accepted
        got = None if given else _from_config(config, fact)
        if got is None and dest is not None:
            got = _value(reading, dest)
        dest = dest or dests[0]
        if got is None:
            continue
        value, source, known = got
        if not known:
            facts.mark_unknown(fact, unknown_flag(source))
            continue
        values[dest] = value
        if fact == "train.max_steps" and (value is None or value <= 0):
            continue
        if fact == "train.resume_from_checkpoint" and value in (False, "False", "false", ""):
            continue
        if fact == "train.resume_from_checkpoint" and dest == resume_flag and facts.value("train.auto_resume"):
            continue  # `--resume latest`: the code's own auto-resume (train.auto_resume_path), no path
        facts.set(fact, value, source)
    if reading.model is not None:  # the batch a DataLoader gets, the lr an optimizer gets: over names
        apply_uses(facts, reading.model.interp.uses)
    if "train.fp16" not in facts and (reading.parser.option("precision") is not None or "precision" in config):
        _precision(facts, reading, config.get("precision"))
    apply_step(facts, reading.step, lambda dest: _option(reading, dest))  # what the code's own step does
    _lr_range(facts)
    for dest in fact_dests("data.max_boxes"):  # boxes kept per image (FG-CLIP's --max_boxes)
        got = _value(reading, dest) if reading.parser.option(dest) else None
        if got is not None and got[2] and isinstance(got[0], int):
            facts.set("data.max_boxes", got[0], got[1])
    for dest in ("data_path", "max_boxes", "model_name_or_path"):
        got = _value(reading, dest) if reading.parser.option(dest) else None
        if got is not None and got[2]:
            values[dest] = got[0]
    _base_model(facts, reading, view)
    for pending in reading.weights:
        weight_read(facts, pending.fact, pending.value, view)
    text_ids(facts, reading, view, _value)
    return values


def _option(reading: CodeReading, dest: str) -> str:
    """The flag as the code's parser spells it (`disable_amp` -> `--disable-amp`)."""
    opt = reading.parser.option(dest) if reading.parser else None
    if opt is not None and not opt.options:  # a config class's attribute: no flag spells it
        return dest
    return opt.options[0] if opt is not None else f"--{dest}"


def _value(reading: CodeReading, dest: str) -> tuple[object, str, bool] | None:
    """(value, source, known) of `dest`: the launch's typed flag, else the code's default."""
    if reading.flags and dest in reading.flags.accepted:
        a = reading.flags.accepted[dest]
        return a.value, a.source, a.value is not None
    default = reading.default(dest)
    if default is None:
        return None
    value, declared = default
    where = f"default ({declared})" if declared.startswith("transformers") else f"{declared} default"
    return value, where, True


def _config_values(facts: Facts, view: TargetView, reading: CodeReading) -> dict[str, tuple[object, str]]:
    """The config files the code loads from its flags (code.config_loads), read like flags:
    {dotted key: (value, `file:line key`)}; a file not readable here leaves its values unknown."""
    out: dict[str, tuple[object, str]] = {}
    for load in facts.value("code.config_loads") or []:
        got = _value(reading, load["dest"])
        if got is None or not got[2] or not got[0]:
            why = unknown_flag(got[1]) if got else f"--{load['dest']} not given"
            facts.mark_unknown("code.config_values", f"{load['at']} loads --{load['dest']}: {why}")
            continue
        path = launch_path(view, got[0])
        if path is None or not path.is_file():
            where = unknown_directory(view, got[0]) if path is None else f"{got[0]} is not on this machine"
            facts.mark_unknown("code.config_values", f"{load['at']} loads {where}")
            continue
        read = load_config_file(path)
        out.update(read)
        facts.set("code.config_values", {k: v for k, (v, _) in read.items()}, f"{got[0]} ({got[1]}, {load['at']})")
    return out


def _from_config(config: dict[str, tuple[object, str]], fact: str) -> tuple[object, str, bool] | None:
    for section in _SECTIONS:
        for key in CONFIG_KEYS.get(fact, ()):
            if section + key in config:
                value, source = config[section + key]
                if isinstance(value, str) and fact not in ("train.output_dir",):
                    try:  # PyYAML reads `lr: 1e-4` (no dot) as text; the number is what is meant
                        value = float(value) if not value.isdigit() else int(value)
                    except ValueError:
                        pass
                return value, source, value is not None
    return None


def _lr_range(facts: Facts) -> None:
    """optim.group_lr_range: the layer-wise decay's lowest and highest multipliers × the base LR."""
    scales, lr = facts.value("optim.layer_decay_scales"), facts.value("train.learning_rate")
    if not scales or not isinstance(lr, (int, float)):
        if "optim.layer_decay" in facts:
            facts.mark_unknown("optim.group_lr_range", "the layer-wise decay's range or the base LR is not known")
        return
    facts.set(
        "optim.group_lr_range",
        {k: [lr * scales[k][0], scales[k][1]] for k in ("lowest", "highest")},
        f"{facts.source('train.learning_rate')} × {facts.source('optim.layer_decay_scales')}",
    )


def _precision(facts: Facts, reading: CodeReading, from_config: tuple[object, str] | None = None) -> None:
    got = (*from_config, True) if from_config is not None else _value(reading, "precision")
    if got is None or not got[2]:
        return
    text, source, _ = got
    kind, what = precision(str(text)) or (None, "")
    if kind is None:
        return
    src = f"{source}: {_option(reading, 'precision')} {text} is {what}"
    facts.set("train.fp16", kind == "fp16", src)
    facts.set("train.bf16", kind == "bf16", src)
    fix = next((f.fixes["fp16"] for f in REGISTRY if text in f.precision and "fp16" in f.fixes), None)
    if fix and _option(reading, "precision") == "precision":  # a config class's value, not a flag
        name, _, value = fix.partition(" ")
        fix = f'{name.lstrip("-")} = "{value}" in {reading.parser.where}'
    if fix:
        facts.set("code.fix.fp16", fix, f"{source}: the --precision family's spelling")


def _base_model(facts: Facts, reading: CodeReading, view: TargetView) -> None:
    """model.fine_tuning / model.base from a `model_name_or_path` flag; the base's global scale
    when its weights are readable here; a scale copied from it then starts at that value."""
    got = _value(reading, "model_name_or_path") if reading.parser.option("model_name_or_path") else None
    if got is None or not got[2]:
        return
    base, source, _ = got
    facts.set("model.fine_tuning", bool(base), source if base else f"{source}: no base model")
    if not base:
        return
    facts.set("model.base", base, source)
    where = launch_path(view, base)  # a hub name is no folder from any directory
    if where is None or not where.is_dir():
        facts.set("model.base_readable", False, f"{base} is not readable here: the base scale is unknown")
        return
    facts.set("model.base_readable", True, str(base))
    scalars = read_scalars(str(where), ["logit_scale"])
    if "logit_scale" not in scalars:
        return
    value, src = scalars["logit_scale"]
    facts.set("scale.global.base", float(value), src)
    for scale in ("global", "finegrained", "hardneg"):
        if facts.value(f"scale.{scale}.init_from") == "copy of logit_scale":
            at = facts.source(f"scale.{scale}.init_from")
            facts.set(f"scale.{scale}.init", float(value), f"{at}: a copy of the base's logit_scale ({src})")


def _by_name(facts: Facts, view: TargetView) -> dict[str, object]:
    """No code to type the flags against: the HF-named keys by their name, no defaults."""
    values: dict[str, object] = {}
    fact_of = {dests[0]: fact for fact, dests in FACT_DESTS}
    for name, kind in BY_NAME.items():
        flag = view.flags.get(name)
        if flag is None:
            continue
        if flag.value is None:
            facts.mark_unknown(fact_of[name], unknown_flag(flag.source))
            continue
        try:
            value = coerce(flag.value, kind)
        except ValueError:
            continue
        values[name] = value
        if name == "max_steps" and value <= 0:
            continue
        facts.set(fact_of[name], value, flag.source)
    return values


def settle_args_file(view: TargetView) -> None:
    """An args file alone: fgclip.train's only when each key is one of its arguments."""
    if not view.args_file_only or not view.is_subject:
        return
    why = subject_unavailable()
    if why:  # its argument classes cannot be imported here (transformers 4): read the keys by name
        view.subject, view.entry = False, None
        view.notes.append(
            f"{view.target}: an args file names no training code, and {why.split(':')[0]}: "
            "its keys are read by name, without any defaults"
        )
        return
    from fgclip_doctor.bundled import pin_subject

    pin_subject()
    from fgclip import train

    classes = (train.ModelArguments, train.DataArguments, train.TrainingArguments)
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    foreign = sorted(k for k in view.flags if k not in known and k != "preset")
    if not foreign:
        view.notes.append(f"{view.target}: an args file names no training code; its keys are all fgclip.train's")
        return
    shown = ", ".join(foreign[:4]) + (" ..." if len(foreign) > 4 else "")
    view.subject, view.entry = False, None
    view.notes.append(
        f"{view.target}: an args file names no training code, and {shown} are not fgclip.train's arguments: "
        "its keys are read by name, without any defaults (give the launch script to read the code)"
    )
