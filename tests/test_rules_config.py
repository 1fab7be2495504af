"""Config-time rules (FGD1xx-6xx where "C"): each fires, stays silent, and skips; the seed scenario."""

from __future__ import annotations

import re

import pytest
from rule_check import by_subject, check_rule

from fgclip_doctor.checks import negatives, optim, resume, schedule, temperature  # noqa: F401 (register)
from fgclip_doctor.checks.registry import Finding, Status, all_rules, run_rules
from fgclip_doctor.facts import Facts
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.derived import derive_config_levels

S = "scripts/seed_bug.sh"
BUILT = "fgclip/model.py (built on meta)"
PARAMS = [
    "logit_scale",
    "logit_scale_finegrained",
    "logit_scale_hardneg",
    "roi_projection.weight",
    "roi_projection.bias",
    "text_model.encoder.layers.0.mlp.fc1.weight",
    "vision_model.encoder.layers.0.mlp.fc1.weight",
    "visual_projection.weight",
]
BACKBONE = PARAMS[5:]
NO_LENGTH = ["train.optimizer_steps", "train.forward_calls", "train.max_steps"]


def groups(roi_lr=5e-4, scale_wd=0.0, roi_group=True, roi_with_backbone=False):
    out = [{"name": "logit_scales", "lr": 5e-4, "weight_decay": scale_wd, "params": PARAMS[:3]}]
    roi = PARAMS[3:5]
    if roi_group:
        out.append({"name": "roi_projection", "lr": roi_lr, "weight_decay": 0.0, "params": roi})
    other = BACKBONE + (roi if roi_with_backbone else [])
    out.append({"name": "other", "lr": 5e-4, "weight_decay": 0.0, "params": other})
    return out


# The team's broken launch (scripts/seed_bug.sh), as the launch + subject sources record it.
SEED = {
    "run.launcher": ("python", f"{S}:12 python -m fgclip.train"),
    "run.world_size": (1, f"{S}:12 python (one process)"),
    "train.per_device_batch": (8, f"{S}:24 --per_device_train_batch_size"),
    "train.grad_accum": (8, f"{S}:25 --gradient_accumulation_steps"),
    "train.global_batch": (64, "per_device × world × accumulation"),
    "train.max_steps": (40, f"{S}:26 --max_steps"),
    "train.optimizer_steps": (40, f"{S}:26 --max_steps"),
    "train.forward_calls": (320, "optimizer_steps × accumulation"),
    "train.learning_rate": (5e-4, f"{S}:27 --learning_rate"),
    "train.weight_decay": (0.0, f"{S}:29 --weight_decay"),
    "train.fp16": (False, "TrainingArguments default"),
    "train.bf16": (False, "TrainingArguments default"),
    "train.output_dir": ("runs/seed-bug", f"{S}:37 --output_dir"),
    "train.auto_resume": (True, "fgclip/train.py main: resumes whenever output_dir holds checkpoint-*"),
    "resume.checkpoints": ([], "runs/seed-bug (listed)"),
    "model.fine_tuning": (True, f"{S}:13 --model_name_or_path"),
    "scale.global.base": (4.6052, "$DATA/base/model.safetensors: logit_scale"),
    "scale.global.init": (4.6052, "$DATA/base/model.safetensors: logit_scale (loaded)"),
    "scale.finegrained.init": (2.6592, f"{S}:21 --logit_scale_init_value"),
    "scale.hardneg.init": (2.6592, f"{S}:21 --logit_scale_init_value"),
    "scale.clamp": (True, f"{BUILT}: config.clamp_logit_scale"),
    "scale.clamp_max": (4.6052, f"{BUILT}: config.max_logit_scale"),
    "loss.terms": (["global", "region", "hardneg"], f"{S}:19 --add_box_loss / {S}:20 --use_hard_neg"),
    "bank.enabled": (True, f"{S}:22 --memory_bank_size"),
    "bank.size": (128, f"{S}:22 --memory_bank_size"),
    "bank.warmup_forward_calls": (400, f"{S}:23 --memory_bank_warmup_steps"),
    "bank.switch_on_step": (50, f"{S}:23 --memory_bank_warmup_steps ÷ accumulation ({S}:25)"),
    "bank.wraps": (True, "fgclip/memory_bank.py enqueue (writes modulo the queue size)"),
    "data.max_boxes": (4, "fgclip/data.py default max_boxes"),
    "features.gathered": (True, "fgclip/losses.py gather_features"),
    "loss.world_size_from": ("torch.distributed", "fgclip/losses.py gather_features"),
    "code.flags_rejected": ([], "fgclip/train.py HfArgumentParser"),
    "loss.global.errors_swallowed": (False, "fgclip/losses.py"),
    "loss.region.errors_swallowed": (False, "fgclip/losses.py"),
    "loss.hardneg.errors_swallowed": (False, "fgclip/losses.py"),
    "candidates.global": (8, "per_device (8) × world (1)"),
    "candidates.region.in_batch": (32, "per_device × max_boxes (upper bound), this rank's boxes"),
    "candidates.region.with_bank": (160, "in-batch + bank.size"),
    "candidates.hardneg": (11, "1 positive + config.num_hard_negatives"),
    "model.parameters": (PARAMS, BUILT),
    "optim.groups": (groups(), "fgclip/trainer.py parameter_groups (on the meta model)"),
    "text.eos_token_id": (3, f"{BUILT}: text_config.eos_token_id"),
    "text.tokenizer_eos_id": (3, "$DATA/base: tokenizer eos_token"),
    "text.long_positions": (248, f"{BUILT}: long_position_embedding"),
    "text.max_seq_length": (248, "fgclip/train.py DataArguments default"),
}


