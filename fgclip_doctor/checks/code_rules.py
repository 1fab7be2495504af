"""Rules on the training code itself, from its static reading (sources/code/reader): flags its
parser rejects (FGD303), a loss world size that is not the launch's (FGD209), loss errors
swallowed by a bare `except` (FGD704). Facts are `code.*`, `loss.*` and `run.world_size`.
"""

from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts
from fgclip_doctor.vocabulary import TERMS


@rule(
    "FGD303",
    "unknown-flag",
    title="every flag of the launch is one the training's parser accepts",
    severity="fail",
    where="C",
    fix="spell the flag as the code's parser declares it (or drop it); give values of its type",
    what="Each flag of the launch is parsed by a parser built from the training code's own "
    "HfArgumentParser dataclasses or argparse options (argparse's abbreviation rules, types and "
    "choices included). A flag it rejects, or a value of the wrong type, FAILs naming the flag "
    "and the launch line.",
    why="The real parser exits at start-up on an unknown or ambiguous option (`--warmup` matches "
    "both warmup_steps and warmup_ratio in HF's TrainingArguments): a multi-node job dies after "
    "queueing, or, with parse_args_into_dataclasses(return_remaining_strings=True), the value is "
    "silently ignored.",
    example="deepspeed fgclip/train/train_mem.py ... --warmup 200 -> FAIL: ambiguous option: "
    "--warmup could match --warmup_ratio, --warmup_steps (scripts/train.sh:25)",
    evidence="argparse allow_abbrev (Python docs: prefix matching, `ambiguous option`); "
    "transformers hf_argparser.HfArgumentParser.parse_args_into_dataclasses raises on "
    "remaining strings.",
)
def unknown_flag(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One FAIL per rejected flag; one PASS when the parser accepts them all."""
    if "code.flags_rejected" not in facts:
        return [
            ctx.skip(
                "not known: code.flags_rejected (the training code's parser was not read, "
                "or it inherits a TrainingArguments that is not installed here)"
            )
        ]
    rejected = facts.value("code.flags_rejected") or []
    where = ctx.sources_of(facts, "code.parser")
    if not rejected:
        accepted = facts.value("code.flags_accepted") or {}
        return [
            ctx.passed(
                f"{len(accepted)} flags accepted",
                "all accepted",
                f"{facts.value('code.parser', 'the parser')} accepts every flag of the launch",
                where,
            )
        ]
    out = []
    for r in rejected:
        value = "" if r.get("value") is None else f" {r['value']}"
        out.append(
            ctx.problem(
                f"{r['flag']}{value}",
                "a flag the parser accepts",
                f"{r['source']}: {r['flag']}{value} is rejected by the training's parser: {r['reason']}",
                (r["source"], *where),
                r["flag"],
            )
        )
    return out


@rule(
    "FGD209",
    "world-size",
    title="the loss gathers from the world the launch starts",
    severity="fail",
    where="C",
    fix="take the loss's world size from torch.distributed.get_world_size(), or set the flag to the launch's "
    "nproc x nnodes",
    what="When the loss takes its world size from a flag or config value (FG-CLIP 2's "
    "`--train_use_word_size`, default 8) instead of torch.distributed, that value equals the "
    "launch's world (nproc_per_node x nnodes). FAIL when they differ, WARN when the launch's "
    "world is unknown here (deepspeed without --num_gpus uses every visible GPU).",
    why="The loss loops over `range(world_size)` to build labels and gather features: with a "
    "different world the labels point at the wrong rank's rows (or the gather hangs), and the "
    "loss trains on wrong positives without any error.",
    example="deepspeed --num_gpus 4 ... --train_use_word_size 8 -> FAIL: the loss assumes 8 ranks, the launch starts 4",
    evidence="FG-CLIP 2 fgclip2/train/train.py sets model.world_size from "
    "--train_use_word_size; its loss iterates over model.world_size, not dist.get_world_size().",
)
def world_size(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding on the loss's world size against the launch's."""
    src_from = facts.value("loss.world_size_from")
    src = ctx.sources_of(facts, "loss.world_size_from", "loss.world_size", "run.world_size")
    if src_from is None:
        return ctx.skip("not known: loss.world_size_from (where the loss takes its world size)", src)
    if not str(src_from).startswith("flag "):
        return ctx.passed(str(src_from), "the launch's world", f"the loss takes its world size from {src_from}", src)
    loss_world = facts.value("loss.world_size")
    if loss_world is None:
        return ctx.skip(f"not known: loss.world_size (the value of {src_from[5:]} in this launch)", src)
    world = facts.value("run.world_size")
    if world is None:
        return ctx.warned(
            f"{loss_world} ({src_from})",
            "the launch's world",
            f"the loss assumes {loss_world} ranks ({src_from}), and the launch's world size is not known here: "
            "they must match",
            src,
        )
    if int(loss_world) != int(world):
        return ctx.problem(
            f"{loss_world} ({src_from})",
            str(world),
            f"the loss assumes {loss_world} ranks ({src_from}); the launch starts {world}",
            src,
        )
    return ctx.passed(str(loss_world), str(world), f"the loss's {src_from} = {loss_world} = the launch's world", src)


@rule(
    "FGD704",
    "loss-errors-swallowed",
    title="errors in a loss term are not silently swallowed",
    severity="warn",
    where="C",
    fix="catch only the exception you expect (and log it), or let it raise",
    what="A bare `except:` or `except Exception:` without a re-raise around code that computes a loss term, per term.",
    why="A region or hard-negative loss that raises (a shape mismatch, an empty box list) then "
    "silently becomes no loss at all: the run trains the global term only and looks healthy.",
    example="try: loss += region_loss(...) except: pass -> WARN on region",
    evidence="FG-CLIP 2 fgclip2/model: the region and hard-negative losses sit inside `except: pass`.",
)
def loss_errors_swallowed(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per loss term whose handling is known."""
    out = []
    for term in [*TERMS, *sorted(set(facts.value("loss.terms") or ()) - set(TERMS))]:
        name = f"loss.{term}.errors_swallowed"
        if name not in facts:
            continue
        src = ctx.sources_of(facts, name)
        if facts.value(name):
            out.append(
                ctx.warned(
                    "swallowed",
                    "errors raise",
                    f"{term}: a bare except without re-raise wraps the loss at {facts.source(name)}: "
                    f"an error there silently drops the {term} loss",
                    src,
                    term,
                )
            )
        else:
            out.append(ctx.passed("raise", "errors raise", f"{term}: no except swallows its errors", src, term))
    return out or [ctx.skip("not known: loss.<term>.errors_swallowed (the training code's losses were not read)")]
