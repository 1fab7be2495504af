"""Args files (.json / .yaml) as HfArgumentParser reads them, and launch-string coercion.

`HfArgumentParser.parse_json_file` / `parse_yaml_file` load one flat mapping of argument
name -> value; `load_args_file` reads the same mapping, never imports the training code, and
cites each value by file and line (`configs/args.json:7 learning_rate`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.files import display_path, read_text_file

_WS = re.compile(r"[ \t\n\r]*")


def load_args_file(path: object) -> dict[str, tuple[object, str]]:
    """Load a `.json` / `.yaml` / `.yml` args file: {argument name: (value, source)}.

    Values keep their JSON/YAML types (8 stays int, "8" stays str); `source` is
    `<path>:<line> <key>` (or `<path>: <key>` when the line is unknown). Duplicate keys: the
    last one wins, as with `json.load` / `yaml.safe_load`.
    """
    suffix = Path(str(path)).suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise DoctorInputError(path, "expected a .json, .yaml or .yml args file")
    text = read_text_file(path)
    if suffix == ".json":
        data, lines = _load_json(path, text)
    else:
        data, lines = _load_yaml(path, text)
    kind = "JSON object" if suffix == ".json" else "YAML mapping"
    if data is None:
        raise DoctorInputError(path, f"empty file, expected a {kind} of argument names to values")
    if not isinstance(data, dict):
        raise DoctorInputError(path, f"expected a {kind} of argument names to values, got {_kind_name(data)}")
    rel = display_path(path)
    out: dict[str, tuple[object, str]] = {}
    for key, value in data.items():
        name = str(key)
        if _too_big(value):  # YAML aliases expand a few lines into billions of items
            raise DoctorInputError(
                path,
                f"the value of {name} holds more than {MAX_VALUE_ITEMS} items (YAML aliases?): not an argument value",
            )
        line = lines.get(name)
        out[name] = (value, f"{rel}:{line} {name}" if line else f"{rel}: {name}")
    return out


MAX_VALUE_ITEMS = 10_000  # list / dict items in one argument's value (report_to, *_kwargs: a few)


def _too_big(value: object) -> bool:
    """True when `value` holds more than MAX_VALUE_ITEMS items, counted until the budget runs out
    (aliases shared a billion times are counted each time, as printing them would)."""
    budget, stack = MAX_VALUE_ITEMS, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            item = [*item.keys(), *item.values()]
        if isinstance(item, (list, tuple)):
            budget -= len(item)
            if budget < 0:
                return True
            stack.extend(item)
    return False


def coerce(value: object, kind: type) -> object:
    """Convert a launch-string value to `kind` the way HfArgumentParser does.

    bool accepts yes/no, true/false, t/f, y/n, 1/0 (any case), like transformers'
    `string_to_bool`; int and float use Python's parsers, as argparse's `type=` does.
    None (an unresolved value) stays None; a value already of `kind` (from JSON) is returned
    as is. Raises ValueError naming the value and what was expected.
    """
    if value is None:
        return None
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    text = str(value)
    if kind is bool:
        low = text.lower()  # no strip: transformers.hf_argparser.string_to_bool does not either
        if low in ("yes", "true", "t", "y", "1"):
            return True
        if low in ("no", "false", "f", "n", "0"):
            return False
        raise ValueError(f"expected a boolean (yes/no, true/false, t/f, y/n, 1/0), got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if kind is str:
        return text
    try:
        return kind(text)
    except (ValueError, TypeError) as err:  # a constructor refusing the text (Enum, Path, ...)
        raise ValueError(f"expected {getattr(kind, '__name__', kind)}, got {text!r}: {err}") from None


def _load_json(path: object, text: str) -> tuple[object, dict[str, int]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DoctorInputError(path, f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except RecursionError:  # valid JSON nested deeper than the parser's stack (`[[[[...]]]]`)
        raise DoctorInputError(path, "JSON nested too deeply to be an args file") from None
    try:
        return data, (_json_key_lines(text) if isinstance(data, dict) else {})
    except RecursionError:
        raise DoctorInputError(path, "JSON nested too deeply to be an args file") from None


def _json_key_lines(text: str) -> dict[str, int]:
    """Line of each top-level key. The json module keeps no positions, so walk the (already
    validated) object: scan each key, then let raw_decode skip its value."""
    decoder = json.JSONDecoder()
    lines: dict[str, int] = {}
    i = _WS.match(text, 0).end() + 1  # past "{"
    line, counted = 1, 0
    while True:
        i = _WS.match(text, i).end()
        if text[i : i + 1] != '"':
            return lines
        key, end = json.decoder.scanstring(text, i + 1)
        line += text.count("\n", counted, i)
        counted = i
        lines[key] = line  # a duplicate key keeps the last line, as its value is the last one
        i = _WS.match(text, end).end() + 1  # past ":"
        _, i = decoder.raw_decode(text, _WS.match(text, i).end())
        i = _WS.match(text, i).end()
        if text[i : i + 1] == ",":
            i += 1


def _load_yaml(path: object, text: str) -> tuple[object, dict[str, int]]:
    import yaml  # here, not at the top: 20 ms of start-up for commands that never read YAML

    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DoctorInputError(path, f"invalid YAML{where}: {problem}") from None
    except RecursionError:  # `[[[[...]]]]`: PyYAML's composer recurses once per level
        raise DoctorInputError(path, "YAML nested too deeply to be an args file") from None
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                lines[str(key_node.value)] = key_node.start_mark.line + 1
    return data, lines


def _kind_name(data: object) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(data), type(data).__name__
    )
