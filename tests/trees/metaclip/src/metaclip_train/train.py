import math

import torch


def cosine_lr(optimizer, base_lr, warmup_length, steps):
    def _lr_adjuster(step):
        if step < warmup_length:
            lr = base_lr * (step + 1) / warmup_length
        else:
            e = step - warmup_length
            lr = 0.5 * (1 + math.cos(math.pi * e / (steps - warmup_length))) * base_lr
        for group in optimizer.param_groups:
            group["lr"] = lr
    return _lr_adjuster


def train_one_epoch(model, loss, optimizer, scaler, epoch, args):
    for images, texts in args.loader:
        with torch.autocast("cuda", enabled=args.precision == "amp"):
            image_features, text_features, logit_scale = model(images, texts)
            total = loss(image_features, text_features, logit_scale)
        optimizer.zero_grad()
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
