"""Trainer entry: options, model, parameter groups, then the epoch loop."""
import sys

import torch

from open_clip.loss import ContrastiveLoss
from open_clip.model import TwoTowerCLIP
from open_clip_train.distributed import init_distributed
from open_clip_train.params import parse_args
from open_clip_train.train import train_one_epoch


def main(argv):
    args = init_distributed(parse_args(argv))
    model = TwoTowerCLIP(args.model)

    no_decay = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if no_decay(n, p) and p.requires_grad], "weight_decay": 0.0},
        {"params": [p for n, p in named if not no_decay(n, p) and p.requires_grad], "weight_decay": args.wd},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    loss = ContrastiveLoss(local_loss=args.local_loss, gather_with_grad=args.gather_with_grad,
                           rank=args.rank, world_size=args.world_size)
    for epoch in range(args.epochs):
        train_one_epoch(model, loss, optimizer, epoch, args)


if __name__ == "__main__":
    main(sys.argv[1:])
