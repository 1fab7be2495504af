"""Accumulation, precision and the no-decay group read from what the code does (reader/train_step.py,
reader/decay_rule.py), not from what its flags are called: SLIP's `--update-freq` and
`--disable-amp`, open_clip's accumulation nested under `if args.accum_freq == 1: ... else:`, a
counter that gates the step (unknown, saying why), Accelerate's `accumulate()`, and open_clip's
no-decay predicate reached through two helper functions. Trees under tests/trees are our own code,
edited here per case; each reading has a launch where it fires and one where it stays quiet."""

from __future__ import annotations

from test_check_config_code import run, status, tree


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


# --------------------------------------------------------------------------- SLIP: --update-freq
SLIP_LOOP = """        for images, texts, aug1, aug2 in args.loader:
            with torch.cuda.amp.autocast(enabled=not args.disable_amp):
                outputs = model(images, texts, aug1, aug2)
                loss = criterion(outputs)["loss"]
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
"""
SLIP_ACCUMULATING = """        for data_iter, (images, texts, aug1, aug2) in enumerate(args.loader):
            with torch.cuda.amp.autocast(enabled=not args.disable_amp):
                outputs = model(images, texts, aug1, aug2)
                loss = criterion(outputs)["loss"] / args.update_freq
            scaler.scale(loss).backward()
            if (data_iter + 1) % args.update_freq != 0:
                continue
            scaler.step(optimizer)
            optimizer.zero_grad()
"""
UPDATE_FREQ = '    parser.add_argument("--update-freq", default=1, type=int, help="optimizer update frequency")\n'


def slip(tmp_path, *flags: str):
    sl = tree(tmp_path, "slip")
    edit(sl / "main.py", SLIP_LOOP, SLIP_ACCUMULATING)
    edit(
        sl / "main.py", '    parser.add_argument("--world-size"', UPDATE_FREQ + '    parser.add_argument("--world-size"'
    )
    edit(sl / "run_slip.sh", "--ssl-temp 0.1", " ".join(["--ssl-temp 0.1", *flags]))
    return run(sl, "run_slip.sh")


def test_slip_update_freq_is_accumulation_read_from_the_guard_around_the_step(tmp_path):
    _, found, facts, _ = slip(tmp_path, "--update-freq 4")
    value, source = facts["train.grad_accum"]
    assert value == 4
    assert source.startswith("main.py:73 steps the optimizer (main.py:75) every `args.update_freq` batches")
    assert status(found, "FGD208") == "WARN"
    assert "accumulation 4" in found[("FGD208", "")]["message"]
    assert facts["train.global_batch"][0] == 64 * 8 * 4


def test_slip_update_freq_at_its_default_steps_every_batch(tmp_path):
    _, found, facts, _ = slip(tmp_path)
    assert facts["train.grad_accum"][0] == 1
    assert status(found, "FGD208") == "PASS"


# --------------------------------------------------------------------------- SLIP: --disable-amp
def test_slip_autocast_is_fp16_unless_disable_amp_and_the_fix_names_that_flag(tmp_path):
    _, found, facts, _ = run(tree(tmp_path, "slip"), "run_slip.sh")
    assert facts["train.fp16"][0] is True and facts["train.bf16"][0] is False
    assert "main.py:68 torch.cuda.amp.autocast(enabled=not args.disable_amp)" in facts["train.fp16"][1]
    finding = found[("FGD601", "")]
    assert finding["status"] == "WARN"
    assert finding["fix"].startswith("--disable-amp (fp32), or autocast(dtype=torch.bfloat16) at main.py:68")


def test_slip_with_disable_amp_is_fp32(tmp_path):
    sl = tree(tmp_path, "slip")
    edit(sl / "run_slip.sh", "--ssl-temp 0.1", "--ssl-temp 0.1 --disable-amp")
    _, found, facts, _ = run(sl, "run_slip.sh")
    assert facts["train.fp16"][0] is False and facts["train.bf16"][0] is False
    assert "autocast off for this launch" in facts["train.fp16"][1]
    assert status(found, "FGD601") == "PASS"


