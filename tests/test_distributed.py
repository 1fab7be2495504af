"""Two ranks on gloo (CPU): the global loss sees 2 x per-rank batch candidates, and the Trainer runs under DDP."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

WORKER = Path(__file__).parent / "helpers" / "dist_worker.py"
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed gloo backend not available"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    train_args = [
        "--preset",
        "tiny",
        "--use_cpu",
        "True",
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "4",
        "--logging_steps",
        "1",
        "--save_strategy",
        "no",
        "--warmup_steps",
        "0",
        "--report_to",
        "none",
        "--disable_tqdm",
        "True",
        "--output_dir",
        str(out / "run"),
    ]
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
    )
    env.pop("ENABLE_RUNTIME_DIAG", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(WORKER),
        str(out),
    ] + train_args
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_global_candidates_and_targets(two_ranks):
    for r, res in enumerate(two_ranks):
        c = res["loss_check"]
        b = c["B"]
        assert c["rank"] == r and c["world"] == 2
        assert c["logits_shape"] == [b, 2 * b]  # this rank's rows against every rank's captions
        assert c["targets"] == list(range(r * b, (r + 1) * b))  # offset by rank x batch
        assert torch.allclose(torch.tensor(c["logits"]), torch.tensor(c["ref_logits_rows"]), atol=1e-5)


def test_gather_matches_the_single_process_batch(two_ranks):
    for res in two_ranks:
        c = res["loss_check"]
        # the mean of the rank losses is the loss of the concatenated batch
        assert c["loss_mean"] == pytest.approx(c["ref_loss"], rel=1e-5)
        # features get world x the full-batch gradient (every rank's loss reaches them through the
        # gather); DDP's averaging over ranks then yields exactly the full-batch parameter gradient
        w = c["world"]
        assert torch.allclose(torch.tensor(c["image_grad"]), w * torch.tensor(c["ref_image_grad"]), atol=1e-5)
        assert torch.allclose(torch.tensor(c["text_grad"]), w * torch.tensor(c["ref_text_grad"]), atol=1e-5)
        assert c["scale_grad_mean"] == pytest.approx(c["ref_scale_grad"], rel=1e-4, abs=1e-6)
    assert two_ranks[0]["loss_check"]["loss_mean"] == pytest.approx(two_ranks[1]["loss_check"]["loss_mean"])


def test_trainer_runs_under_ddp_on_cpu(two_ranks):
    for r, res in enumerate(two_ranks):
        t = res["train"]
        assert t["world_size"] == 2 and t["global_step"] == 3
        assert t["forward_calls"] == 3
        # long + short caption per step, each against 2 x 4 global candidates, targets offset by rank
        assert len(t["head_calls"]) == 6
        for call in t["head_calls"]:
            assert call["logits_shape"] == [4, 8]
            assert call["targets"] == list(range(4 * r, 4 * r + 4))
        assert len(t["losses"]) == 3 and all(math.isfinite(x) for x in t["losses"])  # logged each step