def facts_of(base=SEED, drop=(), **changes) -> Facts:
    """Facts from `base` without `drop`, with `changes` (name__with__dots=value or (value, source))."""
    facts = Facts()
    table = {k: v for k, v in base.items() if k not in drop}
    for key, value in changes.items():
        name = key.replace("__", ".")
        table[name] = value if isinstance(value, tuple) else (value, f"test override {name}")
    for name, (value, source) in table.items():
        facts.set(name, value, source)
    return facts


def only(**values) -> Facts:
    return facts_of({}, **values)


def check(name: str, facts: Facts, **thresholds) -> list[Finding]:
    return check_rule(name, facts, "check-config", **thresholds)


def statuses(findings) -> dict[tuple[str, str], Status]:
    return {(f.rule, f.subject): f.status for f in findings}


# --- the seed scenario ---------------------------------------------------------------------------


def test_seed_scenario_fails_the_three_mistakes():
    facts = facts_of()
    derive_config_levels(facts)  # chance and floor per term, as check-config derives them
    found = run_rules(facts, "C", Settings(), command="check-config")
    st = statuses(found)
    # T 14.3 lets the region loss fall to ~0 over 32 boxes: the temperature alone did not hold it at ln 4
    assert {st[("loss-floor", t)] for t in ("global", "region", "hardneg")} == {Status.PASS}
    assert st[("lr-zero", "lr")] is Status.PASS and st[("lr-zero", "parameters")] is Status.PASS
    assert st[("logit-scale-init", "finegrained")] is Status.FAIL
    assert st[("logit-scale-init", "hardneg")] is Status.FAIL
    assert st[("logit-scale-init", "global")] is Status.PASS
    assert st[("step-units", "bank warmup")] is Status.FAIL
    assert st[("bank-active", "")] is Status.FAIL
    assert st[("negatives-count", "region")] is Status.FAIL
    assert st[("negatives-count", "global")] is Status.PASS
    assert st[("grad-accum-negatives", "")] is Status.WARN
    assert st[("head-lr", "roi_projection")] is Status.PASS  # own group, at the base LR
    for ok in ["fp16", "bank-size", "resume-auto", "resume-override", "logit-scale-decay"]:
        assert all(f.status is Status.PASS for f in found if f.rule == ok), ok
    assert not any(f.status is Status.SKIP for f in found)
    assert "logit-scale-frozen" not in {f.rule for f in found}  # K/L only

    fine = next(f for f in found if (f.rule, f.subject) == ("logit-scale-init", "finegrained"))
    assert fine.message.startswith("finegrained starts at 2.6592 (T 14.3); base global 4.6052 (T 100)")
    assert f"{S}:21 --logit_scale_init_value" in fine.sources
    assert "$DATA/base/model.safetensors: logit_scale" in fine.sources
    units = next(f for f in found if f.rule == "step-units")
    assert (
        "400 forward calls = optimizer step 50 at gradient accumulation 8; the run ends at "
        "optimizer step 40 (320 forward calls)"
    ) in units.message
    assert f"{S}:23 --memory_bank_warmup_steps" in units.sources
    bank = next(f for f in found if f.rule == "bank-active")
    assert (
        "warmup 400 forward calls = optimizer step 50 at gradient accumulation 8; the run has "
        "40 optimizer steps (320 forward calls)"
    ) in bank.message
    region = next(f for f in found if (f.rule, f.subject) == ("negatives-count", "region"))
    assert "in-batch candidates only (<= 32) for the whole run, where 32 + 128 = 160" in region.message
    assert region.expected == "160" and f"{S}:22 --memory_bank_size" in region.sources


