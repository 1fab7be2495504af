# Thin launcher: keeps the heavy imports out of the deepspeed entry point.
from fgclip.train.train_fgclip import train

if __name__ == "__main__":
    train()
