"""Parse (never execute) the shell script that launches training.

The script is read the way bash reads it (comments, `\\` continuations, quotes, `$VAR`,
`${VAR:-default}`, `$((a*b))`, redirections) but nothing runs: command substitutions,
`source` and the user's code stay unexecuted. The first command that launches Python training
becomes a `Launch`; each value keeps the physical line it is written on, so a check can cite
`scripts/train.sh:14 --gradient_accumulation_steps`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.files import display_path, read_text_file
from fgclip_doctor.sources.launch.directory import DIRECTORY_COMMANDS, DirectoryExpander, conditional_command
from fgclip_doctor.sources.launch.launchers import WRAPPERS, Opt, sbatch_headers, slurm_environment, wrapper_options
from fgclip_doctor.sources.launch.shell import Field, Lexer, Word, plain
from fgclip_doctor.sources.launch.world import launch_world, wrapped_world

NO_LAUNCH = (
    "no training launch found (looked for deepspeed / torchrun / python -m / accelerate launch, "
    "under srun / mpirun / mpiexec)"
)


@dataclass
class ArgValue:
    """A value as the script gives it: expanded text (None when it depends on something the
    doctor cannot know: an unset variable, `$(cmd)`), its 1-based physical line, the text as
    written (`--lr $LR`), and the option as spelled (`--gradient-accumulation-steps`)."""

    value: str | None
    line: int
    raw: str
    flag: str = ""
    earlier: tuple[ArgValue, ...] = ()  # the same flag given before (argparse types every occurrence)


@dataclass
class Launch:
    """The training launch found in a script. `args` / `launcher_args` keys are option names
    without dashes, `-` normalised to `_` (HfArgumentParser accepts both spellings)."""

    path: Path
    launcher: str  # deepspeed | torchrun | accelerate | python | srun | mpirun
    entry: str  # module (`fgclip.train`) or script path (`fgclip/train/train_fgclip.py`)
    entry_line: int
    entry_kind: str = "script"  # "module" or "script"
    args: dict[str, ArgValue] = field(default_factory=dict)
    launcher_args: dict[str, ArgValue] = field(default_factory=dict)
    env: dict[str, ArgValue] = field(default_factory=dict)
    nproc: int | None = None
    nproc_source: str = ""
    nnodes: int | None = 1
    nnodes_source: str = "default: one node"
    args_file: ArgValue | None = None  # `python train.py args.json`
    positionals: list[ArgValue] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was skipped or guessed, with lines
    directory: Path | None = None  # where the launch runs (after the script's `cd`s); None: unknown
    directory_source: str = ""  # the line that set it, or why it is unknown

    @property
    def world_size(self) -> int | None:
        """nproc * nnodes, or None when either is unknown."""
        if self.nproc is None or self.nnodes is None:
            return None
        return self.nproc * self.nnodes


def parse_launch_script(path: str | Path, environ: dict[str, str] | None = None) -> Launch:
    """Read a shell launch script without running it and return its training launch.

    `environ`: the environment the script would inherit (bash sees `$HOME` and friends); a
    variable the script does not set resolves from it, else it is unresolved.
    Raises DoctorInputError for a missing / binary / non-UTF-8 file, or when no command in it
    launches Python training.
    """
    path = Path(path)
    text = read_text_file(path)
    lexer = Lexer(text)
    commands = lexer.commands()
    interpreter = _Interpreter(path, environ)
    interpreter.allocate(sbatch_headers(text, display_path(path)))
    return interpreter.run(commands, lexer.separators)


def format_source(launch: Launch, flag: str) -> str:
    """Provenance of `flag` (with or without dashes, or an env name) in `launch`, e.g.
    `scripts/train.sh:14 --gradient_accumulation_steps`; `<path> (--flag not given)` if absent."""
    rel = display_path(launch.path)
    name = flag.lstrip("-").replace("-", "_")
    for table in (launch.args, launch.launcher_args):
        if name in table:
            return f"{rel}:{table[name].line} {table[name].flag or '--' + name}"
    if flag in launch.env:
        return f"{rel}:{launch.env[flag].line} {flag}"
    return f"{rel} (--{name} not given)"


# --------------------------------------------------------------------------- interpreting
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
_PYTHON = re.compile(r"python[0-9.]*")
_BLOCK_OPEN = {"if", "while", "until", "for", "case", "select"}
_PREFIX_KEYWORDS = {"then", "else", "do", "{", "!"}
_WRAPPERS = {"nohup", "exec", "time", "command", "builtin"}
_NOT_TRAINING = {"pip", "venv", "ensurepip", "pytest", "fgclip_doctor", "json.tool", "http.server"}
# lookup tables, kept as tables:
# fmt: off
_LAUNCHER_MODULES = {"torch.distributed.run": "torchrun", "torch.distributed.launch": "torchrun",
                     "deepspeed.launcher.runner": "deepspeed",
                     "accelerate.commands.launch": "accelerate"}
# Launcher options that take no value; every other option consumes the next word.
_BOOL_OPTS = {
    "deepspeed": {"module", "no_python", "no_local_rank", "no_ssh_check", "force_multi",
                  "save_pid", "elastic_training", "bind_cores_to_rank", "no_ssh"},
    "torchrun": {"module", "standalone", "no_python", "run_path", "use_env",
                 "virtual_local_rank"},
    "accelerate": {"module", "no_python", "multi_gpu", "cpu", "use_deepspeed", "use_fsdp",
                   "use_megatron_lm", "use_xpu", "debug", "quiet", "same_network", "tpu",
                   "enable_cpu_affinity", "downcast_bf16", "tpu_use_cluster", "tpu_use_sudo"},
}
_SHORT_OPTS = {"deepspeed": {"H": "hostfile", "i": "include", "e": "exclude"},
               "torchrun": {"m": "module", "r": "redirects", "t": "tee"},
               "accelerate": {"m": "module", "q": "quiet"}}
# fmt: on


class _Interpreter(DirectoryExpander):
    """Walks the commands with a variable table and the working directory; never runs anything."""

    def __init__(self, path: Path, environ: dict[str, str] | None = None) -> None:
        super().__init__(path, display_path(path), environ)
        self.path = path
        self.env: dict[str, ArgValue] = {}

    def allocate(self, headers: dict[str, Opt]) -> None:
        """A batch script's `#SBATCH` allocation: srun inherits it, and the job sees SLURM_* set."""
        self.sbatch = headers
        for name, (value, line) in slurm_environment(headers).items():
            self._set(name, ArgValue(value, line, f"#SBATCH ({name})", name), False)

    def run(self, commands: list[list[Word]], separators: list[str]) -> Launch:
        fallback = None
        depth = 0  # inside if / for / while / case / { }: assignments there are guesses
        for index, words in enumerate(commands):
            sep, previous = separators[index], commands[index - 1] if index else None
            while words and plain(words[0]) in _PREFIX_KEYWORDS:
                depth += plain(words[0]) == "{"
                words = words[1:]
            if not words:
                continue
            head, line = plain(words[0]), words[0].line
            if head in _BLOCK_OPEN or head in ("elif", "function", "[", "[[", "test"):
                depth += head in _BLOCK_OPEN
                self.notes.append(f"line {line}: `{head}` condition not evaluated")
                continue
            if head in ("fi", "done", "esac", "}"):
                depth = max(0, depth - 1)
                continue
            if head == "exit" and depth == 0 and not sep.endswith("||"):  # `cd x || exit 1` goes on
                break
            if head in DIRECTORY_COMMANDS:
                self.change_directory(words, conditional_command(depth, sep, previous))
                continue
            if head in ("source", "."):
                self.notes.append(f"line {line}: `{words[0].raw} ...` not followed; variables it sets are unknown")
                continue
            launch = self._command(words, depth > 0)
            if launch is None:
                continue
            # "First training launch": a helper such as `python tools/prepare.py` may come first,
            # so prefer a distributed launcher or an entry named like training.
            if launch.launcher != "python" or "train" in launch.entry.lower():
                self._stray_after(launch, commands[index + 1 :])
                return launch
            if fallback is None:
                self._stray_after(launch, commands[index + 1 :])
                fallback = launch
        if fallback is None:
            raise DoctorInputError(self.path, NO_LAUNCH)
        return fallback

    @staticmethod
    def _stray_after(launch: Launch, following: list[list[Word]]) -> None:
        """Note options orphaned right after the launch: bash ends a command at a comment line
        or at `\\ ` (backslash, space), so the flags below it never reach the training."""
        for words in following:
            head = plain(words[0])
            if head is None or not head.startswith("-"):
                return
            launch.notes.append(
                f"line {words[0].line}: `{head}` is not passed to the training "
                "(a comment or a space after `\\` ended the command above it)"
            )

    def _command(self, words: list[Word], guessed: bool) -> Launch | None:
        assigns = []
        while words and (a := self._assignment(words[0])):
            assigns.append(a)
            words = words[1:]
        if not words:
            for name, value in assigns:
                self._set(name, value, guessed)
            return None
        head = plain(words[0])
        if head in ("export", "declare", "typeset", "local", "readonly"):
            for w in words[1:]:
                if a := self._assignment(w):
                    self._set(*a, guessed)
            return None
        if head == "unset":
            for w in words[1:]:
                self.vars.pop(w.raw, None)
                self.env.pop(w.raw, None)
            return None
        # Bash expands the command's words before applying `VAR=x cmd` to cmd's environment.
        fields = [f for w in words for f in self.expand(w)]
        return self._launch(fields, dict(assigns))

    def _assignment(self, word: Word) -> tuple[str, ArgValue] | None:
        first = word.parts[0]
        m = _ASSIGN.match(first[1]) if first[0] == "lit" and not first[2] else None
        if not m:
            return None
        # Assignments are not word-split: expand everything as if it were quoted.
        parts = [("lit", first[1][m.end() :], True)] + [(k, t, True) for k, t, _ in word.parts[1:]]
        fields = self.expand(Word(parts, word.line, word.raw))
        value = None if fields and fields[0].unknown else "".join(f.text for f in fields)
        if m.group(2) and value is not None:  # `VAR+=x`
            old = self.vars.get(m.group(1), "")
            value = None if old is None else old + value
        return m.group(1), ArgValue(value, word.line, word.raw, m.group(1))

    def _set(self, name: str, value: ArgValue, guessed: bool) -> None:
        if guessed:
            kept = name in self.vars
            self.notes.append(
                f"line {value.line}: {name} assigned inside a block; "
                f"{'kept the earlier value' if kept else 'assumed this branch runs'}"
            )
            if kept:
                return
        self.vars[name] = value.value
        self.env[name] = value

    # ---- recognising the launch
    def _launch(self, fields: list[Field], inline: dict[str, ArgValue]) -> Launch | None:
        env = {**self.env, **inline}
        i = 0
        while i < len(fields):  # wrappers: nohup, env A=B, nice -n 5, ...
            text = fields[i].text
            m = _ASSIGN.match(text)
            if m and i > 0:
                env[m.group(1)] = ArgValue(
                    None if fields[i].unknown else text[m.end() :], fields[i].line, fields[i].raw, m.group(1)
                )
                i += 1
            elif text in _WRAPPERS:
                i += 1
            elif text in ("env", "nice", "stdbuf"):
                i += 1
                while i < len(fields) and fields[i].text.startswith("-"):
                    i += 2 if fields[i].text in ("-u", "-n", "-C", "-S") else 1
            else:
                break
        if i >= len(fields):
            return None
        prog, rest = Path(fields[i].text).name, fields[i + 1 :]
        if prog in WRAPPERS:  # srun / mpirun: the command they start, on the world they give it
            opts, j = wrapper_options(prog, rest, self.rel)
            launch = self._launch(rest[j:], inline)
            if launch is not None:
                wrapped_world(launch, prog, opts, getattr(self, "sbatch", {}))
            return launch
        launcher, entry, kind = {"deepspeed": "deepspeed", "torchrun": "torchrun"}.get(prog), None, "script"
        if prog == "accelerate" and rest and rest[0].text == "launch":
            launcher, rest = "accelerate", rest[1:]
        elif _PYTHON.fullmatch(prog):
            j = 0
            while j < len(rest) and rest[j].text.startswith("-") and rest[j].text != "-m":
                if rest[j].text in ("-c", "-", "-V", "--version", "-h", "--help"):
                    return None  # inline code / stdin / version query: not a training launch
                j += 2 if rest[j].text in ("-X", "-W") else 1
            if j >= len(rest) or (rest[j].text == "-m" and j + 1 >= len(rest)):
                return None
            if rest[j].text == "-m":
                entry, kind, j = rest[j + 1], "module", j + 1
                if entry.text in _NOT_TRAINING:
                    return None
            else:
                entry = rest[j]
            launcher, rest = _LAUNCHER_MODULES.get(entry.text, "python"), rest[j + 1 :]
            if launcher != "python":
                entry, kind = None, "script"
        if launcher is None:
            return None
        opts: dict[str, ArgValue] = {}
        if entry is None:
            opts, j = self._launcher_opts(rest, launcher)
            if j >= len(rest):
                return None
            entry, rest = rest[j], rest[j + 1 :]
            kind = "module" if "module" in opts else "script"
        found = (self.path, launcher, entry.text, entry.line, kind)
        launch = Launch(*found, launcher_args=opts, env=env, unresolved=list(self.unresolved), notes=list(self.notes))
        launch.directory = Path(self.cwd) if self.cwd is not None else None
        launch.directory_source = self.cwd_source
        self._train_args(launch, rest)
        launch_world(launch, self.rel)
        return launch

    def _launcher_opts(self, fields: list[Field], launcher: str) -> tuple[dict[str, ArgValue], int]:
        """The launcher's own options, up to the script / module (index returned)."""
        opts: dict[str, ArgValue] = {}
        k = 0
        while k < len(fields) and fields[k].text.startswith("-") and fields[k].text != "-":
            f = fields[k]
            if f.text == "--":
                return opts, k + 1
            flag, eq, value = f.text.partition("=")
            key = flag.lstrip("-").replace("-", "_")
            if not flag.startswith("--"):
                key = _SHORT_OPTS[launcher].get(key, key)
            nxt = fields[k + 1] if k + 1 < len(fields) else None
            if eq:
                opts[key] = ArgValue(None if f.unknown else value, f.line, f.raw, flag)
                k += 1
            # Unknown options take a value, except when that "value" is clearly the script.
            elif key in _BOOL_OPTS[launcher] or nxt is None or nxt.text.startswith("-") or nxt.text.endswith(".py"):
                opts[key] = ArgValue("True", f.line, f.raw, flag)
                k += 1
            else:
                opts[key] = _arg(nxt, flag, f"{f.raw} {nxt.raw}")
                k += 2
        return opts, k

    def _train_args(self, launch: Launch, fields: list[Field]) -> None:
        """The training program's arguments, argparse style: the last occurrence wins (earlier ones kept)."""
        k = 0
        while k < len(fields):
            f = fields[k]
            if not _is_flag(f):
                launch.positionals.append(_arg(f))
                k += 1
                continue
            flag, eq, value = f.text.partition("=")
            key = flag.lstrip("-").replace("-", "_")
            if eq:
                _put(launch.args, key, ArgValue(None if f.unknown else value, f.line, f.raw, flag))
                k += 1
            elif k + 1 < len(fields) and not _is_flag(fields[k + 1]):
                _put(launch.args, key, _arg(fields[k + 1], flag, f"{f.raw} {fields[k + 1].raw}"))
                k += 2
            else:  # `--do_train`: HfArgumentParser reads a bare bool flag as True
                _put(launch.args, key, ArgValue("True", f.line, f.raw, flag))
                k += 1
        if len(launch.positionals) == 1 and (launch.positionals[0].value or "").lower().endswith(
            (".json", ".yaml", ".yml")
        ):
            launch.args_file = launch.positionals[0]


def _put(args: dict[str, ArgValue], key: str, value: ArgValue) -> None:
    """`args[key] = value`, the last occurrence winning, the earlier ones kept in `value.earlier`."""
    before = args.get(key)
    if before is not None:
        value.earlier = (*before.earlier, ArgValue(before.value, before.line, before.raw, before.flag))
    args[key] = value


def _arg(f: Field, flag: str = "", raw: str | None = None) -> ArgValue:
    """The field as a launch value (None when unknown), cited by its line and text as written."""
    return ArgValue(None if f.unknown else f.text, f.line, raw or f.raw, flag)


def _is_flag(f: Field) -> bool:
    """`--x` / `-x` is an option; `-1`, `-1e-4` and `-` are values."""
    return f.text.startswith("-") and f.text != "-" and _int_or_float(f.text) is None


def _int_or_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
