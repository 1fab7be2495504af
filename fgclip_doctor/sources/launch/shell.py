"""Shell text as bash reads it, without running anything: commands of words, then fields.

`Lexer(text).commands()` splits a script into commands of unexpanded `Word`s (quotes, `\\`
continuations, comments, redirections and here-documents handled); `Expander.expand` turns a word
into `Field`s against a variable table, as bash's parameter and arithmetic expansion and word
splitting would. Command substitutions are never run: they, and variables nobody set, make a
field `unknown` and are listed in `unresolved`.
"""

from __future__ import annotations

import ast
import operator
import re
import warnings
from dataclasses import dataclass


@dataclass
class Word:
    """One shell word before expansion, with its first physical line and its text as written."""

    parts: list  # (kind, text, quoted); kind: lit | var (`${...}` body) | arith | cmd
    line: int
    raw: str


_ORDINARY = re.compile(r"[^\\\n \t\r#'\"$`<>;&|()]*")  # characters with no meaning to the lexer


class Lexer:
    """Split shell text into commands (lists of unexpanded words) at newlines, `;`, `&&`,
    `||`, `|`, `&`, `(`, `)`; drop comments, redirections and here-document bodies.
    `separators[i]`: the operators written before command i (`"&&"`, `"||"`, `"("`, `";"`, ...;
    `""` after a newline), so a reader can tell `cd x || exit` from `cd x; exit`."""

    def __init__(self, text: str) -> None:
        self.t, self.i, self.line = text, 0, 1
        self.cmds: list[list[Word]] = []
        self.words: list[Word] = []
        self.parts: list | None = None
        self.start = self.wline = 0
        self.drop: str | None = None  # "target" / "<<" / "<<-": what the next word is for
        self.heredocs: list[tuple[str, bool]] = []
        self.separators: list[str] = []
        self.pending = ""  # operators seen since the last command ended

    def commands(self) -> list[list[Word]]:
        t = self.t
        while self.i < len(t):
            c = t[self.i]
            if c == "\\":
                if t.startswith("\n", self.i + 1):  # continuation: the command goes on
                    self.i, self.line = self.i + 2, self.line + 1
                    continue
                self._lit(t[self.i + 1 : self.i + 2], True)
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
                self._lit(t[self.i + 1 : j], True)
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
                op = t[self.i : self.i + 2] if t[self.i : self.i + 2] in ("&&", "||", ";;") else c
                self.pending += op
                self.i += len(op)
            else:  # a run of ordinary characters at once: a megabyte word stays linear
                m = _ORDINARY.match(t, self.i + 1)
                self._lit(t[self.i : m.end()], False)
                self.i = m.end()
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
        word = Word(self.parts, self.wline, self.t[self.start : self.i])
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
            self.separators.append(self.pending)
            self.pending = ""
        self.words, self.drop = [], None

    def _double(self) -> None:
        t = self.t
        self._start()
        self.i += 1
        buf = ""
        while self.i < len(t) and t[self.i] != '"':
            c = t[self.i]
            if c == "\\" and t[self.i + 1 : self.i + 2] in ("$", "`", '"', "\\", "\n"):
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
            kind, body, end = "cmd", t[i + 1 : j if j >= 0 else len(t)], (j + 1 if j >= 0 else len(t))
        elif t.startswith("$((", i):
            j = _close(t, i + 3, "(", ")")
            kind, body, end = "arith", t[i + 3 : j], j + 2
        elif t.startswith("$(", i):
            j = _close(t, i + 2, "(", ")")
            kind, body, end = "cmd", t[i + 2 : j], j + 1
        elif t.startswith("${", i):
            j = _close(t, i + 2, "{", "}")
            kind, body, end = "var", t[i + 2 : j], j + 1
        else:
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]").match(t, i + 1)
            kind, body, end = ("var", m.group(), m.end()) if m else ("lit", "$", i + 1)
        self.line += t.count("\n", i, end)
        self.i = end
        return (kind, body, quoted)

    def _redirect(self) -> None:
        # `2>` : the digits belong to the operator, not to the command's arguments.
        if (
            self.parts
            and len(self.parts) == 1
            and self.parts[0][0] == "lit"
            and not self.parts[0][2]
            and self.parts[0][1].isdigit()
        ):
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
                body = self.t[self.i : j]
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


def plain(word: Word) -> str | None:
    """The word's text when it is plain unquoted literal text (keywords, builtins), else None."""
    if len(word.parts) == 1 and word.parts[0][0] == "lit" and not word.parts[0][2]:
        return word.parts[0][1]
    return None


@dataclass
class Field:
    """One word after expansion and splitting: the text, and whether it depends on the unknowable."""

    text: str
    unknown: bool  # depends on an unresolved variable or `$(cmd)`
    line: int
    raw: str


# `${X[0]}` is `$X` when X is no array (BASH_SOURCE in a script that is not sourced).
_VAR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])(?:\[0\])?(?:(:?[-=+?])(.*))?", re.S)
_ARITH = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Mod: operator.mod,
    ast.Pow: lambda a, b: a**b if 0 <= b <= 64 else _fail(),  # no 9**9**9 stalls
    ast.Div: lambda a, b: abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1),
}


def _fail() -> int:
    raise ValueError("unsupported")


class Expander:
    """Expands words against `vars` (name -> value; None = assigned from something unknowable)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        # Inherited environment first; the script's own assignments override it, as in bash.
        self.vars: dict[str, str | None] = dict(environ or {})
        self.unresolved: list[str] = []  # variables and substitutions that made a field unknown

    def expand(self, word: Word) -> list[Field]:
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
        return [Field(f, unknown, word.line, word.raw) for f in fields]

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
        if (name.isdigit() and name != "0") or name in ("@", "*", "#"):  # the caller's arguments: unknowable
            self._miss(f"${name} (an argument of the script)")
            return None
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
        cmds = Lexer(text).commands()
        fields = [f for w in (cmds[0] if cmds else []) for f in self.expand(w)]
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
