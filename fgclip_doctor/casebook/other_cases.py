"""The casebook's cases outside the bundled subject's training: rewrites of the synthetic annotations
(check-data), copies of other codebases' training trees with one edit (tests/trees/, check-config),
and small training scripts of other families (tests/helpers/: live, inspect-ckpt)."""

from __future__ import annotations

from fgclip_doctor.casebook.case import Case, Expect, F, Launch, W

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
FGCLIP2_WHY = "FG-CLIP 2's tree clamps no scale and decays all three with the weights (both true of it)"
SWALLOWED = (Expect("loss-errors-swallowed", "region", W), Expect("loss-errors-swallowed", "hardneg", W))
BARE_EXCEPT = (
    "fgclip2/model/fgclip2_model.py",
    "        except:  # noqa: E722 - the pattern under test\n            pass\n",
    "        except Exception:\n            raise\n",
)

#: the v1-style tree's fine-tune with the new scales started at the base's ln 100
V1_FINETUNE = "scripts/finetune_tiny.sh"
V1_SCALE_4_6052 = (
    V1_FINETUNE,
    "--model_name_or_path ./base \\\n",
    "--model_name_or_path ./base \\\n    --logit_scale_init_value 4.6052 \\\n",
)

EVA_SH = "scripts/pretrain_b16.sh"
C4C_SH = "scripts/run_msrvtt.sh"
METACLIP_LOCAL = (
    "src/metaclip/loss.py",
    "            all_image = torch.cat(torch.distributed.nn.all_gather(image_features), dim=0)\n"
    "            all_text = torch.cat(torch.distributed.nn.all_gather(text_features), dim=0)\n",
    "            all_image, all_text = image_features, text_features  # each rank on its own batch\n",
)

