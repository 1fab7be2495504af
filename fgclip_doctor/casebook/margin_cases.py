"""Near-miss pairs: for a rule with a threshold, a fault just past it and a healthy twin just inside it,
so the casebook measures the doctor's sensitivity and specificity at the margin, not only at the
maximum dose. Each twin is as close to the line as the fault, on the other side."""

from __future__ import annotations

from fgclip_doctor.casebook.case import Case, Expect, F, Launch, W

SCALES_NEW = ("finegrained", "hardneg")  # the scales --logit_scale_init_value sets when fine-tuning

MARGIN_CASES: tuple[Case, ...] = (
    Case(
        "one-bad-box-in-thousands",
        "FG-CLIP's loader keeps a box outside [0, 1] and RoIAlign samples off the map: one is a fault "
        "(max_invalid_ratio 0), among 2048 records as among 64",
        "check-data",
        Launch(data="one-pixel-box@2048"),
        Launch(data="@2048"),
        (Expect("box-valid", "invalid boxes", F),),
        near_miss=True,
    ),
    Case(
        "boxes-one-over-max",
        "FG-CLIP's loader keeps the first max_boxes (4) boxes: a fifth is dropped silently, a fourth is not",
        "check-data",
        Launch(data="boxes-5"),
        Launch(data="boxes-4"),
        (Expect("boxes-over-max", "", W),),
        near_miss=True,
    ),
    Case(
        "boxes-just-under-a-cell",
        "RoIAlign on the 14x14 patch grid: a 0.068 box sits inside one cell (1/14 = 0.0714), a 0.075 box spans two",
        "check-data",
        Launch(data="cell-0.068"),
        Launch(data="cell-0.075"),
        (Expect("box-tiny", "", W),),
        near_miss=True,
    ),
    Case(
        "hard-negatives-one-short",
        "FG-CLIP's hard-negative loss takes 10 rewrites a box: 9 leave the box out (hard_valid False), 10 keep it",
        "check-data",
        Launch(data="negatives-9"),
        Launch(data="negatives-10"),
        (Expect("hard-negatives", "", W),),
        near_miss=True,
    ),
    Case(
        "scale-init-half-temperature",
        "logit-scale-init's line: a new scale below half the base's temperature (ln 100 + ln 0.5 = 3.9120); "
        "3.89 (T 48.9) is past it, 3.93 (T 50.9) inside",
        "check-config",
        Launch(("--logit_scale_init_value", "3.89")),
        Launch(("--logit_scale_init_value", "3.93")),
        tuple(Expect("logit-scale-init", s, F) for s in SCALES_NEW),
        near_miss=True,
    ),
    Case(
        "scale-init-above-clamp",
        "open_clip clamps the scale at ln 100 = 4.6052: an init of 4.6070 starts above the clamp "
        "(tol 1e-3), 4.6050 under it",
        "check-config",
        Launch(("--logit_scale_init_value", "4.607")),
        Launch(("--logit_scale_init_value", "4.605")),
        tuple(Expect("logit-scale-clamp", s, F) for s in SCALES_NEW),
        near_miss=True,
    ),
    Case(
        "resume-near-init",
        "resume-override's tolerance (0.05 in ln, the temperature ~5 % off): output_dir holds a checkpoint "
        "of a run at init 4.54 (0.065 from the new 4.6052: restored over it) vs 4.57 (0.035: a drift, not "
        "another init)",
        "check-config",
        Launch(prior=("--logit_scale_init_value", "4.54")),
        Launch(prior=("--logit_scale_init_value", "4.57")),
        tuple(Expect("resume-override", s, F) for s in SCALES_NEW),
        twin_warns=(Expect("resume-auto", "", W),),
        twin_why="resume-auto WARNs on any checkpoint the script would restore by itself (both runs have one)",
        cost="expensive",
        near_miss=True,
    ),
    Case(
        "region-cosine-near-line",
        "region-collapse's line (within-image cosine 0.98): box features mixed with the whole image's at "
        "weight 0.9 (cosine 0.993, a region head that barely sees its box) vs 0.8 (0.971, still apart)",
        "live",
        Launch(fault="region-image-mix:0.9"),
        Launch(fault="region-image-mix:0.8"),  # a dose inside the line: healthy to the rule, by design
        (Expect("region-collapse", "", F, "cosine 0.99"),),
        twin_passes=(Expect("region-collapse", "", "PASS", "cosine 0.97"),),
        steps=3,
        args=("--interval", "1"),
        near_miss=True,
    ),
)
