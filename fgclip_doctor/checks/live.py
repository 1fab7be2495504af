"""Rules only a live run can judge ("L"): what the probes saw in the logits, the queue, the RoIs.

Each rule reads `observed.*` facts that the live probes record during a few real optimizer
steps (see vocabulary.py): the dtype and size of the logits each cross-entropy got, whether
gathered logits have their targets offset by rank, the state of the memory bank's queue, and the
raw RoI features. `<term>` in those names is a loss term (global, region, hardneg) or, for code
the doctor does not know, the call site of the cross-entropy ("modeling_clip.py:77 clip_loss").
"""
from __future__ import annotations

import math

from fgclip_doctor.checks.negatives import no_bank_reason
from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts
from fgclip_doctor.vocabulary import observed_fact

#: explicit mantissa bits of the low-precision float formats (bfloat16: 7 + the implicit one = 8)
MANTISSA_BITS = {"bfloat16": 7, "float16": 10}
FULL_PRECISION = ("float32", "float64")
_DTYPE_ALIASES = {"bf16": "bfloat16", "half": "float16", "fp16": "float16", "float": "float32",
                  "fp32": "float32", "double": "float64", "fp64": "float64"}


def pct(fraction: float) -> str:
    """A fraction as a percentage to 3 significant digits: 0 %, 12.5 %, 100 %."""
    return f"{100 * float(fraction):.3g} %"


def observed_terms(facts: Facts, family: str, kinds: tuple[str, ...]) -> list[str]:
    """Terms of `observed.terms`, then any other term with an `observed.<family>.<term>.<kind>`
    fact (term names may hold dots: call sites such as "modeling_clip.py:77 clip_loss")."""
    listed = [str(t) for t in facts.value("observed.terms") or []]
    prefix = f"observed.{family}."
    found = set()
    for name in facts:
        if name.startswith(prefix):
            for kind in kinds:
                if name.endswith("." + kind) and len(name) > len(prefix) + len(kind) + 1:
                    found.add(name[len(prefix):-len(kind) - 1])
    return listed + sorted(found - set(listed))


def dtype_name(value: object) -> str:
    """'torch.bfloat16' / 'bf16' / torch.bfloat16 -> 'bfloat16'."""
    text = str(value).strip().lower()
    text = text[len("torch."):] if text.startswith("torch.") else text
    return _DTYPE_ALIASES.get(text, text)


def float_step(dtype: str, magnitude: float) -> float:
    """Spacing of representable `dtype` values at `magnitude` (bfloat16 at 100: 0.5)."""
    exponent = math.floor(math.log2(magnitude)) if magnitude > 0 else 0
    return 2.0 ** (exponent - MANTISSA_BITS[dtype])


# --- FGD105 bf16-logits -------------------------------------------------------------------------

@rule("FGD105", "bf16-logits", title="logits reach cross-entropy in float32 at large scales",
      severity="warn", where="L",
      fix="compute the logits and the loss in float32 (features .float() before the matmul with "
          "exp(logit_scale), or autocast disabled around the loss)",
      what="For each cross-entropy the live probe saw, the dtype of its logits: bfloat16 or "
           "float16 logits at a scale (exp(logit_scale), or else the largest |logit|) of 50 or "
           "more warn; float32 passes.",
      why="bfloat16 keeps 8 significant bits: near 100 its step is 0.5 (near 50 it is 0.25), so "
          "a positive and a hard negative whose logits differ by less than that tie, and the "
          "gradient that should separate them is rounded away. At T 100 a cosine gap of 0.005 "
          "is already a logit gap of 0.5.",
      example="region logits torch.bfloat16 at scale 100 (max |logit| 31) -> WARN: step 0.5 near "
              "100; torch.float32 -> PASS",
      evidence="torch.finfo(torch.bfloat16).eps = 2^-7 (8 significant bits), so "
               "torch.tensor(100.2, dtype=torch.bfloat16) == 100; PyTorch's autocast runs matmul "
               "in the low-precision dtype and only casts cross_entropy's input up, after the "
               "logits were rounded; models cast wholly to bf16 (DeepSpeed bf16) keep the loss in "
               "bf16 too. The scale sits at T 100 in a trained CLIP (open_clip clamps at ln 100).",
      thresholds={"min_scale": 50.0})