def test_seed_scenario_from_scratch_passes_init():
    found = run_rules(facts_of(model__fine_tuning=(False, "test: no --model_name_or_path")), "C")
    init = by_subject([f for f in found if f.rule == "logit-scale-init"])
    assert init["finegrained"].status is Status.PASS and init["hardneg"].status is Status.PASS
    assert "from scratch" in init["finegrained"].message
    assert "2.6592 is CLIP's own init" in init["finegrained"].message


def test_fixed_run_passes():
    fixed = facts_of(
        scale__finegrained__init=(4.6052, f"{S}:21 --logit_scale_init_value"),
        scale__hardneg__init=(4.6052, f"{S}:21 --logit_scale_init_value"),
        bank__warmup_forward_calls=(50, f"{S}:23 --memory_bank_warmup_steps"),
        bank__switch_on_step=(7, "warmup ÷ accumulation"),
    )
    found = run_rules(fixed, "C")
    assert {f.rule for f in found if f.status is Status.FAIL} == set()
    units = next(f for f in found if f.rule == "step-units")
    assert "50 forward calls = optimizer step 7 at gradient accumulation 8" in units.message
    region = next(f for f in found if (f.rule, f.subject) == ("negatives-count", "region"))
    assert region.status is Status.PASS
    assert "32 -> 32 + 128 = 160 candidates from optimizer step 7" in region.message


def test_restart_after_the_fix_restores_the_old_scale():
    restart = facts_of(
        scale__finegrained__init=4.6052,
        resume__checkpoints=(["runs/seed-bug/checkpoint-500"], "runs/seed-bug (listed)"),
        resume__checkpoint=("runs/seed-bug/checkpoint-500", "fgclip/train.py main"),
        resume__step=(500, "runs/seed-bug/checkpoint-500/trainer_state.json"),
        resume__scale__finegrained=(2.6562, "checkpoint-500/model.safetensors: logit_scale_finegrained"),
    )
    found = run_rules(restart, "C")
    auto = next(f for f in found if f.rule == "resume-auto")
    assert auto.status is Status.WARN
    assert auto.message == (
        "output_dir runs/seed-bug holds checkpoint-500; the train script resumes from it automatically (step 500)"
    )
    [over] = [f for f in found if f.rule == "resume-override"]
    assert over.status is Status.FAIL and over.subject == "finegrained"
    assert over.message == ("checkpoint-500 restores finegrained 2.6562 (T 14.2) over the new init 4.6052 (T 100)")
    assert "checkpoint-500/model.safetensors: logit_scale_finegrained" in over.sources


