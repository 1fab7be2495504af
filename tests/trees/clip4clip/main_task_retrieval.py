import argparse
import os

import torch
from torch.utils.data import DataLoader

from modules.modeling import CLIP4Clip

torch.distributed.init_process_group(backend="nccl")


def get_args(description="CLIP4Clip on Retrieval Task"):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--do_train", action="store_true", help="Whether to run training.")
    parser.add_argument("--train_csv", type=str, default="data/.train.csv", help="")
    parser.add_argument("--data_path", type=str, default="data/caption.pickle", help="data pickle file path")
    parser.add_argument("--features_path", type=str, default="data/videos_feature.pickle", help="feature path")
    parser.add_argument("--num_thread_reader", type=int, default=1, help="")
    parser.add_argument("--lr", type=float, default=0.0001, help="initial learning rate")
    parser.add_argument("--epochs", type=int, default=20, help="upper epoch limit")
    parser.add_argument("--batch_size", type=int, default=256, help="batch size")
    parser.add_argument("--batch_size_val", type=int, default=3500, help="batch size eval")
    parser.add_argument("--n_display", type=int, default=100, help="Information display frequence")
    parser.add_argument("--max_words", type=int, default=20, help="")
    parser.add_argument("--max_frames", type=int, default=100, help="")
    parser.add_argument("--feature_framerate", type=int, default=1, help="")
    parser.add_argument("--output_dir", default=None, type=str, required=True, help="The output directory.")
    parser.add_argument("--init_model", default=None, type=str, required=False, help="Initial model.")
    parser.add_argument("--warmup_proportion", default=0.1, type=float, help="Proportion of training to warm up")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1, help="steps to accumulate")
    parser.add_argument("--n_gpu", type=int, default=1, help="Changed in the execute process.")
    parser.add_argument("--local_rank", default=0, type=int, help="distribted training")
    parser.add_argument("--coef_lr", type=float, default=1.0, help="coefficient for bert branch.")
    parser.add_argument("--loose_type", action="store_true", help="Default using tight type for retrieval.")
    parser.add_argument("--sim_header", type=str, default="meanP", choices=["meanP", "seqLSTM", "seqTransf"])
    parser.add_argument("--linear_patch", type=str, default="2d", choices=["2d", "3d"])
    parser.add_argument("--freeze_layer_num", type=int, default=0, help="Layer NO. of CLIP need to freeze.")
    parser.add_argument("--slice_framepos", type=int, default=0, choices=[0, 1, 2], help="0: cut from head frames")
    parser.add_argument("--pretrained_clip_name", default="ViT-B/32", type=str, help="Choose a CLIP version")
    args = parser.parse_args()
    if args.gradient_accumulation_steps < 1:
        raise ValueError("Invalid gradient_accumulation_steps parameter: {}".format(args.gradient_accumulation_steps))
    args.batch_size = int(args.batch_size / args.gradient_accumulation_steps)
    return args


def set_seed_logger(args):
    world_size = torch.distributed.get_world_size()
    torch.cuda.set_device(args.local_rank)
    args.world_size = world_size
    args.rank = torch.distributed.get_rank()
    os.makedirs(args.output_dir, exist_ok=True)
    return args


def init_device(args, local_rank):
    device = torch.device("cuda", local_rank)
    n_gpu = torch.cuda.device_count()
    args.n_gpu = n_gpu
    if args.batch_size % args.n_gpu != 0 or args.batch_size_val % args.n_gpu != 0:
        raise ValueError("Invalid batch_size/batch_size_val and n_gpu parameter: {}%{} and {}%{}".format(
            args.batch_size, args.n_gpu, args.batch_size_val, args.n_gpu))
    return device, n_gpu


def init_model(args, device):
    if args.init_model:
        model_state_dict = torch.load(args.init_model, map_location="cpu")
    else:
        model_state_dict = None
    model = CLIP4Clip.from_pretrained(state_dict=model_state_dict, task_config=args)
    model.to(device)
    return model


def prep_optimizer(args, model, local_rank, coef_lr=1.0):
    param_optimizer = list(model.named_parameters())
    no_decay = ["bias", "LayerNorm.bias", "LayerNorm.weight"]
    decay_param_tp = [(n, p) for n, p in param_optimizer if not any(nd in n for nd in no_decay)]
    no_decay_param_tp = [(n, p) for n, p in param_optimizer if any(nd in n for nd in no_decay)]
    decay_clip_param_tp = [(n, p) for n, p in decay_param_tp if "clip." in n]
    decay_noclip_param_tp = [(n, p) for n, p in decay_param_tp if "clip." not in n]
    no_decay_clip_param_tp = [(n, p) for n, p in no_decay_param_tp if "clip." in n]
    no_decay_noclip_param_tp = [(n, p) for n, p in no_decay_param_tp if "clip." not in n]
    weight_decay = 0.2
    optimizer_grouped_parameters = [
        {"params": [p for n, p in decay_clip_param_tp], "weight_decay": weight_decay, "lr": args.lr * coef_lr},
        {"params": [p for n, p in decay_noclip_param_tp], "weight_decay": weight_decay},
        {"params": [p for n, p in no_decay_clip_param_tp], "weight_decay": 0.0, "lr": args.lr * coef_lr},
        {"params": [p for n, p in no_decay_noclip_param_tp], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(optimizer_grouped_parameters, lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    model = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[local_rank], output_device=local_rank, find_unused_parameters=True
    )
    return optimizer, model


def train_epoch(epoch, args, model, train_dataloader, device, optimizer, global_step):
    model.train()
    for step, batch in enumerate(train_dataloader):
        input_ids, video, video_mask = batch
        loss = model(input_ids, video, video_mask)
        loss.backward()
        if (step + 1) % args.gradient_accumulation_steps == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            global_step += 1
    return global_step


def main():
    args = get_args()
    args = set_seed_logger(args)
    device, n_gpu = init_device(args, args.local_rank)
    model = init_model(args, device)
    if args.do_train:
        train_data = torch.load(args.train_csv)
        train_sampler = torch.utils.data.distributed.DistributedSampler(train_data)
        train_dataloader = DataLoader(
            train_data,
            batch_size=args.batch_size // args.n_gpu,
            num_workers=args.num_thread_reader,
            pin_memory=False,
            shuffle=(train_sampler is None),
            sampler=train_sampler,
            drop_last=True,
        )
        optimizer, model = prep_optimizer(args, model, args.local_rank, coef_lr=args.coef_lr)
        global_step = 0
        for epoch in range(args.epochs):
            train_sampler.set_epoch(epoch)
            global_step = train_epoch(epoch, args, model, train_dataloader, device, optimizer, global_step)
            torch.save(model.state_dict(), os.path.join(args.output_dir, "pytorch_model.bin.{}".format(epoch)))


if __name__ == "__main__":
    main()
