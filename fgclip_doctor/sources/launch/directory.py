"""The directory a launch script runs in, followed the way bash would, without running anything.

`cd` / `pushd` / `popd` move it (a literal path, a variable, `cd ..`, `cd -`, `cd` alone = $HOME);
`$0` and `${BASH_SOURCE[0]}` are the script's path as given; the command substitutions that only
compute a path are evaluated, since they are pure: `$(dirname X)`, `$(basename X)`, `$(pwd)`,
`$(realpath X)`, `$(readlink -f X)`, and sequences of `cd` ending in one of them
(`$(cd "$(dirname "$0")" && pwd)`). Anything else (`cd "$(git rev-parse --show-toplevel)"`, a `cd`
inside `if`, after `||` or a test) makes the directory unknown from that line on: `cwd` is None and
`cwd_source` names the line, so relative paths are left unresolved rather than guessed.
"""

from __future__ import annotations

import os
from pathlib import Path

from fgclip_doctor.sources.launch.shell import Expander, Field, Lexer, Word, plain

DIRECTORY_COMMANDS = ("cd", "pushd", "popd")
_PATH_PROGRAMS = {"dirname", "basename", "pwd", "realpath", "readlink"}
_MAX_NESTING = 8  # $( $( ... ) ) deeper than this is not evaluated (each level re-reads its body)
_TESTS = {"[", "[[", "test"}


