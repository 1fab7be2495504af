import argparse


def parse_args(args):
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-data", type=str, default=None)
    parser.add_argument("--train-num-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64, help="Batch size per GPU.")
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--wd", type=float, default=0.05)
    parser.add_argument("--layer-decay", type=float, default=1.0, help="layer-wise lr decay of the visual tower")
    parser.add_argument("--warmup", type=int, default=10000, help="Number of steps to warmup for.")
    parser.add_argument("--precision", choices=["amp", "amp_bf16", "fp16", "bf16", "fp32"], default="amp")
    parser.add_argument("--model", type=str, default="EVA02-CLIP-B-16")
    parser.add_argument("--enable-deepspeed", action="store_true", default=False)
    parser.add_argument("--zero-stage", type=int, default=1)
    parser.add_argument("--grad-clip-norm", type=float, default=None)
    parser.add_argument("--logs", type=str, default="./logs/")
    parser.add_argument("--name", type=str, default=None)
    parser.add_argument("--resume", type=str, default=None, help="path to latest checkpoint")
    return parser.parse_args(args)