def test_bf16_autocast_chosen_by_a_flag_in_the_dtype(tmp_path):
    sl = tree(tmp_path, "slip")
    edit(
        sl / "main.py",
        "torch.cuda.amp.autocast(enabled=not args.disable_amp)",
        "torch.autocast('cuda', dtype=torch.bfloat16 if args.disable_amp else torch.float16)",
    )
    edit(sl / "run_slip.sh", "--ssl-temp 0.1", "--ssl-temp 0.1 --disable-amp")
    _, found, facts, _ = run(sl, "run_slip.sh")
    assert facts["train.bf16"][0] is True and facts["train.fp16"][0] is False
    assert status(found, "FGD601") == "PASS"


# --------------------------------------------------------------------------- open_clip: nested accumulation
OPEN_CLIP_LOOP = """    for images, texts in args.loader:
        image_features, text_features, logit_scale = model(images, texts)
        total = loss(image_features, text_features, logit_scale)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
"""
OPEN_CLIP_ACCUMULATING = """    cached = []
    for i, (images, texts) in enumerate(args.loader):
        if args.accum_freq == 1:
            image_features, text_features, logit_scale = model(images, texts)
            total = loss(image_features, text_features, logit_scale)
            total.backward()
        else:
            cached.append((images, texts))
            # not a step yet: keep the batch until accum_freq of them are in
            if ((i + 1) % args.accum_freq) > 0:
                continue
            for images, texts in cached:
                image_features, text_features, logit_scale = model(images, texts)
                loss(image_features, text_features, logit_scale).backward()
            cached = []
        optimizer.step()
        optimizer.zero_grad()
"""


def open_clip(tmp_path, loop: str, *flags: str):
    oc = tree(tmp_path, "open_clip")
    edit(oc / "src/open_clip_train/train.py", OPEN_CLIP_LOOP, loop)
    edit(
        oc / "src/open_clip_train/params.py",
        '    parser.add_argument("--epochs"',
        '    parser.add_argument("--accum-freq", type=int, default=1)\n    parser.add_argument("--epochs"',
    )
    edit(oc / "train.sh", "--model RN50", " ".join(["--model RN50", *flags]))
    return run(oc, "train.sh")


def test_open_clip_accumulation_in_the_else_branch_it_takes(tmp_path):
    _, found, facts, _ = open_clip(tmp_path, OPEN_CLIP_ACCUMULATING, "--accum-freq 2")
    value, source = facts["train.grad_accum"]
    assert value == 2
    said = "open_clip_train/train.py:16 steps the optimizer (open_clip_train/train.py:22) every `args.accum_freq`"
    assert source.startswith("train.sh:7 --accum-freq; ") and said in source  # the flag, and the code using it
    assert status(found, "FGD208") == "WARN"


def test_open_clip_accumulation_branch_not_taken_steps_every_batch(tmp_path):
    _, found, facts, _ = open_clip(tmp_path, OPEN_CLIP_ACCUMULATING)
    value, source = facts["train.grad_accum"]
    assert value == 1 and "steps on every batch" in source
    assert status(found, "FGD208") == "PASS"


COUNTED = """    seen = 0
    for images, texts in args.loader:
        image_features, text_features, logit_scale = model(images, texts)
        loss(image_features, text_features, logit_scale).backward()
        seen += 1
        if seen == args.accum_freq:
            optimizer.step()
            optimizer.zero_grad()
            seen = 0
"""


def test_a_counter_that_gates_the_step_is_unknown_never_every_batch(tmp_path):
    _, found, facts, _ = open_clip(tmp_path, COUNTED, "--accum-freq 2")
    # the flag by its name still gives 2; what the code does is not claimed
    assert facts["train.grad_accum"] == (2, "train.sh:7 --accum-freq")
    oc_no_flag = tree(tmp_path / "b", "open_clip")
    edit(oc_no_flag / "src/open_clip_train/train.py", OPEN_CLIP_LOOP, COUNTED)
    edit(oc_no_flag / "src/open_clip_train/train.py", "args.accum_freq", "args.k")
    _, found, facts, _ = run(oc_no_flag, "train.sh")
    assert "train.grad_accum" not in facts
    assert status(found, "FGD208") == "SKIP"
    said = "open_clip_train/train.py:12: the optimizer steps (open_clip_train/train.py:13) only when `seen == args.k`"
    assert said in found[("FGD208", "")]["message"]


