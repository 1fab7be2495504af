"""What the code takes from outside its flags: the config file a flag names, the world size the
scheduler's environment gives, and the layer-wise LR decay of its parameter groups.

    world = int(os.environ["SLURM_NTASKS"])        -> code.world_size_env ["SLURM_NTASKS"]
    cfg = yaml.safe_load(open(args.config))         -> code.config_loads [{dest: config, at}]
"""

from __future__ import annotations

import ast
from typing import Any

from fgclip_doctor.sources.code.reader.config_loads import find_config_loads
from fgclip_doctor.sources.code.reader.layer_decay import layer_decay_facts
from fgclip_doctor.sources.code.reader.paths import PathEval
from fgclip_doctor.sources.code.reader.resume import flag_value_of
from fgclip_doctor.sources.code.reader.source import SourceFile

#: Environment variables a launcher or scheduler sets to the number of processes.
WORLD_VARS = ("WORLD_SIZE", "SLURM_NTASKS", "SLURM_NPROCS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def run_shape_facts(reading: Any, files: list[SourceFile]) -> None:
    facts = reading.facts
    dests = [o.dest for o in reading.parser.options] if reading.parser else []
    loads = find_config_loads(files, dests)
    if loads:
        facts.set("code.config_loads", loads, loads[0]["at"])
    env = world_size_env(files)
    if env:
        facts.set("code.world_size_env", [v for v, _ in env], env[0][1])
    layer_decay_facts(facts, files, dests, PathEval(files, lambda d: flag_value_of(reading, d)))


def world_size_env(files: list[SourceFile]) -> list[tuple[str, str]]:
    """[(variable, file:line)] of the world-size variables read from os.environ / os.getenv
    (directly, or as a loop over names: `for v in ("SLURM_NTASKS", "WORLD_SIZE"): ... os.environ[v]`)."""
    out: list[tuple[str, str]] = []
    for f in files:
        for fn in [n for n in ast.walk(f.tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            reads_env = any(
                (isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv"))
                or (isinstance(n, ast.Name) and n.id in ("environ", "getenv"))
                for n in ast.walk(fn)
            )
            if not reads_env:
                continue
            for n in ast.walk(fn):
                if isinstance(n, ast.Constant) and n.value in WORLD_VARS and (n.value, f.at(n)) not in out:
                    if all(v != n.value for v, _ in out):
                        out.append((n.value, f.at(n)))
    return out
