import argparse

import torch
import yaml

from clipkd.losses import ContrastiveLoss, DistillLoss, SigmoidLoss
from clipkd.model import DualEncoder, Teacher


def param_groups(model, cfg):
    no_decay = cfg.get("no_decay", ["bias"])
    decay, skip = [], []
    for name, param in model.named_parameters():
        (skip if any(key in name for key in no_decay) else decay).append(param)
    return [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": skip, "weight_decay": 0.0}]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--output-dir", default="runs/default")
    args = parser.parse_args()
    with open(args.config) as f:
        cfg = yaml.safe_load(f)

    model = DualEncoder(cfg["model"])
    if cfg["loss"]["siglip"]:
        criterion = SigmoidLoss()
    else:
        criterion = ContrastiveLoss()
    distill = None
    if cfg["loss"]["distill"]["enabled"]:
        teacher = Teacher(cfg["model"]["embed_dim"]).eval()
        distill = DistillLoss(cfg["loss"]["distill"]["temperature"])
    optimizer = torch.optim.AdamW(param_groups(model, cfg["optim"]), lr=cfg["optim"]["lr"])
    loader = torch.utils.data.DataLoader([], batch_size=cfg["data"]["batch_size"])
    for images, texts in loader:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            image_features, text_features, logit_scale = model(images, texts)
            loss = criterion(image_features, text_features, logit_scale)
            if distill is not None:
                with torch.no_grad():
                    t_images, t_texts = teacher(images, texts)
                loss = loss + cfg["loss"]["distill"]["weight"] * distill(
                    logit_scale * image_features @ text_features.T, logit_scale * t_images @ t_texts.T
                )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.clamp_scale()


if __name__ == "__main__":
    main()
