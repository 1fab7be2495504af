"""Fact names in words: a short phrase for every fact of the vocabulary, and the one place where a
SKIP reason that names facts (`not known: scale.finegrained.init`) becomes a sentence a person
reads (`The finegrained scale's start value is not known`), with why each fact is absent.

Ground floor: imports only the vocabulary. A phrase may hold the vocabulary's placeholders
(`<scale>`, `<term>`, `<category>`): a concrete name fills them (`scale.hardneg.init` -> "the
hardneg scale's start value"), a name that keeps them reads "each" (`scale.<scale>.value` -> "each
scale's value now").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from fgclip_doctor.vocabulary import FACTS

# fmt: off
PHRASES: dict[str, str] = {
    "run.launcher": "the launcher",
    "run.entry": "the training script or module the launch runs",
    "run.directory": "the folder the launch runs in",
    "run.subject_known": "whether the training code is the bundled subject",
    "run.nproc_per_node": "the number of processes per node",
    "run.nnodes": "the number of nodes",
    "run.world_size": "the world size",
    "run.unresolved_flags": "the launch flags whose value is known only when the script runs",
    "train.per_device_batch": "the per-device batch",
    "train.grad_accum": "the gradient accumulation",
    "train.global_batch": "the global batch",
    "train.max_steps": "the value of max_steps",
    "train.epochs": "the number of epochs",
    "train.dataset_size": "the number of training records",
    "train.optimizer_steps": "the run's length in optimizer steps",
    "train.forward_calls": "the run's length in forward calls",
    "train.optimizer_steps_done": "the optimizer steps already taken",
    "train.learning_rate": "the base learning rate",
    "train.weight_decay": "the base weight decay",
    "train.fp16": "whether fp16 is on",
    "train.bf16": "whether bf16 is on",
    "train.output_dir": "the output directory",
    "train.resume_from_checkpoint": "the value of --resume_from_checkpoint",
    "train.auto_resume": "whether the training code resumes by itself",
    "optim.groups": "the optimizer's parameter groups",
    "model.parameters": "the model's trainable parameters",
    "model.fine_tuning": "whether the run starts from pretrained weights",
    "model.base": "the base model",
    "model.scales": "the scales the model holds",
    "model.base_readable": "whether the base model is readable here",
    "scale.global.base": "the base model's learned scale",
    "scale.<scale>.init": "the <scale> scale's start value",
    "scale.<scale>.value": "the <scale> scale's value now",
    "scale.<scale>.init.temperature": "the <scale> scale's start temperature",
    "scale.<scale>.value.temperature": "the <scale> scale's temperature now",
    "scale.<scale>.base.temperature": "the base model's temperature",
    "scale.<scale>.requires_grad": "whether the <scale> scale requires grad",
    "observed.scale.<scale>.grad_seen": "whether a gradient reached the <scale> scale",
    "scale.clamp": "whether the scales are clamped",
    "scale.clamp_max": "the scales' clamp bound",
    "loss.terms": "the loss terms the run computes",
    "bank.enabled": "whether the model has a memory bank",
    "bank.size": "the memory bank's size",
    "bank.warmup_forward_calls": "the memory bank's warmup",
    "bank.switch_on_step": "the optimizer step the memory bank switches on at",
    "bank.mask_same_caption": "whether the memory bank masks copies of the positive",
    "bank.wraps": "whether the memory bank's queue wraps around",
    "bank.enabled_at_call": "the forward call the memory bank switched on at",
    "bank.fill": "the memory bank's fill",
    "data.max_boxes": "the number of boxes kept per image",
    "data.boxes_per_image": "the mean number of boxes per image",
    "data.path": "the annotations",
    "data.files": "the annotation files",
    "data.records": "the number of records",
    "data.boxes": "the number of boxes",
    "data.valid_boxes": "the number of valid boxes",
    "data.invalid_boxes": "the number of invalid boxes",
    "data.over_max_boxes": "the boxes beyond max_boxes",
    "data.box.<category>": "the count of <category> boxes",
    "data.record.<category>": "the count of <category> records",
    "data.examples.<category>": "examples of <category>",
    "data.crash.first": "the first record the loader raises on",
    "data.grid": "the patch grid given by --grid",
    "data.image_root": "the image folder given by --image-root",
    "data.images.checked": "the images looked up",
    "data.images.opened": "whether the images were opened with --check-images",
    "data.images.sizes": "the image sizes",
    "data.clean": "the cleaned copy that --write-clean writes",
    "candidates.global": "the number of global-loss candidates per row",
    "candidates.region.in_batch": "the number of in-batch region candidates",
    "candidates.region.with_bank": "the number of region candidates with the memory bank",
    "candidates.hardneg": "the number of hard-negative candidates per row",
    "candidates.ssl": "the number of candidates per row of the image-image NT-Xent term",
    "features.gathered": "whether the loss gathers features across ranks",
    "observed.candidates.<term>": "the candidates a live run saw in the <term> logits",
    "observed.terms": "the loss terms a live run saw",
    "observed.forward_calls": "the forward calls of the live run",
    "observed.extra_columns.<term>": "the queued columns a live run saw in the <term> logits",
    "observed.loss.<term>.first": "the <term> loss at the start of the live run",
    "observed.loss.<term>.last": "the <term> loss at the end of the live run",
    "observed.loss.<term>.chance": "the <term> loss's chance level in the live run",
    "observed.loss.<term>.ratio": "the <term> loss over its chance level",
    "observed.loss.<term>.series": "the <term> loss over the live run",
    "resume.checkpoints": "the checkpoints in output_dir",
    "resume.checkpoint": "the checkpoint a resume would restore",
    "resume.step": "the step of the checkpoint to resume",
    "resume.scale.<scale>": "the <scale> scale in the checkpoint to resume",
    "text.eos_token_id": "the text tower's EOS id",
    "text.tokenizer_eos_id": "the tokenizer's EOS id",
    "text.long_positions": "the long-caption position table",
    "text.max_seq_length": "the caption length in tokens",
    "data.num_hard_negatives": "the number of rewrites per box",
    "observed.text.rows_without_eos": "the tokenised rows that lost their EOS",
    "observed.nonfinite_loss": "the NaN / Inf losses of the live run",
    "observed.grad_norm": "the gradient norms of the live run",
    "observed.grad.nonfinite": "the NaN / Inf gradients of the live run",
    "observed.logits.<term>.dtype": "the dtype of the <term> logits",
    "observed.logits.<term>.scale": "the scale of the <term> logits",
    "observed.logits.<term>.max_abs": "the size of the <term> logits",
    "observed.ddp.<term>.gathered": "whether the <term> features were gathered across ranks",
    "observed.ddp.<term>.target_offset_ok": "whether the <term> targets are offset by rank",
    "observed.bank.key_norm_error": "the norms of the queued keys",
    "observed.bank.requires_grad": "whether the queued keys are detached",
    "observed.bank.same_caption_rows": "the rows with their own caption in the queue",
    "observed.bank.same_caption_unmasked_rows": "the rows whose logits keep a queued copy of their caption",
    "observed.bank.near_duplicate_rows": "the rows with a copy of the positive among the candidates",
    "observed.region.within_image_cosine": "the similarity of the boxes of one image",
    "observed.region.images_with_2_boxes": "the images with two boxes or more",
    "observed.region.feature_norm_min": "the smallest region feature norm",
    "observed.region.feature_norm_mean": "the mean region feature norm",
    "ckpt.layout": "the checkpoint's layout",
    "ckpt.tensors": "the checkpoint's tensors",
    "ckpt.bytes": "the checkpoint's size",
    "ckpt.prefix": "the checkpoint's key prefix",
    "ckpt.checkpoints": "the checkpoints inspected",
    "scale.<scale>.drift": "the <scale> scale's drift from its start",
    "bank.persisted": "which memory bank buffers the checkpoint saves",
    "bank.ptr": "the memory bank's pointer",
    "bank.forward_calls": "the forward calls the memory bank counted",
    "bank.queue_cosine": "the spread of the queued keys",
    "bank.queue_random": "whether the queue is still random",
    "bank.same_caption_mean": "the queued copies of each row's caption",
    "roi.identity_distance": "how far roi_projection moved from its init",
    "roi.bias_norm": "the roi_projection bias",
    "weights.nonfinite": "the NaN / Inf tensors",
    "weights.scanned": "whether every tensor was scanned with --scan",
    "train.epoch": "the epoch reached",
    "history.series": "the logged history in trainer_state.json",
    "history.loss_keys": "the logged loss terms",
    "history.nonfinite": "the NaN / Inf values in the logged history",
    "history.logging_steps": "the logging interval",
    "loss.chance.<term>": "the <term> loss's chance level",
    "loss.floor.<term>": "the <term> loss's floor",
    "schedule.type": "the LR scheduler type",
    "schedule.base_lr": "the scheduler's base learning rate",
    "schedule.warmup_steps": "the LR warmup",
    "schedule.total_steps": "the steps the LR schedule spans",
    "schedule.kwargs": "the LR scheduler's arguments",
    "schedule.last_epoch": "the step the saved LR scheduler is at",
    "schedule.base_lrs": "the groups' initial learning rates",
    "schedule.last_lrs": "the groups' last learning rates",
    "optim.group_lrs": "the saved optimizer groups' learning rates",
    "optim.group_names": "the saved optimizer groups' names",
    "optim.group_sizes": "the saved optimizer groups' sizes",
    "optim.group_counts": "the optimizer groups per checkpoint",
    "code.entry_file": "the file the launch runs",
    "code.train_function": "the training function",
    "code.files_read": "the training code's files",
    "code.parser": "the training code's argument parser",
    "code.flags_known": "the flags the training code's parser accepts",
    "code.refuses_fp16": "whether the training code refuses fp16",
    "code.flags_accepted": "the launch's flags as the parser reads them",
    "code.flags_rejected": "the flags the training code's parser rejects",
    "code.logit_params": "the training code's logit scale parameters",
    "code.model": "the model that computes the loss",
    "code.fix.fp16": "how the training code spells the fp16 fix",
    "train.auto_resume_guards": "the flags that turn the auto-resume off",
    "train.auto_resume_path": "the checkpoint the code's own auto-resume loads",
    "code.resume_flag": "the flag the training code loads its checkpoint from",
    "code.resume_restores": "what a resume loads the checkpoint into",
    "resume.unusable": "why the checkpoint to resume cannot be loaded",
    "code.config_loads": "the config files the training code loads from its flags",
    "code.config_values": "the values of the training code's config files",
    "code.world_size_env": "the environment variables the code takes its world size from",
    "code.probe_sites": "where live hooks the training code",
    "code.probe_unplaced": "what live could not place in the training code",
    "optim.layer_decay": "the layer-wise learning-rate decay",
    "optim.layer_decay_scales": "the layer-wise decay's lowest and highest multiplier",
    "optim.group_lr_range": "the lowest and highest group learning rate",
    "schedule.warmup_ratio": "the LR warmup as a fraction of the run",
    "schedule.warmup_epochs": "the LR warmup in epochs",
    "scale.<scale>.init_from": "where the <scale> scale's start value comes from",
    "scale.<scale>.decayed": "whether the <scale> scale is under weight decay",
    "bias.global.init_from": "where the logit bias starts",
    "optim.group_lr_flags": "the flags that give groups their own learning rate",
    "optim.code_group_lrs": "the learning rates the code gives its optimizer groups",
    "features.gathered.<term>": "whether the <term> features are gathered across ranks",
    "loss.<term>.kind": "the <term> loss's kind, softmax or sigmoid",
    "loss.<term>.logit_bias": "whether a logit bias enters the <term> logits",
    "loss.<term>.errors_swallowed": "whether errors of the <term> loss are swallowed",
    "loss.<term>.present": "whether the code computes a <term> loss",
    "loss.<term>.keys_queued": "whether the <term> loss also compares against a queue of keys",
    "loss.<term>.queue": "the length of the queue of keys the <term> loss compares against",
    "loss.world_size_from": "where the loss takes its world size",
    "loss.world_size": "the world size the loss uses",
    # names that checks use for a family of facts (not written by a source)
    "candidates.<term>": "the number of candidates per row of the <term> loss",
}
# fmt: on

_ID = re.compile(r"(?<![\w/.<>$~-])[a-z][a-z0-9_]*(?:\.(?:[a-z0-9_]+|<[a-z_]+>))+(?![\w/<-])")
_HOLE = re.compile(r"<([a-z_]+)>")
_LIST_SEP = re.compile(r", | / | and | with | or ")


def _pattern(name: str) -> re.Pattern:
    """A vocabulary name as a regex: each `<placeholder>` one name segment (or kept as written)."""
    parts = _HOLE.split(name)
    regex = "".join(re.escape(p) if i % 2 == 0 else rf"(?P<{p}>[^.]+|<{p}>)" for i, p in enumerate(parts) if p or i % 2)
    return re.compile(regex)


_PATTERNS = [(name, _pattern(name)) for name in sorted({*FACTS, *PHRASES}, key=lambda n: (-len(n), n))]


def phrase(name: str) -> str | None:
    """`name` in words ("the finegrained scale's start value"), None when it is no fact name."""
    if name in PHRASES and "<" not in name:
        return PHRASES[name]
    for entry, pattern in _PATTERNS:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        text = PHRASES.get(entry) or _from_meaning(FACTS[entry])
        for hole, value in m.groupdict().items():
            word = "each" if value == f"<{hole}>" else value.replace("_", " ")
            text = text.replace(f"<{hole}>", word)
        return re.sub(r"\bthe each\b", "each", text)
    return None


def _from_meaning(meaning: str) -> str:
    """A phrase from a vocabulary meaning, for a fact that has none yet ("True when x" -> "whether x")."""
    text = meaning.split(" (")[0].split(": ")[0]
    return "whether " + text[len("True when ") :] if text.startswith("True when ") else text


def fact_names(text: str) -> list[str]:
    """The fact names that `text` mentions, in order, each once."""
    return list(dict.fromkeys(m.group(0) for m in _ID.finditer(text) if phrase(m.group(0)) is not None))


def say_names(text: str) -> str:
    """Every fact name in `text` replaced by its phrase (for the table; JSON keeps the names)."""
    return _ID.sub(lambda m: phrase(m.group(0)) or m.group(0), text)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_STOP = {"per", "of", "in", "with", "at", "from", "that", "the", "by", "a", "on", "to", "over", "among", "whose"}


def _plural(text: str) -> bool:
    """Whether a phrase's head noun is plural ("the model's trainable parameters"), for its verb."""
    if text.split(" ")[0] in ("whether", "where", "which", "how"):
        return False
    words = text.removeprefix("the ").split(" ")
    head: list[str] = []
    for word in words:
        if word in _STOP:
            break
        head = [] if word.endswith(("'s", "s'")) else [*head, word]
    return any(w.endswith("s") and not w.endswith(("ss", "is", "us", "as")) for w in head)


