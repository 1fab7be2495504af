"""A probe record (probes/record.py) -> observed facts (names in fgclip_doctor/vocabulary.py),
on top of the config facts.

The launch's own facts (what check-config derives) are the expectation; what the probes saw
is written over them where it is a measurement (scales at step 0, the bank's switch-on call),
and under `observed.*` otherwise. Every value cites `live: ...` as its source.
"""

from __future__ import annotations

import math

from fgclip_doctor.facts import Facts
from fgclip_doctor.probes.record import ProbeRecord
from fgclip_doctor.sources.derived import derive_temperatures, set_levels
from fgclip_doctor.units import temperature
from fgclip_doctor.vocabulary import TERM_SCALE

SRC = "live: measured"


def term_series(history: list[dict], term: str) -> list[dict]:
    """Per-interval means of a term's statistics: [{step, loss, ratio, candidates, ...}].

    The loss is every call's; the other statistics come from the sampled calls, carried over
    from the last interval that had one.
    """
    out, last = [], None
    for snap in history:
        s = snap["terms"].get(term)
        if not s or not (s.get("calls") or s.get("loss_calls")):
            continue
        calls = s.get("calls") or 0
        if calls:
            last = {
                k: s[k] / calls
                for k in ("ln_candidates", "candidates", "pos", "hardest", "margin", "top1", "offset_ok")
            }
            last["chance"] = s["chance"] / calls if "chance" in s else last["ln_candidates"]
            last["kind"] = "sigmoid" if s.get("sigmoid", 0) > calls / 2 else "softmax"
            last.update(
                logit_min=s["logit_min"],
                logit_max=s["logit_max"],
                abs_max=s["abs_max"],
                nonfinite_loss=s["nonfinite_loss"],
                calls=calls,
            )
        if last is None:
            continue
        row = dict(last)
        row["loss"] = s["loss_sum"] / s["loss_calls"] if s.get("loss_calls") else s["loss"] / calls
        row["ratio"] = row["loss"] / row["chance"] if row["chance"] > 0 else math.nan
        row["step"] = snap["step"]
        if not calls:
            row["nonfinite_loss"] = 0.0
        out.append(row)
    return out


def _finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


def summarize_terms(record: ProbeRecord) -> dict[str, dict]:
    """Every term the cross-entropy probe saw, summarised over the whole run."""
    out = {}
    for term in record.terms:
        series = term_series(record.history, term)
        if not series:
            continue
        cols = record.columns.get(term, [])
        mins, maxs = _finite(r["logit_min"] for r in series), _finite(r["logit_max"] for r in series)
        out[term] = {
            "series": series,
            "rows": record.rows.get(term),
            "dtype": record.dtypes.get(term),
            "columns": cols,
            "columns_first": cols[0].columns if cols else None,
            "columns_last": cols[-1].columns if cols else None,
            "columns_max": max((c.columns for c in cols), default=None),
            "loss_first": series[0]["loss"],
            "loss_last": series[-1]["loss"],
            "ln_candidates_last": series[-1]["ln_candidates"],
            "chance_last": series[-1]["chance"],
            "kind": series[-1]["kind"],
            "ratio_last": series[-1]["ratio"],
            "ratio_first": series[0]["ratio"],
            "candidates_first": series[0]["candidates"],
            "candidates_last": series[-1]["candidates"],
            "logit_min": min(mins) if mins else None,
            "logit_max": max(maxs) if maxs else None,
            "abs_max": max(_finite(r["abs_max"] for r in series), default=None),
            "pos_last": series[-1]["pos"],
            "hardest_last": series[-1]["hardest"],
            "margin_last": series[-1]["margin"],
            "offset_ok": [series[-1]["offset_ok"]],
            "nonfinite_loss": sum(r["nonfinite_loss"] for r in series),
        }
    return out


def _subject_totals(history: list[dict], key: str) -> dict | None:
    rows = [s["subject"].get(key) for s in history if s["subject"].get(key) and s["subject"][key].get("calls")]
    if not rows:
        return None
    calls = sum(r["calls"] for r in rows)
    out = {k: sum(r[k] for r in rows) / calls for k in rows[0] if k not in ("calls",) and not k.endswith("_min")}
    out.update({k: min(r[k] for r in rows) for k in rows[0] if k.endswith("_min")})
    out["calls"] = calls
    return out