def test_settings_thresholds_change_the_verdict():
    near = facts_of(scale__finegrained__init=3.9, scale__hardneg__init=4.6052)
    assert by_subject(check("logit-scale-init", near))["finegrained"].status is Status.FAIL
    loose = Settings(thresholds={"logit-scale-init": {"min_ratio": 0.4}})
    found = run_rules(near, "C", loose)
    fine = next(f for f in found if (f.rule, f.subject) == ("logit-scale-init", "finegrained"))
    assert fine.status is Status.PASS and "0.4 x the base temperature" in fine.expected
    strict = Settings(thresholds={"logit-scale-clamp": {"max": 4.0}})
    clamp = by_subject([f for f in run_rules(near, "C", strict) if f.rule == "logit-scale-clamp"])
    assert clamp["global"].status is Status.FAIL and clamp["finegrained"].status is Status.PASS


# --- FGD1xx temperature --------------------------------------------------------------------------


def test_init_ratio_and_skips():
    low = by_subject(check("logit-scale-init", facts_of(scale__hardneg__init=3.9)))
    assert low["hardneg"].status is Status.FAIL and "T ratio 0.494 < 0.5" in low["hardneg"].message
    [skip] = check("logit-scale-init", Facts())
    assert skip.status is Status.SKIP and "scale.finegrained.init" in skip.message
    unknown = check("logit-scale-init", facts_of(drop=["model.fine_tuning"]))
    assert {f.status for f in unknown} == {Status.SKIP} and "model.fine_tuning" in unknown[0].message
    nobase = check("logit-scale-init", facts_of(drop=["scale.global.base"]))
    assert [f.subject for f in nobase] == ["finegrained", "hardneg"]
    assert all(f.status is Status.SKIP and "scale.global.base" in f.message for f in nobase)


def test_clamp():
    hot = by_subject(check("logit-scale-clamp", facts_of(scale__finegrained__value=5.3)))
    assert hot["finegrained"].status is Status.FAIL
    assert "finegrained is at 5.3000 (T 200), above the clamp 4.6052 (T 100)" in hot["finegrained"].message
    assert hot["clamp"].status is Status.PASS and hot["hardneg"].status is Status.PASS
    off = by_subject(check("logit-scale-clamp", facts_of(scale__clamp=False)))
    assert off["clamp"].status is Status.WARN and off["clamp"].severity == "warn"
    [skip] = check("logit-scale-clamp", Facts())
    assert skip.status is Status.SKIP


def test_decay():
    found = check("logit-scale-decay", facts_of(optim__groups=groups(scale_wd=0.1)))
    assert {f.status for f in found} == {Status.WARN} and len(found) == 3
    assert "logit_scale_finegrained is in group 'logit_scales' with weight_decay 0.1" in found[1].message
    assert {f.status for f in check("logit-scale-decay", facts_of())} == {Status.PASS}
    assert check("logit-scale-decay", Facts())[0].status is Status.SKIP


def test_frozen_is_a_checkpoint_and_live_rule():
    moved = facts_of(
        scale__finegrained__value=2.7011,
        scale__hardneg__value=2.6592,
        train__optimizer_steps_done=(40, "checkpoint-40/trainer_state.json"),
    )
    found = by_subject(check("logit-scale-frozen", moved))
    assert found["finegrained"].status is Status.PASS
    assert found["hardneg"].status is Status.WARN
    assert "hardneg still at 2.6592 (T 14.3) after 40 optimizer steps" in found["hardneg"].message
    outside = [g for g in groups() if g["name"] != "logit_scales"]
    missing = by_subject(check("logit-scale-frozen", facts_of(optim__groups=outside)))
    assert missing["global"].status is Status.WARN and "in no optimizer group" in missing["global"].message
    assert check("logit-scale-frozen", facts_of(drop=["optim.groups"]))[0].status is Status.SKIP
    assert "logit-scale-frozen" not in {f.rule for f in run_rules(facts_of(), "C")}


