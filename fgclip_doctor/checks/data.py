"""Data rules (FGD5xx, where D): what check-data's scan counted, against ratio thresholds.

The scan (fgclip_doctor.sources.data.scan) writes one count per category as `data.box.<name>`
(per box entry) or `data.record.<name>` (per record), the totals `data.records` / `data.boxes` /
`data.valid_boxes`, and up to K examples per category as `data.examples.<name>` ("file:line:
detail"), which the findings cite as their sources. Every threshold is a ratio: a finding fails
(or warns) when count / total is *above* it, so the default 0 means "any".
"""

from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts

#: what the loader drops (fgclip.boxes.box_problem's names; pixel coordinates split out)
INVALID = ("malformed", "nonfinite", "inverted", "zero_area", "out_of_range", "pixel_coords")
#: FG-CLIP's own loader raises on the first two, and feeds the others to RoIAlign without a word
CRASH, SILENT = ("malformed", "inverted"), ("nonfinite", "zero_area", "out_of_range", "pixel_coords")
MALFORMED_RECORDS = ("not_json", "not_object", "missing_fields")
SCAN_FIX = "`fgclip-doctor check-data DATA --write-clean CLEAN.jsonl` writes a filtered copy"
TORCHVISION = "torchvision.ops.roi_align docs: boxes (x1, y1, x2, y2) with 0 <= x1 < x2, 0 <= y1 < y2"


def pct(ratio: float) -> str:
    """A ratio as a percentage with 3 significant digits: 0.0123 -> '1.23 %'."""
    return f"{100 * ratio:.3g} %"


def box(name: str) -> str:
    return f"data.box.{name}"


def record(name: str) -> str:
    return f"data.record.{name}"


def examples(facts: Facts, *names: str, limit: int = 5) -> tuple[str, ...]:
    """Up to `limit` example locations ("file:line: detail") over the given categories."""
    out = [e for n in names for e in facts.value(f"data.examples.{n}", [])]
    return tuple(out[:limit])


def counted(facts: Facts, names: list[str]) -> str:
    """'3 inverted, 1 zero area' for the nonzero counts among `names` (fact names)."""
    parts = [f"{facts.value(n)} {n.rsplit('.', 1)[1].replace('_', ' ')}" for n in names if facts.value(n)]
    return ", ".join(parts) or "none"


def ratio_finding(
    facts: Facts, ctx: RuleContext, names: list[str], total_fact: str, unit: str, key: str, what: str, subject: str = ""
) -> Finding:
    """The common shape: sum(names) / total_fact against threshold `key`."""
    if skip := ctx.require(facts, total_fact, *names, subject=subject):
        return skip
    total = facts.value(total_fact)
    if not total:
        return ctx.skip(f"no {unit} in the annotations", ctx.sources_of(facts, total_fact), subject)
    n = sum(facts.value(name) for name in names)
    ratio, limit = n / total, ctx.threshold(key)
    measured = f"{n} of {total} {unit} ({pct(ratio)})"
    expected = f"<= {pct(limit)}"
    src = examples(facts, *(name.rsplit(".", 1)[1] for name in names)) or ctx.sources_of(facts, total_fact)
    if ratio > limit:
        return ctx.problem(measured, expected, f"{what}: {counted(facts, names)}", src, subject)
    return ctx.passed(measured, expected, f"{what}: {counted(facts, names)}", src, subject)


