"""The world a launch starts: processes per node and nodes, from the launcher's options
(`--nproc_per_node`, `--num_gpus`, `--include host:0,1`, `--num_processes`, `--nnodes`) or
`CUDA_VISIBLE_DEVICES`, each with the line it comes from."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