# --- FGD2xx negatives and the bank ---------------------------------------------------------------


def test_negatives_not_gathered_across_ranks():
    ddp = facts_of(run__world_size=4, features__gathered=False, candidates__global=8)
    glob = by_subject(check("negatives-count", ddp))["global"]
    assert glob.status is Status.FAIL and "8 x 4 = 32" in glob.message
    assert "transformers#22252" in glob.message
    assert (
        by_subject(check("negatives-count", facts_of(run__world_size=4, candidates__global=32)))["global"].status
        is Status.PASS
    )


def test_negatives_live_form_and_skip():
    # The bank is due at optimizer step 7; after 40 steps the region logits had no queue columns.
    live = facts_of(
        bank__warmup_forward_calls=50,
        bank__switch_on_step=7,
        observed__candidates__region=32,
        observed__extra_columns__region=0,
        observed__candidates__hardneg=11,
        train__optimizer_steps_done=40,
    )
    found = by_subject(check("negatives-count", live))
    assert found["region"].status is Status.FAIL and "+ 0 queue columns" in found["region"].message
    assert found["hardneg"].status is Status.PASS
    ok = facts_of(
        observed__candidates__region=160,
        observed__extra_columns__region=128,
        bank__warmup_forward_calls=50,
        bank__switch_on_step=7,
        train__optimizer_steps_done=40,
    )
    assert by_subject(check("negatives-count", ok))["region"].status is Status.PASS
    early = facts_of(
        observed__candidates__region=32,
        observed__extra_columns__region=0,
        bank__warmup_forward_calls=50,
        bank__switch_on_step=7,
        train__optimizer_steps_done=5,
    )
    f = by_subject(check("negatives-count", early))["region"]
    assert f.status is Status.PASS and "bank due at optimizer step 7, 5 steps done" in f.message
    [skip] = check("negatives-count", Facts())
    assert skip.status is Status.SKIP and "candidates" in skip.message
    nobank = by_subject(check("negatives-count", facts_of(bank__enabled=False)))
    assert nobank["region"].status is Status.PASS and "no memory bank" in nobank["region"].message


def test_bank_active_checkpoint_form_and_skips():
    at_call = (-1, "checkpoint-40/model.safetensors: memory_bank.enabled_at_call")
    never = facts_of(bank__enabled_at_call=at_call, bank__fill=0, train__optimizer_steps_done=40)
    [f] = check("bank-active", never)
    assert f.status is Status.FAIL and "enabled_at_call -1" in f.message and "fill 0/128" in f.message
    on = facts_of(bank__enabled_at_call=50, bank__fill=128, bank__warmup_forward_calls=50)
    [f] = check("bank-active", on)
    assert f.status is Status.PASS and "forward call 50 = optimizer step 7" in f.message
    [f] = check("bank-active", facts_of(bank__enabled=False))
    assert f.status is Status.SKIP and f.message == "no memory bank in this model"
    [f] = check("bank-active", facts_of(drop=NO_LENGTH))
    assert f.status is Status.SKIP and "train.optimizer_steps" in f.message


def test_bank_size():
    [f] = check("bank-size", facts_of())
    assert f.status is Status.PASS
    [f] = check("bank-size", facts_of(bank__size=16))
    assert f.status is Status.FAIL and "smaller than the 32 keys" in f.message
    [f] = check("bank-size", facts_of(bank__size=100, bank__wraps=False))
    assert f.status is Status.FAIL and "not a multiple of 32" in f.message
    [f] = check("bank-size", facts_of(bank__size=100))
    assert f.status is Status.PASS and "wrap-around" in f.message
    [f] = check("bank-size", facts_of(drop=["bank.size"]))
    assert f.status is Status.SKIP and "bank.size" in f.message


