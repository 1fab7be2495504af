from fgclip2.train.train_stage2 import train

if __name__ == "__main__":
    train()
