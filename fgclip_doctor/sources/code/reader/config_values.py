"""A config file's values inside the abstract run (interp.py): `yaml.safe_load(open(args.config))`
becomes a DictV whose leaves are Consts citing the config's own `file:line key`.

    cfg = yaml.safe_load(open(args.config))   -> DictV({"optim": DictV({"lr": Const(1e-4, "cfg.yaml:3 optim.lr")})})
    cfg["optim"]["lr"], cfg.optim.lr, cfg.get("lr", 1e-4)   (exprs.py / interp.py read them)

The file is read by the launch's layer (sources/launch_code.py hands a ConfigSource); a path that
is not a known string, or a file not readable there, makes the whole config Unknown, saying why,
and that reason is kept (`Interp.config_unknown`) for the facts and notes that depend on it.
"""

from __future__ import annotations

import re
from typing import Any

from fgclip_doctor.sources.code.reader.config_loads import ConfigSource, nest
from fgclip_doctor.sources.code.reader.values import Const, DictV, FileV, Unknown, Val

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
#: library wrappers that give attribute access to a dict they are given (`EasyDict(cfg)`)
WRAPPERS = {"EasyDict", "edict", "AttrDict", "Munch", "munchify", "DotMap", "create", "Box", "ConfigDict"}


def _leaf(value: Any, source: str) -> Const:
    if isinstance(value, str) and _NUMBER.match(value.strip()):  # PyYAML reads `1e-4` (no dot) as text
        value = float(value) if not value.strip().lstrip("+-").isdigit() else int(value)
    return Const(value, source, config=source)


def _to_val(node: Any) -> Val:
    if isinstance(node, dict):
        return DictV({k: _to_val(v) for k, v in node.items()})
    return _leaf(*node)


def load_config(source: ConfigSource | None, arg: Val, loader: str, at: str, unknown: dict[str, str]) -> Val:
    """The value `loader(arg)` returns: the config's values, or Unknown saying why (kept in `unknown`)."""
    path = arg.path if isinstance(arg, FileV) else arg
    if not (isinstance(path, Const) and isinstance(path.value, str) and path.value):
        shown = f"--{path.flag}" if isinstance(path, Const) and path.flag else "its path"
        why = path.why if isinstance(path, Unknown) else f"{shown} has no value"
        return _unknown(unknown, at, f"{at}: {loader} loads a config whose path is not known ({why})")
    if source is None:
        return _unknown(unknown, at, f"{at}: {loader}({path.value}): config files are not read in this reading")
    read = source(path.value)
    if isinstance(read, str):
        return _unknown(unknown, at, f"{at}: {loader} loads {path.value} ({path.at}): {read}")
    return _to_val(nest(read))


def _unknown(unknown: dict[str, str], at: str, why: str) -> Unknown:
    unknown.setdefault(at, why)
    return Unknown(why)
