"""Config files the training code loads from a flag: `yaml.load(open(args.config, "r"))`,
`yaml.safe_load(f)` under `with open(args.config) as f`, `json.load`, `toml.load`, `tomllib.load`,
`OmegaConf.load(args.config)`. The file itself is read where the launch's directory is known
(sources/launch_code.py), which hands the reader a `ConfigSource`: path text -> {dotted key:
(value, `file:line key`)}, or a sentence saying why it is not readable. The reader then runs the
load on abstract values (interp.py): `cfg["optim"]["lr"]`, `cfg.get("lr", 1e-4)`, `cfg.optim.lr`
are Consts citing the config's line, and decide branches like flags; a config not readable makes
every value read from it Unknown, saying why."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from fgclip_doctor.sources.code.reader.astutil import call_name, last
from fgclip_doctor.sources.code.reader.paths import feeding, opened_by_with, scope_of
from fgclip_doctor.sources.code.reader.source import SourceFile

#: path text as the launch gives it -> {dotted key: (value, "file:line key")} | why it is not readable
ConfigSource = Callable[[str], "dict[str, tuple[Any, str]] | str"]

_LOADERS = {"safe_load", "load", "full_load", "unsafe_load"}
_MODULES = ("yaml", "json", "toml", "tomllib", "OmegaConf", "omegaconf", "tomli")


def find_config_loads(files: list[SourceFile], dests: list[str]) -> list[dict[str, str]]:
    """[{dest, at}] for each parser dest whose value is itself the path opened and parsed as a
    config (a path built from a flag, `f"{args.model}.json"`, is the code's own file, not the flag's)."""
    out: list[dict[str, str]] = []
    for f in files:
        for node in ast.walk(f.tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = call_name(node)
            if last(name) not in _LOADERS or not name.startswith(_MODULES):
                continue
            arg = opened_by_with(f, node.args[0])
            if isinstance(arg, ast.Call) and last(call_name(arg)) == "open" and arg.args:
                arg = arg.args[0]
            for v in feeding(scope_of(f, node), arg):
                if isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.attr in dests:
                    found = {"dest": v.attr, "at": f.at(node)}
                    if found not in out:
                        out.append(found)
    return out


def is_config_loader(dotted_name: str) -> bool:
    """`yaml.safe_load`, `json.load`, `tomllib.load`, `OmegaConf.load` (by the library's dotted name)."""
    return dotted_name.rpartition(".")[2] in _LOADERS and dotted_name.startswith(_MODULES)


def nest(flat: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    """{"optim.lr": (1e-4, src)} -> {"optim": {"lr": (1e-4, src)}}: leaves stay (value, source)."""
    out: dict[str, Any] = {}
    for key, leaf in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):  # a key both a leaf and a section: the leaf wins
                break
            node = nxt
        else:
            node[parts[-1]] = leaf
    return out