def test_grad_accum_negatives():
    [f] = check("grad-accum-negatives", facts_of())
    assert f.status is Status.WARN and f.message == (
        "accumulation 8 multiplies the batch per optimizer step (global batch 64) but not the "
        "negatives: each loss sees 8 candidates per forward (per_device 8 x world 1)"
    )
    assert f"{S}:25 --gradient_accumulation_steps" in f.sources
    assert check("grad-accum-negatives", facts_of(train__grad_accum=1))[0].status is Status.PASS
    assert check("grad-accum-negatives", Facts())[0].status is Status.SKIP


# --- FGD301 step units ---------------------------------------------------------------------------


def test_step_units_skip_reason():
    [f] = check("step-units", facts_of(drop=NO_LENGTH))
    assert f.status is Status.SKIP
    assert f.message == (
        "not known: train.optimizer_steps: give max_steps, or readable annotations / --dataset-size "
        "with num_train_epochs"
    )
    assert check("step-units", facts_of(bank__enabled=False))[0].status is Status.SKIP
    # the bank switches on at the call that reaches its warmup (fgclip.warmup): call 320 of 320 does
    [f] = check("step-units", facts_of(bank__warmup_forward_calls=320))
    assert f.status is Status.PASS and "reached within the run" in f.message
    [f] = check("step-units", facts_of(bank__warmup_forward_calls=321))
    assert f.status is Status.FAIL and "never reached" in f.message


# --- FGD4xx resume -------------------------------------------------------------------------------


def test_resume_explicit_and_unknown():
    flag = ("runs/seed-bug/checkpoint-20", f"{S}:38 --resume_from_checkpoint")
    explicit = facts_of(
        train__resume_from_checkpoint=flag,
        resume__checkpoint="runs/seed-bug/checkpoint-20",
        resume__scale__finegrained=2.6592,
    )
    [f] = check("resume-auto", explicit)
    assert f.status is Status.PASS and "deliberate" in f.message
    [f] = check("resume-override", explicit)
    assert f.status is Status.PASS and f.subject == "finegrained"
    assert check("resume-auto", facts_of(drop=["train.auto_resume"]))[0].status is Status.SKIP
    [f] = check("resume-override", facts_of())
    assert f.status is Status.PASS and "nothing to resume" in f.message
    restores = facts_of(resume__checkpoint="runs/seed-bug/checkpoint-20")
    [f] = check("resume-override", restores)
    assert f.status is Status.SKIP and "checkpoint-20" in f.message


@pytest.mark.parametrize(
    "restored, status",
    [
        (4.6052, Status.PASS),  # the launch's own init
        (4.5970, Status.PASS),  # the tiny run's own checkpoint-60 (0.008: a drift training makes)
        (4.6052 - 0.049, Status.PASS),  # just inside the 0.05 tolerance
        (4.6052 - 0.051, Status.FAIL),  # just past it
        (4.6052 + 0.051, Status.FAIL),
        (2.6562, Status.FAIL),  # the seed's checkpoint-500
    ],
)
def test_resume_override_tolerance_near_miss(restored, status):
    facts = facts_of(
        scale__finegrained__init=4.6052,
        resume__checkpoint="runs/tiny/checkpoint-60",
        resume__scale__finegrained=restored,
    )
    [f] = check("resume-override", facts)
    assert f.status is status, f.message
    assert f.expected == "4.6052 (T 100) ± 0.05"
    if status is Status.PASS and restored != 4.6052:
        assert "within 0.05: a drift training makes, not another init" in f.message


def test_frozen_scale_seen_whatever_its_value():
    """FGD104: requires_grad False or no .grad is a frozen scale even at the clamp ceiling, where the
    value alone proves nothing; a scale with a gradient at the ceiling passes."""
    at_ceiling = dict(
        train__optimizer_steps_done=3,
        scale__clamp=True,
        scale__clamp_max=4.6052,
        scale__global__init=4.6052,
        scale__global__value=4.6052,
    )
    [f] = check("logit-scale-frozen", only(**at_ceiling, scale__global__requires_grad=False))
    assert f.status is Status.WARN and f.measured == "requires_grad False" and "never moves" in f.message
    no_grad = only(**at_ceiling, scale__global__requires_grad=True, observed__scale__global__grad_seen=False)
    [f] = check("logit-scale-frozen", no_grad)
    assert f.status is Status.WARN and "no gradient (.grad None) before any of 3 optimizer steps" in f.message
    healthy = only(**at_ceiling, scale__global__requires_grad=True, observed__scale__global__grad_seen=True)
    [f] = check("logit-scale-frozen", healthy)
    assert f.status is Status.PASS and "gets a gradient" in f.message and "clamp ceiling" in f.message


