"""Benchmark: optimizer-step time of the tiny CPU run with the default probes vs without.

One process, one model, one optimizer: blocks of steps alternate between probes installed
(DoctorCallback: cross-entropy probe, subject probe, forward counter, per-group gradient norms,
a read-back every `interval` steps, as `live` runs them) and probes removed. Medians over
many steps; the first round is warm-up. Target: <= 1.05x (Cockpit's cheapest config: 1.5x).

    python bench/live_overhead.py [--rounds 8] [--block 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def build():
    from fgclip.presets import preset_args
    from fgclip.train import parse, build_model, image_stats
    from fgclip.data import FGCLIPDataset, collate
    from transformers import AutoTokenizer

    margs, dargs, targs = parse(preset_args("tiny") + ["--output_dir", "/tmp/fgclip-bench-live"])
    tok = AutoTokenizer.from_pretrained(margs.base_model)
    data = FGCLIPDataset(dargs.data_path, dargs.image_folder, tok, image_size=dargs.base_image_size,
                         add_box_loss=True, use_hard_neg=True, **image_stats(margs.base_model))
    model = build_model(margs, dargs, targs, tok).train()
    from fgclip.trainer import parameter_groups

    opt = torch.optim.AdamW(parameter_groups(model, 5e-4, 0.0), lr=5e-4)
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    batches = [b for _, b in zip(range(16), loader)]  # decoded once: time the step, not the JPEGs
    return model, opt, batches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--interval", type=int, default=5)
    args = ap.parse_args()
    from types import SimpleNamespace

    from fgclip_doctor.probes.callback import DoctorCallback

    torch.manual_seed(0)
    model, opt, batches = build()
    times = {"probes": [], "bare": []}
    state, i = SimpleNamespace(global_step=0), 0
    for r in range(args.rounds):
        for mode in ("probes", "bare") if r % 2 == 0 else ("bare", "probes"):
            cb = DoctorCallback(interval=args.interval) if mode == "probes" else None
            if cb:
                cb.install(model, opt)
            for _ in range(args.block):
                batch = batches[i % len(batches)]
                i += 1
                t = time.perf_counter()
                loss = model(**batch).loss
                loss.backward()
                if cb:
                    cb.on_pre_optimizer_step(None, state, None, optimizer=opt)
                opt.step()
                opt.zero_grad(set_to_none=True)
                state.global_step += 1
                if cb:
                    cb.on_step_end(None, state, SimpleNamespace(should_training_stop=False), model=model)
                if r > 0:
                    times[mode].append(time.perf_counter() - t)
            if cb:
                cb.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["probes"] / med["bare"]
    print(f"steps per mode: {len(times['bare'])} (after a warm-up round)")
    print(f"bare   median {1000 * med['bare']:.1f} ms/step")
    print(f"probes median {1000 * med['probes']:.1f} ms/step")
    print(f"probes / bare = {ratio:.3f}x  (target <= 1.05)  {'OK' if ratio <= 1.05 else 'MISS'}")


if __name__ == "__main__":
    main()