ACCELERATE = """    accelerator = Accelerator(gradient_accumulation_steps=args.accum_freq)
    for images, texts in args.loader:
        with accelerator.accumulate(model):
            image_features, text_features, logit_scale = model(images, texts)
            accelerator.backward(loss(image_features, text_features, logit_scale))
            optimizer.step()
            optimizer.zero_grad()
"""


def test_accelerate_accumulate_takes_the_accelerators_steps(tmp_path):
    _, found, facts, _ = open_clip(tmp_path / "x", ACCELERATE, "--accum-freq 3")
    value, source = facts["train.grad_accum"]
    assert value == 3 and "accumulate" in source and "gradient_accumulation_steps" in source
    oc2 = tree(tmp_path / "y", "open_clip")
    loop = ACCELERATE.replace("gradient_accumulation_steps=args.accum_freq", "")
    edit(oc2 / "src/open_clip_train/train.py", OPEN_CLIP_LOOP, loop)
    _, found, facts, _ = run(oc2, "train.sh")
    assert "train.grad_accum" not in facts
    assert "takes it from `accelerate launch` or its config" in found[("FGD208", "")]["message"]


# --------------------------------------------------------------------------- open_clip: no-decay predicate
GROUPS = (
    (
        '    no_decay = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n'
        "  # noqa: E731\n"
    )
    + """    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if no_decay(n, p) and p.requires_grad], "weight_decay": 0.0},
        {"params": [p for n, p in named if not no_decay(n, p) and p.requires_grad], "weight_decay": args.wd},
    ]
"""
)
HELPERS = """

def exclude_from_wd(name, param):
    return {test}


def make_exclude(model, patterns=None):
    def exclude(name, param):
        if exclude_from_wd(name, param):
            return True
        return any(p in name for p in patterns or [])

    return exclude


def wd_groups(model, weight_decay, exclude_fn=None):
    exclude_fn = exclude_fn or make_exclude(model)
    buckets = {{}}
    for name, p in model.named_parameters():
        no_wd = exclude_fn(name, p)
        group = buckets.setdefault(no_wd, {{"params": [], "weight_decay": 0.0 if no_wd else weight_decay}})
        group["params"].append(p)
    return list(buckets.values())
"""


def decay_tree(tmp_path, test: str):
    oc = tree(tmp_path, "open_clip")
    main = oc / "src/open_clip_train/main.py"
    edit(main, GROUPS, "    groups = wd_groups(model, args.wd)\n")
    edit(main, "\n\ndef main(argv):", HELPERS.format(test=test) + "\n\ndef main(argv):")
    return run(oc, "train.sh")


def test_no_decay_predicate_reached_through_two_helpers_keeps_the_scale_out(tmp_path):
    _, found, facts, _ = decay_tree(tmp_path, "param.ndim <= 1")
    assert facts["scale.global.decayed"][0] is False
    assert status(found, "FGD103", "logit_scale") == "PASS"


def test_a_predicate_that_does_not_exclude_scalars_leaves_the_scale_decayed(tmp_path):
    _, found, facts, _ = decay_tree(tmp_path, '"bias" in name')
    assert facts["scale.global.decayed"][0] is True
    assert status(found, "FGD103", "logit_scale") == "WARN"


PLAIN_STEP = """        for data_iter, (images, texts, aug1, aug2) in enumerate(args.loader):
            loss = criterion(model(images, texts, aug1, aug2))["loss"] / args.update_freq
            loss.backward()
            if (data_iter + 1) % args.update_freq == 0:
                o.step()
                o.zero_grad()
"""


