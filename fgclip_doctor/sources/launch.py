"""Parse (never execute) the shell script that launches training.

The script is read the way bash reads it (comments, `\\` continuations, quotes, `$VAR`,
`${VAR:-default}`, `$((a*b))`, redirections) but nothing runs: command substitutions,
`source` and the user's code stay unexecuted. The first command that launches Python training
becomes a `Launch`; each value keeps the physical line it is written on, so a check can cite
`scripts/train.sh:14 --gradient_accumulation_steps`.
"""
from __future__ import annotations

import ast
import operator
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.args import display_path, read_text_file

NO_LAUNCH = ("no training launch found "
             "(looked for deepspeed / torchrun / python -m / accelerate launch)")


@dataclass
class ArgValue:
    """A value as the script gives it: expanded text (None when it depends on something the
    doctor cannot know: an unset variable, `$(cmd)`), its 1-based physical line, the text as
    written (`--lr $LR`), and the option as spelled (`--gradient-accumulation-steps`)."""

    value: str | None
    line: int
    raw: str
    flag: str = ""


@dataclass
class Launch:
    """The training launch found in a script. `args` / `launcher_args` keys are option names
    without dashes, `-` normalised to `_` (HfArgumentParser accepts both spellings)."""

    path: Path
    launcher: str  # deepspeed | torchrun | accelerate | python
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
    return _Interpreter(path, environ).run(_Lexer(read_text_file(path)).commands())


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


# --------------------------------------------------------------------------- lexing
@dataclass
class _Word:
    parts: list  # (kind, text, quoted); kind: lit | var (`${...}` body) | arith | cmd
    line: int
    raw: str