def bf16_logits(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per observed term."""
    terms = observed_terms(facts, "logits", ("dtype", "scale", "max_abs"))
    if not terms:
        return [ctx.skip("not known: observed.terms / observed.logits.<term>.dtype (a live run "
                         "records the logits each cross-entropy gets)")]
    return [_bf16_term(facts, ctx, term) for term in terms]


def _bf16_term(facts: Facts, ctx: RuleContext, term: str) -> Finding:
    names = [observed_fact("logits", term, k) for k in ("dtype", "scale", "max_abs")]
    src = ctx.sources_of(facts, *names)
    raw = facts.value(names[0])
    if raw is None:
        return ctx.skip(f"not known: {names[0]}", src, term)
    dtype = dtype_name(raw)
    scale, max_abs = facts.value(names[1]), facts.value(names[2])
    known = [float(v) for v in (scale, max_abs) if v is not None]
    size = ", ".join(([f"scale {float(scale):.3g}"] if scale is not None else [])
                     + ([f"max |logit| {float(max_abs):.3g}"] if max_abs is not None else []))
    size = f" ({size})" if size else ""
    limit = ctx.threshold("min_scale")
    expected = f"float32 at scale >= {limit:g}"
    if dtype in FULL_PRECISION:
        return ctx.passed(dtype, expected, f"{term}: logits in {dtype}{size}", src, term)
    if dtype not in MANTISSA_BITS:
        return ctx.skip(f"{term}: logits dtype {raw} not recognised", src, term)
    if not known:
        return ctx.skip(f"{term}: logits in {dtype}, but their size is not known: "
                        f"{names[1]}, {names[2]}", src, term)
    magnitude = max(known)
    step = float_step(dtype, magnitude)
    measured = f"{dtype}{size}"
    if magnitude >= limit:
        return ctx.problem(measured, expected,
                           f"{term}: logits in {dtype}{size}: {dtype} keeps "
                           f"{MANTISSA_BITS[dtype] + 1} significant bits, so near "
                           f"{magnitude:.3g} its step is {step:g} and logits closer than that "
                           f"tie", src, term)
    return ctx.passed(measured, expected,
                      f"{term}: logits in {dtype}{size}, below {limit:g} (step {step:g} there)",
                      src, term)


# --- FGD204 bank-hygiene ------------------------------------------------------------------------

@rule("FGD204", "bank-hygiene", title="queued keys are detached and unit-norm",
      severity="fail", where="L",
      fix="enqueue F.normalize(keys.detach(), dim=1) under torch.no_grad() into a registered buffer",
      what="In a live run, every filled entry of the memory bank's queue has L2 norm 1 (within "
           "1e-2), and the queue tensor does not require grad.",
      why="The queue's columns join the in-batch ones in one softmax: keys that are not unit-norm "
          "give their logits another scale than the in-batch candidates. A queue that requires "
          "grad keeps the graph of every batch it holds alive (memory grows every step) and sends "
          "gradients into batches long gone.",
      example="queue written as raw text features (norm 6.2) -> max | ||key|| - 1 | = 5.2 > 0.01 "
              "-> FAIL; queue.requires_grad True -> FAIL",
      evidence="facebookresearch/moco moco/builder.py: keys computed under torch.no_grad() and "
               "normalised (nn.functional.normalize(k, dim=1)), the queue a normalised buffer "
               "updated in a @torch.no_grad() _dequeue_and_enqueue.",
      thresholds={"norm_tol": 1e-2})
def bank_hygiene(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding for the key norms, one for detachment (each when observed)."""
    norm_n, grad_n = "observed.bank.key_norm_error", "observed.bank.requires_grad"
    if norm_n not in facts and grad_n not in facts:
        return [ctx.skip(no_bank_reason(facts), ctx.sources_of(facts, "bank.enabled", "bank.enabled_at_call"))]
    out = []
    tol = ctx.threshold("norm_tol")
    src = ctx.sources_of(facts, norm_n, "bank.fill")
    if norm_n not in facts:
        out.append(ctx.skip(f"not known: {norm_n}", src, "key norms"))
    else:
        err = float(facts.value(norm_n))
        measured, expected = f"max | ||key|| - 1 | = {err:.3g}", f"<= {tol:g}"
        if not err <= tol:  # NaN fails too
            out.append(ctx.problem(measured, expected,
                                   f"queued keys are not unit-norm: max | ||key|| - 1 | = {err:.3g} "
                                   f"> {tol:g}: queue logits live on another scale than the "
                                   f"in-batch ones", src, "key norms",
                                   fix="normalise keys before enqueue: F.normalize(keys, dim=1)"))
        else:
            out.append(ctx.passed(measured, expected,
                                  f"queued keys unit-norm (max | ||key|| - 1 | = {err:.3g})",
                                  src, "key norms"))
    src = ctx.sources_of(facts, grad_n)
    if grad_n not in facts:
        out.append(ctx.skip(f"not known: {grad_n}", src, "detached"))
    elif facts.value(grad_n):
        out.append(ctx.problem("requires_grad True", "requires_grad False",
                               "the queue tensor requires grad: it keeps the graph of every "
                               "enqueued batch alive (memory grows each step) and sends gradients "
                               "into old batches; MoCo enqueues detached keys", src, "detached",
                               fix="enqueue keys.detach() under torch.no_grad(), into a buffer "
                                   "(register_buffer), not a Parameter or a graph tensor"))
    else:
        out.append(ctx.passed("requires_grad False", "requires_grad False",
                              "the queue is detached (requires_grad False)", src, "detached"))
    return out


# --- FGD205 bank-false-negatives ----------------------------------------------------------------

@rule("FGD205", "bank-false-negatives", title="no copies of the positive among the negatives",
      severity="warn", where="L",
      fix="mask candidates with the positive's caption id (queue and batch), or deduplicate "
          "captions before they are enqueued",
      what="In a live run: the fraction of region rows whose positive caption also sits in the "
           "queue (same caption id) while same-caption masking is off, and the fraction of rows "
           "with an unmasked queued candidate at cosine > 0.9999 to the positive caption "
           "feature (features equal up to float error; text towers are anisotropic: after the "
           "tiny fine-tune 99.8 % of distinct captions have a neighbour above 0.999, which are "
           "hard negatives, not copies). Either above 1 % warns.",
      why="A copy of the positive counted as a negative is a contradiction the loss cannot "
          "resolve: it pulls the box toward its caption and pushes it away from the same caption "
          "in the queue. With a small caption vocabulary (anomaly datasets, templated captions) "
          "most of a large queue can be copies, and more negatives then hurt.",
      example="15 distinct box captions, 128-entry queue, masking off: 97 % of region rows have a "
              "queued copy of their caption -> WARN",
      evidence="DESIGN §6: with 15 captions a 128-entry queue was mostly copies of the positive "
               "and hurt (0.63 vs 0.55 of chance); facebookresearch/moco moco/builder.py treats "
               "every queued key as a negative, which holds only when queued keys are other "
               "instances.",
      thresholds={"max_fraction": 0.01})
def bank_false_negatives(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding for same-caption queue entries, one for near-duplicates (each when observed)."""
    same_n, dup_n, mask_n = ("observed.bank.same_caption_rows", "observed.bank.near_duplicate_rows",
                             "bank.mask_same_caption")
    if same_n not in facts and dup_n not in facts:
        return [ctx.skip(f"{no_bank_reason(facts)} (not known: {same_n}, {dup_n})",
                         ctx.sources_of(facts, "bank.enabled", "bank.enabled_at_call"))]
    limit = ctx.threshold("max_fraction")
    expected = f"<= {pct(limit)} of rows"
    out = []
    src = ctx.sources_of(facts, same_n, mask_n)
    if same_n not in facts:
        out.append(ctx.skip(f"not known: {same_n}", src, "same caption"))
    else:
        same, mask = float(facts.value(same_n)), facts.value(mask_n)
        text = f"{pct(same)} of region rows have a queued entry with their own caption"
        if same <= limit:
            out.append(ctx.passed(pct(same), expected, text, src, "same caption"))
        elif mask is None:
            out.append(ctx.skip(f"{text}, and whether they are masked is not known: {mask_n}",
                                src, "same caption"))
        elif mask:
            out.append(ctx.passed(f"{pct(same)} masked", expected,
                                  f"{text}; all masked (bank.mask_same_caption), so none acts as "
                                  f"a negative", src, "same caption"))
        else:
            out.append(ctx.problem(pct(same), expected,
                                   f"{text}, unmasked: copies of the positive act as negatives "
                                   f"({pct(same)} > {pct(limit)})", src, "same caption"))
    src = ctx.sources_of(facts, dup_n, mask_n)
    if dup_n not in facts:
        out.append(ctx.skip(f"not known: {dup_n}", src, "near duplicate"))
    else:
        dup = float(facts.value(dup_n))
        text = (f"{pct(dup)} of rows have an unmasked queued candidate at cosine "
                f"> 0.9999 to the positive caption")
        if dup > limit:
            out.append(ctx.problem(pct(dup), expected,
                                   f"{text}: near-copies of the positive act as negatives "
                                   f"({pct(dup)} > {pct(limit)})", src, "near duplicate"))
        else:
            out.append(ctx.passed(pct(dup), expected, text, src, "near duplicate"))
    return out


# --- FGD207 ddp-targets -------------------------------------------------------------------------

@rule("FGD207", "ddp-targets", title="gathered logits have their targets offset by rank",
      severity="fail", where="L",
      fix="offset the targets when the columns hold every rank's features: "
          "labels = torch.arange(rows) + rank * rows",
      what="For each loss whose logits have world x rows columns (features gathered across "
           "ranks), every rank's targets point at rank x rows + i (at least 99 % of its rows).",
      why="After an all-gather, rank r's own positives sit in columns r x batch .. r x batch + "
          "batch - 1. Targets left at 0..batch-1 point every row of ranks > 0 at another rank's "
          "sample: those ranks learn to match the wrong pairs while rank 0 looks fine, and the "
          "loss stays high.",
      example="world 2, batch 8, labels = arange(8) on both ranks -> rank 1: 0 % of targets at "
              "rank × batch + i -> FAIL",
      evidence="open_clip src/open_clip/loss.py ClipLoss.get_ground_truth (labels + num_logits * "
               "rank when world_size > 1 and local_loss); transformers#22252 (HF CLIP does not "
               "gather across GPUs, so gathering is added by hand, and the labels with it).",
      thresholds={"min_fraction": 0.99})
def ddp_targets(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per observed term (a single SKIP in a one-process run)."""
    world = facts.value("run.world_size")
    wsrc = ctx.sources_of(facts, "run.world_size")
    if world is not None and int(world) <= 1:
        return [ctx.skip("single process: nothing gathered", wsrc)]
    terms = observed_terms(facts, "ddp", ("gathered", "target_offset_ok"))
    if world is None:
        seen = [facts.value(observed_fact("ddp", t, "target_offset_ok")) or [] for t in terms]
        if max((len(s) for s in seen), default=0) <= 1:
            return [ctx.skip("not known: run.world_size")]
    if not terms:
        return [ctx.skip("not known: observed.terms / observed.ddp.<term>.gathered (a live run "
                         "with --nproc > 1 records them)", wsrc)]
    return [_ddp_term(facts, ctx, term, world, wsrc) for term in terms]


def _ddp_term(facts: Facts, ctx: RuleContext, term: str, world, wsrc) -> Finding:
    gathered_n = observed_fact("ddp", term, "gathered")
    offsets_n = observed_fact("ddp", term, "target_offset_ok")
    src = (*wsrc, *ctx.sources_of(facts, gathered_n, offsets_n))
    gathered = facts.value(gathered_n)
    limit = ctx.threshold("min_fraction")
    expected = f">= {pct(limit)} on every rank"
    if gathered is None:
        return ctx.skip(f"not known: {gathered_n}", src, term)
    if not gathered:
        on = f" on world {world}" if world is not None else ""
        return ctx.passed("not gathered", "local targets",
                          f"{term}: columns are not world × rows{on}: targets need no rank offset "
                          f"(whether each row sees every rank's candidates: negatives-count)",
                          src, term)
    offsets = facts.value(offsets_n)
    if offsets is None:
        return ctx.skip(f"{term}: gathered across ranks, but not known: {offsets_n}", src, term)
    offsets = [float(v) for v in offsets]
    bad = [(r, v) for r, v in enumerate(offsets) if not v >= limit]
    if bad:
        where = "; ".join(f"rank {r}: {pct(v)} of targets at rank × batch + i" for r, v in bad)
        measured = "; ".join(f"rank {r}: {pct(v)}" for r, v in bad)
        return ctx.problem(measured, expected,
                           f"{term}: {where}: labels not offset; positives sit in another rank's "
                           f"columns", src, term)
    lowest = min(offsets) if offsets else 1.0
    return ctx.passed(f"min {pct(lowest)}", expected,
                      f"{term}: targets at rank × batch + i on all {len(offsets)} ranks "
                      f"(lowest {pct(lowest)})", src, term)


# --- FGD502 roi-scale ---------------------------------------------------------------------------

@rule("FGD502", "roi-scale", title="RoI features are not zero", severity="fail", where="L",
      fix="give RoIAlign boxes in feature-map units: normalised [0, 1] boxes times the patch grid "
          "(or spatial_scale = grid / image size for pixel boxes)",
      what="In a live run, the smallest L2 norm of the raw (un-normalised) RoI features is at "
           "least 1e-6.",
      why="RoIAlign samples outside the feature map count as 0: a box given in pixel coordinates "
          "where grid cells were expected, or scaled by the wrong spatial scale, lands off the map "
          "and pools an all-zero feature. Normalising it then gives noise or NaN, and its region "
          "loss can never drop.",
      example="pixel boxes (40..200 on a 224 image) times a 7x7 grid -> every box off the map, "
              "smallest norm 0 -> FAIL",
      evidence="torchvision.ops.roi_align docs (boxes in input units times spatial_scale; "
               "samples outside the map are 0); FG-CLIP v1 fgclip/model/clip_strc/fgclip.py "
               "scales normalised boxes to the patch grid before roi_align.",
      thresholds={"min_norm": 1e-6})
def roi_scale(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding."""
    min_n, mean_n = "observed.region.feature_norm_min", "observed.region.feature_norm_mean"
    if skip := ctx.require(facts, min_n):
        return skip
    src = ctx.sources_of(facts, min_n, mean_n)
    low, mean = float(facts.value(min_n)), facts.value(mean_n)
    limit = ctx.threshold("min_norm")
    also = f" (mean {float(mean):.3g})" if mean is not None else ""
    measured, expected = f"min norm {low:.3g}", f">= {limit:g}"
    if not low >= limit:
        return ctx.problem(measured, expected,
                           f"smallest raw RoI feature norm {low:.3g} < {limit:g}{also}: boxes "
                           f"pool zeros, they lie outside the feature map (pixel coordinates, or "
                           f"a spatial scale that does not match the patch grid)", src)
    return ctx.passed(measured, expected, f"raw RoI feature norms >= {low:.3g}{also}", src)


# --- FGD503 region-collapse ---------------------------------------------------------------------

@rule("FGD503", "region-collapse", title="different boxes of one image get different features",
      severity="fail", where="L",
      fix="pool each box from its own cells: boxes normalised to [0, 1] times the patch grid, "
          "and region features from RoIAlign, not from the whole image",
      what="In a live run, the mean pairwise cosine between the RoI features of different boxes "
           "of the same image is at most 0.98 (needs at least one image with two boxes).",
      why="When every box of an image yields the same feature, the region loss cannot tell the "
          "boxes apart: the model, or the box scaling (pixel coordinates, a wrong spatial scale, "
          "normalised boxes on a grid-unit map all inside one cell), ignores the box, and the "
          "region loss stalls near chance.",
      example="normalised boxes passed with spatial_scale 1 to a 7x7 map: every box pools the "
              "same corner cell, within-image cosine 1.0 -> FAIL",
      evidence="DESIGN §6: a model pooling the whole image instead of the box reaches only "
               "0.88-0.98 of chance, real box pooling 0.50-0.60 by step 60; torchvision.ops."
               "roi_align docs (spatial_scale maps boxes onto the feature map).",
      thresholds={"max_cosine": 0.98, "min_images": 1})
def region_collapse(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding."""
    cos_n, img_n = "observed.region.within_image_cosine", "observed.region.images_with_2_boxes"
    src = ctx.sources_of(facts, cos_n, img_n)
    images = facts.value(img_n)
    need = ctx.threshold("min_images")
    if images is not None and int(images) < need:
        return ctx.skip(f"{int(images)} images with >= 2 boxes seen; needs {need:g}", src)
    if skip := ctx.require(facts, cos_n):
        return skip
    cos = float(facts.value(cos_n))
    limit = ctx.threshold("max_cosine")
    over = f" over {int(images)} images" if images is not None else ""
    measured, expected = f"cosine {cos:.3f}", f"<= {limit:g}"
    if not cos <= limit:
        return ctx.problem(measured, expected,
                           f"boxes of one image get nearly the same feature: mean within-image "
                           f"cosine {cos:.3f} > {limit:g}{over}: the model or the box scaling "
                           f"ignores the box", src)
    return ctx.passed(measured, expected,
                      f"mean within-image cosine {cos:.3f}{over}: boxes pool different features",
                      src)
