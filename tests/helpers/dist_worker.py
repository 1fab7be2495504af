"""One rank of the two-rank gloo test (tests/test_distributed.py); launched by torch.distributed.run.

    python -m torch.distributed.run --nproc_per_node 2 tests/helpers/dist_worker.py OUT_DIR [TRAIN_ARGS...]

(i)  GlobalContrastiveLoss on this rank's B rows of a fixed 2B-row batch: writes the logits
     shape, targets, loss and gradients, and the single-process loss / gradients computed on
     the concatenated batch, to OUT_DIR/rank{R}.json.
(ii) `fgclip.train.main(TRAIN_ARGS)` under DDP on the CPU (if TRAIN_ARGS are given), with a
     hook on the model's global head that records the candidates and targets it saw.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from fgclip.losses import GlobalContrastiveLoss, world

B, D = 4, 8


def loss_check() -> dict:
    rank, size = world()
    g = torch.Generator().manual_seed(0)
    all_image = F.normalize(torch.randn(size * B, D, generator=g), dim=-1)  # the same on every rank
    all_text = F.normalize(torch.randn(size * B, D, generator=g), dim=-1)
    mine = slice(rank * B, (rank + 1) * B)
    image = all_image[mine].clone().requires_grad_()
    text = all_text[mine].clone().requires_grad_()
    scale = torch.tensor(math.log(20.0), requires_grad=True)
    out = GlobalContrastiveLoss()(image, text, scale)
    out.loss.backward()
    loss_mean = out.loss.detach().clone()
    dist.all_reduce(loss_mean)
    loss_mean /= size
    scale_grad_mean = scale.grad.clone()
    dist.all_reduce(scale_grad_mean)  # what DDP's gradient averaging does to a shared parameter
    scale_grad_mean /= size

    # The single-process reference on the concatenated batch (a world of one: no gather).
    ref_image = all_image.clone().requires_grad_()
    ref_text = all_text.clone().requires_grad_()
    ref_scale = torch.tensor(math.log(20.0), requires_grad=True)
    logits = ref_scale.exp() * ref_image @ ref_text.t()
    t = torch.arange(size * B)
    ref_loss = (F.cross_entropy(logits, t) + F.cross_entropy(logits.t(), t)) / 2
    ref_loss.backward()
    return {
        "rank": rank,
        "world": size,
        "B": B,
        "logits_shape": list(out.logits.shape),
        "targets": out.targets.tolist(),
        "logits": out.logits.detach().tolist(),
        "ref_logits_rows": logits[mine].detach().tolist(),
        "loss": float(out.loss),
        "loss_mean": float(loss_mean),
        "ref_loss": float(ref_loss),
        "image_grad": image.grad.tolist(),
        "text_grad": text.grad.tolist(),
        "ref_image_grad": ref_image.grad[mine].tolist(),
        "ref_text_grad": ref_text.grad[mine].tolist(),
        "scale_grad_mean": float(scale_grad_mean),
        "ref_scale_grad": float(ref_scale.grad),
    }


def train_check(args: list[str]) -> dict:
    import fgclip.train

    seen: list[dict] = []
    build = fgclip.train.build_model

    def build_and_hook(*a, **kw):
        model = build(*a, **kw)
        model.global_head.register_forward_hook(
            lambda m, i, o: seen.append({"logits_shape": list(o.logits.shape), "targets": o.targets.tolist()})
        )
        return model

    fgclip.train.build_model = build_and_hook
    trainer = fgclip.train.main(args)
    bank = trainer.model.module.memory_bank if hasattr(trainer.model, "module") else trainer.model.memory_bank
    logs = [e for e in trainer.state.log_history if "loss" in e]
    return {
        "global_step": trainer.state.global_step,
        "world_size": trainer.args.world_size,
        "head_calls": seen,
        "forward_calls": int(bank.forward_calls),
        "losses": [e["loss"] for e in logs],
        "region_losses": [e.get("region_loss") for e in logs],
    }


def main() -> None:
    out_dir, train_args = Path(sys.argv[1]), sys.argv[2:]
    torch.manual_seed(0)
    dist.init_process_group("gloo")
    result = {"loss_check": loss_check()}
    dist.barrier()
    if train_args:
        result["train"] = train_check(train_args)
    rank = dist.get_rank()
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
