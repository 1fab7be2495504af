"""Live-run rules (where "L"): each fires, stays silent, and skips; facts built from real tensors."""

from __future__ import annotations

import inspect
import re

import torch
import torch.nn.functional as F
from rule_check import by_subject, check_rule

from fgclip.memory_bank import RegionMemoryBank
from fgclip.roi_align import roi_align
from fgclip_doctor.checks import bank, features, logits, negatives, observed
from fgclip_doctor.checks.registry import Finding, Status, get_rule, run_rules
from fgclip_doctor.facts import Facts
from fgclip_doctor.settings import Settings
from fgclip_doctor.vocabulary import FACTS, NEAR_COPY_COSINE

PROBE = "live probe: cross_entropy"
BANK = "live probe: RegionMemoryBank"
ROI = "live probe: region head"


def facts_of(**values) -> Facts:
    """Facts from name__with__dots=value (or (value, source)); the source defaults to a probe."""
    facts = Facts()
    for key, value in values.items():
        name = key.replace("__", ".")
        value, source = value if isinstance(value, tuple) else (value, f"{PROBE} ({name})")
        facts.set(name, value, source)
    return facts


def check(name: str, facts: Facts, **thresholds) -> list[Finding]:
    return check_rule(name, facts, "live", **thresholds)


def test_rules_registered_live_only_and_documented():
    for code, name in [
        ("FGD105", "bf16-logits"),
        ("FGD204", "bank-hygiene"),
        ("FGD205", "bank-false-negatives"),
        ("FGD207", "ddp-targets"),
        ("FGD502", "roi-scale"),
        ("FGD503", "region-collapse"),
    ]:
        r = get_rule(code)
        assert r.name == name and r.where == "L" and r.thresholds
        assert all([r.title, r.fix, r.what, r.why, r.example, r.evidence])
    assert not any(f.rule == "bf16-logits" for f in run_rules(Facts(), "C"))
    skipped = {f.rule: f.status for f in run_rules(Facts(), "L")}
    for name in ("bf16-logits", "bank-hygiene", "bank-false-negatives", "ddp-targets", "roi-scale", "region-collapse"):
        assert skipped[name] is Status.SKIP


def test_fact_names_are_in_the_vocabulary():
    # the code of the live-only rules and their helpers (one module, checks/live.py, before the
    # rule families were regrouped by code range)
    code = "".join(
        inspect.getsource(f)
        for f in (
            logits.bf16_logits,
            logits._bf16_term,
            logits.dtype_name,
            logits.float_step,
            bank.bank_hygiene,
            bank.bank_false_negatives,
            negatives.ddp_targets,
            negatives._ddp_term,
            features.roi_scale,
            features.region_collapse,
            observed.observed_terms,
            observed.pct,
        )
    )
    used = set(re.findall(r'"((?:observed|bank|run)\.[a-z_.<>0-9]+)"', code))
    used |= {
        f"observed.{fam}.<term>.{k}"
        for fam, ks in [("logits", ("dtype", "scale", "max_abs")), ("ddp", ("gathered", "target_offset_ok"))]
        for k in ks
    }
    assert not sorted(n for n in used if n not in FACTS)


# --- FGD105 bf16-logits --------------------------------------------------------------------------


def scaled_logits(dtype: torch.dtype, scale: float) -> torch.Tensor:
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(8, 16), dim=1), F.normalize(torch.randn(8, 16), dim=1)
    return scale * img.to(dtype) @ txt.to(dtype).T


def test_bf16_step_is_what_torch_rounds_to():
    assert logits.float_step("bfloat16", 100.0) == 0.5
    assert torch.tensor(100.2).bfloat16().item() == 100.0  # a 0.2 logit gap vanishes
    assert torch.tensor(100.5).bfloat16().item() == 100.5
    assert logits.float_step("float16", 100.0) == 0.0625
    assert torch.tensor(100.0625).half().item() == 100.0625
    assert logits.dtype_name(torch.randn(2).bfloat16().dtype) == "bfloat16"
    assert logits.dtype_name("bf16") == "bfloat16" and logits.dtype_name("torch.float32") == "float32"


