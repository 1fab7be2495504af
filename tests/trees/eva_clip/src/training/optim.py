"""Parameter groups: no decay on norms, biases and the logit scale; layer-wise LR decay on the
visual tower (patch embedding = layer 0, blocks 1..L, head and final norm = L + 1)."""
import json
import os

import torch

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "eva_clip", "model_configs")


def get_num_layer_for_vit(name, num_max_layer):
    if name.startswith("visual.patch_embed"):
        return 0
    if name.startswith("visual.blocks."):
        return int(name.split(".")[2]) + 1
    return num_max_layer - 1


def create_optimizer(args, model):
    with open(os.path.join(CONFIG_DIR, f"{args.model}.json")) as f:
        model_cfg = json.load(f)
    num_layers = model_cfg["vision_cfg"]["layers"]
    scales = list(args.layer_decay ** (num_layers + 1 - i) for i in range(num_layers + 2))
    skip = {"logit_scale"}
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias") or name in skip
        layer = get_num_layer_for_vit(name, num_layers + 2) if name.startswith("visual.") else num_layers + 1
        key = f"layer_{layer}_{'no_decay' if no_decay else 'decay'}"
        group = groups.setdefault(
            key, {"params": [], "weight_decay": 0.0 if no_decay else args.wd, "lr": args.lr * scales[layer]}
        )
        group["params"].append(param)
    return torch.optim.AdamW(list(groups.values()), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
