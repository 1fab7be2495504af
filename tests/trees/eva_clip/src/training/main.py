import math
import os
import sys

import torch

from eva_clip import create_model
from eva_clip.loss import ClipLoss
from training.optim import create_optimizer
from training.params import parse_args


def main(args):
    args = parse_args(args)
    args.local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.distributed.init_process_group(backend="nccl")
    args.rank, args.world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model = create_model(args.model, precision=args.precision)
    optimizer = create_optimizer(args, model)
    if args.resume is not None and os.path.isfile(args.resume):
        checkpoint = torch.load(args.resume, map_location="cpu")
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    loss = ClipLoss(rank=args.rank, world_size=args.world_size)
    for epoch in range(args.epochs):
        for images, texts in args.loader:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                image_features, text_features, logit_scale = model(images, texts)
                total = loss(image_features, text_features, logit_scale)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))


if __name__ == "__main__":
    main(sys.argv[1:])
