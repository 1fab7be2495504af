"""Typed flags: the launch's flags typed the way the training's HfArgumentParser types them.

For the bundled subject the parser is its own (ModelArguments, DataArguments, TrainingArguments);
for code the doctor does not know, transformers' TrainingArguments only. Every value keeps the
source it came from (a flag's `path:line --flag`, or the default it fell back to).
"""

from __future__ import annotations

from fgclip_doctor.environment import quiet_transformers_without_torch
from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.launch.target import Flag, TargetView

HF_DEFAULT = "transformers.TrainingArguments default"


def _parser_for(view: TargetView):
    """HfArgumentParser over the subject's dataclasses, or transformers' TrainingArguments only."""
    quiet_transformers_without_torch()
    from transformers import HfArgumentParser, TrainingArguments

    if view.is_subject:
        from fgclip import train

        return HfArgumentParser((train.ModelArguments, train.DataArguments, train.TrainingArguments))
    return HfArgumentParser((TrainingArguments,))


class _Rejected(Exception):
    """argparse's error(), raised instead of exiting."""


def _argv(name: str, flag: Flag) -> list[str]:
    """The flag under its field's name, always with its value (HfArgumentParser types `--x True`)."""
    return flag.argv(f"--{name}", keep_bare=False)


def rejected_flags(view: TargetView, parser=None) -> list[dict[str, object]]:
    """The flags the training's own parser rejects, each parsed alone as the parser would: an
    unknown or ambiguous name, a value of the wrong type or outside its choices. Each is
    {flag, value, reason, source} (unknown-flag, FGD303, FAILs on them)."""
    parser = parser or _parser_for(view)

    def error(message: str):
        raise _Rejected(message)

    parser.error = error
    out = []
    for name, last in view.flags.items():
        if name in ("deepspeed", "preset"):
            continue
        for flag in (*last.earlier, last):  # argparse types every occurrence: an earlier bad value dies too
            if flag.value is None:
                continue
            try:
                _ns, unknown = parser.parse_known_args(_argv(name, flag))
                reason = "unrecognized argument" if any(u.startswith("--") for u in unknown) else None
            except _Rejected as err:
                reason = str(err)
            if reason:
                out.append({"flag": f"--{name}", "value": flag.value, "reason": reason, "source": flag.source})
                break  # one finding per flag: the first occurrence the parser refuses
    return out


def typed_args(view: TargetView, rejected: list[dict[str, object]]) -> tuple[dict[str, object], dict[str, str]]:
    """Every argument the parser knows: value (typed, default when not given) and its source.
    The flags the parser rejects (`rejected`, from rejected_flags) are left out: what the run would
    do with them is die at start, which unknown-flag reports."""
    parser = _parser_for(view)
    left_out = {str(r["flag"])[2:] for r in rejected}

    def error(message: str):
        raise DoctorInputError(view.origin(), f"bad arguments for {view.entry}: {message}")

    parser.error = error
    argv, skipped = [], []
    for name, flag in view.flags.items():
        if name in ("deepspeed", "preset") or name in left_out:  # a path / a name: nothing to type
            continue
        if flag.value is None:
            skipped.append(name)
            continue
        argv += _argv(name, flag)
    ns, _unknown = parser.parse_known_args(argv)
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
