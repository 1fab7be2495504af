"""The names of facts: one shared vocabulary for every source and every check.

Sources write these names (with provenance); checks read them. A fact that is unknown is absent.
Scale values are ln-values (CLIP stores ln of the inverse temperature): temperature = exp(value).
`<scale>` is one of SCALES; `<term>` one of TERMS, or `distill` / `ssl` in the code reader's facts (in `observed.*` facts also the call site of
a cross-entropy in code the doctor does not know).
"""

from __future__ import annotations

SCALES = ("global", "finegrained", "hardneg")
# The parameter each scale is stored in (FG-CLIP / the subject), and other spellings seen in the wild.
SCALE_PARAMS = {"global": "logit_scale", "finegrained": "logit_scale_finegrained", "hardneg": "logit_scale_hardneg"}
SCALE_ALIASES = {"logit_scale_finegraind": "logit_scale_finegrained"}  # FG-CLIP v1's spelling
#: features closer than this (cosine) are copies of each other: the probe's line, the rule's docs and the tests'
NEAR_COPY_COSINE = 0.9999
#: the scale each of the subject's loss terms multiplies its logits by ("region/reverse" -> "region")
TERM_SCALE = {"global": "global", "region": "finegrained", "hardneg": "hardneg"}
SCALE_OF_PARAM = {**{p: s for s, p in SCALE_PARAMS.items()}, "logit_scale_finegraind": "finegrained"}
TERMS = ("global", "region", "hardneg")
#: loss term -> its key in the subject's (FG-CLIP's) log_history
TERM_KEYS = {"global": "global_loss", "region": "region_loss", "hardneg": "hardneg_loss"}