def dirname(path: str) -> str:
    """GNU `dirname`: `a/b` -> `a`, `a` -> `.`, `/a` -> `/`, `a/b/` -> `a`."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    if "/" not in stripped:
        return "."
    return stripped.rpartition("/")[0].rstrip("/") or "/"


def basename(path: str) -> str:
    """GNU `basename` of one path, no suffix: `a/b/` -> `b`, `/` -> `/`."""
    stripped = path.rstrip("/")
    return stripped.rpartition("/")[2] if stripped else ("/" if path else "")


class DirectoryExpander(Expander):
    """An Expander that knows the script's path and follows its working directory.

    `cwd`: absolute, logical (as bash's $PWD: `cd ..` drops the last component); None = unknown.
    `cwd_source`: where the current directory was set (`scripts/train.sh:3 cd "$(dirname "$0")"`),
    or, when unknown, the line that made it so and why.
    """

    def __init__(self, script: Path, rel: str, environ: dict[str, str] | None, start: Path | None = None) -> None:
        super().__init__(environ)
        self.rel = rel
        self.notes: list[str] = []
        self.vars["0"] = self.vars["BASH_SOURCE"] = str(script)
        self.cwd: str | None = None
        self.cwd_source = "the directory fgclip-doctor runs from (the script's `bash` would start there)"
        self.stack: list[tuple[str | None, str]] = []  # pushd's saved (directory, source)
        self._nesting = 0
        self._enter(os.path.abspath(start or Path.cwd()))

    def _enter(self, path: str | None) -> None:
        if self.cwd is not None:
            self.vars["OLDPWD"] = self.cwd
        self.cwd = path
        self.vars["PWD"] = path  # None: $PWD is unknown too

    # ---- `cd` / `pushd` / `popd` as commands of the script
    def change_directory(self, words: list[Word], conditional: bool) -> None:
        """Apply one `cd` / `pushd` / `popd` command; `conditional`: it may or may not run."""
        head, line = plain(words[0]), words[0].line
        where = f"{self.rel}:{line} {' '.join(w.raw for w in words)}"
        args = [f for w in words[1:] for f in self.expand(w)]
        if head == "popd":
            if conditional or not self.stack or [f.text for f in args if f.text != "--"]:
                return self._unknown(where, line, "which directory it returns to is not known")
            path, source = self.stack.pop()
            self._enter(path)
            self.cwd_source = source if path is None else f"{where} (back to {path})"
            return None
        if conditional:
            return self._unknown(where, line, "it runs only in some cases (in if / for / while, after || or a test)")
        if any(f.unknown for f in args):
            return self._unknown(where, line, "its target is only known when the script runs")
        target = self._cd_target(args)
        if target is None:
            return self._unknown(where, line, "its target is not a path the doctor can follow")
        if head == "pushd":
            self.stack.append((self.cwd, self.cwd_source))
        self._enter(target)
        self.cwd_source = where
        if not os.path.isdir(target):
            self.notes.append(f"line {line}: `cd` to {target}, which does not exist here: paths from it are not found")
        return None

    def _unknown(self, where: str, line: int, why: str) -> None:
        self._enter(None)
        self.cwd_source = f"{where}: {why}, so the directory the launch runs in is unknown"
        self.notes.append(f"line {line}: `{where.split(' ', 1)[1]}`: {why}; paths relative to it are not resolved")

    def _cd_target(self, args: list[Field], cwd: str | None = None) -> str | None:
        """Where `cd ARGS` goes from `cwd` (default: the current one); None when not followed."""
        cwd = self.cwd if cwd is None else cwd
        texts = [f.text for f in args]
        physical = False
        while texts and texts[0] in ("-L", "-P", "-e", "--"):
            physical = physical or texts[0] == "-P"
            if texts.pop(0) == "--":
                break
        if len(texts) > 1 or (texts and texts[0].startswith(("+", "-")) and texts[0] != "-"):
            return None  # `pushd +1`, `cd a b`: stack rotation / an error
        target = self.vars.get("HOME") if not texts else self.vars.get("OLDPWD") if texts[0] == "-" else texts[0]
        if target and args and target.startswith("~") and args[-1].raw.startswith("~"):  # unquoted tilde
            home = self.vars.get("HOME")
            if home is None or target[1:2] not in ("", "/"):
                return None
            target = home + target[1:]
        if not target:
            return None
        if not os.path.isabs(target):
            if cwd is None:
                return None
            target = os.path.join(cwd, target)
        target = os.path.normpath(target)
        return os.path.realpath(target) if physical else target

    # ---- command substitutions that only compute a path
    def _value(self, kind: str, text: str) -> str | None:
        if kind == "cmd" and self._nesting < _MAX_NESTING:
            self._nesting += 1  # a subshell: its `cd` does not move the script
            saved = self.cwd, {k: self.vars[k] for k in ("PWD", "OLDPWD") if k in self.vars}
            try:
                out = self._path_program(Lexer(text).commands())
            finally:
                self._nesting -= 1
                self.cwd = saved[0]
                self.vars.pop("OLDPWD", None)
                self.vars.update(saved[1])
            if out is not None:
                return out
        return super()._value(kind, text)

    def _path_program(self, commands: list[list[Word]]) -> str | None:
        """The output of `cd ... && cd ... && <one path program>` (None: anything else)."""
        out = None
        for words in commands:
            head = plain(words[0])
            if out is not None or (head not in _PATH_PROGRAMS and head not in ("cd", "pushd")):
                return None
            args = [f for w in words[1:] for f in self.expand(w)]
            if any(f.unknown for f in args):
                return None
            texts = [f.text for f in args]
            if head in ("cd", "pushd"):
                target = self._cd_target(args)
                if target is None or not os.path.isdir(target):  # bash's `cd` fails: `&& pwd` never runs
                    return None
                self._enter(target)
            elif head == "pwd":
                if self.cwd is None or any(t not in ("-L", "-P") for t in texts):
                    return None
                out = os.path.realpath(self.cwd) if "-P" in texts else self.cwd
            else:
                out = self._path_of(head, texts)
                if out is None:
                    return None
        return out

    def _path_of(self, program: str, texts: list[str]) -> str | None:
        """`dirname X` / `basename X` / `realpath X` / `readlink -f X` (one operand each)."""
        if program == "readlink":
            if not texts or texts[0] not in ("-f", "-e", "-m"):
                return None  # plain readlink prints a link's target, or nothing
            texts = texts[1:]
        if len(texts) != 1 or texts[0].startswith("-"):
            return None
        (operand,) = texts
        if program == "dirname":
            return dirname(operand)
        if program == "basename":
            return basename(operand)
        if not os.path.isabs(operand) and self.cwd is None:
            return None
        return os.path.realpath(os.path.join(self.cwd or "/", operand))


def conditional_command(depth: int, separator: str, previous: list[Word] | None) -> bool:
    """Whether a command may or may not run: inside a block, after `||`, or after `&&` that
    follows a test (`[ -d x ] && cd x`)."""
    if depth > 0 or separator.endswith("||"):
        return True
    return separator.endswith("&&") and previous is not None and plain(previous[0]) in _TESTS
