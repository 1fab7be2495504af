"""What a check-config target says: the flags a training will receive, each with its provenance.

A target is a launch script (.sh, parsed never executed), an args file (.json / .yaml as
HfArgumentParser reads them), a training script or module with its own arguments
(`train.py -- --lr 1e-4`, `-m pkg.mod -- ...`, read as `python train.py ...` would run it), or
nothing (the bundled default run: the subject's `tiny` preset).
The subject's `--preset NAME` is expanded here (its flags first, yours win, as fgclip.train does).

Whether a launch runs the bundled subject is decided the way Python would resolve its entry from
the launch's directory: `-m fgclip.train` next to FG-CLIP's own `fgclip/` package runs that
package, not the subject.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from fgclip_doctor.bundled import PACKAGE, own_package_named_fgclip
from fgclip_doctor.errors import DoctorInputError, DoctorUsageError
from fgclip_doctor.sources.files import display_path
from fgclip_doctor.sources.launch.args import load_args_file
from fgclip_doctor.sources.launch.script import ArgValue, Launch, parse_launch_script

SUBJECT_MODULE = "fgclip.train"
SUBJECT_PRESETS_FILE = "fgclip/presets.py"


@dataclass
class Flag:
    value: object  # str from a script; a JSON type from an args file
    source: str
    option: str = ""  # as spelled in the launch (`--batch-size`); "" = `--<name>`
    bare: bool = False  # given without a value (`--do_train`)
    attached: bool = False  # `--x=v`: argparse takes v even when it looks like an option (`--x=-1e39`)
    earlier: tuple[Flag, ...] = ()  # the same flag given before: argparse types each (`--seed 1e20 ... --seed 0`)

    def argv(self, option: str, keep_bare: bool = True) -> list[str]:
        """The flag as the launch hands it to its parser, under `option`: `--x=v` stays attached
        (argparse takes `--x=-1e39`, and refuses `--x -1e39`: "expected one argument"), a bare
        `--do_train` stays bare unless `keep_bare` is False (then `--do_train true`)."""
        if self.bare and keep_bare:
            return [option]
        value = str(self.value).lower() if isinstance(self.value, bool) else str(self.value)
        return [f"{option}={value}"] if self.attached else [option, value]


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
    entry_kind: str = ""  # "module" (`-m`) or "script"; "" = guessed from the entry's spelling
    launch: Launch | None = None  # the parsed launch script, when the target is one
    args_file_only: bool = False  # an args file alone: it names no training code
    subject: bool | None = None  # resolved from the launch's directory (None: by the entry's name)
    directory: Path | None = field(default_factory=Path.cwd)  # where the launch runs; None: unknown
    directory_source: str = "the directory fgclip-doctor runs from"  # or why it is unknown

    @property
    def is_subject(self) -> bool:
        """True when the launch runs the bundled FG-CLIP subject (`fgclip.train`)."""
        if self.subject is not None:
            return self.subject
        e = (self.entry or "").replace("\\", "/")
        return e == SUBJECT_MODULE or e.endswith("fgclip/train.py")

    @property
    def kind(self) -> str:
        """How the launcher runs the entry: "module" (`-m`) or "script"."""
        if self.entry_kind:
            return self.entry_kind
        return "script" if (self.entry or "").endswith(".py") or "/" in (self.entry or "") else "module"

    def origin(self) -> str:
        """The file the flags came from (for error messages)."""
        return self.target or SUBJECT_PRESETS_FILE


def _pairs(tokens: list[str], source: str, cite_flag: bool = False) -> dict[str, Flag]:
    """`--k v --flag --k2=v2` -> {k: v, flag: "True", k2: v2} (last wins, as argparse).
    `cite_flag`: each source names its flag (`command line --lr`)."""
    out: dict[str, Flag] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--"):
            option, eq, val = tok.partition("=")
            bare = False
            if not eq:
                nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                if nxt is not None and not nxt.startswith("--"):
                    val, i = nxt, i + 1
                else:
                    val, bare = "True", True
            where = f"{source} {option}" if cite_flag else source
            key = option[2:].replace("-", "_")
            before = out.get(key)
            earlier = (*before.earlier, replace(before, earlier=())) if before is not None else ()
            out[key] = Flag(val, where, option, bare, attached=bool(eq), earlier=earlier)
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


def launch_directory(view: TargetView) -> Path | None:
    """The directory the launch runs in: where its entry, its own packages and every relative path
    it names are resolved from. The directory the doctor runs from, moved by the launch script's
    own `cd` / `pushd` (sources/launch/directory.py); None when a `cd` goes somewhere the doctor
    cannot know (`view.directory_source` names the line)."""
    return view.directory


def launch_path(view: TargetView, text: object) -> Path | None:
    """A path the launch names, as its process would open it: absolute as written, relative from
    the launch's directory; None when relative and that directory is unknown."""
    path = Path(str(text))
    if path.is_absolute():
        return path
    here = launch_directory(view)
    return None if here is None else here / path


