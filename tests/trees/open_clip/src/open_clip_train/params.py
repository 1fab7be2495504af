"""Command-line options of the trainer."""
import argparse


class KeyValue(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, dict(v.split("=", 1) for v in values))


def parse_args(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-data", type=str, default=None, help="shards to train on")
    parser.add_argument("--workers", type=int, default=4, help="loader workers per GPU")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per GPU")
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="learning rate")
    parser.add_argument("--wd", type=float, default=0.2, help="weight decay")
    parser.add_argument("--warmup", type=int, default=10000, help="warmup steps")
    parser.add_argument("--resume", type=str, default=None, help="checkpoint path, or 'latest'")
    parser.add_argument("--precision", choices=["amp", "amp_bf16", "bf16", "fp16", "fp32"],
                        default="amp_bf16", help="floating point precision")
    parser.add_argument("--model", type=str, default="RN50")
    parser.add_argument("--local-loss", default=False, action="store_true",
                        help="local features against global ones (no full global matrix)")
    parser.add_argument("--gather-with-grad", default=False, action="store_true")
    parser.add_argument("--model-kwargs", nargs="*", default={}, action=KeyValue)
    return parser.parse_args(argv)
