import argparse
import os
from pathlib import Path

import torch
import yaml

import utils
from models.model_pretrain import ALBEF


def create_optimizer(arg_opt, model):
    skip = {"temp"}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": arg_opt["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=arg_opt["lr"],
    )


def main(args, config):
    utils.init_distributed_mode(args)
    model = ALBEF(config=config)
    optimizer = create_optimizer(config["optimizer"], model)
    start_epoch = 0
    if args.checkpoint:
        checkpoint = torch.load(args.checkpoint, map_location="cpu")
        state_dict = checkpoint["model"]
        if args.resume:
            optimizer.load_state_dict(checkpoint["optimizer"])
            start_epoch = checkpoint["epoch"] + 1
        model.load_state_dict(state_dict)
    for epoch in range(start_epoch, config["schedular"]["epochs"]):
        for image, text in args.loader:
            loss = model(image, text, alpha=config["alpha"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="./configs/Pretrain.yaml")
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--resume", default=False, type=bool)
    parser.add_argument("--output_dir", default="Pretrain/")
    parser.add_argument("--seed", default=42, type=int)
    parser.add_argument("--world_size", default=1, type=int, help="number of distributed processes")
    parser.add_argument("--dist_url", default="env://", help="url used to set up distributed training")
    args = parser.parse_args()

    config = yaml.load(open(args.config, "r"), Loader=yaml.Loader)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    yaml.dump(config, open(os.path.join(args.output_dir, "config.yaml"), "w"))
    main(args, config)