def test_bf16_logits_fire_at_scale_100_and_pass_in_fp32_or_small():
    bf16, fp32 = scaled_logits(torch.bfloat16, 100.0), scaled_logits(torch.float32, 100.0)
    small = scaled_logits(torch.bfloat16, 14.3)
    facts = facts_of(
        observed__terms=["global", "region", "hardneg"],
        observed__logits__region__dtype=str(bf16.dtype),
        observed__logits__region__scale=100.0,
        observed__logits__region__max_abs=bf16.abs().max().item(),
        observed__logits__global__dtype=str(fp32.dtype),
        observed__logits__global__scale=100.0,
        observed__logits__hardneg__dtype=str(small.dtype),
        observed__logits__hardneg__max_abs=small.abs().max().item(),
    )
    found = by_subject(check("bf16-logits", facts))
    region = found["region"]
    assert region.status is Status.WARN and region.severity == "warn"
    assert region.message.startswith("region: logits in bfloat16 (scale 100, max |logit| ")
    assert "keeps 8 significant bits, so near 100 its step is 0.5" in region.message
    assert region.expected == "float32 at scale >= 50"
    assert f"{PROBE} (observed.logits.region.dtype)" in region.sources
    assert found["global"].status is Status.PASS and found["global"].measured == "float32"
    hardneg = found["hardneg"]  # bf16, but max |logit| < 14.3: below the threshold
    assert hardneg.status is Status.PASS and "below 50" in hardneg.message
    # the threshold is configurable
    strict = Settings(thresholds={"bf16-logits": {"min_scale": small.abs().max().item() / 2}})
    st = {f.subject: f.status for f in run_rules(facts, "L", strict) if f.rule == "bf16-logits"}
    assert st == {"global": Status.PASS, "region": Status.WARN, "hardneg": Status.WARN}


def test_bf16_logits_skips_and_call_site_terms():
    [none] = check("bf16-logits", Facts())
    assert none.status is Status.SKIP and "observed.logits.<term>.dtype" in none.message
    site = "modeling_clip.py:77 clip_loss"
    facts = facts_of(
        **{
            "observed__terms": ["global"],
            f"observed__logits__{site}__dtype": "torch.bfloat16",
            f"observed__logits__{site}__scale": 100.0,
        }
    )
    found = by_subject(check("bf16-logits", facts))
    assert found["global"].status is Status.SKIP
    assert found["global"].message == "not known: observed.logits.global.dtype"
    assert found[site].status is Status.WARN  # term name with dots, found from its facts
    no_size = check("bf16-logits", facts_of(observed__logits__region__dtype="torch.bfloat16"))
    assert no_size[0].status is Status.SKIP and "size is not known" in no_size[0].message
    odd = check("bf16-logits", facts_of(observed__logits__region__dtype="torch.float8_e4m3fn"))
    assert odd[0].status is Status.SKIP and "not recognised" in odd[0].message


# --- FGD204 bank-hygiene -------------------------------------------------------------------------


def bank_facts(queue: torch.Tensor) -> Facts:
    err = (queue.detach().norm(dim=1) - 1).abs().max().item()
    return facts_of(
        observed__bank__key_norm_error=(err, BANK), observed__bank__requires_grad=(queue.requires_grad, BANK)
    )


def test_bank_hygiene_passes_the_subjects_bank():
    torch.manual_seed(0)
    bank = RegionMemoryBank(dim=16, size=32)
    head = torch.nn.Linear(16, 16)
    bank.enqueue(head(torch.randn(8, 16)), torch.arange(8))  # graph tensors: detached inside
    found = by_subject(check("bank-hygiene", bank_facts(bank.candidates()[0])))
    assert found["key norms"].status is Status.PASS and found["detached"].status is Status.PASS
    assert BANK in found["key norms"].sources


def test_bank_hygiene_fails_a_raw_graph_queue():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 16)
    queue = torch.cat([head(torch.randn(8, 16)), head(torch.randn(8, 16))])  # raw, with graph
    found = by_subject(check("bank-hygiene", bank_facts(queue)))
    norms, grad = found["key norms"], found["detached"]
    assert norms.status is Status.FAIL and "queued keys are not unit-norm" in norms.message
    assert norms.expected == "<= 0.01" and "F.normalize" in norms.fix
    assert grad.status is Status.FAIL and grad.measured == "requires_grad True"
    assert "keeps the graph" in grad.message and "detach" in grad.fix
    # a loose threshold accepts the norms, not the graph
    loose = by_subject(check("bank-hygiene", bank_facts(queue), norm_tol=1e3))
    assert loose["key norms"].status is Status.PASS and loose["detached"].status is Status.FAIL


def test_bank_hygiene_skips_without_a_bank():
    [skip] = check("bank-hygiene", facts_of(bank__enabled=(False, "args.json")))
    assert skip.status is Status.SKIP and skip.message == "no memory bank in this model"
    # a bank that exists but never switched on in the run (warmup 50, a 3-step live run)
    [never] = check(
        "bank-hygiene", facts_of(bank__enabled=True, bank__enabled_at_call=-1, bank__warmup_forward_calls=50)
    )
    assert never.status is Status.SKIP
    assert never.message.startswith("the memory bank never switched on in this run (it switches on after 50")
    [unknown] = check("bank-hygiene", Facts())
    assert unknown.message == "no memory bank observed"
    half = by_subject(check("bank-hygiene", facts_of(observed__bank__requires_grad=False)))
    assert half["key norms"].status is Status.SKIP and half["detached"].status is Status.PASS