# --- FGD5xx / FGD6xx -----------------------------------------------------------------------------


def test_fp16():
    refuses = (True, "fgclip/train.py:160 if targs.fp16: raise")
    [f] = check("fp16", facts_of(train__fp16=(True, f"{S}:30 --fp16"), code__refuses_fp16=refuses))
    assert f.status is Status.FAIL and "the training code refuses it" in f.message
    [f] = check("fp16", facts_of(train__fp16=(True, f"{S}:30 --fp16"), run__subject_known=True))
    assert f.status is Status.WARN  # a known subject whose code was not seen to refuse: not assumed
    [f] = check("fp16", facts_of(train__fp16=(True, f"{S}:30 --fp16")))  # code the doctor did not write
    assert f.status is Status.WARN and "grad scaler" in f.message
    assert check("fp16", facts_of(train__bf16=True))[0].message == "fp16 off (bf16)"
    assert check("fp16", Facts())[0].status is Status.SKIP


@pytest.mark.parametrize(
    "kwargs, status, words",
    [
        (dict(roi_lr=1e-3), Status.PASS, "own group 'roi_projection' at lr 1e-3"),
        (dict(roi_lr=0.0), Status.FAIL, "lr 0"),
        (dict(roi_group=False), Status.FAIL, "in no optimizer group"),
        (dict(roi_group=False, roi_with_backbone=True), Status.WARN, "the seed's follow-up: give it its own LR"),
        (dict(), Status.PASS, "(= the base LR; tune it with roi_projection_lr)"),
    ],
)
def test_head_lr(kwargs, status, words):
    [f] = check("head-lr", facts_of(optim__groups=groups(**kwargs)))
    assert f.status is status and words in f.message, f.message


def test_head_lr_skips():
    [f] = check("head-lr", facts_of(model__parameters=BACKBONE))
    assert f.status is Status.SKIP and "no new head named roi_projection" in f.message
    assert check("head-lr", Facts())[0].status is Status.SKIP


def test_text_eos():
    assert {f.status for f in check("text-eos", facts_of())} == {Status.PASS}
    bad = by_subject(
        check(
            "text-eos",
            facts_of(text__tokenizer_eos_id=49407, text__max_seq_length=300, observed__text__rows_without_eos=12),
        )
    )
    assert bad["eos-id"].status is Status.FAIL and "49407" in bad["eos-id"].message
    assert bad["positions"].status is Status.FAIL and "300 tokens" in bad["positions"].message
    assert bad["rows"].status is Status.FAIL
    assert check("text-eos", Facts())[0].status is Status.SKIP


def test_every_rule_is_documented_and_has_a_public_slug():
    """Every registered rule (all of them, not a list kept by hand): code, kebab slug, severity, where,
    and the five docs `rules NAME` prints (what, why, example, evidence, fix), each real prose; and
    `rules NAME` shows them with the casebook cases that prove the rule."""
    from typer.testing import CliRunner

    from fgclip_doctor.cli import app

    rules = all_rules()
    assert len(rules) >= 38 and len({r.code for r in rules}) == len({r.name for r in rules}) == len(rules)
    for r in rules:
        assert re.fullmatch(r"FGD[1-7]\d\d", r.code) and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.name), r.code
        assert r.severity in ("fail", "warn") and r.where and set(r.where) <= set("CKLD"), r.name
        assert r.title and not r.title.endswith("."), r.name
        docs = {"what": r.what, "why": r.why, "example": r.example, "evidence": r.evidence, "fix": r.fix}
        for part, text in docs.items():
            assert len(text.split()) >= 4, f"{r.name}: {part} is not documented ({text!r})"
        assert len(set(docs.values())) == 5, f"{r.name}: two docs sections say the same"
        out = CliRunner().invoke(app, ["rules", r.name], env={"COLUMNS": "400"})
        assert out.exit_code == 0, r.name
        for heading in ("What it does", "Why it matters", "Example", "Evidence", "Fix", "Proven by"):
            assert heading in out.stdout, f"{r.name}: {heading}"
        assert "(no case yet)" not in out.stdout, f"{r.name}: no casebook case proves it"