class _Lexer:
    """Split shell text into commands (lists of unexpanded words) at newlines, `;`, `&&`,
    `||`, `|`, `&`, `(`, `)`; drop comments, redirections and here-document bodies."""

    def __init__(self, text: str) -> None:
        self.t, self.i, self.line = text, 0, 1
        self.cmds: list[list[_Word]] = []
        self.words: list[_Word] = []
        self.parts: list | None = None
        self.start = self.wline = 0
        self.drop: str | None = None  # "target" / "<<" / "<<-": what the next word is for
        self.heredocs: list[tuple[str, bool]] = []

    def commands(self) -> list[list[_Word]]:
        t = self.t
        while self.i < len(t):
            c = t[self.i]
            if c == "\\":
                if t.startswith("\n", self.i + 1):  # continuation: the command goes on
                    self.i, self.line = self.i + 2, self.line + 1
                    continue
                self._lit(t[self.i + 1:self.i + 2], True)
                self.i += 2
            elif c == "\n":
                self._end()
                self.i, self.line = self.i + 1, self.line + 1
                self._skip_heredocs()
            elif c in " \t\r":
                self._flush()
                self.i += 1
            elif c == "#" and self.parts is None:  # a comment ends the line, continuation or not
                j = t.find("\n", self.i)
                self.i = len(t) if j < 0 else j
            elif c == "'":
                j = t.find("'", self.i + 1)
                j = len(t) if j < 0 else j
                self._lit(t[self.i + 1:j], True)
                self.line += t.count("\n", self.i, j)
                self.i = j + 1
            elif c == '"':
                self._double()
            elif c in "$`":
                self._start()
                self.parts.append(self._dollar(False))
            elif c in "<>" or t.startswith("&>", self.i):
                self._redirect()
            elif c in ";&|()":
                self._end()
                self.i += 1
            else:
                self._lit(c, False)
                self.i += 1
        self._end()
        return self.cmds

    def _start(self) -> None:
        if self.parts is None:
            self.parts, self.start, self.wline = [], self.i, self.line

    def _lit(self, text: str, quoted: bool) -> None:
        self._start()
        if self.parts and self.parts[-1][0] == "lit" and self.parts[-1][2] == quoted:
            self.parts[-1] = ("lit", self.parts[-1][1] + text, quoted)
        else:
            self.parts.append(("lit", text, quoted))

    def _flush(self) -> None:
        if self.parts is None:
            return
        word = _Word(self.parts, self.wline, self.t[self.start:self.i])
        self.parts = None
        if self.drop in ("<<", "<<-"):  # here-document delimiter: its body is skipped later
            self.heredocs.append(("".join(p[1] for p in word.parts), self.drop == "<<-"))
        elif self.drop is None:
            self.words.append(word)
        self.drop = None

    def _end(self) -> None:
        self._flush()
        if self.words:
            self.cmds.append(self.words)
        self.words, self.drop = [], None

    def _double(self) -> None:
        t = self.t
        self._start()
        self.i += 1
        buf = ""
        while self.i < len(t) and t[self.i] != '"':
            c = t[self.i]
            if c == "\\" and t[self.i + 1:self.i + 2] in ("$", "`", '"', "\\", "\n"):
                if t[self.i + 1] == "\n":
                    self.line += 1
                else:
                    buf += t[self.i + 1]
                self.i += 2
            elif c in "$`":
                self._lit(buf, True)
                buf = ""
                self.parts.append(self._dollar(True))
            else:
                self.line += c == "\n"
                buf += c
                self.i += 1
        self._lit(buf, True)
        self.i += 1

    def _dollar(self, quoted: bool) -> tuple:
        """Parse `$...` or a backquote at self.i into one part; advance past it."""
        t, i = self.t, self.i
        if t[i] == "`":
            j = t.find("`", i + 1)
            kind, body, end = "cmd", t[i + 1:j if j >= 0 else len(t)], (j + 1 if j >= 0 else len(t))
        elif t.startswith("$((", i):
            j = _close(t, i + 3, "(", ")")
            kind, body, end = "arith", t[i + 3:j], j + 2
        elif t.startswith("$(", i):
            j = _close(t, i + 2, "(", ")")
            kind, body, end = "cmd", t[i + 2:j], j + 1
        elif t.startswith("${", i):
            j = _close(t, i + 2, "{", "}")
            kind, body, end = "var", t[i + 2:j], j + 1
        else:
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]").match(t, i + 1)
            kind, body, end = ("var", m.group(), m.end()) if m else ("lit", "$", i + 1)
        self.line += t.count("\n", i, end)
        self.i = end
        return (kind, body, quoted)

    def _redirect(self) -> None:
        # `2>` : the digits belong to the operator, not to the command's arguments.
        if self.parts and len(self.parts) == 1 and self.parts[0][0] == "lit" \
                and not self.parts[0][2] and self.parts[0][1].isdigit():
            self.parts = None
        self._flush()
        m = re.compile(r"&?(<<<|<<-|<<|>>|>&|<&|>\||<>|>|<)").match(self.t, self.i)
        self.i = m.end()
        op = m.group(1)
        dup = re.compile(r"[0-9]+-?|-").match(self.t, self.i) if op in (">&", "<&") else None
        if dup:  # `2>&1`: no target word
            self.i = dup.end()
        else:
            self.drop = op if op in ("<<", "<<-") else "target"

    def _skip_heredocs(self) -> None:
        for delim, strip_tabs in self.heredocs:
            while self.i < len(self.t):
                j = self.t.find("\n", self.i)
                j = len(self.t) if j < 0 else j
                body = self.t[self.i:j]
                self.i, self.line = j + 1, self.line + 1
                if (body.lstrip("\t") if strip_tabs else body) == delim:
                    break
        self.heredocs = []


def _close(t: str, i: int, open_: str, close: str) -> int:
    """Index of the `close` that balances an already opened `open_` (len(t) if none)."""
    depth = 0
    for j in range(i, len(t)):
        if t[j] == open_:
            depth += 1
        elif t[j] == close:
            if depth == 0:
                return j
            depth -= 1
    return len(t)


# --------------------------------------------------------------------------- interpreting
@dataclass
class _Field:
    text: str
    unknown: bool  # depends on an unresolved variable or `$(cmd)`
    line: int
    raw: str

    def arg(self, flag: str = "", raw: str | None = None) -> ArgValue:
        return ArgValue(None if self.unknown else self.text, self.line, raw or self.raw, flag)


_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
_VAR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])(?:(:?[-=+?])(.*))?", re.S)
_PYTHON = re.compile(r"python[0-9.]*")
_BLOCK_OPEN = {"if", "while", "until", "for", "case", "select"}
_PREFIX_KEYWORDS = {"then", "else", "do", "{", "!"}
_WRAPPERS = {"nohup", "exec", "time", "command", "builtin"}
_NOT_TRAINING = {"pip", "venv", "ensurepip", "pytest", "fgclip_doctor", "json.tool", "http.server"}
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
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Mod: operator.mod,
          ast.Pow: lambda a, b: a ** b if 0 <= b <= 64 else _fail(),  # no 9**9**9 stalls
          ast.Div: lambda a, b: abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)}


