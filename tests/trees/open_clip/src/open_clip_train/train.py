import math

import torch


def train_one_epoch(model, loss, optimizer, epoch, args):
    for images, texts in args.loader:
        image_features, text_features, logit_scale = model(images, texts)
        total = loss(image_features, text_features, logit_scale)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        # keep the temperature at or below 100
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