FACTS: dict[str, str] = {
    # --- the launch ----------------------------------------------------------------------
    "run.launcher": "deepspeed | torchrun | accelerate | python | srun | mpirun",
    "run.entry": "training module or script the launch runs",
    "run.directory": "the folder the launch runs in (after its script's cd / pushd): relative paths resolve from it",
    "run.subject_known": "True when the training code is recognised and its effective values were read from code",
    "run.nproc_per_node": "processes per node",
    "run.nnodes": "nodes",
    "run.world_size": "processes in the run (nproc_per_node x nnodes)",
    "run.unresolved_flags": "launch flags whose value the doctor cannot know (`$(cmd)`, an unset variable): left out, never guessed",
    # --- the schedule --------------------------------------------------------------------
    "train.per_device_batch": "samples per forward call per process",
    "train.grad_accum": "forward calls per optimizer step (gradient accumulation)",
    "train.global_batch": "samples per optimizer step over all processes (per_device x world x accum)",
    "train.max_steps": "optimizer steps asked for with max_steps (absent when not set)",
    "train.epochs": "num_train_epochs",
    "train.dataset_size": "training records (from the annotations or --dataset-size)",
    "train.optimizer_steps": "optimizer steps the run will take",
    "train.forward_calls": "forward calls per process the run will make (optimizer_steps x accum)",
    "train.optimizer_steps_done": "optimizer steps already taken when scale / bank values were read (checkpoint or live)",
    "train.learning_rate": "base learning rate",
    "train.weight_decay": "base weight decay",
    "train.fp16": "fp16 mixed precision on",
    "train.bf16": "bf16 mixed precision on",
    "train.output_dir": "output_dir",
    "train.resume_from_checkpoint": "explicit --resume_from_checkpoint value",
    "train.auto_resume": "True when the training code resumes by itself whenever output_dir holds checkpoint-*",
    "optim.groups": "optimizer groups: list of {name, lr, weight_decay, params: [parameter names]}",
    "model.parameters": "names of the trainable parameters of the model",
    # --- the model -----------------------------------------------------------------------
    "model.fine_tuning": "True when training starts from pretrained weights",
    "model.base": "the pretrained weights the run starts from",
    "model.base_readable": "True when the pretrained base is a folder readable here (its architecture and scale are read)",
    "model.scales": "scales the model the training code builds holds (read whole: absent ones are not in the code)",
    "scale.global.base": "ln-scale the pretrained base learned (read from its weights)",
    "scale.<scale>.init": "ln-value the scale starts at in this run",
    "scale.<scale>.value": "ln-value of the scale now (checkpoint or live)",
    "scale.<scale>.init.temperature": "temperature e^init of scale.<scale>.init (a number; 14.3 for 2.6592)",
    "scale.<scale>.value.temperature": "temperature e^value of scale.<scale>.value (a number; 1.0 for a scale at 0)",
    "scale.<scale>.base.temperature": "temperature e^base of scale.<scale>.base (a number; 100 for ln 100)",
    "scale.<scale>.requires_grad": "requires_grad of the scale parameter (live, at train begin)",
    "observed.scale.<scale>.grad_seen": "True when a gradient (.grad not None) reached the scale before an optimizer step (live)",
    "scale.clamp": "True when scales are clamped after each optimizer step",
    "scale.clamp_max": "upper clamp of the ln-scales (ln 100 = 4.6052)",
    "loss.terms": "loss terms the run computes: subset of global, region, hardneg",
    # --- negatives and the memory bank ---------------------------------------------------
    "bank.enabled": "a region memory bank exists in the model",
    "bank.size": "queue length",
    "bank.warmup_forward_calls": "forward calls before the bank switches on",
    "bank.switch_on_step": "optimizer step at which the bank switches on (warmup / accum, rounded up)",
    "bank.mask_same_caption": "queued copies of the positive's caption are masked",
    "bank.wraps": "True when the enqueue handles wrap-around (writes modulo the queue size)",
    "bank.enabled_at_call": "forward call the bank switched on at (-1 = never), from its buffers (checkpoint or live)",
    "bank.fill": "queue entries filled so far (checkpoint or live)",
    "data.max_boxes": "boxes kept per image by the loader",
    "data.boxes_per_image": "mean valid boxes per image in the annotations",
    # --- check-data (a full scan of the annotations; <category> as in sources/data/record.py) --
    "data.path": "the annotations given to check-data (.jsonl, .json list, or a folder of them)",
    "data.files": "annotation files scanned",
    "data.records": "records scanned (non-blank lines / list items, malformed ones included)",
    "data.boxes": "box entries in bbox_info over all records",
    "data.valid_boxes": "boxes fgclip.boxes.box_problem accepts",
    "data.invalid_boxes": "boxes the loader drops (sum of the invalid data.box.<category> counts)",
    "data.over_max_boxes": "valid boxes beyond max_boxes per record (dropped by the loader)",
    "data.box.<category>": "boxes per box category: malformed, nonfinite, inverted, zero_area, out_of_range, pixel_coords, tiny, empty_caption, negatives_malformed, negatives_short",
    "data.record.<category>": "records per record category: not_json, not_object, missing_fields, over_max, loader_crash, missing_image, unreadable_image (image ones only with --image-root)",
    "data.examples.<category>": "up to K examples of a category, each 'file:line: detail' (JSON Lines) or 'file:index: detail' (0-based item of a JSON array)",
    "data.crash.first": "first record FG-CLIP's own loader raises on ('file:line|index: what it raises'; None when none): the run stops there",
    "data.grid": "patch grid side the box-tiny check uses (--grid; 14 = ViT-B/16 at 224)",
    "data.image_root": "folder the records' f_path is relative to (--image-root)",
    "data.images.checked": "records whose image was looked up under data.image_root",
    "data.images.opened": "True when images were opened with PIL (--check-images)",
    "data.images.sizes": "opened image sizes: {min, max, common: {WxH: images}}",
    "data.clean": "the --write-clean copy: {path, records, boxes}",
    "candidates.global": "candidates per global-loss row (per_device x world when gathered)",
    "candidates.region.in_batch": "candidates per region row from in-batch boxes",
    "candidates.region.with_bank": "candidates per region row once the bank is on (in-batch + queue)",
    "candidates.hardneg": "candidates per hard-negative row (1 + rewrites)",
    "candidates.ssl": "candidates per row of an image-image (NT-Xent) term: unknown, the augmented views per image decide them",
    "features.gathered": "True when global features are gathered across ranks",
    "observed.candidates.<term>": "candidates per row the live probe saw in the term's logits (int, or the distinct counts seen)",
    # --- resume --------------------------------------------------------------------------
    "resume.checkpoints": "checkpoint-* dirs found in output_dir",
    "resume.checkpoint": "the checkpoint a resume would restore",
    "resume.step": "global step of that checkpoint",
    "resume.scale.<scale>": "ln-value of each scale in that checkpoint",
    # --- text ----------------------------------------------------------------------------
    "text.eos_token_id": "eos id the text tower pools at (model config)",
    "text.tokenizer_eos_id": "eos id of the tokenizer the run uses",
    "text.long_positions": "rows of the long-caption position table",
    "text.max_seq_length": "tokens per long caption",
    "data.num_hard_negatives": "rewrites per box for the hard-negative loss",
    "observed.text.rows_without_eos": "tokenised rows that lost their EOS (live)",
    # --- live observations (probes during a real run) ------------------------------------
    # `<term>` here is a loss term (global, region, hardneg) or, for code the doctor does not
    # know, the call site of the cross-entropy, e.g. "modeling_clip.py:77 clip_loss".
    "observed.terms": "loss terms (or call sites) whose logits the live probe saw",
    "observed.forward_calls": "forward calls of the model the live run made (this process)",
    "observed.extra_columns.<term>": "columns of the term's last logits beyond its rows (queued candidates, for the region term)",
    "observed.loss.<term>.first": "the term's loss in the first read-back interval (interval mean)",
    "observed.loss.<term>.last": "the term's loss in the last read-back interval (interval mean)",
    "observed.loss.<term>.chance": "ln(candidates) in the term's logits at the last read-back",
    "observed.loss.<term>.ratio": "last loss / its chance level",
    "observed.loss.<term>.series": "the term's loss at each read-back (interval means)",
    "observed.nonfinite_loss": "cross-entropy calls that returned NaN / Inf (sampled calls)",
    "observed.grad_norm": "{optimizer group: mean gradient norm} over the sampled steps",
    "observed.grad.nonfinite": "sampled steps with a NaN / Inf gradient norm, over all groups",
    "observed.logits.<term>.dtype": "dtype of the logits given to cross-entropy, e.g. torch.float32, torch.bfloat16",
    "observed.logits.<term>.scale": "multiplier exp(logit_scale) in use when the logits were measured (absent if unknown)",
    "observed.logits.<term>.max_abs": "largest |logit| seen (float)",
    "observed.ddp.<term>.gathered": "True when the logits' columns = world x rows (features gathered across ranks)",
    "observed.ddp.<term>.target_offset_ok": "one float per rank: fraction of rows whose target is rank x rows + row index (1.0 = correctly offset)",
    "observed.bank.key_norm_error": "max | ||key|| - 1 | over the filled queue (float)",
    "observed.bank.requires_grad": "True when the queue tensor requires grad (keys not detached)",
    "observed.bank.same_caption_rows": "fraction of region rows (positives) with at least one queued entry of the same caption id",
    "observed.bank.same_caption_unmasked_rows": "fraction of region rows whose head logits keep a same-caption queue column finite (a copy of the positive acting as a negative)",
    "observed.bank.near_duplicate_rows": "fraction of rows with an unmasked queued or in-batch candidate at cosine > 0.9999 (a copy up to float error) to the positive caption feature",
    "observed.region.within_image_cosine": "mean pairwise cosine of the RoI features of different boxes of one image",
    "observed.region.images_with_2_boxes": "images with >= 2 boxes that contributed to observed.region.within_image_cosine",
    "observed.region.feature_norm_min": "smallest L2 norm of the raw (un-normalised) RoI features",
    "observed.region.feature_norm_mean": "mean L2 norm of the raw (un-normalised) RoI features",
    # --- checkpoints (inspect-ckpt) --------------------------------------------------------
    "ckpt.layout": "fgclip | fgclip-v1 | hf-clip | open_clip | unknown, from the tensor names",
    "ckpt.tensors": "tensors in the weights",
    "ckpt.bytes": "bytes of the weights files",
    "ckpt.prefix": "key prefix the weights carry (`module.` from DDP), when any",
    "ckpt.checkpoints": "checkpoints inspected, oldest first (a run dir expands to its checkpoint-*)",
    "scale.<scale>.drift": "ln-value now minus its init (checkpoint)",
    "bank.persisted": "{buffer: saved?} for memory_bank.queue, queue_ids, ptr, fill, forward_calls, enabled_at_call",
    "bank.ptr": "queue pointer: next slot to write (checkpoint)",
    "bank.forward_calls": "forward calls the bank has counted (checkpoint)",
    "bank.queue_cosine": "pairwise cosine of queued rows: {mean, std, random_std = 1/sqrt(D), rows, dim, zero_rows}",
    "bank.queue_random": "True when the queue still looks like its random init (cosine spread ~ 1/sqrt(D)) or is all zeros",
    "bank.same_caption_mean": "queued entries sharing a row's caption id, on average (masked as copies of the positive)",
    "roi.identity_distance": "||W - I|| / ||I|| of roi_projection.weight (0 = still its identity init)",
    "roi.bias_norm": "L2 norm of roi_projection.bias (0 = still its zero init)",
    "weights.nonfinite": "{tensor: NaN/Inf count} over the tensors read (all of them with --scan)",
    "weights.scanned": "True when every tensor was scanned for NaN/Inf (--scan)",
    "train.epoch": "epoch reached (trainer_state.json)",
    "history.series": "{log key: [[step, value], ...]} from trainer_state.json log_history",
    "history.loss_keys": "{term: log key} of the logged loss terms (a plain CLIP's `loss` is its global term)",
    "history.nonfinite": "NaN/Inf values in log_history: [{key, step, value}]",
    "history.logging_steps": "optimizer steps between two logs",
    "loss.chance.<term>": "chance level of the term in nats, combined as the loss combines its parts: softmax ln(candidates), sigmoid ln N + (N - 1) ln(N / (N - 1))",
    "loss.floor.<term>": "lowest loss the term's temperature allows (nats), combined as loss.chance: softmax ln(1 + (N - 1) e^(-2T)), sigmoid min_b softplus(-T - b) + (N - 1) softplus(b - T)",
    "schedule.type": "lr_scheduler_type (training_args.bin)",
    "schedule.base_lr": "learning_rate (training_args.bin)",
    "schedule.warmup_steps": "LR warmup in optimizer steps (warmup_steps, or the ratio of the run)",
    "schedule.total_steps": "optimizer steps the schedule spans (trainer_state max_steps)",
    "schedule.kwargs": "lr_scheduler_kwargs",
    "schedule.last_epoch": "step the saved LR scheduler is at (scheduler.pt / DeepSpeed lr_scheduler)",
    "schedule.base_lrs": "initial LR of each group, as the saved scheduler holds them",
    "schedule.last_lrs": "LR of each group the saved scheduler last set",
    "optim.group_lrs": "LR of each group in the saved optimizer state",
    "optim.group_names": "names of the saved optimizer groups (their index when unnamed)",
    "optim.group_sizes": "parameters in each saved optimizer group",
    "optim.group_counts": "{checkpoint: optimizer groups} over the checkpoints inspected",
    # --- the static code reader (sources/code/reader): the launch's own training code --------
    # `<term>` is a loss term (global, region, hardneg); sources are `file:line` in that code.
    "code.entry_file": "the file the launch runs, as the launcher resolves it from its working directory",
    "code.train_function": "`file:line name` of the function the entry's __main__ calls (through thin wrappers)",
    "code.files_read": "the user's own modules the reader parsed (never site-packages)",
    "code.parser": "the training code's parser: HfArgumentParser(<dataclasses>) or argparse.ArgumentParser",
    "code.flags_known": "dests the real parser accepts (absent when a base TrainingArguments is not importable)",
    "code.refuses_fp16": "True when the training code stops an fp16 run (assert ...fp16 == False, or if ...fp16: raise)",
    "code.flags_accepted": "{dest: value} of the launch's flags, converted as the real parser converts them",
    "code.flags_rejected": "[{flag, value, reason, source, by?}] the real parser rejects (unknown, ambiguous, wrong type / choice), or the bundled subject refuses at start-up (by: who)",
    "code.logit_params": "{parameter: {init_from, at}} of every nn.Parameter named *logit_scale* / *logit_bias*",
    "code.model": "the library model that computes the loss (`transformers AutoModel`), or the user's model class the launch builds",
    "code.fix.fp16": "how the launch's own training code spells the fp16 fix (open_clip: --precision amp_bf16), from its family",
    "train.auto_resume_path": "the file or folder the code's own auto-resume loads, from the launch's values (`--resume latest` -> <logs>/<name>/checkpoints/epoch_latest.pt)",
    "code.resume_flag": "the flag whose value the code loads a checkpoint from (open_clip's --resume, ALBEF's --checkpoint)",
    "code.resume_restores": "what a resume of the code loads the checkpoint into: model, optimizer, scaler, epoch (its load_state_dict calls)",
    "resume.unusable": "why the checkpoint a resume would load cannot be loaded (a folder without weights: a save killed half way)",
    "code.config_loads": "[{dest, at}] flags whose value the code opens and parses as a config file (yaml.safe_load(open(args.config)), OmegaConf.load)",
    "code.config_values": "{key: value} of the config files the code loads from its flags, read like flags (dotted keys for nested sections)",
    "code.world_size_env": "environment variables the code takes its world size from (WORLD_SIZE, SLURM_NTASKS): unknown unless the launch sets them",
    "code.probe_sites": "[{what, term?, module, qualname, kind, caller?, name?, at}] where live hooks the code: each loss term's own function, the RoIAlign-like call, the box-feature method, the bank attribute (reader/sites.py)",
    "code.probe_unplaced": "{term or part: why} what the reader could not place for live's probes (the cross-entropy fallback names those calls by call site)",
    "optim.layer_decay": "{flag: value} of the layer-wise LR decay the code's parameter groups apply",
    "optim.layer_decay_scales": "{lowest: [scale, group], highest: [scale, group]}: the LR multipliers of the layer-wise decay",
    "optim.group_lr_range": "{lowest: [lr, group], highest: [lr, group]}: the LR range over the optimizer groups (layer-wise decay x the base LR)",
    "schedule.warmup_ratio": "LR warmup as a fraction of the run (--warmup_ratio)",
    "schedule.warmup_epochs": "LR warmup in epochs (--warmup-epochs, a config's warmup_epochs)",
    "train.auto_resume_guards": "flags whose truth turns the auto-resume off (`not args.overwrite_output_dir`)",
    "scale.<scale>.init_from": "where the scale's start value comes from: config.logit_scale_init_value, copy of logit_scale, flag <dest>, constant, random, pretrained weights",
    "scale.<scale>.decayed": "True when the code's optimizer groups put the scale under weight decay",
    "bias.global.init_from": "where the sigmoid loss's logit_bias starts (as scale.<scale>.init_from)",
    "optim.group_lr_flags": "flags that give optimizer groups their own LR (text_model_lr)",
    "optim.code_group_lrs": "[{group, lr}] of the code's optimizer group dicts when some have their own lr (None: the optimizer's)",
    "features.gathered.<term>": "True when the term's features are gathered across ranks before its logits",
    "loss.<term>.kind": "softmax (cross-entropy) | sigmoid (logsigmoid / BCE-with-logits) | kl (a distillation KL divergence) | mixed",
    "loss.<term>.queue": "length of the queue of keys the term's logits are also computed against (ALBEF / MoCo): candidates = in-batch + queue",
    "loss.<term>.keys_queued": "True when the term's logits are also computed against a queue of keys the model holds (its length: loss.<term>.queue)",
    "loss.<term>.present": "True when the code computes the term (global, region, hardneg, distill, ssl); False only where the model was read whole and has no such term",
    "loss.<term>.logit_bias": "True when a learned logit_bias enters the term's logits (SigLIP-style)",
    "loss.<term>.errors_swallowed": "True when a bare `except:` / `except Exception:` without re-raise wraps the term",
    "loss.world_size_from": "where the loss takes its world size: flag <dest>, torch.distributed, local batch only",
    "loss.world_size": "the world size the loss uses when it comes from a flag (launch value or the code's default)",
}


def scale_fact(scale: str, kind: str) -> str:
    """`scale.<scale>.<kind>`, e.g. scale_fact("finegrained", "init")."""
    return f"scale.{scale}.{kind}"


def observed_fact(family: str, term: str, kind: str) -> str:
    """`observed.<family>.<term>.<kind>`, e.g. observed_fact("logits", "region", "dtype")."""
    return f"observed.{family}.{term}.{kind}"
