"""The casebook's cases on the bundled subject: `python -m fgclip.train --preset tiny` with one flag
or one FGCLIP_FAULT (fgclip/faults.py), judged by check-config, live or inspect-ckpt."""

from __future__ import annotations

from fgclip_doctor.casebook.case import Case, Expect, F, Launch, W

TINY_ACCUM8 = ("--gradient_accumulation_steps", "8", "--max_steps", "40")
SHORT_ACCUM8 = ("--gradient_accumulation_steps", "8", "--max_steps", "5")  # 40 forward calls, all run live
ACCUM2 = ("--gradient_accumulation_steps", "2", "--memory_bank_warmup_steps", "4")  # bank on at call 4 of 6
# ACCUM2 under a linear decay over 6 steps, no warmup; checkpoint-3 (save_steps 3) is half way
LINEAR6 = (*ACCUM2, "--lr_scheduler_type", "linear", "--warmup_steps", "0", "--max_steps", "6")
EARLY_BANK = ("--memory_bank_warmup_steps", "8")  # the 128-row queue is full by forward call 8 (~28 boxes a call)
BOTH_NEW_SCALES = (Expect("logit-scale-init", "finegrained", F), Expect("logit-scale-init", "hardneg", F))
ALL_SCALES = ("logit_scale", "logit_scale_finegrained", "logit_scale_hardneg")
LIVE_WARN_SUBJECTS = ("global", "region", "hardneg")
LIVE_WARN_SUBJECTS_SCALES = ("global", "finegrained", "hardneg")

SUBJECT_CASES: tuple[Case, ...] = (
    # ---- the seed's three mistakes (docs/seed-incident.md) -------------------------------
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
        (Expect("step-units", "bank warmup", F), Expect("bank-active", "", F)),
        twin_warns=(Expect("grad-accum-negatives", "", W),),
        twin_why="accumulation 8 (the seed's) adds no in-batch negatives: grad-accum-negatives says so, rightly",
    ),
    Case(
        "seed-auto-resume",
        "seed mistake 3: auto-resume from output_dir restored the old scale after the fix (transformers#18070)",
        "check-config",
        Launch(prior=("--logit_scale_init_value", "2.6592")),
        Launch(prior=()),  # the benign resume: output_dir holds a checkpoint of this very launch
        (Expect("resume-auto", "", W), Expect("resume-override", "finegrained", F)),
        twin_warns=(Expect("resume-auto", "", W),),
        twin_passes=(Expect("resume-override", "finegrained", "PASS"), Expect("resume-override", "hardneg", "PASS")),
        twin_why="resume-auto WARNs on any checkpoint the script would restore by itself, the launch's own too",
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
        "a scale with requires_grad=False is left out of the optimizer by HF Trainer and never moves; "
        "in the default clamped preset it sits at ln 100, so only requires_grad and .grad show it",
        "live",
        Launch(fault="frozen-scales"),
        Launch(),
        tuple(Expect("logit-scale-frozen", s, W) for s in ("global", "finegrained", "hardneg")),
        steps=3,
    ),
    Case(
        "scales-outside-optimizer",
        "custom parameter groups that forget the scales (open_clip's optim.py lists them explicitly): "
        "trainable, given a gradient, never stepped",
        "live",
        Launch(fault="scales-outside-optimizer"),
        Launch(),
        (
            *(
                Expect("logit-scale-frozen", s, W, "in no optimizer group")
                for s in ("global", "finegrained", "hardneg")
            ),
            Expect(
                "lr-zero", "parameters", F
            ),  # trainable, in no group: never stepped (the same fault, seen by lr-zero)
        ),
        steps=3,
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
        evidence="flag",  # any accumulation > 1: the rule multiplies the flags
    ),
    Case(
        "bank-size-not-batches",
        "facebookresearch/moco builder.py: assert K % batch_size == 0 (the queue holds whole batches)",
        "check-config",
        Launch(("--memory_bank_size", "12")),
        Launch(),
        (Expect("bank-size", "", F),),
        evidence="flag",  # the built bank's size (the flag) against boxes per call from the flags
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
        "bank-unused",
        "FGD201's live form: a bank that switches on and fills while its queue never reaches the region "
        "logits (a use_memory_bank wired wrong): the columns the loss saw, not the bank's buffers, show it",
        "live",
        Launch(EARLY_BANK, fault="bank-unused"),
        Launch(EARLY_BANK),
        (Expect("negatives-count", "region", F, "queue columns at the end"),),
        twin_passes=(Expect("negatives-count", "region", "PASS", "queue columns at the end"),),
        steps=12,
    ),
    Case(
        "bank-false-negatives",
        "MoCo-style queues over a small caption vocabulary hold copies of the positive (docs/experiment.md)",
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
    # ---- boxes, RoI and text -------------------------------------------------------------------------
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
        "docs/experiment.md control: a region head that pools the whole image reaches only 0.88-0.98 of chance",
        "live",
        Launch(("--region_pool", "image")),
        Launch(),
        (Expect("region-collapse", "", F),),
        steps=3,
        args=("--interval", "1"),
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
        evidence="flag",  # the optimizer's group LR is the flag's value (lr-zero-checkpoint measures it)
    ),
    Case(
        "unknown-flag",
        "HfArgumentParser rejects a flag its dataclasses lack: the launch dies at start, after the queue",
        "check-config",
        Launch(("--memory_bank_warmup_calls", "50")),
        Launch(),
        (Expect("unknown-flag", "--memory_bank_warmup_calls", F),),
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
        "lr-zero-before-end",
        "the scheduler stepped per micro-batch at accumulation 2 runs a linear decay twice as fast: its LR "
        "is 0 at step 3 of 6, and the rest of the run trains nothing",
        "inspect-ckpt",
        Launch(LINEAR6, fault="scheduler-per-call"),
        Launch(LINEAR6),
        (Expect("lr-zero", "schedule", F), Expect("resume-schedule", "lr", F)),
        cost="expensive",
        steps=3,
    ),
    Case(
        "seed-warmup-live",
        "seed mistake 2 at an eighth of its length, run to its end: a warmup of 50 forward calls against "
        "the 40 a 5-step launch at accumulation 8 makes (the twin's 24 is seen switching on at call 24)",
        "live",
        Launch((*SHORT_ACCUM8, "--memory_bank_warmup_steps", "50")),
        Launch((*SHORT_ACCUM8, "--memory_bank_warmup_steps", "24")),
        (Expect("step-units", "bank warmup", F), Expect("bank-active", "", F)),
        twin_passes=(Expect("bank-active", "", "PASS", "bank enabled at forward call 24"),),
        cost="expensive",
        steps=5,
    ),
    Case(
        "bank-on-only-in-live",
        "FGD202's live form: a 4-step live run of a 2-step launch (accumulation 2: 4 forward calls) sees a "
        "warmup of 5 calls switch on at call 5, which the configured run never reaches; 4 is reached by both, "
        "at the configured run's last call (on at call == warmup)",
        "live",
        Launch(("--gradient_accumulation_steps", "2", "--max_steps", "2", "--memory_bank_warmup_steps", "5")),
        Launch(("--gradient_accumulation_steps", "2", "--max_steps", "2", "--memory_bank_warmup_steps", "4")),
        (Expect("bank-active", "", F, "but the configured run never gets there"),),
        twin_passes=(Expect("bank-active", "", "PASS", "bank enabled at forward call 4"),),
        cost="expensive",
        steps=4,
        near_miss=True,
    ),
)