def test_an_optimizer_by_any_name_is_the_object_the_code_zeroes_and_steps(tmp_path):
    sl = tree(tmp_path, "slip")
    edit(sl / "main.py", SLIP_LOOP, "        o = optimizer\n" + PLAIN_STEP)
    world = '    parser.add_argument("--world-size"'
    edit(sl / "main.py", world, UPDATE_FREQ + world)
    edit(sl / "run_slip.sh", "--ssl-temp 0.1", "--ssl-temp 0.1 --update-freq 2")
    _, found, facts, _ = run(sl, "run_slip.sh")
    value, source = facts["train.grad_accum"]
    assert value == 2 and source.startswith("main.py:72 steps the optimizer (main.py:73)")


DEEPSPEED = """    import deepspeed

    config = {"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": args.accum_freq}
    engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    for images, texts in args.loader:
        engine.zero_grad()
        image_features, text_features, logit_scale = engine(images, texts)
        engine.backward(loss(image_features, text_features, logit_scale))
        engine.step()
"""


def test_deepspeed_accumulates_by_the_config_the_code_builds_never_every_batch(tmp_path):
    _, found, facts, _ = open_clip(tmp_path / "a", DEEPSPEED, "--accum-freq 4")
    value, source = facts["train.grad_accum"]
    assert value == 4 and "DeepSpeed config gradient_accumulation_steps = `args.accum_freq`" in source
    oc = tree(tmp_path / "b", "open_clip")  # the config from a JSON file: not claimed
    edit(oc / "src/open_clip_train/train.py", OPEN_CLIP_LOOP, DEEPSPEED.replace("config = {", "unused = {"))
    edit(oc / "src/open_clip_train/train.py", '"gradient_accumulation_steps"', '"steps"')
    _, found, facts, _ = run(oc, "train.sh")
    assert "train.grad_accum" not in facts
    assert (
        "DeepSpeed steps the optimizer: its config's gradient_accumulation_steps decides"
        in (found[("FGD208", "")]["message"])
    )


# --------------------------------------------------------------------------- FG-CLIP 2: a clamp that is not the scale's
THRESHOLD = """        except:  # noqa: E722 - the pattern under test
            pass
"""
THRESHOLD_CLAMP = """            loss_h, threshold = self.hard_total(hard_embeds, hard_texts, self.logit_scale_hardneg)
            mean_threshold = threshold / self.world_size
            upper_bound = 10
            self.thresholds = torch.clamp(mean_threshold, 0, upper_bound).item()
        except:  # noqa: E722 - the pattern under test
            pass
"""


def test_fgclip2_threshold_clamp_beside_the_scales_is_not_a_scale_clamp(tmp_path):
    v2 = tree(tmp_path, "fgclip2")
    model = v2 / "fgclip2/model/fgclip2_model.py"
    edit(model, THRESHOLD, THRESHOLD_CLAMP)
    _, found, facts, _ = run(v2, "scripts/train/stage2.sh")
    assert facts["scale.clamp"][0] is False  # FG-CLIP 2 clamps its hard-negative threshold, no scale
    assert status(found, "FGD102", "clamp") == "WARN"
    back = '        return {"loss": loss}'
    edit(model, back, "        self.logit_scale.data.clamp_(0, 4.6052)\n" + back)
    _, found, facts, _ = run(v2, "scripts/train/stage2.sh")
    assert facts["scale.clamp"][0] is True and facts["scale.clamp_max"][0] == 4.6052


# --------------------------------------------------------------------------- ALBEF: a queue of keys is not "no queue"
def test_albef_queue_of_keys_is_not_called_no_queue_of_negatives(tmp_path):
    _, found, facts, _ = run(tree(tmp_path, "albef"), "run_pretrain.sh")
    assert facts["loss.global.keys_queued"][0] is True
    assert facts["bank.enabled"][0] is False and "no queue of negatives" not in facts["bank.enabled"][1]
    assert "self.text_queue is a queue of keys in the loss from the first step" in facts["bank.enabled"][1]
    for code in ("FGD202", "FGD203", "FGD301"):
        finding = found[(code, "")]
        assert finding["status"] == "SKIP"
        assert finding["message"].startswith("no memory bank with a warmup in this model: its queue of keys")


