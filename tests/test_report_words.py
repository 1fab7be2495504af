"""A SKIP says in words what was not known and why (issue 22, item 5): the file, flag or path a person
can act on, never a fact name, never cut; `-v` prints no empty `measured: —` / `from: —` lines. The
done-when check runs every table the commands print (check-config on the default run, the seed bug,
the UCF launch and each tree under tests/trees, from its own folder and from outside it;
inspect-ckpt on a folder and a bare weights file; check-data) with -v. JSON keeps the fact names,
in each finding's `missing`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from rich.cells import cell_len
from schema import validate
from typer.testing import CliRunner

from fgclip_doctor.checks.registry import Status, rule, run_rules, scratch_registry
from fgclip_doctor.cli import app
from fgclip_doctor.facts import Facts
from fgclip_doctor.phrases import PHRASES, fact_names, in_words, phrase
from fgclip_doctor.report import Report, render, to_json
from fgclip_doctor.vocabulary import FACTS

ROOT = Path(__file__).resolve().parents[1]
TREES = {  # tree -> its launch, run from the tree's folder
    "run_clip": "train.sh",
    "fgclip_v1": "scripts/train.sh",
    "fgclip2": "scripts/train/stage2.sh",
    "open_clip": "train.sh",
}
FACT_ID_AFTER_NOT_KNOWN = re.compile(r"not known: [a-z_]*\.")
EMPTY_LABEL = re.compile(r"(measured|expected|from): —")
SKIP_HEAD = re.compile(r"^SKIP FGD\d{3} ")
DOCS = dict(fix="f", what="w", why="y", example="e", evidence="v")


# ---- the phrases ----------------------------------------------------------------------------------


def test_every_fact_has_a_phrase_that_names_no_fact():
    assert not sorted(set(FACTS) - set(PHRASES)), "facts without a phrase in fgclip_doctor/phrases.py"
    for name, text in PHRASES.items():
        assert text and text == text.strip() and "(" not in text, name  # a phrase nests in a sentence's (hint)
        assert fact_names(text) == [], (name, text)


def test_placeholders_are_filled_or_read_each():
    assert phrase("scale.hardneg.init") == "the hardneg scale's start value"
    assert phrase("scale.<scale>.value") == "each scale's value now"
    assert phrase("loss.<term>.errors_swallowed") == "whether errors of each loss are swallowed"
    assert phrase("data.box.pixel_coords") == "the count of pixel coords boxes"
    assert phrase("train.py") is None and phrase("config.max_logit_scale") is None  # not facts
    assert fact_names("fgclip/train.py default; config.max_logit_scale; e.g. bank.size") == ["bank.size"]


def test_a_reason_becomes_a_sentence_with_why():
    facts = Facts()
    facts.mark_unknown("scale.", "the base model /data/clip (train.sh:3 --model_name_or_path) is not on this machine")
    facts.set("scale.global.init", 4.6, "x")
    text, names = in_words(
        "not known: scale.global.init, scale.finegrained.init, scale.hardneg.init (the flag gives them)",
        facts.why,
        facts.covers,
    )
    assert text == (
        "The finegrained scale's start value and the hardneg scale's start value are not known "
        "(the flag gives them) — the base model /data/clip (train.sh:3 --model_name_or_path) is not on this machine"
    )
    assert names == ["scale.finegrained.init", "scale.hardneg.init"]  # the known one left out
    # the verb agrees; a hint that restates the phrase goes
    assert in_words("not known: model.parameters")[0] == "The model's trainable parameters are not known"
    assert in_words("not known: optim.groups (the optimizer's parameter groups, read from the trainer)")[0] == (
        "The optimizer's parameter groups are not known (read from the trainer)"
    )
    assert in_words("not known: loss.world_size_from (where the loss takes its world size)")[0] == (
        "Where the loss takes its world size is not known"
    )
    # a name inside a sentence is said in place; a reason without names is left as it is
    assert in_words("LR of group 'x' not known (nor train.learning_rate)")[0] == (
        "LR of group 'x' not known (nor the base learning rate)"
    )
    assert in_words("no memory bank in this model") == ("no memory bank in this model", [])


def test_why_prefers_what_was_said_of_the_fact_itself():
    facts = Facts()
    facts.mark_unknown("loss.", "train.py was read as text")
    facts.mark_unknown("loss.chance.global", "the world size is unknown here")
    facts.mark_unknown("scale.hardneg.", "the weights hold no logit_scale_hardneg")
    assert facts.why("loss.chance.global") == ["the world size is unknown here"]
    assert facts.why("loss.global.kind") == ["train.py was read as text"]
    assert facts.why("scale.<scale>.init") == ["the weights hold no logit_scale_hardneg"]  # covers hardneg
    facts.set("loss.global.kind", "softmax", "train.py:3")
    assert facts.why("loss.global.kind") == [] and facts.covers("loss.<term>.kind")


def test_run_rules_says_the_skip_in_words_and_json_keeps_the_names():
    with scratch_registry():

        @rule("FGD901", "needs-bank", title="t", severity="fail", where="C", **DOCS)
        def needs_bank(facts, ctx):
            return ctx.require(facts, "bank.enabled", "bank.size") or ctx.passed(1, 1)

        facts = Facts()
        facts.mark_unknown("bank.", "train.py (read as text, never run) does not establish it")
        [skip] = run_rules(facts, "C")
    assert skip.status is Status.SKIP
    assert skip.message == (
        "Whether the model has a memory bank and the memory bank's size are not known — "
        "train.py (read as text, never run) does not establish it"
    )
    assert skip.missing == ("bank.enabled", "bank.size")
    doc = to_json(Report("check-config", None, facts, [skip]))
    validate(doc)
    assert doc["findings"][0]["missing"] == ["bank.enabled", "bank.size"]
    verbose = render(Report("check-config", None, facts, [skip]), "table", width=80, verbosity=1)
    assert not EMPTY_LABEL.search(verbose) and "measured" not in verbose and "from:" not in verbose


# ---- every table the commands print ------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(synthetic_root, tmp_path_factory) -> Path:
    """A folder with copies of scripts/ and tests/trees/ (a stale checkout state is not read)."""
    root = tmp_path_factory.mktemp("words")
    shutil.copytree(ROOT / "scripts", root / "scripts")
    for tree in TREES:
        shutil.copytree(ROOT / "tests" / "trees" / tree, root / "trees" / tree)
    (root / "unknown_cd.sh").write_text(
        'cd "$(git rev-parse --show-toplevel)"\n'
        "torchrun --nproc_per_node 8 run_clip.py --output_dir out --per_device_train_batch_size 64\n"
    )
    return root


def tables(synthetic_root: Path) -> list[tuple[str, str, list[str]]]:
    """(id, folder relative to the workdir, arguments) of every table the done-when check reads."""
    base = synthetic_root / "base"
    out = [
        ("default", ".", ["check-config"]),
        ("seed-bug", ".", ["check-config", "scripts/seed_bug.sh"]),
        ("ucf", ".", ["check-config", "scripts/train_ucf_full.sh"]),
        # its code is not read: the folder it runs in is unknown (an entry not found is exit 2, issue 18)
        ("unknown-cd", ".", ["check-config", "unknown_cd.sh"]),
        ("inspect-folder", ".", ["inspect-ckpt", str(base)]),
        ("inspect-file", ".", ["inspect-ckpt", str(base / "model.safetensors")]),
        ("check-data", ".", ["check-data", str(synthetic_root / "train.jsonl")]),
    ]
    return out + [(tree, f"trees/{tree}", ["check-config", launch]) for tree, launch in TREES.items()]


def invoke(folder: Path, args: list[str], monkeypatch, width: int = 100):
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(app, args, env={"COLUMNS": str(width), "NO_COLOR": "1"})
    assert result.exit_code in (0, 1), result.output + repr(result.exception)
    return result


def skip_reasons(text: str) -> list[str]:
    """Each SKIP line of a table with its continuation lines, whitespace normalised."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if SKIP_HEAD.match(line):
            out.append([line])
        elif out and line.startswith(" ") and out[-1] is not None:
            out[-1].append(line)
        else:
            out.append(None)
    return [" ".join(" ".join(group).split()) for group in out if group]


