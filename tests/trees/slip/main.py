import argparse
import os

import torch

import losses
import models


def get_args_parser():
    parser = argparse.ArgumentParser(description="SLIP training", add_help=False)
    parser.add_argument("--dataset", default="yfcc15m", type=str, choices=["yfcc15m", "cc3m", "cc12m"])
    parser.add_argument("--root", default="", type=str)
    parser.add_argument("--metadata", default="yfcc15m.pkl", type=str)
    parser.add_argument("--output-dir", default="./", type=str)
    parser.add_argument("--model", default="SLIP_VITB16", type=str)
    parser.add_argument("--ssl-scale", default=1.0, type=float)
    parser.add_argument("--ssl-temp", default=0.1, type=float)
    parser.add_argument("--resume", default="", type=str, help="path to resume from")
    parser.add_argument("--epochs", default=25, type=int)
    parser.add_argument("--warmup-epochs", default=1, type=int)
    parser.add_argument("--start-epoch", default=0, type=int)
    parser.add_argument("--batch-size", default=64, type=int, help="number of samples per-gpu")
    parser.add_argument("--lr", default=3e-3, type=float)
    parser.add_argument("--wd", default=0.1, type=float)
    parser.add_argument("--disable-amp", action="store_true", help="disable mixed-precision training")
    parser.add_argument("--world-size", default=1, type=int, help="number of nodes for distributed training")
    parser.add_argument("--dist-url", default="env://", type=str)
    return parser


def main(args):
    torch.distributed.init_process_group(backend="nccl", init_method=args.dist_url)
    model = getattr(models, args.model)()
    criterion = losses.SLIPLoss(losses.SIMCLRLoss(temperature=args.ssl_temp), args.ssl_scale)
    p_wd, p_non_wd = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "bias" in n or "ln" in n or "bn" in n:
            p_non_wd.append(p)
        else:
            p_wd.append(p)
    optimizer = torch.optim.AdamW(
        [{"params": p_wd, "weight_decay": args.wd}, {"params": p_non_wd, "weight_decay": 0}], lr=args.lr
    )
    scaler = torch.cuda.amp.GradScaler(enabled=not args.disable_amp)

    if args.resume:
        if os.path.isfile(args.resume):
            checkpoint = torch.load(args.resume, map_location="cpu")
            args.start_epoch = checkpoint["epoch"]
            model.load_state_dict(checkpoint["state_dict"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scaler.load_state_dict(checkpoint["scaler"])
    else:
        # auto-resume from the latest checkpoint in the output directory
        latest = os.path.join(args.output_dir, "checkpoint.pt")
        if os.path.isfile(latest):
            latest_checkpoint = torch.load(latest, map_location="cpu")
            args.start_epoch = latest_checkpoint["epoch"]
            model.load_state_dict(latest_checkpoint["state_dict"])
            optimizer.load_state_dict(latest_checkpoint["optimizer"])
            scaler.load_state_dict(latest_checkpoint["scaler"])

    for epoch in range(args.start_epoch, args.epochs):
        for images, texts, aug1, aug2 in args.loader:
            with torch.cuda.amp.autocast(enabled=not args.disable_amp):
                outputs = model(images, texts, aug1, aug2)
                loss = criterion(outputs)["loss"]
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            model.logit_scale.data.clamp_(0, 4.6052)


if __name__ == "__main__":
    parser = argparse.ArgumentParser("SLIP training", parents=[get_args_parser()])
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    main(args)
