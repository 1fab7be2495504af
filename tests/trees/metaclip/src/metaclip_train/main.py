import os
import sys
import time

import torch

from metaclip.loss import ClipLoss
from metaclip.model import create_model
from metaclip_train.distributed import init_distributed_device
from metaclip_train.params import parse_args
from metaclip_train.train import train_one_epoch

LATEST_CHECKPOINT_NAME = "epoch_latest.pt"


def main(args):
    args = parse_args(args)
    device = init_distributed_device(args)
    args.name = args.name or time.strftime("%Y_%m_%d-%H_%M_%S")
    log_base_path = os.path.join(args.logs, args.name)
    args.checkpoint_path = os.path.join(log_base_path, "checkpoints")

    resume_from = None
    if args.resume == "latest":
        latest = os.path.join(args.checkpoint_path, LATEST_CHECKPOINT_NAME)
        if os.path.exists(latest):
            resume_from = latest
    elif args.resume:
        resume_from = args.resume

    model = create_model(args.model, args.precision).to(device)
    exclude = lambda n, p: p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": args.wd},
        ],
        lr=args.lr,
    )
    scaler = torch.cuda.amp.GradScaler() if args.precision == "amp" else None

    start_epoch = 0
    if resume_from:
        checkpoint = torch.load(resume_from, map_location="cpu")
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scaler is not None and "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
        start_epoch = checkpoint["epoch"]

    loss = ClipLoss(rank=args.rank, world_size=args.world_size)
    for epoch in range(start_epoch, args.epochs):
        train_one_epoch(model, loss, optimizer, scaler, epoch, args)


if __name__ == "__main__":
    main(sys.argv[1:])