def observed_facts(
    record: ProbeRecord, base: Facts | None = None, world_size: int = 1, offsets: dict | None = None
) -> Facts:
    """Facts for the L rules: the launch's config facts plus what this run measured."""
    facts = Facts()
    if base is not None:
        for name, fact in base.items():
            if not name.startswith(("loss.chance.", "loss.floor.")):  # the launch's; measured below
                facts.set(name, fact.value, fact.source)
    _trainer_args_facts(facts, record.trainer_args)
    _start_facts(facts, record.model_source)
    terms = summarize_terms(record)
    facts.set("observed.terms", list(terms), SRC)
    facts.set("train.optimizer_steps_done", record.steps_done, "live: Trainer state.global_step")
    facts.set("observed.forward_calls", record.forward_calls, "live: forward pre-hook on the model")
    for term, t in terms.items():
        where = f"live: cross_entropy probe, term {term}"
        facts.set(f"observed.candidates.{term}", t["columns_max"], where)
        facts.set(f"observed.extra_columns.{term}", (t["columns_last"] or 0) - (t["rows"] or 0), where)
        facts.set(f"observed.logits.{term}.dtype", t["dtype"], where)
        facts.set(f"observed.logits.{term}.max_abs", t["abs_max"], where)
        facts.set(f"observed.loss.{term}.first", t["loss_first"], where)
        facts.set(f"observed.loss.{term}.last", t["loss_last"], where)
        facts.set(f"observed.loss.{term}.chance", t["chance_last"], where)
        facts.set(f"observed.loss.{term}.ratio", t["ratio_last"], where)
        facts.set(f"observed.loss.{term}.series", [r["loss"] for r in t["series"]], where)
        rows, cols = t["rows"], t["columns_max"]
        if rows and cols:
            facts.set(f"observed.ddp.{term}.gathered", world_size > 1 and cols == world_size * rows, where)
            facts.set(f"observed.ddp.{term}.target_offset_ok", (offsets or {}).get(term, t["offset_ok"]), where)
    for name, value in record.scale_init.items():
        facts.set(f"scale.{name}.init", round(value, 6), "live: model parameters at train begin")
    for name, value in record.scale_value.items():
        facts.set(f"scale.{name}.value", round(value, 6), f"live: model parameters after step {record.steps_done}")
    for name, trainable in record.scale_trainable.items():
        facts.set(f"scale.{name}.requires_grad", trainable, "live: the scale parameter's requires_grad at train begin")
    if record.steps_done:
        for name, seen in record.scale_grad_seen.items():
            where = f"live: the scale's .grad before each of {record.steps_done} optimizer steps"
            facts.set(f"observed.scale.{name}.grad_seen", seen, where)
    for term in terms:  # the multiplier of each term's logits, when the term is one of the subject's
        name = TERM_SCALE.get(term.split("/")[0])
        if name in record.scale_value:
            where = f"live: exp(scale.{name}.value) after step {record.steps_done}"
            facts.set(f"observed.logits.{term}.scale", round(temperature(record.scale_value[name]), 4), where)
    if record.groups:
        facts.set("optim.groups", record.groups, "live: the Trainer's optimizer param_groups")
        if record.trainable:  # lr-zero: trainable parameters that no group holds train nothing
            facts.set("model.parameters", record.trainable, "live: the model's parameters with requires_grad")
        else:
            facts.set("model.parameters", [p for g in record.groups for p in g["params"]], "live: optimizer params")
    bank = next((s["bank"] for s in reversed(record.history) if s.get("bank")), None)
    if bank:
        src = "live: memory bank buffers"
        for key in ("fill", "enabled_at_call"):
            facts.set(f"bank.{key}", bank[key], src)
        facts.set("observed.bank.key_norm_error", bank["key_norm_error"], src)
        facts.set("observed.bank.requires_grad", bank["requires_grad"], src)
    rows = _subject_totals(record.history, "bank_rows")
    if rows:
        facts.set("observed.bank.same_caption_rows", rows["same_caption_rows"], "live: region head inputs")
        facts.set("observed.bank.near_duplicate_rows", rows["near_duplicate_rows"], "live: region head inputs")
        facts.set(
            "observed.bank.same_caption_unmasked_rows",
            rows["same_caption_unmasked"],
            "live: region head logits (same-caption queue columns left finite)",
        )
    roi = _subject_totals(record.history, "roi")
    if roi:
        facts.set("observed.region.feature_norm_min", roi["norm_min"], "live: RoIAlign outputs")
        facts.set("observed.region.feature_norm_mean", roi["norm_mean"], "live: RoIAlign outputs")
    within = _subject_totals(record.history, "within_image")
    if within:
        facts.set("observed.region.within_image_cosine", within["cosine"], "live: box features")
        facts.set("observed.region.images_with_2_boxes", within["images"] * within["calls"], "live: box features")
    _unplaced_parts(facts, record.placement.get("missing", {}) if record.placement else {})
    text = _subject_totals(record.history, "text")
    if text:
        facts.set(
            "observed.text.rows_without_eos", round(text["rows_without_eos"] * text["calls"]), "live: text tower inputs"
        )
    grads = grad_summary(record.history)
    if grads:
        facts.set(
            "observed.grad_norm", {k: v["norm"] for k, v in grads.items()}, "live: grad norms per optimizer group"
        )
        facts.set("observed.grad.nonfinite", sum(v["nonfinite"] for v in grads.values()), "live: grad norms")
    facts.set("observed.nonfinite_loss", sum(t["nonfinite_loss"] for t in terms.values()), SRC)
    _history_facts(facts, terms)
    derive_temperatures(facts)
    return facts