def test_a_model_without_any_queue_still_says_no_memory_bank(tmp_path):
    _, found, facts, _ = run(tree(tmp_path, "slip"), "run_slip.sh")
    assert "no queue of negatives" in facts["bank.enabled"][1]
    assert found[("FGD202", "")]["message"] == "no memory bank in this model"


# --------------------------------------------------------------------------- group LRs from other LR flags
TOWER_GROUPS = """    named = list(model.named_parameters())
    groups = []
    for tower in ("image", "text"):
        lr = args.visual_lr if tower == "image" else args.text_lr
        groups.append({"params": [p for n, p in named if n.startswith(tower)], "weight_decay": args.wd, "lr": lr})
"""
TOWER_FLAGS = (
    '    parser.add_argument("--visual-lr", type=float, default=None)\n'
    '    parser.add_argument("--text-lr", type=float, default=None)\n'
)


def towers(tmp_path, *flags: str):
    oc = tree(tmp_path, "open_clip")
    edit(oc / "src/open_clip_train/main.py", GROUPS, TOWER_GROUPS)
    params = oc / "src/open_clip_train/params.py"
    edit(params, '    parser.add_argument("--epochs"', TOWER_FLAGS + '    parser.add_argument("--epochs"')
    edit(oc / "train.sh", "--model RN50", " ".join(["--model RN50", *flags]))
    return run(oc, "train.sh")


def test_group_lrs_from_tower_flags_are_each_one_groups_lr(tmp_path):
    _, found, facts, _ = towers(tmp_path, "--visual-lr 2e-4 --text-lr 2e-5")
    groups = facts["optim.code_group_lrs"][0]
    assert {g["lr"] for g in groups if g["lr"] is not None} == {2e-4, 2e-5}
    finding = found[("FGD603", "lr")]
    assert finding["status"] == "PASS" and finding["measured"] == "min lr 2e-5"


def test_a_tower_flag_at_zero_or_unknown_leaves_the_groups_unknown(tmp_path):
    _, found, facts, _ = towers(tmp_path, "--visual-lr 2e-4 --text-lr 0")
    assert "optim.code_group_lrs" not in facts
    finding = found[("FGD603", "lr")]
    assert finding["status"] == "SKIP" and "--text-lr 0.0" in finding["message"]


# --------------------------------------------------------------------------- a file loaded if present is not a resume
AUTO_RESUME = """        # auto-resume from the latest checkpoint in the output directory
        latest = os.path.join(args.output_dir, "checkpoint.pt")
        if os.path.isfile(latest):
            latest_checkpoint = torch.load(latest, map_location="cpu")
            args.start_epoch = latest_checkpoint["epoch"]
            model.load_state_dict(latest_checkpoint["state_dict"])
            optimizer.load_state_dict(latest_checkpoint["optimizer"])
            scaler.load_state_dict(latest_checkpoint["scaler"])
"""
SHARD_SIZES = """        # the shards' sizes, when the dataset folder has them (EVA-CLIP's data.py does this)
        sizes_filename = os.path.join(args.root, "sizes.json")
        if os.path.exists(sizes_filename):
            sizes = json.load(open(sizes_filename))
            args.train_num_samples = sum(int(n) for n in sizes.values())
"""


def test_a_json_read_when_present_is_not_an_auto_resume(tmp_path):
    sl = tree(tmp_path, "slip")
    edit(sl / "main.py", AUTO_RESUME, SHARD_SIZES)
    edit(sl / "main.py", "import argparse\n", "import argparse\nimport json\n")
    _, found, facts, _ = run(sl, "run_slip.sh")
    assert "sizes" not in str(facts.get("train.auto_resume_path", ""))
    assert status(found, "FGD401") == "PASS" and status(found, "FGD402") == "PASS"