# --- FGD205 bank-false-negatives -----------------------------------------------------------------


def false_negative_facts(n_captions: int, mask: bool) -> Facts:
    """Region positives and a 128-entry queue drawn from `n_captions` captions (real features)."""
    torch.manual_seed(0)
    table = F.normalize(torch.randn(256, 16), dim=1)  # one feature per caption id
    pos_ids = torch.randint(0, n_captions, (32,))
    queue_ids = (
        torch.randint(0, n_captions, (128,)) if n_captions <= 15 else torch.arange(n_captions, n_captions + 128)
    )  # none of the positives' captions
    same = pos_ids[:, None] == queue_ids[None, :]  # [rows, Q]
    masked = same if mask else torch.zeros_like(same)
    near = (table[pos_ids] @ table[queue_ids].T > NEAR_COPY_COSINE) & ~masked
    return facts_of(
        observed__bank__same_caption_rows=(same.any(1).float().mean().item(), BANK),
        observed__bank__near_duplicate_rows=(near.any(1).float().mean().item(), BANK),
        bank__mask_same_caption=(mask, "fgclip/memory_bank.py mask_same_caption"),
    )


def test_false_negatives_warn_with_few_captions_unmasked():
    found = by_subject(check("bank-false-negatives", false_negative_facts(15, mask=False)))
    same, near = found["same caption"], found["near duplicate"]
    assert same.status is Status.WARN and same.measured == "100 %"
    assert "100 % of region rows have a queued entry with their own caption, unmasked" in same.message
    assert "fgclip/memory_bank.py mask_same_caption" in same.sources
    assert near.status is Status.WARN
    assert re.search(rf"cosine > {re.escape(str(NEAR_COPY_COSINE))}(?![0-9])", near.message), near.message


def test_false_negatives_pass_when_masked_or_distinct():
    found = by_subject(check("bank-false-negatives", false_negative_facts(15, mask=True)))
    assert found["same caption"].status is Status.PASS
    assert "all masked" in found["same caption"].message
    assert found["same caption"].measured == "100 % masked"
    assert found["near duplicate"].status is Status.PASS and found["near duplicate"].measured == "0 %"
    distinct = by_subject(check("bank-false-negatives", false_negative_facts(100, mask=False)))
    assert {f.status for f in distinct.values()} == {Status.PASS}


def test_false_negatives_skip():
    [skip] = check("bank-false-negatives", Facts())
    assert skip.status is Status.SKIP and skip.message.startswith("no memory bank observed")
    facts = facts_of(observed__bank__same_caption_rows=0.4)  # masking unknown
    found = by_subject(check("bank-false-negatives", facts))
    assert found["same caption"].status is Status.SKIP
    assert "bank.mask_same_caption" in found["same caption"].message
    assert found["near duplicate"].status is Status.SKIP


# --- FGD207 ddp-targets --------------------------------------------------------------------------


def ddp_facts(offset: bool, world: int = 2, rows: int = 4) -> Facts:
    """Simulated ranks: local rows against all ranks' gathered columns, labels with / without offset."""
    torch.manual_seed(0)
    feats = [F.normalize(torch.randn(rows, 16), dim=1) for _ in range(world)]
    gathered = torch.cat(feats)
    oks, wide = [], []
    for rank in range(world):
        logits = feats[rank] @ gathered.T  # [rows, world * rows]
        labels = torch.arange(rows) + (rank * rows if offset else 0)
        right = rank * rows + torch.arange(rows)
        assert (logits.argmax(1) == right).all()  # where the positives really are
        oks.append((labels == right).float().mean().item())
        wide.append(logits.shape[1] == world * logits.shape[0])
    return facts_of(
        run__world_size=(world, "--nproc 2"),
        observed__terms=["global"],
        observed__ddp__global__gathered=all(wide),
        observed__ddp__global__target_offset_ok=oks,
    )


def test_ddp_targets_fail_without_offset():
    [f] = check("ddp-targets", ddp_facts(offset=False))
    assert f.status is Status.FAIL and f.subject == "global"
    assert f.message == (
        "global: rank 1: 0 % of targets at rank × batch + i: labels not offset; positives sit in another rank's columns"
    )
    assert f.measured == "rank 1: 0 %" and f.expected == ">= 99 % on every rank"
    assert "--nproc 2" in f.sources and "labels = torch.arange(rows) + rank * rows" in f.fix
    assert "transformers#22252" in get_rule("ddp-targets").evidence