def in_words(
    message: str,
    why: Callable[[str], Iterable[str]] = lambda name: (),
    known: Callable[[str], bool] = lambda name: False,
) -> tuple[str, list[str]]:
    """A SKIP reason with its fact names said in words, and the absent ones (for the JSON).

    `not known: a, b (hint)` becomes `A and B are not known (hint)` (leaving out a name that
    `known` says is known after all); a name elsewhere becomes its phrase in place. `why(name)`
    gives why a fact is absent (what a source could not read): those reasons follow the
    sentence after ` — `, each once."""
    names = [n for n in fact_names(message) if not known(n)]
    if not names:
        return say_names(message), []
    text = message
    head = re.match(r"not (known|measured): ([^(—;:]*?)(?=$| \(| — |; |: )", text)
    parts = _LIST_SEP.split(head.group(2)) if head else []
    if parts and all(fact_names(part) == [part] for part in parts):
        items = [phrase(part) or part for part in [p for p in parts if p in names] or parts]
        verb = "are" if len(items) > 1 or _plural(items[0]) else "is"
        sentence = f"{_join(items)} {verb} not {head.group(1)}"
        text = sentence[0].upper() + sentence[1:] + text[head.end() :]
        for item in items:  # a hint that restates the phrase: "(the groups, read from ...)" -> "(read from ...)"
            text = re.sub(rf" \({re.escape(item)}\)", "", text, count=1, flags=re.IGNORECASE)
            text = re.sub(rf"\({re.escape(item)}[,;] ", "(", text, count=1, flags=re.IGNORECASE)
    text = say_names(text)
    reasons = list(dict.fromkeys(r for name in names for r in why(name) if r and r not in text))
    if reasons:
        text += " — " + "; ".join(reasons)
    return text, names
