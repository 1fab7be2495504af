import argparse


def parse_args(args):
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-data", type=str, default=None)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64, help="per GPU")
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--wd", type=float, default=0.2)
    parser.add_argument("--warmup", type=int, default=10000, help="warmup steps")
    parser.add_argument("--precision", choices=["amp", "amp_bf16", "fp16", "fp32"], default="amp")
    parser.add_argument("--model", type=str, default="ViT-B-32")
    parser.add_argument("--logs", type=str, default="./logs/")
    parser.add_argument("--name", type=str, default=None, help="run name, default: a timestamp")
    parser.add_argument("--resume", type=str, default=None, help="path to a checkpoint, or 'latest'")
    parser.add_argument("--save-frequency", type=int, default=1)
    return parser.parse_args(args)
