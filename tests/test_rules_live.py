"""Live-run rules (where "L"): each fires, stays silent, and skips; facts built from real tensors."""

from __future__ import annotations

import inspect
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from rule_check import by_subject, check_rule

import fgclip.model as fgmodel
from fgclip_doctor.callback import DoctorCallback
from fgclip_doctor.checks import bank, features, logits, negatives, observed
from fgclip_doctor.checks.registry import Finding, Status, get_rule, run_rules
from fgclip_doctor.facts import Facts
from fgclip_doctor.probes.accumulator import read_all
from fgclip_doctor.probes.cross_entropy import CrossEntropyProbe
from fgclip_doctor.probes.subject import SubjectProbe
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.live import observed_facts
from fgclip_doctor.vocabulary import FACTS, NEAR_COPY_COSINE

PROBE = "live probe: cross_entropy"
BANK_BUFFERS = "live: memory bank buffers"
LIVE_REGION = "live: region head inputs"


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


@pytest.fixture(scope="module")
def subject(synthetic_root, tiny_tokenizer):
    """(synthetic root, a real batch of 4 synthetic records) for the tiny subject."""
    from fgclip.data import FGCLIPDataset, collate

    data = FGCLIPDataset(synthetic_root / "train.jsonl", synthetic_root, tiny_tokenizer, image_size=64)
    return synthetic_root, collate([data[i] for i in range(4)])