def test_ddp_targets_pass_and_skip():
    [ok] = check("ddp-targets", ddp_facts(offset=True))
    assert ok.status is Status.PASS and "on all 2 ranks" in ok.message
    [single] = check("ddp-targets", facts_of(run__world_size=1))
    assert single.status is Status.SKIP and single.message == "single process: nothing gathered"
    local = facts_of(run__world_size=2, observed__ddp__global__gathered=False)
    [f] = check("ddp-targets", local)
    assert f.status is Status.PASS and "negatives-count" in f.message
    [unknown] = check("ddp-targets", Facts())
    assert unknown.status is Status.SKIP
    no_offsets = check("ddp-targets", facts_of(run__world_size=2, observed__ddp__global__gathered=True))
    assert no_offsets[0].status is Status.SKIP and "target_offset_ok" in no_offsets[0].message


# --- FGD502 roi-scale / FGD503 region-collapse ---------------------------------------------------

GRID = 7  # patch grid of the toy feature map
BOXES = [
    torch.tensor([[0.05, 0.05, 0.45, 0.45], [0.5, 0.1, 0.95, 0.6], [0.2, 0.55, 0.7, 0.95]]),
    torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]),
]


def roi_facts(features: torch.Tensor, per_image: list[int]) -> Facts:
    """The region probe's statistics from raw RoI features [K, C] of images with `per_image` boxes."""
    norms = features.norm(dim=1)
    cosines = []
    for f in features.split(per_image):
        if f.shape[0] >= 2:
            c = F.normalize(f, dim=1) @ F.normalize(f, dim=1).T
            cosines.append((c.sum() - c.diag().sum()) / (f.shape[0] * (f.shape[0] - 1)))
    return facts_of(
        observed__region__feature_norm_min=(norms.min().item(), ROI),
        observed__region__feature_norm_mean=(norms.mean().item(), ROI),
        observed__region__within_image_cosine=(torch.stack(cosines).mean().item(), ROI),
        observed__region__images_with_2_boxes=(len(cosines), ROI),
    )


def feature_map() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 16, GRID, GRID)


def test_box_aware_pooling_passes_both():
    feats = roi_align(feature_map(), BOXES, 1, spatial_scale=GRID, aligned=True).flatten(1)
    facts = roi_facts(feats, [3, 2])
    [scale] = check("roi-scale", facts)
    [collapse] = check("region-collapse", facts)
    assert scale.status is Status.PASS and ROI in scale.sources
    assert collapse.status is Status.PASS and "over 2 images" in collapse.message


def test_pixel_boxes_pool_zeros():
    pixels = [b * 224 for b in BOXES]  # pixel coordinates where normalised ones were expected
    feats = roi_align(feature_map(), pixels, 1, spatial_scale=GRID, aligned=True).flatten(1)
    [f] = check("roi-scale", roi_facts(feats, [3, 2]))
    assert f.status is Status.FAIL and f.measured == "min norm 0" and f.expected == ">= 1e-06"
    assert "boxes pool zeros, they lie outside the feature map" in f.message


def test_box_ignoring_model_collapses():
    pooled = feature_map().mean(dim=(2, 3))  # the whole image, whatever the box
    feats = torch.cat([pooled[i].expand(len(b), -1) for i, b in enumerate(BOXES)])
    [f] = check("region-collapse", roi_facts(feats, [3, 2]))
    assert f.status is Status.FAIL and f.measured == "cosine 1.000" and f.expected == "<= 0.98"
    assert "the model or the box scaling ignores the box" in f.message
    [scale] = check("roi-scale", roi_facts(feats, [3, 2]))
    assert scale.status is Status.PASS  # nonzero, just the same for every box
    loose = check("region-collapse", roi_facts(feats, [3, 2]), max_cosine=1.01)
    assert loose[0].status is Status.PASS


def test_roi_rules_skip():
    [a] = check("roi-scale", Facts())
    assert a.status is Status.SKIP and "observed.region.feature_norm_min" in a.message
    [b] = check("region-collapse", Facts())
    assert b.status is Status.SKIP and "observed.region.within_image_cosine" in b.message
    one_box = facts_of(observed__region__images_with_2_boxes=0, observed__region__feature_norm_min=1.0)
    [c] = check("region-collapse", one_box)
    assert c.status is Status.SKIP and "0 images with >= 2 boxes" in c.message