# --------------------------------------------------------------------------- ALBEF's loaders: one item zipped
LOADERS = """import argparse

from torch.utils.data import DataLoader, DistributedSampler


def create_sampler(datasets, shuffles):
    samplers = []
    for dataset, shuffle in zip(datasets, shuffles):
        samplers.append(DistributedSampler(dataset, shuffle=shuffle))
    return samplers


def create_loader(datasets, samplers, batch_size, num_workers):
    loaders = []
    for dataset, sampler, bs, n_worker in zip(datasets, samplers, batch_size, num_workers):
        loaders.append(DataLoader(dataset, batch_size=bs, num_workers=n_worker, sampler=sampler))
    return loaders


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--per_gpu", type=int, default=64)
    parser.add_argument("--distributed", action="store_true")
    args = parser.parse_args()
    datasets = [list(range(10))]
    samplers = create_sampler(datasets, [True]) if args.distributed else [None]
    loader = create_loader(datasets, samplers, batch_size=[args.per_gpu], num_workers=[4])[0]
    return loader


if __name__ == "__main__":
    main()
"""


def test_the_batch_a_loader_gets_through_a_one_item_zip(tmp_path):
    (tmp_path / "pretrain.py").write_text(LOADERS)
    (tmp_path / "run.sh").write_text("python pretrain.py --per_gpu 32 --distributed\n")
    _, found, facts, _ = run(tmp_path, "run.sh")  # --per_gpu: no name says batch; the loader's use does
    value, source = facts["train.per_device_batch"]
    assert value == 32
    assert source == "run.sh:1 --per_gpu (batch_size handed to the DataLoader at pretrain.py:16 DataLoader)"


# --------------------------------------------------------------------------- MetaCLIP: a config class the launch names
CONFIGS = """import inspect
from dataclasses import dataclass


@dataclass
class Config:
    batch_size = 64
    epochs = 32
    lr = 5.0e-4
    wd = 0.2
    precision = "amp"


def search_config(name):
    from configs import runs

    for cls_name, cls in inspect.getmembers(runs, inspect.isclass):
        if cls_name == name:
            return cls()
    raise ValueError(name)
"""
RUNS = """from dataclasses import dataclass

from configs import Config


@dataclass
class b16_run(Config):
    batch_size = 256
    precision = "amp_bf16"
"""
META_MAIN = """import sys

sys.path.append("./")


def main(config):
    return config.batch_size


if __name__ == "__main__":
    from configs import search_config

    main(search_config(sys.argv[1]))
"""


def metaclip_style(tmp_path, config: str):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/__init__.py").write_text(CONFIGS)
    (tmp_path / "configs/runs.py").write_text(RUNS)
    (tmp_path / "train").mkdir()
    (tmp_path / "train/main.py").write_text(META_MAIN)
    (tmp_path / "run.sh").write_text(f"torchrun --nproc_per_node=4 train/main.py {config}\n")
    return run(tmp_path, "run.sh")


def test_a_config_class_named_by_the_launch_gives_the_run_its_values(tmp_path):
    _, found, facts, _ = metaclip_style(tmp_path, "b16_run")
    assert facts["code.parser"][0] == "config class b16_run (named by the launch)"
    assert facts["train.per_device_batch"] == (256, "configs/runs.py:8 default")  # its own over Config's 64
    assert facts["train.learning_rate"] == (5e-4, "configs/__init__.py:9 default")  # from its base
    assert facts["train.bf16"][0] is True and facts["train.bf16"][1].endswith("precision amp_bf16 is bf16 autocast")
    assert status(found, "FGD601") == "PASS"


def test_fp16_in_a_config_class_is_fixed_in_that_class(tmp_path):
    (tmp_path / "x").mkdir()
    _, found, facts, _ = metaclip_style(tmp_path / "x", "b16_run")
    runs = tmp_path / "x/configs/runs.py"
    runs.write_text(runs.read_text().replace('precision = "amp_bf16"', 'precision = "amp"'))
    _, found, facts, _ = run(tmp_path / "x", "run.sh")
    finding = found[("FGD601", "")]
    assert finding["status"] == "WARN"
    assert finding["fix"] == 'precision = "amp_bf16" in configs/runs.py:7 class b16_run'