#: a part of the code the probes hook (probes/placed.py) -> the facts measured there
PART_FACTS = {
    "roi": (
        "observed.region.feature_norm_min",
        "observed.region.feature_norm_mean",
        "observed.region.within_image_cosine",
    ),
    "box_features": ("observed.region.within_image_cosine",),
}


def _unplaced_parts(facts: Facts, missing: dict[str, str]) -> None:
    """Why a fact of a part live could not hook in code the doctor did not write is absent."""
    for part, names in PART_FACTS.items():
        if part in missing:
            what = "RoIAlign-like call" if part == "roi" else "box-feature method"
            for name in names:
                if name not in facts:
                    facts.mark_unknown(name, f"live did not hook the {what}: {missing[part]}")


#: fact <- the Trainer's argument (probes/callback.py TRAINER_ARGS, plus max_steps and warmup_steps)
TRAINER_ARG_FACTS = {
    "train.per_device_batch": "per_device_train_batch_size",
    "train.grad_accum": "gradient_accumulation_steps",
    "train.learning_rate": "learning_rate",
    "train.weight_decay": "weight_decay",
    "train.max_steps": "max_steps",
    "schedule.warmup_steps": "warmup_steps",
}


def _trainer_args_facts(facts: Facts, args: dict) -> None:
    """The Trainer's own arguments, where the launch's facts do not say (a callback in a user's run)."""
    for name, arg in TRAINER_ARG_FACTS.items():
        if name not in facts and args.get(arg) is not None:
            facts.set(name, args[arg], f"live: the Trainer's {arg}")


def _start_facts(facts: Facts, source: str | None) -> None:
    """model.fine_tuning measured, where the launch does not say: a model from_pretrained keeps
    the folder it read in config._name_or_path; one built from its config has none. (A state dict
    loaded over a model built from config is not seen here: the launch's reading says so.)"""
    if "model.fine_tuning" in facts or source is None:
        return
    if source:
        facts.set("model.fine_tuning", True, f"live: model.config._name_or_path = {source!r} at train begin")
    else:
        facts.set("model.fine_tuning", False, "live: the model was built from its config (no _name_or_path)")


def _history_facts(facts: Facts, terms: dict[str, dict]) -> None:
    """The measured loss series in the form the history rules read (loss-chance, milestones, nonfinite):
    one key per term, its values at each read-back step, and ln(candidates actually in its logits)."""
    src = "live: cross_entropy probe (interval means)"
    facts.set("history.loss_keys", {term: term for term in terms}, src)
    facts.set("history.series", {term: [(r["step"], r["loss"]) for r in t["series"]] for term, t in terms.items()}, src)
    for term, t in terms.items():
        n = t["candidates_last"]
        if t["kind"] == "sigmoid":
            facts.set(f"loss.{term}.kind", "sigmoid", "live: logsigmoid / BCE-with-logits on the term's logits")
        set_levels(facts, term, [(1, n)], f"live: {n:.4g} candidates in the {term} logits")
        facts.set(f"loss.chance.{term}", t["chance_last"], f"live: {t['kind']} chance of the {term} logits")
    bad = [
        {"key": term, "value": str(r["loss"]), "step": r["step"]}
        for term, t in terms.items()
        for r in t["series"]
        if not math.isfinite(r["loss"])
    ]
    facts.set("history.nonfinite", bad, src)
    facts.set("history.logging_steps", terms and next(iter(terms.values()))["series"][0]["step"] or None, src)


def grad_summary(history: list[dict]) -> dict[str, dict]:
    """Mean and max gradient norm per optimizer group over the run, and non-finite steps."""
    out: dict[str, dict] = {}
    for snap in history:
        for name, g in snap["grads"].items():
            o = out.setdefault(name, {"steps": 0.0, "sum": 0.0, "max": 0.0, "nonfinite": 0.0})
            o["steps"] += g["steps"]
            o["sum"] += g["norm"]
            o["max"] = max(o["max"], g["norm_max"])
            o["nonfinite"] += g["nonfinite"]
    for o in out.values():
        o["norm"] = o["sum"] / o["steps"] if o["steps"] else float("nan")
    return out
