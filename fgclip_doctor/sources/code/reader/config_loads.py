"""Config files the training code loads from a flag: `yaml.load(open(args.config, "r"))`,
`yaml.safe_load(f)` under `with open(args.config) as f`, `json.load`, `toml.load`, `tomllib.load`,
`OmegaConf.load(args.config)`. The file itself is read where the launch's directory is known
(sources/launch_code.py); here only which flag names it and where it is loaded."""

from __future__ import annotations

import ast

from fgclip_doctor.sources.code.reader.astutil import call_name, last
from fgclip_doctor.sources.code.reader.paths import feeding, scope_of
from fgclip_doctor.sources.code.reader.source import SourceFile

_LOADERS = {"safe_load", "load", "full_load", "unsafe_load"}
_MODULES = ("yaml", "json", "toml", "tomllib", "OmegaConf", "omegaconf", "tomli")


def find_config_loads(files: list[SourceFile], dests: list[str]) -> list[dict[str, str]]:
    """[{dest, at}] for each parser dest whose value is opened and parsed as a config."""
    out: list[dict[str, str]] = []
    for f in files:
        withs = {}  # `with open(args.config) as f:` -> f: the open call
        for node in ast.walk(f.tree):
            if isinstance(node, ast.With):
                for item in node.items:
                    if isinstance(item.optional_vars, ast.Name):
                        withs[item.optional_vars.id] = item.context_expr
        for node in ast.walk(f.tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = call_name(node)
            if last(name) not in _LOADERS or not name.startswith(_MODULES):
                continue
            arg = node.args[0]
            values = feeding(scope_of(f, node), arg)
            values += [
                withs[n.id] for v in list(values) for n in ast.walk(v) if isinstance(n, ast.Name) and n.id in withs
            ]
            for v in values:
                for n in ast.walk(v):
                    if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.attr in dests:
                        found = {"dest": n.attr, "at": f.at(node)}
                        if found not in out:
                            out.append(found)
    return out
