"""Type a launch's flags against the training code's parser, as the run itself would.

A real `argparse.ArgumentParser` is built from the statically read options (argparse's own
abbreviation and ambiguity rules, type conversions and choices apply), and each flag is parsed
on its own so that every rejection names its flag: `ambiguous option: --warmup could match ...`,
`unrecognized arguments: --evaluation_strategy no`, `invalid float value: 'abc'`. Values whose
type the reader cannot run (a user-defined type function) are accepted as text.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from fgclip_doctor.sources.code.reader.parsers import Option, ParserSpec
from fgclip_doctor.sources.code.reader.values import Const, Unknown


@dataclass(frozen=True)
class FlagInput:
    """A flag as the launch spells it: `--warmup` with value `"10000"` (None: given bare,
    `--do_train`), at `source` (`scripts/train.sh:14 --warmup`). `known` False: the value
    depends on something the launch parser could not resolve (`$LR` unset)."""

    option: str
    value: str | None
    source: str
    known: bool = True


@dataclass(frozen=True)
class Accepted:
    dest: str
    value: Any  # converted as the parser converts it (None when the launch's value is unknown)
    option: str
    source: str  # the launch's file:line
    declared: str  # where the option is declared in the code


@dataclass(frozen=True)
class Rejected:
    option: str
    value: str | None
    source: str
    reason: str  # argparse's own words


@dataclass
class FlagTyping:
    accepted: dict[str, Accepted] = field(default_factory=dict)  # dest -> last accepted value
    rejected: list[Rejected] = field(default_factory=list)


class _Rejection(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise _Rejection(message)

    def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
        raise _Rejection(message or "the parser would exit here (--help / --version)")


_TRUE = ("yes", "true", "t", "y", "1")
_FALSE = ("no", "false", "f", "n", "0")


def _string_to_bool(text: str) -> bool:
    """hf_argparser.string_to_bool: what HfArgumentParser accepts for a bool field."""
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(
        f"Truthy value expected: got {text} but expected one of yes/no, true/false, t/f, y/n, 1/0 (case insensitive)."
    )


_TYPES = {"int": int, "float": float, "str": str, "any": str, "bool": _string_to_bool}


def _add(parser: argparse.ArgumentParser, o: Option) -> None:
    kwargs: dict[str, Any] = {"dest": o.dest, "required": False, "default": None}
    if o.action in ("store_true", "store_false", "store_const", "count", "append_const"):
        kwargs["action"] = o.action
        if o.action in ("store_const", "append_const"):
            kwargs["const"] = o.const
    else:
        kwargs["type"] = _TYPES.get(o.kind, str)
        if o.action == "append":
            kwargs["action"] = "append"
        if o.nargs not in (None, 0):
            kwargs["nargs"] = o.nargs
        if o.const is not None and o.nargs == "?":
            kwargs["const"] = o.const
        if o.choices is not None:
            kwargs["choices"] = o.choices
    try:
        parser.add_argument(*o.options, **kwargs)
    except (argparse.ArgumentError, ValueError, TypeError):
        pass  # an option the code registers twice or oddly: argparse would complain at import


def build_parser(spec: ParserSpec) -> argparse.ArgumentParser:
    parser = _Parser(prog="train", allow_abbrev=spec.allow_abbrev, add_help=True)
    for o in spec.options:
        _add(parser, o)
    return parser


def type_flags(spec: ParserSpec, flags: list[FlagInput]) -> FlagTyping:
    """Accepted values (dest -> converted value with the launch's source) and rejected flags."""
    parser = build_parser(spec)
    out = FlagTyping()
    for flag in flags:
        # An unknown value (`--train-data=${train_data}` with train_data=$1) is still a value: a
        # placeholder stands in, so the parser never reads the option as given bare.
        tokens = [flag.option] + (["0"] if not flag.known else [] if flag.value is None else [flag.value])
        try:
            ns = vars(parser.parse_args(tokens))
        except _Rejection as err:
            if not flag.known and ("invalid" in str(err) or _parses(parser, flag.option)):
                ns = None  # the placeholder value, not the flag, was rejected: value unknown
            else:
                out.rejected.append(Rejected(flag.option, flag.value, flag.source, str(err) + _version_note(spec)))
                continue
        if ns is None:
            dest = _dest_of(parser, flag.option)
            if dest:
                out.accepted[dest] = Accepted(dest, None, flag.option, flag.source, _declared(spec, dest))
            continue
        for dest, value in ns.items():
            if value is not None:
                out.accepted[dest] = Accepted(
                    dest, value if flag.known else None, flag.option, flag.source, _declared(spec, dest)
                )
    return out


def _parses(parser: argparse.ArgumentParser, option: str) -> bool:
    """Whether the option alone parses (a switch given an unknown word after it)."""
    try:
        parser.parse_args([option])
    except _Rejection:
        return False
    return True


def _version_note(spec: ParserSpec) -> str:
    """A parser that inherits transformers' TrainingArguments is typed with the INSTALLED version's
    fields: say which, since flags come and go between versions (evaluation_strategy in 4.x)."""
    hf = next((o.declared for o in spec.options if o.declared.startswith("transformers ")), "")
    version = hf.split(" ")[1] if hf.count(" ") >= 2 else ""
    return f" (its TrainingArguments fields are those of transformers {version} installed here)" if version else ""


def _dest_of(parser: argparse.ArgumentParser, option: str) -> str | None:
    try:
        found = parser._parse_optional(option)  # argparse's own lookup, abbreviations included
    except _Rejection:
        return None
    if found and found[0] is not None:
        return found[0][0].dest if isinstance(found[0], tuple) else found[0].dest
    return None


def _declared(spec: ParserSpec, dest: str) -> str:
    o = spec.option(dest)
    return o.declared if o else ""


def flag_lookup(reading: Any):
    """dest -> Const (the launch's value, else the code's default) | Unknown | None (no such dest)."""

    def lookup(dest: str):
        if reading.parser is None or reading.parser.option(dest) is None:
            return None
        if reading.flags and dest in reading.flags.accepted:
            a = reading.flags.accepted[dest]
            return Const(a.value, a.source, dest) if a.value is not None else Unknown(f"{a.source}: value not known")
        opt = reading.parser.option(dest)
        for r in reading.flags.rejected if reading.flags else ():
            if r.value is None and r.option in opt.options:  # given, with a value only the script knows
                return Unknown(f"{r.source}: value not known")
        default = reading.default(dest)
        return Const(default[0], f"{default[1]} default", dest) if default else Unknown(f"--{dest}: default not known")

    return lookup