OTHER_CASES: tuple[Case, ...] = (
    # ---- the annotations (check-data on one rewrite of the synthetic train.jsonl) ----------------------
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
        "boxes-over-max",
        "FG-CLIP's loader keeps the first max_boxes boxes of a record and drops the rest silently",
        "check-data",
        Launch(data="extra-boxes"),
        Launch(data=""),
        (Expect("boxes-over-max", "", W),),
    ),
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
        Launch(data="negatives-3"),  # 3 of the 10 rewrites kept for every flagged box
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
        twin_why=FGCLIP2_WHY + "; its loss keeps region and hardneg in try / except: pass",
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
        twin_why=FGCLIP2_WHY,
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
        twin_why="transformers' run_clip clamps no scale and decays logit_scale with the weights (both true of it)",
    ),
    Case(
        "srun-no-gather",
        "MetaCLIP / open_clip style loss without the all_gather under an sbatch allocation of 4 nodes x 8 "
        "tasks: each of the 32 ranks contrasts its own 128 pairs (open_clip loss.py gathers them)",
        "check-config",
        Launch(tree="metaclip", script="run_b32.sh", edits=(METACLIP_LOCAL,)),
        Launch(tree="metaclip", script="run_b32.sh"),
        (Expect("negatives-count", "global", F),),
        twin_warns=(Expect("fp16", "", W),),
        twin_why="the MetaCLIP tree trains with --precision amp (fp16 autocast): fp16 WARNs on it, rightly",
    ),
    Case(
        "layer-decay-zero",
        "EVA-CLIP style layer-wise LR decay: lr x decay^(L + 1 - i) per layer; --layer-decay=0 leaves only "
        "the head training (BEiT / EVA use 0.65-0.9)",
        "check-config",
        Launch(tree="eva_clip", script=EVA_SH, edits=((EVA_SH, "--layer-decay=0.75", "--layer-decay=0"),)),
        Launch(tree="eva_clip", script=EVA_SH),
        (Expect("lr-zero", "lr", F),),
    ),
    Case(
        "config-lr-zero",
        "ALBEF / BLIP style run driven by a YAML config (configs/Pretrain.yaml optimizer.lr): at lr 0 "
        "nothing trains and the ITC loss stays at chance",
        "check-config",
        Launch(
            tree="albef",
            script="run_pretrain.sh",
            edits=(("configs/Pretrain.yaml", "lr: 1e-4, weight", "lr: 0, weight"),),
        ),
        Launch(tree="albef", script="run_pretrain.sh"),
        (Expect("lr-zero", "lr", F),),
        twin_warns=(Expect("logit-scale-clamp", "clamp", W),),
        twin_why="ALBEF clamps its temperature to [0.001, 0.5]: the scale may reach ln 1000 (T 1000), past CLIP's 100",
        evidence="flag",  # the YAML's lr is the value the edit injects (as lr-zero's flag)
    ),
    Case(
        "config-temperature-as-scale",
        "a YAML-driven CLIP trainer that builds logit_scale = ln(1 / model.init_temperature) (open_clip "
        "inits ln(1/0.07)): given the scale's T 100 as the temperature, the scale starts at ln(1/100) = "
        "-4.6052, cosine logits within +-0.01, the loss at chance",
        "check-config",
        Launch(
            tree="yaml_clip",
            script="scripts/train.sh",
            edits=(("configs/vitb16_kd.yaml", "init_temperature: 0.07", "init_temperature: 100"),),
        ),
        Launch(tree="yaml_clip", script="scripts/train.sh"),
        (Expect("logit-scale-clamp", "global", F, "global starts at -4.6052"),),
    ),
    Case(
        "coef-lr-zero",
        "CLIP4Clip style fine-tuning: the CLIP parameters train at --lr x --coef_lr (1e-3 in its README); "
        "--coef_lr 0 to 'keep CLIP' leaves those groups at lr 0 while the loss still backpropagates into them",
        "check-config",
        Launch(
            tree="clip4clip",
            script=C4C_SH,
            edits=((C4C_SH, "--coef_lr 1e-3", "--coef_lr 0"),),
        ),
        Launch(tree="clip4clip", script=C4C_SH),
        (Expect("lr-zero", "lr", F, "2 of 4 groups at lr 0"),),
        twin_warns=(Expect("logit-scale-clamp", "clamp", W), Expect("logit-scale-decay", "logit_scale", W)),
        twin_why="CLIP4Clip clamps no scale and decays logit_scale at 0.2 with the weights (both true of it)",
        evidence="flag",  # lr x coef_lr: the flag that injects the fault decides the groups' LR
    ),
    Case(
        "argparse-underscore-flag",
        "SLIP style argparse options are spelled with dashes (--warmup-epochs); an HF-style underscore "
        "spelling is 'unrecognized arguments' and the run stops at start",
        "check-config",
        Launch(tree="slip", script="run_slip.sh", edits=(("run_slip.sh", "--warmup-epochs 1", "--warmup_epochs 1"),)),
        Launch(tree="slip", script="run_slip.sh"),
        (Expect("unknown-flag", "--warmup_epochs", F),),
        twin_warns=(Expect("fp16", "", W),),
        twin_why="SLIP trains in fp16 autocast unless --disable-amp (true of it: main.py's autocast, read)",
    ),
    # ---- a DDP script of another family (tests/helpers/train_unoffset_ddp.py) -----------------------------
    Case(
        "ddp-targets-not-offset",
        "gathered features with targets arange(B) on every rank (open_clip loss.py offsets by rank)",
        "live",
        Launch(BATCH4, script=UNOFFSET, nproc=2),
        Launch((*BATCH4, "--offset", "True"), script=UNOFFSET, nproc=2),
        (Expect("ddp-targets", "train_unoffset_ddp.py:33 compute_loss", F),),
        twin_warns=(Expect("logit-scale-clamp", "clamp", W),),
        twin_why="the helper DDP script clamps no logit scale (true of it, read from its code)",
        cost="expensive",
        steps=3,
        args=("--interval", "1", "--device", "cpu"),
    ),
    # ---- FG-CLIP v1's own style, in a user's checkout (tests/trees/fgclip_v1_live: package `fgclip`) -----
    Case(
        "v1-tree-scale-init",
        "the seed's fault in an FG-CLIP v1-style checkout: logit_scale_finegraind / logit_scale_hardneg "
        "started at --logit_scale_init_value 2.6592 next to a base saved at ln 100 (4.6052)",
        "live",
        Launch(tree="fgclip_v1_live", script=V1_FINETUNE),
        Launch(tree="fgclip_v1_live", script=V1_FINETUNE, edits=(V1_SCALE_4_6052,)),
        (Expect("logit-scale-init", "finegrained", F, "starts at 2.6592"), Expect("logit-scale-init", "hardneg", F)),
        twin_warns=(Expect("logit-scale-clamp", "clamp", W), Expect("head-lr", "roi_projection", W)),
        twin_passes=(Expect("logit-scale-init", "finegrained", "PASS"), Expect("roi-scale", "", "PASS")),
        twin_why="the v1-style tree clamps no scale and trains roi_projection in the Trainer's default groups "
        "with the backbone (both true of it, measured from its optimizer)",
        steps=2,
        args=("--interval", "1"),
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
)
