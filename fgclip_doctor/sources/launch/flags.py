"""Typed flags: the launch's flags typed the way the training's HfArgumentParser types them.

For the bundled subject the parser is its own (ModelArguments, DataArguments, TrainingArguments);
for code the doctor does not know, transformers' TrainingArguments only. Every value keeps the
source it came from (a flag's `path:line --flag`, or the default it fell back to).
"""

from __future__ import annotations

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.launch.target import TargetView

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