def _plain(word: _Word) -> str | None:
    """The word's text when it is plain unquoted literal text (keywords, builtins), else None."""
    if len(word.parts) == 1 and word.parts[0][0] == "lit" and not word.parts[0][2]:
        return word.parts[0][1]
    return None


class _Interpreter:
    """Walks the commands with a variable table; never runs anything."""

    def __init__(self, path: Path, environ: dict[str, str] | None = None) -> None:
        self.path, self.rel = path, display_path(path)
        # Inherited environment first; the script's own assignments override it, as in bash.
        self.vars: dict[str, str | None] = dict(environ or {})  # None: assigned from something unknowable
        self.env: dict[str, ArgValue] = {}
        self.unresolved: list[str] = []
        self.notes: list[str] = []

    def run(self, commands: list[list[_Word]]) -> Launch:
        fallback = None
        depth = 0  # inside if / for / while / case / { }: assignments there are guesses
        for index, words in enumerate(commands):
            while words and _plain(words[0]) in _PREFIX_KEYWORDS:
                depth += _plain(words[0]) == "{"
                words = words[1:]
            if not words:
                continue
            head, line = _plain(words[0]), words[0].line
            if head in _BLOCK_OPEN or head in ("elif", "function", "[", "[[", "test"):
                depth += head in _BLOCK_OPEN
                self.notes.append(f"line {line}: `{head}` condition not evaluated")
                continue
            if head in ("fi", "done", "esac", "}"):
                depth = max(0, depth - 1)
                continue
            if head == "exit" and depth == 0:
                break
            if head in ("source", "."):
                self.notes.append(f"line {line}: `{words[0].raw} ...` not followed; "
                                  "variables it sets are unknown")
                continue
            launch = self._command(words, depth > 0)
            if launch is None:
                continue
            # "First training launch": a helper such as `python tools/prepare.py` may come first,
            # so prefer a distributed launcher or an entry named like training.
            if launch.launcher != "python" or "train" in launch.entry.lower():
                self._stray_after(launch, commands[index + 1:])
                return launch
            if fallback is None:
                self._stray_after(launch, commands[index + 1:])
                fallback = launch
        if fallback is None:
            raise DoctorInputError(self.path, NO_LAUNCH)
        return fallback

    @staticmethod
    def _stray_after(launch: Launch, following: list[list[_Word]]) -> None:
        """Note options orphaned right after the launch: bash ends a command at a comment line
        or at `\\ ` (backslash, space), so the flags below it never reach the training."""
        for words in following:
            head = _plain(words[0])
            if head is None or not head.startswith("-"):
                return
            launch.notes.append(f"line {words[0].line}: `{head}` is not passed to the training "
                                "(a comment or a space after `\\` ended the command above it)")

    def _command(self, words: list[_Word], guessed: bool) -> Launch | None:
        assigns = []
        while words and (a := self._assignment(words[0])):
            assigns.append(a)
            words = words[1:]
        if not words:
            for name, value in assigns:
                self._set(name, value, guessed)
            return None
        head = _plain(words[0])
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
        fields = [f for w in words for f in self._expand(w)]
        return self._launch(fields, dict(assigns))

    def _assignment(self, word: _Word) -> tuple[str, ArgValue] | None:
        first = word.parts[0]
        m = _ASSIGN.match(first[1]) if first[0] == "lit" and not first[2] else None
        if not m:
            return None
        # Assignments are not word-split: expand everything as if it were quoted.
        parts = [("lit", first[1][m.end():], True)] + [(k, t, True) for k, t, _ in word.parts[1:]]
        fields = self._expand(_Word(parts, word.line, word.raw))
        value = None if fields and fields[0].unknown else "".join(f.text for f in fields)
        if m.group(2) and value is not None:  # `VAR+=x`
            old = self.vars.get(m.group(1), "")
            value = None if old is None else old + value
        return m.group(1), ArgValue(value, word.line, word.raw, m.group(1))

    def _set(self, name: str, value: ArgValue, guessed: bool) -> None:
        if guessed:
            kept = name in self.vars
            self.notes.append(f"line {value.line}: {name} assigned inside a block; "
                              f"{'kept the earlier value' if kept else 'assumed this branch runs'}")
            if kept:
                return
        self.vars[name] = value.value
        self.env[name] = value

    # ---- expansion
    def _expand(self, word: _Word) -> list[_Field]:
        """Expand one word into fields: unquoted expansions are split on whitespace."""
        fields: list[str] = []
        cur, have, unknown = "", False, False
        for kind, text, quoted in word.parts:
            if kind == "lit":
                cur, have = cur + text, have or quoted or bool(text)
                continue
            value = self._value(kind, text)
            if value is None:
                unknown = have = True
            elif quoted:
                cur, have = cur + value, True
            elif value.split():
                pieces = value.split()
                cur, have = cur + pieces[0], True
                for piece in pieces[1:]:
                    fields.append(cur)
                    cur = piece
        if have:
            fields.append(cur)
        return [_Field(f, unknown, word.line, word.raw) for f in fields]

    def _value(self, kind: str, text: str) -> str | None:
        if kind == "var":
            return self._var(text)
        if kind == "arith":
            return self._arith(text)
        self._miss(f"$({text})")  # command substitution: running it is exactly what we never do
        return None

    def _var(self, body: str) -> str | None:
        m = _VAR.fullmatch(body)
        if not m:  # ${#X}, ${X%suffix}, ${X/a/b}, ...: not interpreted
            self._miss("${" + body + "}")
            return None
        name, op, word = m.groups()
        if name not in self.vars:
            if op in ("-", ":-", "=", ":="):
                value = self._expand_text(word)
                if "=" in op:
                    self.vars[name] = value
                return value
            if op in ("+", ":+"):
                return ""
            self._miss(name)
            return None
        value = self.vars[name]
        if value is None:
            self._miss(name)
            return None
        if op in (":-", ":=") and value == "":
            return self._expand_text(word)
        if op in ("+", ":+"):
            return self._expand_text(word) if (value or op == "+") else ""
        return value

    def _expand_text(self, text: str) -> str | None:
        """Expand the `word` of `${X:-word}` (it may itself hold quotes and variables)."""
        cmds = _Lexer(text).commands()
        fields = [f for w in (cmds[0] if cmds else []) for f in self._expand(w)]
        return None if any(f.unknown for f in fields) else " ".join(f.text for f in fields)

    def _arith(self, expr: str) -> str | None:
        missing: list[str] = []

        def sub(m: re.Match) -> str:
            value = self._var(m.group(2) if m.group(1) is None else m.group(1))
            if value is None:
                missing.append("")  # already recorded by _var; the result is unknown
            return value or "0"

        expr = re.sub(r"\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, expr)

        def ev(node: ast.AST) -> int:
            if isinstance(node, ast.Constant) and type(node.value) is int:
                return node.value
            if isinstance(node, ast.Name):  # bare names are variables inside $(( ))
                value = self.vars.get(node.id)
                if value is None or not value.strip().lstrip("-").isdigit():
                    missing.append(node.id)
                    return 0
                return int(value)
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
                return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
            if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
                return _ARITH[type(node.op)](ev(node.left), ev(node.right))
            raise ValueError("unsupported")

        try:
            with warnings.catch_warnings():  # bash-only syntax such as `08` is not our warning
                warnings.simplefilter("ignore")
                tree = ast.parse(expr.strip(), mode="eval")
            value = ev(tree.body)
        except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
            self._miss(f"$(({expr}))")
            return None
        for name in filter(None, missing):
            self._miss(name)
        return None if missing else str(value)

    def _miss(self, name: str) -> None:
        if name not in self.unresolved:
            self.unresolved.append(name)

    # ---- recognising the launch
    def _launch(self, fields: list[_Field], inline: dict[str, ArgValue]) -> Launch | None:
        env = {**self.env, **inline}
        i = 0
        while i < len(fields):  # wrappers: nohup, env A=B, nice -n 5, ...
            text = fields[i].text
            m = _ASSIGN.match(text)
            if m and i > 0:
                env[m.group(1)] = ArgValue(None if fields[i].unknown else text[m.end():],
                                           fields[i].line, fields[i].raw, m.group(1))
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
        prog, rest = Path(fields[i].text).name, fields[i + 1:]
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
            launcher, rest = _LAUNCHER_MODULES.get(entry.text, "python"), rest[j + 1:]
            if launcher != "python":
                entry, kind = None, "script"
        if launcher is None:
            return None
        opts: dict[str, ArgValue] = {}
        if entry is None:
            opts, j = self._launcher_opts(rest, launcher)
            if j >= len(rest):
                return None
            entry, rest = rest[j], rest[j + 1:]
            kind = "module" if "module" in opts else "script"
        launch = Launch(self.path, launcher, entry.text, entry.line, kind,
                        launcher_args=opts, env=env, unresolved=list(self.unresolved),
                        notes=list(self.notes))
        self._train_args(launch, rest)
        self._world(launch)
        return launch

    def _launcher_opts(self, fields: list[_Field], launcher: str) -> tuple[dict[str, ArgValue], int]:
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
            elif key in _BOOL_OPTS[launcher] or nxt is None or nxt.text.startswith("-") \
                    or nxt.text.endswith(".py"):
                opts[key] = ArgValue("True", f.line, f.raw, flag)
                k += 1
            else:
                opts[key] = nxt.arg(flag, f"{f.raw} {nxt.raw}")
                k += 2
        return opts, k

    def _train_args(self, launch: Launch, fields: list[_Field]) -> None:
        """The training program's arguments, argparse style: the last occurrence wins."""
        k = 0
        while k < len(fields):
            f = fields[k]
            if not _is_flag(f):
                launch.positionals.append(f.arg())
                k += 1
                continue
            flag, eq, value = f.text.partition("=")
            key = flag.lstrip("-").replace("-", "_")
            if eq:
                launch.args[key] = ArgValue(None if f.unknown else value, f.line, f.raw, flag)
                k += 1
            elif k + 1 < len(fields) and not _is_flag(fields[k + 1]):
                launch.args[key] = fields[k + 1].arg(flag, f"{f.raw} {fields[k + 1].raw}")
                k += 2
            else:  # `--do_train`: HfArgumentParser reads a bare bool flag as True
                launch.args[key] = ArgValue("True", f.line, f.raw, flag)
                k += 1
        if len(launch.positionals) == 1 and (launch.positionals[0].value or "").lower().endswith(
                (".json", ".yaml", ".yml")):
            launch.args_file = launch.positionals[0]

    def _world(self, launch: Launch) -> None:
        """nproc / nnodes the launcher will use, each with its source."""
        opts, rel = launch.launcher_args, self.rel

        def src(av: ArgValue, name: str = "") -> str:
            return f"{rel}:{av.line} {name or av.flag}"

        def count(av: ArgValue | None) -> int | None:
            items = [x for x in (av.value or "").split(",") if x.strip()] if av else []
            return len(items) or None

        cvd = launch.env.get("CUDA_VISIBLE_DEVICES")
        visible = (count(cvd), src(cvd, "CUDA_VISIBLE_DEVICES")) if count(cvd) else None
        nproc: tuple[int | None, str] | None = None
        if launch.launcher == "deepspeed" and (inc := opts.get("include")) and inc.value:
            hosts = inc.value.split("@")  # host1:0,1@host2:0,1
            slots = hosts[0].partition(":")[2]
            nproc = (len(slots.split(",")), src(inc)) if slots else None
            if "num_nodes" not in opts:
                launch.nnodes, launch.nnodes_source = len(hosts), src(inc)
        name = {"deepspeed": "num_gpus", "torchrun": "nproc_per_node",
                "accelerate": "num_processes"}.get(launch.launcher, "")
        if nproc is None and (av := opts.get(name)):
            nproc = (_int(av.value), src(av))
            if nproc[0] is None and av.value in ("gpu", "auto") and visible:
                nproc = visible
        if nproc is None and launch.launcher == "torchrun":
            nproc = (1, "torchrun default: --nproc_per_node 1")
        elif nproc is None and launch.launcher == "python":
            nproc = (1, "python launches one process")
        launch.nproc, launch.nproc_source = nproc or visible or (
            None, f"{launch.launcher}: process count not in the script")
        for name in ("nnodes", "num_nodes", "num_machines"):
            if av := opts.get(name):
                launch.nnodes, launch.nnodes_source = _int(av.value), src(av)


def _is_flag(f: _Field) -> bool:
    """`--x` / `-x` is an option; `-1`, `-1e-4` and `-` are values."""
    return f.text.startswith("-") and f.text != "-" and _int_or_float(f.text) is None


def _fail() -> int:
    raise ValueError("unsupported")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _int_or_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