def test_a_name_that_is_no_class_reads_nothing(tmp_path):
    _, found, facts, _ = metaclip_style(tmp_path, "b99_missing")
    assert "train.per_device_batch" not in facts and "code.parser" not in facts
    assert status(found, "FGD601") == "SKIP"


def test_a_folder_the_entry_puts_on_sys_path_is_searched_without_a_note(tmp_path):
    from fgclip_doctor.sources.code.reader import read_training_code

    metaclip_style(tmp_path, "b16_run")  # train/main.py does `sys.path.append("./")`: configs/ is importable
    reading = read_training_code("train/main.py", "script", tmp_path, positionals=["b16_run"])
    assert not [n for n in reading.notes if "is on neither sys.path" in n], reading.notes
    main = tmp_path / "train/main.py"
    main.write_text(main.read_text().replace('sys.path.append("./")\n', ""))
    reading = read_training_code("train/main.py", "script", tmp_path, positionals=["b16_run"])
    assert [n for n in reading.notes if "package `configs` is on neither sys.path" in n]


# --------------------------------------------------------------------------- a step in a helper the loop calls
HELPER_STEP = """    for images, texts in args.loader:
        image_features, text_features, logit_scale = model(images, texts)
        total = loss(image_features, text_features, logit_scale)
        backward(total, optimizer)


def backward(total, optimizer):
    if torch.isfinite(total).all():
        total.backward()
        optimizer.step()
        optimizer.zero_grad()
    else:
        raise SystemExit("loss is not finite")
"""
BUFFERED_STEP = """    kept = []
    for images, texts in args.loader:
        step_when_full(model, loss, optimizer, kept, (images, texts), args)


def step_when_full(model, loss, optimizer, kept, batch, args):
    kept.append(batch)
    if len(kept) < args.accum_freq:
        return
    for images, texts in kept:
        loss(*model(images, texts)).backward()
    optimizer.step()
    optimizer.zero_grad()
    if kept:  # the tree's clamp lines follow, in this block
        kept.clear()
"""


def test_a_step_in_a_helper_the_loop_calls_every_batch(tmp_path):
    _, found, facts, _ = open_clip(tmp_path, HELPER_STEP)
    value, source = facts["train.grad_accum"]
    assert value == 1 and "the optimizer steps on every batch of the loop at" in source
    assert status(found, "FGD208") == "PASS"


def test_a_helper_that_returns_before_its_step_is_unknown_never_every_batch(tmp_path):
    oc = tree(tmp_path, "open_clip")
    edit(oc / "src/open_clip_train/train.py", OPEN_CLIP_LOOP, BUFFERED_STEP.replace("args.accum_freq", "args.k"))
    _, found, facts, _ = run(oc, "train.sh")
    assert "train.grad_accum" not in facts
    assert "is skipped when `len(kept) < args.k`" in found[("FGD208", "")]["message"]


def test_a_tower_flag_the_code_computes_with_is_no_group_lr(tmp_path):
    oc = tree(tmp_path, "open_clip")
    scaled = TOWER_GROUPS.replace("args.visual_lr if", "args.visual_lr * 0.1 if")
    edit(oc / "src/open_clip_train/main.py", GROUPS, scaled)
    params = oc / "src/open_clip_train/params.py"
    edit(params, '    parser.add_argument("--epochs"', TOWER_FLAGS + '    parser.add_argument("--epochs"')
    edit(oc / "train.sh", "--model RN50", "--model RN50 --visual-lr 2e-4 --text-lr 2e-5")
    _, found, facts, _ = run(oc, "train.sh")
    assert "optim.code_group_lrs" not in facts  # the image group trains at 2e-4 x 0.1, not at --visual-lr
    finding = found[("FGD603", "lr")]
    assert finding["status"] == "SKIP" and "computes with visual_lr" in finding["message"]
