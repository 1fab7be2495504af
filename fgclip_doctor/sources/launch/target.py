"""What a check-config target says: the flags a training will receive, each with its provenance.

A target is a launch script (.sh, parsed never executed), an args file (.json / .yaml as
HfArgumentParser reads them), or nothing (the bundled default run: the subject's `tiny` preset).
The subject's `--preset NAME` is expanded here (its flags first, yours win, as fgclip.train does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.files import display_path
from fgclip_doctor.sources.launch.args import load_args_file
from fgclip_doctor.sources.launch.script import format_source, parse_launch_script

SUBJECT_MODULE = "fgclip.train"
SUBJECT_PRESETS_FILE = "fgclip/presets.py"


@dataclass
class Flag:
    value: object  # str from a script; a JSON type from an args file
    source: str


@dataclass
class TargetView:
    """The flags a training receives and how it is launched."""

    target: str | None
    entry: str | None
    launcher: str = "python"
    flags: dict[str, Flag] = field(default_factory=dict)
    nproc: tuple[int | None, str] = (1, "default: one process")
    nnodes: tuple[int | None, str] = (1, "default: one node")
    notes: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)

    @property
    def is_subject(self) -> bool:
        """True when the launch runs the bundled FG-CLIP subject (`fgclip.train`)."""
        e = (self.entry or "").replace("\\", "/")
        return e == SUBJECT_MODULE or e.endswith("fgclip/train.py")

    def origin(self) -> str:
        """The file the flags came from (for error messages)."""
        return self.target or SUBJECT_PRESETS_FILE


def _pairs(tokens: list[str], source: str) -> dict[str, Flag]:
    """`--k v --flag --k2=v2` -> {k: v, flag: "True", k2: v2} (last wins, as argparse)."""
    out: dict[str, Flag] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--"):
            name, eq, val = tok[2:].partition("=")
            if not eq:
                nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                if nxt is not None and not nxt.startswith("--"):
                    val, i = nxt, i + 1
                else:
                    val = "True"
            out[name.replace("-", "_")] = Flag(val, source)
        i += 1
    return out


def preset_flags(name: str, source_prefix: str = SUBJECT_PRESETS_FILE) -> dict[str, Flag]:
    """The subject's preset flags, with data paths in its default cache (nothing generated)."""
    from fgclip.presets import PRESETS, default_cache

    if name not in PRESETS:
        raise DoctorInputError(source_prefix, f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})")
    return _pairs(PRESETS[name].format(data=default_cache()).split(), f"{source_prefix} preset {name}")


def _expand_preset(view: TargetView) -> None:
    preset = view.flags.get("preset")
    if view.is_subject and preset is not None and preset.value:
        flags = preset_flags(str(preset.value))
        flags.update(view.flags)  # the user's flags win
        view.flags = flags


def read_target(target: Path | None, environ: dict[str, str] | None = None) -> TargetView:
    """Turn a check-config target into a TargetView (raises DoctorInputError on bad input)."""
    if target is None:
        view = TargetView(None, SUBJECT_MODULE, flags={"preset": Flag("tiny", "default run (fgclip-doctor)")})
        _expand_preset(view)
        return view
    path = Path(target)
    if not path.exists():
        raise DoctorInputError(path, "no such file or directory")
    if path.is_dir():
        raise DoctorInputError(path, "is a directory: give a launch script (.sh) or an args file (.json / .yaml)")
    if path.suffix in (".json", ".yaml", ".yml"):
        flags = {k: Flag(v, s) for k, (v, s) in load_args_file(path).items()}
        view = TargetView(
            display_path(path),
            SUBJECT_MODULE,
            flags=flags,
            notes=[f"{display_path(path)}: an args file names no training code; read as fgclip.train's"],
        )
        _expand_preset(view)
        return view
    launch = parse_launch_script(path, dict(os.environ) if environ is None else environ)
    flags = {}
    if launch.args_file is not None and launch.args_file.value:
        af = Path(launch.args_file.value)
        flags.update({k: Flag(v, s) for k, (v, s) in load_args_file(af).items()})
    for name, arg in launch.args.items():
        flags[name] = Flag(arg.value, format_source(launch, name))
    view = TargetView(
        display_path(path),
        launch.entry,
        launch.launcher,
        flags,
        (launch.nproc, launch.nproc_source),
        (launch.nnodes, launch.nnodes_source),
        list(launch.notes),
        list(launch.unresolved),
    )
    _expand_preset(view)
    return view
