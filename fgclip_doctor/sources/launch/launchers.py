"""Schedulers and MPI around a training command: `srun`, `#SBATCH` headers, `mpirun` / `mpiexec`.

    #SBATCH --nodes=2 --ntasks-per-node=8         sbatch's allocation: srun inherits it, and the
    srun python -u train.py ...                   scheduler exports SLURM_NNODES / SLURM_NTASKS / ...
    mpirun -np 16 -H a:8,b:8 python train.py      16 processes over two hosts

Nothing runs: the options are read as the tools read them (`--ntasks=16`, `-n 16`, `-N 2`), each with
the line it comes from, and the world they start is nproc per node × nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fgclip_doctor.sources.launch.shell import Field

WRAPPERS = ("srun", "mpirun", "mpiexec")

# fmt: off
_SLURM_SHORT = {"n": "ntasks", "N": "nodes", "c": "cpus_per_task", "G": "gpus", "p": "partition",
                "t": "time", "J": "job_name", "o": "output", "e": "error", "A": "account", "w": "nodelist"}
_SLURM_BOOL = {"exclusive", "u", "unbuffered", "l", "label", "overcommit", "O", "K", "kill_on_bad_exit",
               "quiet", "Q", "v", "verbose", "pty", "overlap", "x11", "requeue", "no_requeue", "wait"}
_MPI_NAMES = {"np": "ntasks", "n": "ntasks", "c": "ntasks", "N": "ntasks_per_node", "npernode": "ntasks_per_node",
              "H": "host", "host": "host", "hostfile": "hostfile", "machinefile": "hostfile", "f": "hostfile"}
_MPI_BOOL = {"allow_run_as_root", "oversubscribe", "tag_output", "report_bindings", "display_map", "v",
             "verbose", "q", "quiet", "timestamp_output", "bind_to_core", "bind_to_socket", "nooversubscribe"}
_MPI_TWO = {"mca", "gmca"}  # `--mca btl tcp,self`: a name and a value
# fmt: on
#: What sbatch exports to the job, from its own options (the code may read them as its world).
SLURM_ENV = {
    "SLURM_NNODES": "nodes",
    "SLURM_JOB_NUM_NODES": "nodes",
    "SLURM_NTASKS": "ntasks",
    "SLURM_NPROCS": "ntasks",
    "SLURM_NTASKS_PER_NODE": "ntasks_per_node",
    "SLURM_GPUS_PER_NODE": "gpus_per_node",
}


@dataclass
class Opt:
    """A scheduler option as given: its value (None: unknown) and where (`train.sh:3 #SBATCH --nodes=2`)."""

    value: str | None
    source: str
    line: int = 0


def sbatch_headers(text: str, rel: str) -> dict[str, Opt]:
    """`#SBATCH` options before the first command (sbatch stops reading them there)."""
    out: dict[str, Opt] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not stripped.startswith("#SBATCH")):
            continue
        if not stripped.startswith("#SBATCH"):
            break
        words = stripped[len("#SBATCH") :].split("#", 1)[0].split()
        for key, value, _ in _slurm_words(words):
            out[key] = Opt(value, f"{rel}:{number} #SBATCH --{key.replace('_', '-')}", number)
    return out


def slurm_environment(headers: dict[str, Opt]) -> dict[str, tuple[str, int]]:
    """{SLURM_* variable: (value, line)} sbatch exports from its options (only those it knows)."""
    out = {}
    for var, key in SLURM_ENV.items():
        opt = headers.get(key)
        if opt is not None and opt.value is not None:
            value = str(_gpus(opt)) if key == "gpus_per_node" and _gpus(opt) else opt.value
            out[var] = (value, opt.line)
    nodes, per_node = _int(headers.get("nodes")), _int(headers.get("ntasks_per_node"))
    if "SLURM_NTASKS" not in out and nodes and per_node:
        line = headers["ntasks_per_node"].line
        out["SLURM_NTASKS"] = out["SLURM_NPROCS"] = (str(nodes * per_node), line)
    return out


def _slurm_words(words: list[str]) -> list[tuple[str, str | None, int]]:
    """(option, value, words used) for each option of `words` up to the program; last: (`""`, None, index)."""
    out = []
    k = 0
    while k < len(words) and words[k].startswith("-"):
        flag, eq, value = words[k].partition("=")
        long = flag.startswith("--")
        key = flag.lstrip("-").replace("-", "_")
        if not long and len(key) > 1 and key[0] in _SLURM_SHORT:  # `-n16`
            key, value, eq = key[0], key[1:], "="
        key = key if long else _SLURM_SHORT.get(key, key)
        if eq:
            out.append((key, value, k))
            k += 1
        elif key in _SLURM_BOOL or k + 1 >= len(words):
            out.append((key, "True", k))
            k += 1
        else:
            out.append((key, words[k + 1], k))
            k += 2
    out.append(("", None, k))
    return out


def wrapper_options(prog: str, fields: list[Field], rel: str) -> tuple[dict[str, Opt], int]:
    """The options of `srun` / `mpirun` / `mpiexec` up to the command they start (index returned)."""
    opts: dict[str, Opt] = {}
    if prog == "srun":
        words = [f.text for f in fields]
        for key, value, k in _slurm_words(words):
            if not key:
                return opts, k
            opts[key] = Opt(None if fields[k].unknown else value, f"{rel}:{fields[k].line} srun {fields[k].text}")
        return opts, len(fields)
    k = 0
    while k < len(fields) and fields[k].text.startswith("-"):
        f = fields[k]
        flag, eq, value = f.text.partition("=")
        key = flag.lstrip("-").replace("-", "_")
        name = _MPI_NAMES.get(key, key)
        nxt = fields[k + 1] if k + 1 < len(fields) else None
        if eq:
            opts[name], k = Opt(None if f.unknown else value, f"{rel}:{f.line} {prog} {f.text}"), k + 1
        elif key in _MPI_TWO:
            k += 3
        elif key in _MPI_BOOL or nxt is None or _is_program(nxt.text):
            opts[name], k = Opt("True", f"{rel}:{f.line} {prog} {f.text}"), k + 1
        else:
            opts[name] = Opt(None if nxt.unknown else nxt.text, f"{rel}:{f.line} {prog} {f.text} {nxt.text}")
            k += 2
    return opts, k


def _is_program(text: str) -> bool:
    name = Path(text).name
    return bool(re.fullmatch(r"python[0-9.]*", name)) or name.endswith(".py") or name in ("torchrun", "deepspeed")


def _int(opt: Opt | None) -> int | None:
    try:
        return int(opt.value) if opt is not None and opt.value is not None else None
    except ValueError:
        return None


def _gpus(opt: Opt | None) -> int | None:
    """`--gpus-per-node=8`, `=a100:8`, `--gres=gpu:8`, `gpu:a100:8`."""
    if opt is None or opt.value is None:
        return None
    tail = opt.value.split(",")[0].rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


Count = tuple[int | None, str]


def slurm_world(opts: dict[str, Opt], headers: dict[str, Opt]) -> tuple[Count, Count]:
    """((processes per node, source), (nodes, source)) that `srun` starts inside its allocation."""
    merged = {**headers, **opts}  # srun's own options override the batch allocation
    nodes, per_node, ntasks = merged.get("nodes"), merged.get("ntasks_per_node"), merged.get("ntasks")
    gres = merged.get("gres")
    gpus = merged.get("gpus_per_node") or (gres if gres is not None and "gpu" in str(gres.value) else None)
    n_nodes = _int(nodes) if nodes else 1
    node_src = nodes.source if nodes else "srun: one node (no --nodes)"
    if nodes and n_nodes is None:
        return (None, "unknown"), (None, f"{nodes.source}: value unknown")
    if per_node:
        return (_int(per_node), per_node.source), (n_nodes, node_src)
    if ntasks:
        total = _int(ntasks)
        if total is None:
            return (None, f"{ntasks.source}: value unknown"), (n_nodes, node_src)
        if nodes and n_nodes and total % n_nodes == 0:
            return (total // n_nodes, f"{ntasks.source} over {n_nodes} node(s)"), (n_nodes, node_src)
        return (total, f"{ntasks.source} (the total over every node)"), (1, "--ntasks counts every node's processes")
    if gpus:
        count = _gpus(gpus)
        return (count, f"{gpus.source} (one task per GPU)" if count else f"{gpus.source}: count unknown"), (
            n_nodes,
            node_src,
        )
    return (1, "srun: one task per node (no --ntasks / --ntasks-per-node)"), (n_nodes, node_src)


def mpi_world(opts: dict[str, Opt], hostfile_slots: list[int] | None, hostfile_src: str) -> tuple[Count, Count]:
    """((processes per node, source), (nodes, source)) that `mpirun` starts."""
    hosts = opts.get("host")
    slots: list[int] | None = hostfile_slots
    src = hostfile_src
    if hosts is not None and hosts.value is not None:  # -H a:8,b:8 (a host without slots: one)
        slots = [int(h.rpartition(":")[2]) if h.rpartition(":")[2].isdigit() else 1 for h in hosts.value.split(",")]
        src = hosts.source
    per_node, total = opts.get("ntasks_per_node"), opts.get("ntasks")
    n_nodes = len(slots) if slots else 1
    node_src = src if slots else "mpirun: one host (no -H / --hostfile)"
    if per_node:
        return (_int(per_node), per_node.source), (n_nodes, node_src)
    if total:
        count = _int(total)
        if count is not None and n_nodes > 1 and count % n_nodes == 0:
            return (count // n_nodes, f"{total.source} over {n_nodes} hosts"), (n_nodes, node_src)
        shown = total.source if count is not None else f"{total.source}: value unknown"
        return (count, shown), (1, "-np counts every process")
    if slots:
        return (slots[0], f"{src} slots"), (n_nodes, node_src)
    return (None, "mpirun without -np / -H / --hostfile uses every slot of the allocation: unknown here"), (1, node_src)


def read_hostfile(path: Path | None) -> list[int] | None:
    """Slots per host of an MPI / DeepSpeed hostfile (`host slots=8`; a host alone: 1); None: unreadable."""
    if path is None or not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    slots = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            m = re.search(r"slots=(\d+)", line)
            slots.append(int(m.group(1)) if m else 1)
    return slots or None
