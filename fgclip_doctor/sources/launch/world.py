"""The world a launch starts: processes per node and nodes, from the launcher's options
(`--nproc_per_node`, `--num_gpus`, `--include host:0,1`, `--hostfile`, `--num_processes`,
accelerate's `--config_file`, `--nnodes`), srun / mpirun around it, or `CUDA_VISIBLE_DEVICES`,
each with the line it comes from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.launch.args import load_args_file
from fgclip_doctor.sources.launch.launchers import Opt, mpi_world, read_hostfile, slurm_world

if TYPE_CHECKING:
    from fgclip_doctor.sources.launch.script import ArgValue, Launch


def launch_world(launch: Launch, rel: str) -> None:
    """Set `launch.nproc` / `launch.nnodes` as its launcher will use them, each with its source
    (`rel`: the script as shown)."""
    opts = launch.launcher_args

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
    name = {"deepspeed": "num_gpus", "torchrun": "nproc_per_node", "accelerate": "num_processes"}.get(
        launch.launcher, ""
    )
    if nproc is None and (av := opts.get(name)):
        nproc = (_int(av.value), src(av))
        if nproc[0] is None and av.value in ("gpu", "auto") and visible:
            nproc = visible
    if nproc is None and launch.launcher == "deepspeed" and (hf := opts.get("hostfile")) and hf.value:
        slots = read_hostfile(_from(launch, hf.value))
        if slots:
            nproc = (slots[0], f"{src(hf)} {hf.value} slots")
            if "num_nodes" not in opts:
                launch.nnodes, launch.nnodes_source = len(slots), f"{src(hf)} {hf.value} ({len(slots)} hosts)"
    if nproc is None and launch.launcher == "accelerate" and (cf := opts.get("config_file")) and cf.value:
        nproc = _accelerate_config(launch, cf.value, src(cf))
    if nproc is None and launch.launcher == "torchrun":
        nproc = (1, "torchrun default: --nproc_per_node 1")
    elif nproc is None and launch.launcher == "python":
        nproc = (1, "python launches one process")
    launch.nproc, launch.nproc_source = (
        nproc or visible or (None, f"{launch.launcher}: process count not in the script")
    )
    for name in ("nnodes", "num_nodes", "num_machines"):
        if av := opts.get(name):
            launch.nnodes, launch.nnodes_source = _int(av.value), src(av)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _from(launch: Launch, text: str) -> Path | None:
    path = Path(text)
    if path.is_absolute():
        return path
    return None if launch.directory is None else launch.directory / path


def _accelerate_config(launch: Launch, text: str, where: str) -> tuple[int | None, str] | None:
    """accelerate's `--config_file`: num_processes is the total over num_machines machines."""
    path = _from(launch, text)
    if path is None or not path.is_file() or path.suffix not in (".yaml", ".yml", ".json"):
        launch.notes.append(f"{where}: {text} not readable here: its num_processes is unknown")
        return None
    try:
        config = load_args_file(path)
    except DoctorInputError as err:
        launch.notes.append(f"{where}: {err}")
        return None
    total, machines = config.get("num_processes"), config.get("num_machines")
    if total is None or type(total[0]) is not int:
        return None
    given = "num_machines" in launch.launcher_args
    if machines is not None and type(machines[0]) is int and machines[0] > 0 and not given:
        launch.nnodes, launch.nnodes_source = machines[0], machines[1]
        return total[0] // machines[0], f"{total[1]} ÷ {machines[1]}"
    return total[0], total[1]


def wrapped_world(launch: Launch, prog: str, opts: dict[str, Opt], headers: dict[str, Opt]) -> None:
    """The world of a launch started by srun / mpirun: the wrapper's processes for a plain
    `python` (each is one rank), its nodes for a per-node launcher (torchrun, deepspeed) inside."""
    if prog == "srun":
        (nproc, nsrc), (nodes, node_src) = slurm_world(opts, headers)
    else:
        hf = opts.get("hostfile")
        slots = read_hostfile(_from(launch, hf.value)) if hf is not None and hf.value else None
        (nproc, nsrc), (nodes, node_src) = mpi_world(opts, slots, hf.source if hf is not None else "")
    if launch.launcher == "python":
        launch.launcher = "mpirun" if prog == "mpiexec" else prog
        launch.nproc, launch.nproc_source = nproc, nsrc
        launch.nnodes, launch.nnodes_source = nodes, node_src
    elif launch.nnodes_source.startswith("default"):  # torchrun per node: the wrapper gives the nodes
        launch.nnodes, launch.nnodes_source = nodes, f"{node_src} ({prog} starts one {launch.launcher} per node)"
