"""Data rules (FGD5xx) on what the model makes of boxes and captions: RoI features that are not
zero, region features that differ within an image (live), text rows that keep their EOS and fit
the position table (config and live). check-data's own rules are in checks/data.py.
"""

from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts

# --- FGD502 roi-scale ---------------------------------------------------------------------------


@rule(
    "FGD502",
    "roi-scale",
    title="RoI features are not zero",
    severity="fail",
    where="L",
    fix="give RoIAlign boxes in feature-map units: normalised [0, 1] boxes times the patch grid "
    "(or spatial_scale = grid / image size for pixel boxes)",
    what="In a live run, the smallest L2 norm of the raw (un-normalised) RoI features is at least 1e-6.",
    why="RoIAlign samples outside the feature map count as 0: a box given in pixel coordinates "
    "where grid cells were expected, or scaled by the wrong spatial scale, lands off the map "
    "and pools an all-zero feature. Normalising it then gives noise or NaN, and its region "
    "loss can never drop.",
    example="pixel boxes (40..200 on a 224 image) times a 7x7 grid -> every box off the map, smallest norm 0 -> FAIL",
    evidence="torchvision.ops.roi_align docs (boxes in input units times spatial_scale; "
    "samples outside the map are 0); FG-CLIP v1 fgclip/model/clip_strc/fgclip.py "
    "scales normalised boxes to the patch grid before roi_align.",
    thresholds={"min_norm": 1e-6},
)
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
        return ctx.problem(
            measured,
            expected,
            f"smallest raw RoI feature norm {low:.3g} < {limit:g}{also}: boxes "
            f"pool zeros, they lie outside the feature map (pixel coordinates, or "
            f"a spatial scale that does not match the patch grid)",
            src,
        )
    return ctx.passed(measured, expected, f"raw RoI feature norms >= {low:.3g}{also}", src)


# --- FGD503 region-collapse ---------------------------------------------------------------------


@rule(
    "FGD503",
    "region-collapse",
    title="different boxes of one image get different features",
    severity="fail",
    where="L",
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
    evidence="docs/experiment.md: a model pooling the whole image instead of the box reaches only "
    "0.88-0.98 of chance, real box pooling 0.50-0.60 by step 60; torchvision.ops."
    "roi_align docs (spatial_scale maps boxes onto the feature map).",
    thresholds={"max_cosine": 0.98, "min_images": 1},
)
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
        return ctx.problem(
            measured,
            expected,
            f"boxes of one image get nearly the same feature: mean within-image "
            f"cosine {cos:.3f} > {limit:g}{over}: the model or the box scaling "
            f"ignores the box",
            src,
        )
    return ctx.passed(
        measured, expected, f"mean within-image cosine {cos:.3f}{over}: boxes pool different features", src
    )


@rule(
    "FGD504",
    "text-eos",
    title="text rows keep their EOS and fit the position table",
    severity="fail",
    where="CL",
    fix="use the tokenizer the text tower was trained with; keep max_seq_length <= the long "
    "position table (248); truncate so the EOS stays",
    what="The text tower pools at the tokenizer's EOS id; the long-caption position table has "
    "at least max_seq_length rows; live, every tokenised row keeps its EOS.",
    why="CLIP's text feature is the hidden state at the EOS token: a wrong EOS id or a "
    "truncated row pools at the wrong token, and tokens past the position table fail or "
    "wrap silently.",
    example="text.eos_token_id 2 vs tokenizer eos 49407 -> FAIL; max_seq_length 300 with 248 positions -> FAIL",
    evidence="transformers CLIPTextTransformer pools at eos_token_id (argmax when it is 2); "
    "FG-CLIP stretches positions 77 -> 248 for long captions.",
)
def text_eos(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per checkable subject: eos-id, positions, rows (live)."""
    v = facts.value
    out = []
    if "text.eos_token_id" in facts and "text.tokenizer_eos_id" in facts:
        model_eos, tok_eos = v("text.eos_token_id"), v("text.tokenizer_eos_id")
        src = ctx.sources_of(facts, "text.eos_token_id", "text.tokenizer_eos_id")
        if model_eos != tok_eos:
            out.append(
                ctx.problem(
                    model_eos,
                    tok_eos,
                    f"the text tower pools at eos id {model_eos}; the tokenizer's eos is {tok_eos}",
                    src,
                    "eos-id",
                )
            )
        else:
            out.append(
                ctx.passed(
                    model_eos, tok_eos, f"eos id {model_eos} in both the text tower and the tokenizer", src, "eos-id"
                )
            )
    if "text.long_positions" in facts and "text.max_seq_length" in facts:
        rows, length = int(v("text.long_positions")), int(v("text.max_seq_length"))
        src = ctx.sources_of(facts, "text.long_positions", "text.max_seq_length")
        if rows < length:
            out.append(
                ctx.problem(
                    f"{rows} positions",
                    f">= {length} positions",
                    f"long captions are {length} tokens, longer than the {rows}-row position table",
                    src,
                    "positions",
                )
            )
        else:
            out.append(
                ctx.passed(
                    f"{rows} positions",
                    f">= {length} positions",
                    f"{length}-token captions fit the {rows}-row position table",
                    src,
                    "positions",
                )
            )
    if "observed.text.rows_without_eos" in facts:
        n = int(v("observed.text.rows_without_eos"))
        src = ctx.sources_of(facts, "observed.text.rows_without_eos")
        if n > 0:
            out.append(
                ctx.problem(
                    f"{n} rows", "0 rows", f"{n} tokenised rows without EOS: truncation cut it off", src, "rows"
                )
            )
        else:
            out.append(ctx.passed("0 rows", "0 rows", "every tokenised row keeps its EOS", src, "rows"))
    return out or [
        ctx.skip(
            "not known: text.eos_token_id with text.tokenizer_eos_id, "
            "text.long_positions with text.max_seq_length (the model config and "
            "the tokenizer give them)"
        )
    ]