def unknown_directory(view: TargetView, text: object) -> str:
    """Why the relative path `text` is not resolved (for Facts.mark_unknown)."""
    return f"{text} is relative to the launch's directory, which is unknown ({view.directory_source})"


def launch_pythonpath(view: TargetView, environ: dict[str, str] | None = None) -> list[str]:
    """The launch's PYTHONPATH entries: the script's `export PYTHONPATH=...`, else the environment's."""
    env = view.launch.env if view.launch is not None else {}
    if "PYTHONPATH" in env:
        text = env["PYTHONPATH"].value or ""
    else:
        text = (os.environ if environ is None else environ).get("PYTHONPATH", "")
    return [p for p in text.split(os.pathsep) if p]


def search_roots(view: TargetView) -> list[Path]:
    """Where the launch's Python looks first: sys.path[0] (the launch directory for `-m`, the
    script's folder otherwise), then PYTHONPATH, relative to the launch directory."""
    entry = launch_path(view, "." if view.kind == "module" else view.entry or ".")
    first = entry if view.kind == "module" or entry is None else entry.parent
    roots = [first, *(launch_path(view, p) for p in launch_pythonpath(view))]
    return [r for r in roots if r is not None]  # relative to an unknown directory: not searched


def own_fgclip(view: TargetView) -> Path | None:
    """The launch's own package named `fgclip` (FG-CLIP's), when its Python would import it."""
    return own_package_named_fgclip(search_roots(view))


def _runs_subject(view: TargetView) -> bool:
    """Whether the launch runs the bundled subject, as Python would resolve its entry."""
    entry = (view.entry or "").replace("\\", "/")
    if entry == SUBJECT_MODULE:
        return own_fgclip(view) is None
    if entry.endswith("fgclip/train.py"):
        path = launch_path(view, entry)
        return path is None or not path.is_file() or path.resolve() == (PACKAGE / "train.py").resolve()
    return False


def _settle(view: TargetView) -> TargetView:
    view.subject = _runs_subject(view)
    _expand_preset(view)
    return view


def program_target(target: Path | None, module: str | None, argv: list[str] | None) -> TargetView | None:
    """The CLI's `train.py -- ARGS` / `-m pkg.mod -- ARGS` as a TargetView; None when the target is a
    launch script, an args file or nothing (then no arguments may follow `--`)."""
    argv = list(argv or [])
    if module is not None and target is not None:  # `-m pkg -- --lr 1`: the CLI hands `--lr` to TARGET
        argv, target = [str(target), *argv], None
    if module is None and (target is None or Path(target).suffix != ".py"):
        if argv:
            raise DoctorUsageError("arguments after `--` go to a training script (train.py) or -m MODULE")
        return None
    return read_program_target(target, module, argv)


def read_program_target(script: Path | None, module: str | None, argv: list[str]) -> TargetView:
    """`train.py -- --flag v ...` or `-m pkg.mod -- ...`: one process, as `python train.py ...` runs it."""
    if (script is None) == (module is None):
        raise DoctorUsageError("give a training script or -m MODULE (not both)")
    if script is not None and not Path(script).is_file():
        raise DoctorInputError(script, "no such training script")
    entry = module if module is not None else str(script)
    view = TargetView(
        entry if script is not None else f"-m {module}",
        entry,
        "python",
        _pairs(list(argv), "command line", cite_flag=True),
        entry_kind="module" if module is not None else "script",
    )
    return _settle(view)


