"""live hands the training its flags as the launch spelled them (issue 20: `--x=v` kept attached): an
argparse script that defines `--batch-size` gets `--batch-size`, a value that looks like an option stays
attached (`--x=-1e39`: argparse refuses `--x -1e39`), a bare switch stays bare (`--do_train`, which an
argparse `store_true` flag needs), and the typing of flags (HfArgumentParser) always gets a value."""

from __future__ import annotations

import argparse

from fgclip_doctor.commands.live.runner import launch_argv
from fgclip_doctor.sources.launch.flags import _argv
from fgclip_doctor.sources.launch.target import read_target


def _view(tmp_path, line: str):
    script = tmp_path / "train.sh"
    script.write_text(f"python train.py {line}\n")
    return read_target(script, environ={})


def test_live_passes_each_flag_as_the_launch_spelled_it(tmp_path):
    view = _view(tmp_path, "--batch-size 32 --lr=-1e39 --do_train --warmup=0 --name run")
    notes: list[str] = []
    argv = launch_argv(view, notes)
    assert argv == ["--batch-size", "32", "--lr=-1e39", "--do_train", "--warmup=0", "--name", "run"]
    assert notes == []
    # what an argparse training would make of it: the same values as from the launch itself
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--do_train", action="store_true")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--name")
    ns = parser.parse_args(argv)
    assert (ns.batch_size, ns.lr, ns.do_train, ns.warmup, ns.name) == (32, -1e39, True, 0, "run")


def test_flag_typing_always_gives_a_value(tmp_path):
    view = _view(tmp_path, "--do_train --lr=-1e39 --seed 3")
    assert _argv("do_train", view.flags["do_train"]) == ["--do_train", "True"]
    assert _argv("lr", view.flags["lr"]) == ["--lr=-1e39"]
    assert _argv("seed", view.flags["seed"]) == ["--seed", "3"]