def test_frozen_needs_optimizer_steps_to_blame_an_unchanged_value():
    before = facts_of(drop=["optim.groups"], scale__hardneg__value=2.6592)
    assert check("logit-scale-frozen", before)[0].status is Status.SKIP
    moved = facts_of(drop=["optim.groups"], scale__hardneg__value=2.70)
    [f] = check("logit-scale-frozen", moved)
    assert f.status is Status.PASS and "hardneg moved 2.6592 (T 14.3) -> 2.7000 (T 14.9)" in f.message


def test_frozen_does_not_blame_the_clamp_or_a_first_warmup_step():
    # global starts at ln 100 and the clamp holds it there: not evidence of a missing gradient
    pinned = facts_of(
        drop=["optim.groups"],
        scale__global__init=4.6052,
        scale__global__value=4.6052,
        scale__clamp=True,
        scale__clamp_max=4.6052,
        train__optimizer_steps_done=(3, "live"),
    )
    found = by_subject(check("logit-scale-frozen", pinned))
    assert found["global"].status is Status.SKIP and "clamp ceiling" in found["global"].message
    unclamped = facts_of(
        drop=["optim.groups"],
        scale__global__init=4.6052,
        scale__global__value=4.6052,
        scale__clamp=False,
        train__optimizer_steps_done=(3, "live"),
    )
    assert by_subject(check("logit-scale-frozen", unclamped))["global"].status is Status.WARN
    # one step: a warmup schedule's first step runs at LR 0
    one = facts_of(drop=["optim.groups"], scale__hardneg__value=2.6592, train__optimizer_steps_done=(1, "live"))
    found = by_subject(check("logit-scale-frozen", one))
    assert found["hardneg"].status is Status.SKIP and "only 1 optimizer step" in found["hardneg"].message
    two = facts_of(drop=["optim.groups"], scale__hardneg__value=2.6592, train__optimizer_steps_done=(2, "live"))
    assert by_subject(check("logit-scale-frozen", two))["hardneg"].status is Status.WARN
    both = facts_of(
        drop=["optim.groups"],
        scale__global__init=4.6052,
        scale__global__value=4.6052,
        scale__hardneg__value=2.70,
        train__optimizer_steps_done=(3, "live"),
    )
    found = by_subject(check("logit-scale-frozen", both))
    assert "clamp" not in found["hardneg"].message  # each scale speaks for itself


def test_subject_behaviour_is_read_from_its_code(monkeypatch):
    # train.auto_resume, features.gathered and loss.world_size_from come from the subject's code:
    # a loss that stops asking torch.distributed for its world leaves the fact unknown, never asserted.
    import fgclip.losses
    from fgclip_doctor.sources.code.subject_facts import _read_subject_behaviour

    facts = Facts()
    _read_subject_behaviour(facts)
    assert facts.value("loss.world_size_from") == "torch.distributed" and facts.value("features.gathered") is True
    assert facts.value("train.auto_resume") is True and "static reader" in facts.source("train.auto_resume")
    monkeypatch.setattr(fgclip.losses, "world", lambda: (0, 8))
    facts = Facts()
    _read_subject_behaviour(facts)
    assert "loss.world_size_from" not in facts
    assert check("world-size", facts)[0].status is Status.SKIP