def live_own_fgclip(view: TargetView) -> Path | None:
    """The launch's own package called `fgclip` (FG-CLIP's), when it runs one or could import one
    (also from the doctor's sys.path): in the doctor's process that name is the bundled subject,
    so `live` runs such a launch in a child process."""
    if view.is_subject or not view.entry:
        return None
    here = [] if launch_directory(view) is None else [launch_directory(view)]
    roots = [*search_roots(view), *here, *(Path(p or ".") for p in sys.path)]
    return own_package_named_fgclip([r for r in roots if r.resolve() != PACKAGE.parent])


#: Every kind of target check-config and live take, for the error that refuses anything else.
TARGET_KINDS = (
    "a launch script (.sh), a training script (.py, its arguments after --), an args file "
    "(.json / .yaml), or a module (-m MODULE)"
)


def live_target(target: Path | None, module: str | None, argv: list[str] | None) -> TargetView | None:
    """The launch `live` runs (None: the bundled default run)."""
    return program_target(target, module, argv) or (read_target(target) if target is not None else None)


def _launch_flag(launch: Launch, name: str, arg: ArgValue) -> Flag:
    """A script's flag, cited by its line (`train.sh:14 --lr`), with its earlier occurrences."""
    bare = arg.value == "True" and " " not in arg.raw and "=" not in arg.raw
    attached = "=" in (arg.raw.split() or [""])[0]  # `--x=v`, not `--x v`
    option = arg.flag or f"--{name}"
    earlier = tuple(_launch_flag(launch, name, e) for e in arg.earlier)
    return Flag(arg.value, f"{display_path(launch.path)}:{arg.line} {option}", option, bare, attached, earlier)


def read_target(target: Path | TargetView | None, environ: dict[str, str] | None = None) -> TargetView:
    """Turn a check-config target into a TargetView (raises DoctorInputError on bad input).
    A TargetView already read (a training script with its arguments) is returned as it is."""
    if isinstance(target, TargetView):
        return target
    if target is None:
        view = TargetView(None, SUBJECT_MODULE, flags={"preset": Flag("tiny", "default run (fgclip-doctor)")})
        view.subject = True
        _expand_preset(view)
        return view
    path = Path(target)
    if not path.exists():
        raise DoctorInputError(path, "no such file or directory")
    if path.is_dir():
        raise DoctorInputError(path, f"is a directory: give {TARGET_KINDS}")
    if path.suffix == ".py":
        return read_program_target(path, None, [])
    if path.suffix in (".json", ".yaml", ".yml"):
        flags = {k: Flag(v, s) for k, (v, s) in load_args_file(path).items()}
        view = TargetView(display_path(path), SUBJECT_MODULE, flags=flags, args_file_only=True)
        return _settle(view)  # whether its keys are fgclip.train's is settled against the subject's parser
    launch = parse_launch_script(path, dict(os.environ) if environ is None else environ)
    flags = {}
    if launch.args_file is not None and launch.args_file.value:
        af = Path(launch.args_file.value)
        if not af.is_absolute():
            if launch.directory is None:
                raise DoctorInputError(path, f"{af}: {launch.directory_source}")
            af = launch.directory / af
        flags.update({k: Flag(v, s) for k, (v, s) in load_args_file(af).items()})
    for name, arg in launch.args.items():
        flags[name] = _launch_flag(launch, name, arg)
    view = TargetView(
        display_path(path),
        launch.entry,
        launch.launcher,
        flags,
        (launch.nproc, launch.nproc_source),
        (launch.nnodes, launch.nnodes_source),
        list(launch.notes),
        list(launch.unresolved),
        launch.entry_kind,
        launch,
        directory=launch.directory,
        directory_source=launch.directory_source,
    )
    return _settle(view)