@rule(
    "FGD501",
    "box-valid",
    title="boxes are normalised, ordered and finite",
    severity="fail",
    where="D",
    thresholds={"max_invalid_ratio": 0.0},
    fix="drop or repair invalid boxes (" + SCAN_FIX + "); divide pixel boxes by the image width / height",
    what="Every bbox of every record goes through the subject loader's own box_problem "
    "(fgclip/boxes.py): not 4 numbers, NaN / Inf, inverted (x1 > x2 or y1 > y2), zero "
    "area, outside [0, 1] beyond 1e-6. Out-of-range boxes whose max coordinate is > 1.5 "
    "are counted as pixel coordinates. Fails when invalid / boxes exceeds "
    "max_invalid_ratio; any pixel-coordinate box fails on its own. A third finding "
    "names the records FG-CLIP's own loader raises on (an inverted or malformed box "
    "among the first max_boxes, a missing field): any fails, citing the first.",
    why="An invalid box gives a zero RoI feature and NaN after normalisation, or is silently "
    "dropped by the subject's loader. FG-CLIP's own loader raises ValueError('Box "
    "coordinates are invalid.') on an inverted box: the run stops at that record, hours "
    "in; zero-area, out-of-range and NaN boxes it passes into RoIAlign without a word. "
    "Pixel coordinates in a pipeline that expects [0, 1] put every box outside the "
    "image: zero features everywhere, and a region loss stuck at chance.",
    example="bbox [120, 40, 380, 290] -> FAIL (pixel coordinates); [0.5, 0.2, 0.3, 0.4] -> FAIL (inverted)",
    evidence=TORCHVISION + "; the seed incident's follow-ups (filter zero-area and "
    "out-of-range boxes, count them); FG-CLIP fgclip/train/train_fgclip.py bbox "
    "handling.",
)
def box_valid(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """Two findings: invalid boxes against the ratio, and pixel coordinates (any fails)."""
    names = [box(n) for n in INVALID]
    found = ratio_finding(
        facts, ctx, names, "data.boxes", "boxes", "max_invalid_ratio", "boxes the loader drops", "invalid boxes"
    )
    if found.status.value != "SKIP":
        found.message += (
            f" (FG-CLIP's loader raises on {counted(facts, [box(n) for n in CRASH])}"
            f" among a record's first {facts.value('data.max_boxes')}; passes "
            f"{counted(facts, [box(n) for n in SILENT])} silently into RoIAlign)"
        )
    out = [found, loader_crash(facts, ctx)]
    if skip := ctx.require(facts, "data.boxes", box("pixel_coords"), subject="pixel coordinates"):
        return out + [skip]
    pixels, total = facts.value(box("pixel_coords")), facts.value("data.boxes")
    measured = f"{pixels} of {total} boxes with max > 1.5"
    if pixels:
        out.append(
            ctx.failed(
                measured,
                "0",
                "boxes look like pixel coordinates, not [0, 1]: their RoI features are zero",
                examples(facts, "pixel_coords"),
                "pixel coordinates",
            )
        )
    else:
        out.append(
            ctx.passed(
                measured,
                "0",
                "no box looks like pixel coordinates",
                ctx.sources_of(facts, "data.boxes"),
                "pixel coordinates",
            )
        )
    return out


def loader_crash(facts: Facts, ctx: RuleContext) -> Finding:
    """Records FG-CLIP's own loader raises on: any fails, citing the first (the run stops there)."""
    subject = "FG-CLIP loader crash"
    if skip := ctx.require(facts, "data.records", record("loader_crash"), subject=subject):
        return skip
    n, total = facts.value(record("loader_crash")), facts.value("data.records")
    silent = sum(facts.value(box(c), 0) for c in SILENT)
    measured, expected = f"{n} of {total} records", "0"
    if n:
        return ctx.failed(
            measured,
            expected,
            f"FG-CLIP's loader (add_box_loss / use_hard_neg) raises on {n} records: "
            f"the run stops at record {facts.value('data.crash.first')}",
            examples(facts, "loader_crash"),
            subject,
        )
    return ctx.passed(
        measured,
        expected,
        f"no record stops FG-CLIP's loader; {silent} invalid boxes pass it silently into RoIAlign",
        ctx.sources_of(facts, "data.records"),
        subject,
    )


@rule(
    "FGD505",
    "box-tiny",
    title="boxes cover at least one patch cell",
    severity="warn",
    where="D",
    thresholds={"max_ratio": 0.01},
    fix="drop boxes under one patch cell, merge them, or train at a finer grid (--grid is image size / patch size)",
    what="Among valid boxes, counts those whose width or height is below 1 / grid (one cell "
    "of the patch grid: 14 for ViT-B/16 at 224, 16 for ViT-L/14 at 224); warns when "
    "they exceed max_ratio of the valid boxes.",
    why="RoIAlign samples the patch feature map: a box inside one cell gets the features of "
    "that cell's neighbourhood, not of the object, so its caption is contrasted against "
    "features that barely depend on the box. A few are harmless; many suggest the wrong "
    "grid or units.",
    example="bbox [0.50, 0.50, 0.54, 0.60] at --grid 14 (cell 0.071) -> counted",
    evidence="FG-CLIP: RoIAlign (1x1, aligned) on the penultimate-layer patch grid; "
    "torchvision.ops.roi_align spatial_scale = grid / 1 for normalised boxes.",
)
def box_tiny(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding: tiny / valid boxes."""
    grid = facts.value("data.grid")
    return ratio_finding(
        facts,
        ctx,
        [box("tiny")],
        "data.valid_boxes",
        "valid boxes",
        "max_ratio",
        f"valid boxes smaller than one cell of a {grid}x{grid} grid",
    )


@rule(
    "FGD506",
    "boxes-over-max",
    title="no record has more boxes than the loader keeps",
    severity="warn",
    where="D",
    thresholds={"max_ratio": 0.0},
    fix="raise max_boxes (--max_boxes in training and here), or split such images' boxes over several records",
    what="Counts records with more valid boxes than the loader keeps (max_boxes, default 4) "
    "and the boxes it drops; warns when such records exceed max_ratio.",
    why="The loader keeps the first max_boxes valid boxes and drops the rest silently: their "
    "captions never train, and the region loss sees fewer in-image negatives than the "
    "annotations suggest.",
    example="a record with 6 valid boxes at max_boxes 4 -> 2 boxes dropped",
    evidence="FG-CLIP LazySupervisedBboxDataset (max_anns boxes per image); "
    "fgclip/data.py counts them as dropped_boxes['over_max'].",
)
def boxes_over_max(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding: records over max_boxes, and how many boxes that drops."""
    found = ratio_finding(
        facts,
        ctx,
        [record("over_max")],
        "data.records",
        "records",
        "max_ratio",
        f"records with more than {facts.value('data.max_boxes')} valid boxes",
    )
    if "data.over_max_boxes" in facts and found.status.value != "SKIP":
        found.message += f"; {facts.value('data.over_max_boxes')} boxes dropped by the loader"
    return found


@rule(
    "FGD507",
    "box-caption",
    title="every valid box has a caption",
    severity="warn",
    where="D",
    thresholds={"max_ratio": 0.0},
    fix="fill short_expr (or long_expr) for these boxes, or drop them",
    what="Among valid boxes, counts those whose short_expr and long_expr are both missing, "
    "empty or blank; warns above max_ratio.",
    why="The loader falls back to the empty string: the box is contrasted against an empty "
    "caption, and all such boxes share one text feature (false negatives of each other).",
    example='{"bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": ""} -> counted',
    evidence="fgclip/data.py: caption = short_expr or long_expr or ''.",
)
def box_caption(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding: valid boxes without a caption."""
    return ratio_finding(
        facts,
        ctx,
        [box("empty_caption")],
        "data.valid_boxes",
        "valid boxes",
        "max_ratio",
        "valid boxes with no caption",
    )


@rule(
    "FGD508",
    "hard-negatives",
    title="flagged boxes carry enough hard-negative rewrites",
    severity="warn",
    where="D",
    thresholds={"max_ratio": 0.0},
    fix="give every box with flag_short_neg 1 a short_expr_negs dict / list of at least 10 "
    "non-empty strings, or set flag_short_neg 0",
    what="For valid boxes with flag_short_neg == 1, short_expr_negs must be a dict or list of "
    "non-empty strings with at least num_hard_negatives (10) of them; warns above "
    "max_ratio of the valid boxes.",
    why="The loader marks such a box hard_valid = False and leaves it out of the "
    "hard-negative loss without a word; a malformed value (a string, say) is worse: "
    "its characters are read as rewrites.",
    example='"flag_short_neg": 1, "short_expr_negs": {"0": "red square"} -> counted (1 < 10)',
    evidence="FG-CLIP's hard-negative loss uses 10 rewrites per box; fgclip/data.py (_negatives, hard_valid).",
)
def hard_negatives(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding: malformed or short rewrite lists."""
    return ratio_finding(
        facts,
        ctx,
        [box("negatives_malformed"), box("negatives_short")],
        "data.valid_boxes",
        "valid boxes",
        "max_ratio",
        f"flagged boxes with bad or fewer than {facts.value('data.num_hard_negatives')} rewrites",
    )


@rule(
    "FGD509",
    "record-malformed",
    title="every record is JSON with the fields FG-CLIP reads",
    severity="fail",
    where="D",
    thresholds={"max_ratio": 0.0},
    fix="repair or drop these lines (" + SCAN_FIX + ")",
    what="Counts lines (or .json documents) that are not valid JSON / UTF-8, JSON values that "
    "are not objects, and records whose f_path, caption, short_caption or bbox_info is "
    "missing or of the wrong type; fails above max_ratio of the records.",
    why="FG-CLIP's loader json.loads every line up front: one broken line stops the run "
    "before step 0 (or, in a .json list, makes the whole file unreadable); a missing "
    "field raises KeyError mid-epoch, hours in.",
    example="a truncated last line from an interrupted write -> FAIL",
    evidence="FG-CLIP fgclip/train/train_fgclip.py reads item['f_path'], item['caption'], "
    "item['short_caption'], item['bbox_info']; fgclip/data.py read_annotations.",
)
def record_malformed(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding: malformed records."""
    return ratio_finding(
        facts,
        ctx,
        [record(n) for n in MALFORMED_RECORDS],
        "data.records",
        "records",
        "max_ratio",
        "records the loader cannot use",
    )


@rule(
    "FGD510",
    "data-missing-images",
    title="every record's image exists (and opens)",
    severity="fail",
    where="D",
    thresholds={"max_ratio": 0.0},
    fix="restore the missing files or drop their records (--write-clean with --image-root "
    "drops them); check that --image-root matches training's --image_folder",
    what="With --image-root, checks that image_root / f_path exists for each record; with "
    "--check-images, also opens it with PIL (header only) and reports the sizes. Fails "
    "above max_ratio of the checked records.",
    why="A missing image raises inside the DataLoader worker mid-epoch; a wrong image root "
    "makes every record fail, which is better found in a minute than after the first "
    "batch of a multi-GPU job.",
    example="f_path images/000123.jpg not under --image-root -> FAIL",
    evidence="FG-CLIP LazySupervisedBboxDataset opens image_folder / f_path in __getitem__ "
    "(fgclip/data.py: Image.open(self.image_folder / f_path)).",
)
def data_missing_images(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """Two findings: missing images, unreadable images."""
    if "data.image_root" not in facts:
        reason = "no --image-root given: images not checked"
        return [ctx.skip(reason, subject="missing"), ctx.skip(reason, subject="unreadable")]
    out = [
        ratio_finding(
            facts,
            ctx,
            [record("missing_image")],
            "data.images.checked",
            "images",
            "max_ratio",
            f"images missing under {facts.value('data.image_root')}",
            "missing",
        )
    ]
    if not facts.value("data.images.opened"):
        return out + [ctx.skip("--check-images not given: images not opened", subject="unreadable")]
    found = ratio_finding(
        facts,
        ctx,
        [record("unreadable_image")],
        "data.images.checked",
        "images",
        "max_ratio",
        "images PIL cannot open",
        "unreadable",
    )
    sizes = facts.value("data.images.sizes")
    if sizes and found.status.value != "SKIP":
        common = ", ".join(f"{k} ({n})" for k, n in sizes["common"].items())
        found.message += f"; sizes {sizes['min']} .. {sizes['max']}, most common {common}"
    return out + [found]