@pytest.mark.parametrize("index", range(11))
def test_every_table_says_its_skips_in_words(index, workdir, synthetic_root, monkeypatch):
    assert len(tables(synthetic_root)) == 11  # one test per table: a new table needs a new index
    name, folder, args = tables(synthetic_root)[index]
    for width, verbosity in ((100, []), (80, ["-v"])):
        text = invoke(workdir / folder, [*args, *verbosity], monkeypatch, width).stdout
        assert not FACT_ID_AFTER_NOT_KNOWN.search(text), name
        assert fact_names(text) == [], (name, fact_names(text))
        assert not EMPTY_LABEL.search(text), name
        assert max(cell_len(line) for line in text.splitlines()) <= width
        assert not any(line != line.rstrip() for line in text.splitlines())
        reasons = skip_reasons(text) if not verbosity else []
        assert all("…" not in r for r in reasons), name  # a reason is never cut
    doc = json.loads(invoke(workdir / folder, [*args, "--format", "json"], monkeypatch).stdout)
    validate(doc, extra={"inspect-ckpt": {"trajectory"}, "check-data": {"data"}}.get(args[0], set()))
    for f in doc["findings"]:
        assert all(phrase(n) is not None and n not in doc["facts"] for n in f["missing"]), f
        if f["status"] == "SKIP":
            assert f["message"] and not FACT_ID_AFTER_NOT_KNOWN.search(f["message"]), f