def probed(subject, queue=None, dtype=None, **config) -> Facts:
    """The facts `live` makes of two forward calls of the real tiny subject (bank on from call 1)
    under the doctor's probes (probes/subject.py, probes/cross_entropy.py): nothing recomputed here.
    `queue` rewrites the bank's queue buffer before the read-back; `config` overrides FGCLIPConfig."""
    root, batch = subject
    torch.manual_seed(0)
    model = fgmodel.FGCLIPModel.from_clip(str(root / "base"), memory_bank_warmup_steps=1, **config).train()
    if dtype is not None:  # the whole model and its float inputs in `dtype`, as a cast model runs
        model = model.to(dtype)
        floats = {k for k, v in batch.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
        batch = {k: v.to(dtype) if k in floats else v for k, v in batch.items()}
    cb = DoctorCallback()
    with cb:
        cb.install(model, None)
        with torch.no_grad():
            for _ in range(2):  # the second call sees the first call's keys in the queue
                model(**batch)
        if queue is not None:
            model.memory_bank.queue = queue(model.memory_bank.queue)
        cb.snapshot(1, model)
    facts = observed_facts(cb.record())
    mask = model.config.memory_bank_mask_same_caption
    facts.set("bank.mask_same_caption", mask, "fgclip/config.py memory_bank_mask_same_caption")
    return facts


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


def test_float16_logits_of_a_real_half_model(subject):
    """FGD105's float16 branch on the real subject cast to float16: the probe reads the dtype and
    size of the logits each loss gets (10 significant bits: step 0.0625 near 100)."""
    found = by_subject(check("bf16-logits", probed(subject, dtype=torch.float16)))
    region = found["region"]
    assert region.status is Status.WARN and region.measured.startswith("float16 (scale 100")
    assert "keeps 11 significant bits" in region.message


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


def test_bank_hygiene_passes_the_subjects_bank(subject):
    found = by_subject(check("bank-hygiene", probed(subject)))
    assert found["key norms"].status is Status.PASS and found["detached"].status is Status.PASS
    # normalised keys: |norm - 1| is 0 or a float32 rounding (1.19e-07 with some bases), far under the limit
    measured = found["key norms"].measured
    assert measured.startswith("max | ||key|| - 1 | = ") and float(measured.rsplit("= ", 1)[1]) < 1e-6, measured
    assert BANK_BUFFERS in found["key norms"].sources


def test_bank_hygiene_fails_raw_keys_and_a_graph_queue(subject, monkeypatch):
    monkeypatch.setenv("FGCLIP_FAULT", "bank-unnormalised")  # the bank queues raw projected features
    found = by_subject(check("bank-hygiene", probed(subject)))
    norms = found["key norms"]
    assert norms.status is Status.FAIL and "queued keys are not unit-norm" in norms.message
    assert norms.expected == "<= 0.01" and "F.normalize" in norms.fix
    assert found["detached"].status is Status.PASS  # raw, but still detached by the bank
    loose = by_subject(check("bank-hygiene", probed(subject), norm_tol=1e3))
    assert loose["key norms"].status is Status.PASS
    monkeypatch.delenv("FGCLIP_FAULT")
    # a queue that keeps the autograd graph: the probe reads the real buffer's requires_grad
    weight = torch.ones((), requires_grad=True)
    grad = by_subject(check("bank-hygiene", probed(subject, queue=lambda q: q * weight)))["detached"]
    assert grad.status is Status.FAIL and grad.measured == "requires_grad True"
    assert "keeps the graph" in grad.message and "detach" in grad.fix


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


def test_false_negatives_warn_with_the_same_batch_queued_unmasked(subject):
    # the batch's own captions are in the queue after the first call: every region row has a copy
    found = by_subject(check("bank-false-negatives", probed(subject, memory_bank_mask_same_caption=False)))
    same, near = found["same caption"], found["near duplicate"]
    assert same.status is Status.WARN and same.measured == "100 % unmasked"
    assert "100 % of region rows have a queued entry with their own caption; 100 % keep a finite logit" in same.message
    assert near.status is Status.PASS and near.measured == "0 %"  # copies share an id: not "near"


def test_false_negatives_pass_when_masked(subject):
    found = by_subject(check("bank-false-negatives", probed(subject)))
    assert found["same caption"].status is Status.PASS and found["same caption"].measured == "100 %, 0 % unmasked"
    assert "0 % keep a finite logit" in found["same caption"].message
    assert found["near duplicate"].status is Status.PASS and LIVE_REGION in found["near duplicate"].sources


def test_false_negatives_are_read_on_the_logits_not_the_mask_flag(subject, monkeypatch):
    """A head that says it masks (mask_same_caption True) but leaves the copies finite: the probe reads
    the head's logits, so the rule warns whatever the flag says."""
    monkeypatch.setattr(fgmodel.RegionContrastiveLoss, "forward", unmasked_forward)
    facts = probed(subject)
    assert facts.value("bank.mask_same_caption") is True
    same = by_subject(check("bank-false-negatives", facts))["same caption"]
    assert same.status is Status.WARN and same.measured == "100 % unmasked"


ORIGINAL_REGION_FORWARD = fgmodel.RegionContrastiveLoss.forward


def unmasked_forward(self, *args):
    """The subject's region head with its mask switched off for the call only (its attribute still True)."""
    self.mask_same_caption, flag = False, self.mask_same_caption
    try:
        return ORIGINAL_REGION_FORWARD(self, *args)
    finally:
        self.mask_same_caption = flag


def test_near_copy_line_is_one_number_for_probe_and_rule():
    """The probe's own region-input statistic on real tensors: a queued key of another caption counts
    as a near copy above NEAR_COPY_COSINE and not just below it; the rule's message names the line."""
    probe = SubjectProbe(torch.nn.Module(), CrossEntropyProbe(0))  # only its region-input statistic is used
    torch.manual_seed(0)
    captions = F.normalize(torch.randn(4, 16), dim=1)
    other = torch.randn(4, 16)
    other = F.normalize(other - (other * captions).sum(1, keepdim=True) * captions, dim=1)  # row i orthogonal to i
    margin = (1 - NEAR_COPY_COSINE) / 2
    cosines = torch.tensor([NEAR_COPY_COSINE + margin, NEAR_COPY_COSINE + margin, NEAR_COPY_COSINE - margin, 0.5])
    queue = cosines[:, None] * captions + (1 - cosines[:, None] ** 2).sqrt() * other  # unit rows, cosine i to row i
    assert torch.allclose((queue * captions).sum(1), cosines, atol=1e-6)
    ids, queue_ids = torch.arange(4), torch.arange(4) + 100  # other captions: not the same caption
    probe._region_inputs((None, captions, None, ids, queue, queue_ids))
    probe._region_logits(SimpleNamespace(logits=torch.cat([captions @ captions.T, captions @ queue.T], 1)))
    stats = read_all(probe.acc)["bank_rows"]
    assert stats["calls"] == 1 and stats["same_caption_rows"] == 0 and stats["near_duplicate_rows"] == 0.5
    assert stats["same_caption_unmasked"] == 0
    facts = facts_of(
        observed__bank__same_caption_rows=stats["same_caption_rows"],
        observed__bank__near_duplicate_rows=stats["near_duplicate_rows"],
        bank__mask_same_caption=True,
    )
    near = by_subject(check("bank-false-negatives", facts))["near duplicate"]
    assert near.status is Status.WARN
    assert re.search(rf"cosine > {re.escape(str(NEAR_COPY_COSINE))}(?![0-9])", near.message), near.message


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


def test_box_aware_pooling_passes_both(subject):
    facts = probed(subject)
    [scale] = check("roi-scale", facts)
    [collapse] = check("region-collapse", facts)
    assert scale.status is Status.PASS and "live: RoIAlign outputs" in scale.sources
    assert collapse.status is Status.PASS and "over 4 images" in collapse.message


def test_pixel_boxes_pool_zeros(subject, monkeypatch):
    monkeypatch.setenv("FGCLIP_FAULT", "pixel-boxes")  # box_features feeds pixel boxes to RoIAlign
    [f] = check("roi-scale", probed(subject))
    assert f.status is Status.FAIL and f.measured == "min norm 0" and f.expected == ">= 1e-06"
    assert "boxes pool zeros, they lie outside the feature map" in f.message


def test_box_ignoring_model_collapses(subject, monkeypatch):
    facts = probed(subject, region_pool="image")  # the whole image, whatever the box
    [f] = check("region-collapse", facts)
    assert f.status is Status.FAIL and f.measured == "cosine 1.000" and f.expected == "<= 0.98"
    assert "the model or the box scaling ignores the box" in f.message
    [scale] = check("roi-scale", facts)
    assert scale.status is Status.PASS  # nonzero, just the same for every box
    assert check("region-collapse", facts, max_cosine=1.01)[0].status is Status.PASS
    monkeypatch.setenv("FGCLIP_FAULT", "roi-spatial-scale")  # a detector's 1/16 on patch-grid boxes
    [g] = check("region-collapse", probed(subject))
    assert g.status is Status.FAIL and g.measured == "cosine 1.000"


def test_roi_rules_skip():
    [a] = check("roi-scale", Facts())
    assert a.status is Status.SKIP and "observed.region.feature_norm_min" in a.message
    [b] = check("region-collapse", Facts())
    assert b.status is Status.SKIP and "observed.region.within_image_cosine" in b.message
    one_box = facts_of(observed__region__images_with_2_boxes=0, observed__region__feature_norm_min=1.0)
    [c] = check("region-collapse", one_box)
    assert c.status is Status.SKIP and "0 images with >= 2 boxes" in c.message
