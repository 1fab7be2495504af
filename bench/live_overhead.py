"""Benchmark: optimizer-step time of a training step with the default probes vs without.

One process, one model, one optimizer: blocks of steps alternate between probes installed
(DoctorCallback: cross-entropy probe, subject probe, forward counter, per-group gradient norms,
a read-back every `interval` steps, as `live` runs them), the probes placed by reading (the
subject's code read as text by the static reader, as `live` places them on code it did not write:
forward hooks on the loss heads, a TorchFunctionMode while each head runs, the RoIAlign function
replaced in the model's module, box features wrapped on the instance) and probes removed.
Medians over many steps; the first round is warm-up. Target: <= 1.05x for both (Cockpit's
cheapest config: 1.5x).

    python bench/live_overhead.py [--rounds 8] [--block 5]                       # tiny, CPU, fp32
    python bench/live_overhead.py --device cuda --bf16 --size b16 --batch 32     # GPU check

--size tiny is the tiny preset (64-wide towers, 64 px); --size b16 trains ViT-B/16-shaped towers
from random weights (vision 768 x 12 at 224 px / patch 16, text 512 x 12, projection 512) on the
same synthetic data, so a GPU step has a realistic amount of work. --bf16 wraps forward + loss in
autocast(bfloat16) with fp32 weights, as Trainer's --bf16 does. On CUDA each step is timed between
two synchronisations (both modes alike), so the time includes the queued kernels.
`--write-config FILE` writes the b16 config.json (the tokenizer's vocabulary) and exits: a launch
with `--model_config FILE` then runs the same towers under `fgclip-doctor live`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch


def vit_b16_config(tokenizer) -> dict:
    """HF CLIP ViT-B/16 tower shapes with the synthetic tokenizer's vocabulary and special ids."""
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=8,
        max_position_embeddings=77,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=16,
    )
    return {"model_type": "clip", "text_config": text, "vision_config": vision, "projection_dim": 512}


def build(size: str, batch: int, device: str, config_path: str):
    from transformers import AutoTokenizer

    from fgclip.data import FGCLIPDataset, collate
    from fgclip.presets import preset_args
    from fgclip.train import build_model, image_stats, parse
    from fgclip.trainer import parameter_groups

    argv = preset_args("tiny") + ["--output_dir", "/tmp/fgclip-bench-live"]
    if size == "b16":  # from scratch with the b16 towers: drop the tiny base's weights
        i = argv.index("--from_openai")
        argv[i : i + 2] = []
        i = argv.index("--model_name_or_path")
        argv[i : i + 2] = []
        argv += ["--model_config", config_path, "--base_image_size", "224"]
    margs, dargs, targs = parse(argv)
    tok = AutoTokenizer.from_pretrained(margs.base_model)
    if size == "b16":
        with open(config_path, "w") as fh:
            json.dump(vit_b16_config(tok), fh)
    data = FGCLIPDataset(
        dargs.data_path,
        dargs.image_folder,
        tok,
        image_size=dargs.base_image_size,
        add_box_loss=True,
        use_hard_neg=True,
        **image_stats(margs.base_model),
    )
    model = build_model(margs, dargs, targs, tok).train().to(device)
    opt = torch.optim.AdamW(parameter_groups(model, 5e-4, 0.0), lr=5e-4)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch, shuffle=True, collate_fn=collate, generator=torch.Generator().manual_seed(0)
    )
    batches = []  # decoded once and kept on the device: time the step, not the JPEGs or the copies
    for _, b in zip(range(16), loader):
        batches.append({k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()})
    return model, opt, batches


def placed_sites() -> list[dict]:
    """The probe sites the static reader places in the subject's code read as text (reader/sites.py),
    with the tiny preset's flags: what `live` hands the probes for code the doctor did not write."""
    from pathlib import Path

    from fgclip.presets import preset_args
    from fgclip_doctor.sources.code.reader import FlagInput, read_training_code

    argv, flags = preset_args("tiny"), []
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
            flags.append(FlagInput(arg, value, f"preset tiny {arg}"))
    root = Path(__file__).resolve().parents[1]
    sites = read_training_code("fgclip.train", "module", root, flags=flags).facts.value("code.probe_sites")
    assert sites and {s.get("term") for s in sites} >= {"global", "region", "hardneg"}, sites
    return sites


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast(bfloat16) around forward + loss")
    ap.add_argument("--size", choices=("tiny", "b16"), default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--config", default="/tmp/fgclip-bench-b16.json", help="where the b16 config.json goes")
    ap.add_argument("--write-config", default=None, help="write the b16 config.json here and exit")
    args = ap.parse_args()
    if args.write_config:
        from transformers import AutoTokenizer

        from fgclip.presets import ensure_synthetic

        tok = AutoTokenizer.from_pretrained(str(ensure_synthetic() / "base"))
        with open(args.write_config, "w") as fh:
            json.dump(vit_b16_config(tok), fh, indent=1)
        print(f"wrote {args.write_config}")
        return
    from types import SimpleNamespace

    from fgclip_doctor.callback import DoctorCallback

    torch.manual_seed(0)
    cuda = args.device.startswith("cuda")
    model, opt, batches = build(args.size, args.batch, args.device, args.config)
    autocast = (
        (lambda: torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16))
        if args.bf16
        else contextlib.nullcontext
    )
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sites = placed_sites()
    times = {"probes": [], "placed": [], "bare": []}
    state, i = SimpleNamespace(global_step=0), 0
    orders = (("probes", "placed", "bare"), ("bare", "probes", "placed"), ("placed", "bare", "probes"))
    for r in range(args.rounds):
        for mode in orders[r % 3]:
            cb = None
            if mode == "probes":
                cb = DoctorCallback(interval=args.interval)
            elif mode == "placed":
                cb = DoctorCallback(interval=args.interval, sites=[dict(x) for x in sites], unplaced={})
            if cb:
                cb.install(model, opt)
            for _ in range(args.block):
                batch = batches[i % len(batches)]
                i += 1
                sync()
                t = time.perf_counter()
                with autocast():
                    loss = model(**batch).loss
                loss.backward()
                if cb:
                    cb.on_pre_optimizer_step(None, state, None, optimizer=opt)
                opt.step()
                opt.zero_grad(set_to_none=True)
                state.global_step += 1
                if cb:
                    cb.on_step_end(None, state, SimpleNamespace(should_training_stop=False), model=model)
                sync()
                if r > 0:
                    times[mode].append(time.perf_counter() - t)
            if cb:
                cb.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["probes"] / med["bare"]
    placed = med["placed"] / med["bare"]
    where = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"{args.size} · batch {args.batch} · {where} · {'bf16 autocast' if args.bf16 else 'fp32'}")
    print(f"steps per mode: {len(times['bare'])} (after a warm-up round)")
    print(f"bare   median {1000 * med['bare']:.1f} ms/step")
    print(f"probes median {1000 * med['probes']:.1f} ms/step")
    print(f"placed median {1000 * med['placed']:.1f} ms/step")
    print(f"probes / bare = {ratio:.3f}x  (target <= 1.05)  {'OK' if ratio <= 1.05 else 'MISS'}")
    print(f"placed / bare = {placed:.3f}x  (target <= 1.05)  {'OK' if placed <= 1.05 else 'MISS'}")


if __name__ == "__main__":
    main()
