"""The casebook as data: real silent training faults, each a launch with exactly one fault, a healthy
twin that differs only in that fault, and the finding(s) that must catch it.

Plain data, no runner: `fgclip-doctor rules NAME` reads it to name the cases that prove a rule;
`bench/casebook.py` runs every case and `tests/test_casebook.py` the cheap ones. A launch is the
subject (`python -m fgclip.train --preset tiny` + flags), optionally with one fault of
`fgclip/faults.py` (FGCLIP_FAULT), or a small training script of another family (tests/helpers/),
or a copy of a training tree of another codebase (tests/trees/) with one text edit, or, for
check-data, one named rewrite of the synthetic annotations. Faults never enter as facts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    flags: tuple[str, ...] = ()  # appended to the subject's `--preset tiny` (or to `script`)
    fault: str | None = None  # FGCLIP_FAULT for this run (fgclip/faults.py)
    script: str | None = None  # a training script of another family, relative to the repo root (or to `tree`)
    nproc: int = 1  # processes (live --nproc; torchrun in the launch for check-config)
    prior: tuple[str, ...] | None = None  # output_dir already holds a checkpoint of a run with these flags
    data: str | None = None  # check-data: a named rewrite of the synthetic train.jsonl ("" = as generated)
    tree: str | None = None  # check-config in a copy of tests/trees/<tree>, on its launch `script`
    edits: tuple[tuple[str, str, str], ...] = ()  # (file in the tree, old text, new text), applied to the copy


@dataclass(frozen=True)
class Expect:
    rule: str
    subject: str
    status: str  # FAIL | WARN


@dataclass(frozen=True)
class Case:
    name: str
    citation: str  # where the fault is known from
    command: str  # check-config | live | inspect-ckpt | check-data
    fault: Launch
    twin: Launch
    expected: tuple[Expect, ...]  # findings the fault must produce
    twin_warns: tuple[Expect, ...] = ()  # the twin's WARNs, exactly (it never FAILs)
    cost: str = "cheap"  # cheap: in the test suite; expensive: bench only
    steps: int = 0  # live: --steps; inspect-ckpt: optimizer steps trained before the checkpoint
    args: tuple[str, ...] = ()  # extra arguments of the doctor's command
    pending: str | None = None  # why it cannot pass on this branch yet (runners skip it)


F, W = "FAIL", "WARN"
TINY_ACCUM8 = ("--gradient_accumulation_steps", "8", "--max_steps", "40")
ACCUM2 = ("--gradient_accumulation_steps", "2", "--memory_bank_warmup_steps", "4")  # bank on at call 4 of 6
NO_CLAMP = ("--clamp_logit_scale", "False")
EARLY_BANK = ("--memory_bank_warmup_steps", "8")  # the 128-row queue is full by forward call 8 (~28 boxes a call)
BOTH_NEW_SCALES = (Expect("logit-scale-init", "finegrained", F), Expect("logit-scale-init", "hardneg", F))
ALL_SCALES = ("logit_scale", "logit_scale_finegrained", "logit_scale_hardneg")
LIVE_WARN_SUBJECTS = ("global", "region", "hardneg")
BATCH4 = ("--per_device_train_batch_size", "4")
UNOFFSET = "tests/helpers/train_unoffset_ddp.py"
PLAIN_CLIP = "tests/helpers/train_plain_clip.py"  # transformers CLIPModel + Trainer, 64 random pairs
PLAIN = ("--per_device_train_batch_size", "64", "--learning_rate", "1e-3")  # one batch of the 64 pairs a step
FGCLIP2_SH = "scripts/train/stage2.sh"
NO_WARMUP_RATIO = (FGCLIP2_SH, "    --warmup_ratio 0.03 \\\n", "")  # transformers 5 has no --warmup_ratio
ON_4_GPUS = ((FGCLIP2_SH, "deepspeed fgclip2", "deepspeed --num_gpus 4 fgclip2"), NO_WARMUP_RATIO)
ON_8_GPUS = ((FGCLIP2_SH, "deepspeed fgclip2", "deepspeed --num_gpus 8 fgclip2"), NO_WARMUP_RATIO)
FGCLIP2_WARNS = (
    Expect("logit-scale-clamp", "clamp", W),  # the tree clamps no scale
    *(Expect("logit-scale-decay", s, W) for s in ("logit_scale", "logit_scale_finegraind", "logit_scale_hardneg")),
)
SWALLOWED = (Expect("loss-errors-swallowed", "region", W), Expect("loss-errors-swallowed", "hardneg", W))
BARE_EXCEPT = (
    "fgclip2/model/fgclip2_model.py",
    "        except:  # noqa: E722 - the pattern under test\n            pass\n",
    "        except Exception:\n            raise\n",
)

CASES: tuple[Case, ...] = (
    # ---- the seed's three mistakes (../shared/seed/region-loss-fix-summary.zh.md) -------------------
    Case(
        "seed-scale-init",
        "seed mistake 1: CLIPConfig(logit_scale_init_value=2.6592) for a fine-tune of a base at ln 100",
        "check-config",
        Launch(("--logit_scale_init_value", "2.6592")),
        Launch(),
        BOTH_NEW_SCALES,
    ),
    Case(
        "seed-warmup-forward-calls",
        "seed mistake 2: memory_bank_warmup_steps 400 counted in forward calls at accumulation 8",
        "check-config",
        Launch((*TINY_ACCUM8, "--memory_bank_warmup_steps", "400")),
        Launch(TINY_ACCUM8),
        (Expect("step-units", "bank warmup", F), Expect("bank-active", "", F), Expect("negatives-count", "region", F)),
        twin_warns=(Expect("grad-accum-negatives", "", W),),
    ),
    Case(
        "seed-auto-resume",
        "seed mistake 3: auto-resume from output_dir restored the old scale after the fix (transformers#18070)",
        "check-config",
        Launch(prior=("--logit_scale_init_value", "2.6592")),
        Launch(),
        (Expect("resume-auto", "", W), Expect("resume-override", "finegrained", F)),
        cost="expensive",
    ),
    # ---- temperature ------------------------------------------------------------------------------
    Case(
        "scale-weight-decay",
        "open_clip legacy_main.py / optim.py: logit_scale excluded from weight decay (decay collapses it)",
        "check-config",
        Launch(("--weight_decay", "0.1", "--logit_scale_weight_decay", "True")),
        Launch(("--weight_decay", "0.1")),
        tuple(Expect("logit-scale-decay", s, W) for s in ALL_SCALES),
    ),
    Case(
        "scale-no-clamp",
        "open_clip train.py: logit_scale clamped to [0, ln 100] after every step",
        "check-config",
        Launch(("--clamp_logit_scale", "False")),
        Launch(),
        (Expect("logit-scale-clamp", "clamp", W),),
    ),
    Case(
        "scale-frozen",
        "a scale with requires_grad=False is left out of the optimizer by HF Trainer and never moves "
        "(both unclamped: at the ln 100 ceiling the clamp, not the fault, would hold it)",
        "live",
        Launch(NO_CLAMP, fault="frozen-scales"),
        Launch(NO_CLAMP),
        tuple(Expect("logit-scale-frozen", s, W) for s in ("global", "finegrained", "hardneg")),
        twin_warns=(Expect("logit-scale-clamp", "clamp", W),),
        steps=8,
    ),
    Case(
        "bf16-logits",
        "DeepSpeed bf16 casts the model: bf16 keeps 8 mantissa bits, so near logit 100 its step is 0.5 "
        "and small margins vanish (open_clip computes the loss in float32 under amp)",
        "live",
        Launch(fault="bf16-weights"),
        Launch(),
        tuple(Expect("bf16-logits", s, W) for s in LIVE_WARN_SUBJECTS),
        steps=3,
        args=("--interval", "1"),
    ),
    # ---- negatives and the memory bank ---------------------------------------------------------------
    Case(
        "grad-accum-negatives",
        "CLIP4Clip#69: accumulation does not add in-batch negatives (31 instead of 127)",
        "check-config",
        Launch(("--gradient_accumulation_steps", "4")),
        Launch(),
        (Expect("grad-accum-negatives", "", W),),
    ),
    Case(
        "bank-size-not-batches",
        "facebookresearch/moco builder.py: assert K % batch_size == 0 (the queue holds whole batches)",
        "check-config",
        Launch(("--memory_bank_size", "12")),
        Launch(),
        (Expect("bank-size", "", F),),
    ),
    Case(
        "bank-unnormalised",
        "facebookresearch/moco builder.py: keys are normalised and detached before they are queued",
        "live",
        Launch(EARLY_BANK, fault="bank-unnormalised"),
        Launch(EARLY_BANK),
        (Expect("bank-hygiene", "key norms", F),),
        steps=12,
    ),
    Case(
        "bank-false-negatives",
        "MoCo-style queues over a small caption vocabulary hold copies of the positive (DESIGN.md §6)",
        "live",
        Launch((*EARLY_BANK, "--memory_bank_mask_same_caption", "False")),
        Launch(EARLY_BANK),
        (Expect("bank-false-negatives", "same caption", W),),
        steps=12,
    ),
    Case(
        "bank-not-persistent",
        "lightly PR #993: non-persistent queue buffers are not saved; a resume restarts a random queue",
        "inspect-ckpt",
        Launch(EARLY_BANK, fault="bank-not-persistent"),
        Launch(EARLY_BANK),
        (Expect("bank-persist", "", F),),
        cost="expensive",
        steps=10,
    ),
    Case(
        "ddp-targets-not-offset",
        "gathered features with targets arange(B) on every rank (open_clip loss.py offsets by rank)",
        "live",
        Launch(BATCH4, script=UNOFFSET, nproc=2),
        Launch((*BATCH4, "--offset", "True"), script=UNOFFSET, nproc=2),
        (Expect("ddp-targets", "train_unoffset_ddp.py:33 compute_loss", F),),
        cost="expensive",
        steps=3,
        args=("--interval", "1", "--device", "cpu"),
    ),
    # ---- boxes, RoI and text -------------------------------------------------------------------------
    Case(
        "pixel-boxes-data",
        "torchvision roi_align docs: boxes in input coordinates scaled by spatial_scale; FG-CLIP's "
        "loader expects [0, 1] boxes",
        "check-data",
        Launch(data="pixel-boxes"),
        Launch(data=""),
        (Expect("box-valid", "invalid boxes", F), Expect("box-valid", "pixel coordinates", F)),
    ),
    Case(
        "pixel-boxes-roi",
        "pixel-coordinate boxes reaching RoIAlign on the patch grid: every box off the map, features zero",
        "live",
        Launch(fault="pixel-boxes"),
        Launch(),
        (Expect("roi-scale", "", F),),
        steps=3,
        args=("--interval", "1"),
    ),
    Case(
        "roi-spatial-scale",
        "torchvision roi_align spatial_scale: a detector's 1/16 applied to boxes already on the patch grid",
        "live",
        Launch(fault="roi-spatial-scale"),
        Launch(),
        (Expect("region-collapse", "", F),),
        steps=3,
        args=("--interval", "1"),
    ),
    Case(
        "region-pool-image",
        "DESIGN.md §6 control: a region head that pools the whole image reaches only 0.88-0.98 of chance",
        "live",
        Launch(("--region_pool", "image")),
        Launch(),
        (Expect("region-collapse", "", F),),
        steps=3,
        args=("--interval", "1"),
    ),
    Case(
        "boxes-over-max",
        "FG-CLIP's loader keeps the first max_boxes boxes of a record and drops the rest silently",
        "check-data",
        Launch(data="extra-boxes"),
        Launch(data=""),
        (Expect("boxes-over-max", "", W),),
    ),
    Case(
        "eos-cut",
        "openai/CLIP clip.tokenize(truncate=True) puts EOT back as the last token; cutting after "
        "tokenising drops it and the tower pools at a word",
        "live",
        Launch(("--base_seq_length", "8"), fault="eos-cut"),
        Launch(("--base_seq_length", "8")),
        (Expect("text-eos", "rows", F),),
        steps=3,
        args=("--interval", "1"),
    ),
    Case(
        "head-outside-optimizer",
        "seed follow-up: give roi_projection its own learning rate (a new head outside the optimizer never trains)",
        "check-config",
        Launch(fault="roi-outside-optimizer"),
        Launch(),
        (Expect("head-lr", "roi_projection", F),),
    ),
    # ---- precision and loss health ---------------------------------------------------------------------
    Case(
        "fp16",
        "FG-CLIP: fp16 training of the contrastive towers gives NaN losses (use bf16)",
        "check-config",
        Launch(("--fp16", "True")),
        Launch(),
        (Expect("fp16", "", F),),
    ),
    # ---- runs that cannot start or cannot learn (issues 10 and 12) ------------------------------------
    Case(
        "lr-zero",
        "an optimizer at LR 0 after warmup: nothing trains, the loss stays where it started",
        "check-config",
        Launch(("--learning_rate", "0")),
        Launch(),
        (Expect("lr-zero", "lr", F),),
    ),
    Case(
        "unknown-flag",
        "HfArgumentParser rejects a flag its dataclasses lack: the launch dies at start, after the queue",
        "check-config",
        Launch(("--memory_bank_warmup_calls", "50")),
        Launch(),
        (Expect("unknown-flag", "--memory_bank_warmup_calls", F),),
    ),
    # ---- the annotations (check-data on one rewrite of the synthetic train.jsonl) ----------------------
    Case(
        "tiny-boxes",
        "FG-CLIP: RoIAlign on the 14x14 patch grid (ViT-B/16 at 224): a box inside one cell is pooled "
        "from that cell's neighbourhood, not from the object",
        "check-data",
        Launch(data="tiny-boxes"),
        Launch(data=""),
        (Expect("box-tiny", "", W),),
    ),
    Case(
        "boxes-without-captions",
        "FG-CLIP's loader: caption = short_expr or long_expr or '': a box without one is contrasted "
        "against the empty string",
        "check-data",
        Launch(data="no-captions"),
        Launch(data=""),
        (Expect("box-caption", "", W),),
    ),
    Case(
        "few-hard-negatives",
        "FG-CLIP's hard-negative loss takes 10 rewrites a box: a box with fewer leaves that loss "
        "without a word (hard_valid False)",
        "check-data",
        Launch(data="few-negatives"),
        Launch(data=""),
        (Expect("hard-negatives", "", W),),
    ),
    Case(
        "truncated-annotations",
        "an interrupted write leaves half a last line; FG-CLIP json.loads every line before step 0",
        "check-data",
        Launch(data="truncated-line"),
        Launch(data=""),
        (Expect("record-malformed", "", F),),
    ),
    Case(
        "missing-images",
        "FG-CLIP LazySupervisedBboxDataset opens image_folder / f_path in __getitem__: a missing file "
        "raises inside a DataLoader worker, mid-epoch",
        "check-data",
        Launch(data="missing-images"),
        Launch(data=""),
        (Expect("data-missing-images", "missing", F),),
    ),
    # ---- training code of other codebases (check-config in a copy of tests/trees/) --------------------
    Case(
        "loss-world-size",
        "FG-CLIP 2 style launch: the loss loops over --train_use_word_size ranks, not torch.distributed's "
        "world; 8 under a 4-GPU deepspeed launch",
        "check-config",
        Launch(tree="fgclip2", script=FGCLIP2_SH, edits=ON_4_GPUS),
        Launch(
            tree="fgclip2",
            script=FGCLIP2_SH,
            edits=(*ON_4_GPUS, (FGCLIP2_SH, "--train_use_word_size 8", "--train_use_word_size 4")),
        ),
        (Expect("world-size", "", F),),
        twin_warns=(*FGCLIP2_WARNS, *SWALLOWED),
    ),
    Case(
        "loss-in-bare-except",
        "FG-CLIP 2 style model: the region and hard-negative terms inside try / except: pass; an error "
        "drops them and the run goes on with the global loss alone",
        "check-config",
        Launch(tree="fgclip2", script=FGCLIP2_SH, edits=ON_8_GPUS),
        Launch(tree="fgclip2", script=FGCLIP2_SH, edits=(*ON_8_GPUS, BARE_EXCEPT)),
        SWALLOWED,
        twin_warns=FGCLIP2_WARNS,
    ),
    Case(
        "hf-clip-no-gather",
        "transformers#22252: CLIPModel's loss sees the local batch only; under torchrun "
        "--nproc_per_node 8 each rank contrasts 64 candidates, not 512",
        "check-config",
        Launch(tree="run_clip", script="train.sh"),
        Launch(tree="run_clip", script="train.sh", edits=(("train.sh", "--nproc_per_node 8", "--nproc_per_node 1"),)),
        (Expect("negatives-count", "global", F),),
        twin_warns=(Expect("logit-scale-clamp", "clamp", W), Expect("logit-scale-decay", "logit_scale", W)),
    ),
    # ---- a plain transformers CLIPModel (tests/helpers/train_plain_clip.py) ---------------------------
    Case(
        "scale-zero",
        "logit_scale_init_value 0 (a temperature of 1): cosines in [-1, 1] cannot push a softmax over 64 "
        "below 0.54 ln 64 (issue 12)",
        "inspect-ckpt",
        Launch((*PLAIN, "--logit_scale_init_value", "0"), script=PLAIN_CLIP),
        Launch(PLAIN, script=PLAIN_CLIP),
        (Expect("loss-floor", "global", F),),
        cost="expensive",
        steps=24,
    ),
    Case(
        "lr-zero-checkpoint",
        "an optimizer at LR 0: the loss never leaves its start and the milestone asked for is never met",
        "inspect-ckpt",
        Launch(("--per_device_train_batch_size", "64", "--learning_rate", "0"), script=PLAIN_CLIP),
        Launch(PLAIN, script=PLAIN_CLIP),
        (Expect("lr-zero", "lr", F), Expect("loss-chance", "global", F), Expect("loss-milestones", "loss@24<3.5", F)),
        cost="expensive",
        steps=24,
        args=("--expect", "loss@24<3.5"),
    ),
    Case(
        "blank-images",
        "images that never reach the tower (a failed decode filled with zeros): every image embeds alike "
        "and the loss can only settle at chance, ln 64, however long it trains",
        "inspect-ckpt",
        Launch((*PLAIN, "--blank_images", "True"), script=PLAIN_CLIP),
        Launch(PLAIN, script=PLAIN_CLIP),
        (Expect("loss-plateau", "global", W), Expect("loss-chance", "global", F)),
        cost="expensive",
        steps=24,
    ),
    Case(
        "scale-init-100",
        "CLIPConfig(logit_scale_init_value=100): the scale, not its log (ln 100 = 4.6052); exp(100) "
        "overflows float32 and the loss is NaN from step 1",
        "inspect-ckpt",
        Launch((*PLAIN, "--logit_scale_init_value", "100"), script=PLAIN_CLIP),
        Launch(PLAIN, script=PLAIN_CLIP),
        (Expect("nonfinite", "history", F), Expect("nonfinite", "weights", F)),
        cost="expensive",
        steps=24,
    ),
    # ---- the subject's schedule -------------------------------------------------------------------------
    Case(
        "scheduler-per-micro-batch",
        "accelerate docs, gradient accumulation: step the scheduler when the optimizer steps; one stepped "
        "per micro-batch runs accumulation times ahead, and a resume continues from there",
        "inspect-ckpt",
        Launch(ACCUM2, fault="scheduler-per-call"),
        Launch(ACCUM2),
        (Expect("resume-schedule", "lr", F),),
        steps=3,
    ),
    Case(
        "seed-warmup-live",
        "seed mistake 2, measured: warmup 400 forward calls at accumulation 8 in a run of 8 optimizer "
        "steps (the fix: 50, optimizer step 7)",
        "live",
        Launch(("--gradient_accumulation_steps", "8", "--memory_bank_warmup_steps", "400")),
        Launch(("--gradient_accumulation_steps", "8", "--memory_bank_warmup_steps", "50")),
        (Expect("step-units", "bank warmup", F),),
        cost="expensive",
        steps=8,
    ),
)


def cases_for_rule(rule: str) -> list[Case]:
    """The cases whose fault must produce a finding of `rule` (slug)."""
    return [c for c in CASES if any(e.rule == rule for e in c.expected)]


def case(name: str) -> Case:
    found = [c for c in CASES if c.name == name]
    if not found:
        raise KeyError(f"no casebook case {name!r}")
    return found[0]