def findings(doc: dict) -> dict[tuple[str, str], dict]:
    return {(f["rule"], f["subject"]): f for f in doc["findings"]}


def test_ucf_names_what_is_not_on_this_machine(workdir, monkeypatch):
    doc = json.loads(
        invoke(workdir, ["check-config", "scripts/train_ucf_full.sh", "--format", "json"], monkeypatch).stdout
    )
    found = findings(doc)
    init = found[("logit-scale-init", "")]
    assert init["status"] == "SKIP" and init["missing"] == ["scale.finegrained.init", "scale.hardneg.init"]
    assert init["message"].startswith("The finegrained scale's start value and the hardneg scale's start value")
    assert (
        "the base model /data/models/clip-vit-base-patch16 (scripts/train_ucf_full.sh:16 --model_name_or_path) "
        "is not on this machine" in init["message"]
    )
    units = found[("step-units", "bank warmup")]
    assert units["missing"] == ["train.optimizer_steps"]
    assert (
        "the annotations /data/ucf_crime/fgclip_annotations/train.jsonl (scripts/train_ucf_full.sh:19 --data_path) "
        "are not on this machine" in units["message"]
    )
    floors = [f for (r, _), f in found.items() if r == "loss-floor"]
    assert floors and all("clip-vit-base-patch16" in f["message"] for f in floors)
    text = invoke(workdir, ["check-config", "scripts/train_ucf_full.sh"], monkeypatch).stdout
    assert "SKIP FGD705 loss-floor · global, region, hardneg  Each loss's floor is not known" in text  # said once


def test_a_launch_whose_code_is_not_found_says_so(workdir, monkeypatch):
    # issue 18: never a report of SKIPs on code nobody read: one line, exit 2, where it looked
    monkeypatch.chdir(workdir)
    missing = CliRunner().invoke(app, ["check-config", "trees/run_clip/train.sh", "--format", "json"])
    assert missing.exit_code == 2 and missing.stderr.count("\n") == 1, missing.output
    assert "run_clip.py: no such file from the launch's working directory" in missing.stderr
    inside = json.loads(
        invoke(workdir / "trees/run_clip", ["check-config", "train.sh", "--format", "json"], monkeypatch).stdout
    )
    assert (
        "run_clip.py was read as text (never run) and does not establish it"
        in (findings(inside)[("head-lr", "")]["message"])
    )


def test_a_bare_weights_file_says_what_it_lacks(workdir, synthetic_root, monkeypatch):
    weights = str(synthetic_root / "base" / "model.safetensors")
    doc = json.loads(invoke(workdir, ["inspect-ckpt", weights, "--format", "json"], monkeypatch).stdout)
    lr = findings(doc)[("lr-zero", "")]
    assert (
        lr["status"] == "SKIP" and "is a bare weights file, with no config.json or trainer_state.json" in lr["message"]
    )
    init = findings(doc)[("logit-scale-init", "")]
    assert (
        "holds no logit_scale_finegrained (hf-clip)" in init["message"]
        and "--logit_scale_init_value" not in (init["message"])
    )
