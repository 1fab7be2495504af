"""Every numeric flag of the bundled subject at 0, -1, 1e20, inf, nan and a huge integer: check-config
gives findings (exit 0 or 1) or one `fgclip-doctor: error:` line (exit 2), never a traceback.

The three values that once escaped as tracebacks come first, each with what it must say:
`--max_seq_length 4` (AssertionError in the position stretch), `--max_seq_length -1` (RuntimeError,
negative dimension) and `--logit_scale_init_value 99999999999999999999` (OverflowError in exp).
A value the subject refuses at start-up (fgclip/arguments.py) is an unknown-flag FAIL naming the
flag, with the subject's own reason; a value its parser cannot type is one too.

Cost: one in-process check-config per case (the meta build, about 0.2 s): the subject's own flags
and the TrainingArguments flags the doctor reads one by one, every other numeric TrainingArguments
flag all at once per value (they are typed by the parser and never reach the doctor's arithmetic).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import transformers
from fuzz_cli import fuzz_settings, run_cli
from hypothesis import example, given
from hypothesis import strategies as st

from fgclip import train
from fgclip.arguments import ArgumentError

REPO = Path(__file__).resolve().parent.parent
VALUES = ["0", "-1", "1e20", "inf", "nan", str(10**30)]
#: TrainingArguments flags whose values become the doctor's facts (sources/run_config.py, derived.py)
DOCTOR_READS = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "learning_rate",
    "warmup_steps",
    "weight_decay",
    "logging_steps",
    "save_steps",
)


def _numeric(cls) -> list[tuple[str, type]]:
    """(name, int or float) for every int / float (optional or not) field of a dataclass."""
    out = []
    for f in dataclasses.fields(cls):
        kinds = set(re.findall(r"\b(int|float|str|bool|dict|list)\b", str(f.type)))
        if kinds and kinds <= {"int", "float"}:
            out.append((f.name, float if "float" in kinds else int))
    return out


KINDS = {n: k for cls in (train.ModelArguments, train.DataArguments, train.TrainingArguments) for n, k in _numeric(cls)}
_HF = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
#: the subject's own numeric flags (its dataclasses and what its TrainingArguments adds), then the
#: inherited ones the doctor reads
SUBJECT_FLAGS = sorted(n for n in KINDS if n not in _HF) + list(DOCTOR_READS)
#: the other numeric TrainingArguments flags (local_rank: torchrun sets it, never a launch)
PASS_THROUGH = sorted(n for n in KINDS if n in _HF and n not in DOCTOR_READS and n != "local_rank")


def launch(tmp_path: Path, extra: str, last: bool = False) -> Path:
    """scripts/train_tiny.sh with `extra` flags in its command: after --report_to (the flags after it,
    --seed and --dataloader_num_workers, keep the script's values) or, `last`, at its end."""
    text = (REPO / "scripts" / "train_tiny.sh").read_text()
    script = tmp_path / "launch.sh"
    anchor = "--output_dir $OUT" if last else "--report_to none"
    assert text.count(anchor) == 1
    script.write_text(text.replace(anchor, f"{anchor} {extra}"))
    return script


def check(tmp_path: Path, extra: str, last: bool = False) -> tuple[int, dict[tuple[str, str], dict]]:
    """check-config (JSON) on the tiny launch plus `extra`: exit code and findings by (code, subject)."""
    script = launch(tmp_path, extra, last)
    out = run_cli(["check-config", script, "--format", "json"], inspected=[script])
    if out.code == 2:
        return 2, {}
    findings = json.loads(out.stdout)["findings"]
    assert findings, "exit 0 / 1 without a finding"
    return out.code, {(f["code"], f["subject"] or ""): f for f in findings}


# ---- the three escapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["4", "-1"])
def test_max_seq_length_the_stretch_cannot_make_is_a_finding(synthetic_root, tmp_path, value):
    code, found = check(tmp_path, f"--max_seq_length {value}")
    assert code == 1
    fail = found[("FGD303", "--max_seq_length")]
    assert fail["status"] == "FAIL" and "fgclip.train at start-up" in fail["message"]
    assert "to exactly 248 rows" in fail["message"]  # 20 kept + 4 x (77 - 20): the subject's reason
    # the model was not built: what it decides SKIPs, citing the refusal
    assert found[("FGD202", "")]["status"] == "SKIP"
    assert "refused by fgclip.train" in found[("FGD202", "")]["message"]


def test_the_subject_refuses_the_same_long_table_itself(tiny_tokenizer):
    """The reason check-config prints is the subject's own: building the model raises it."""
    from fgclip.base_model import tiny_clip_config
    from fgclip.config import FGCLIPConfig
    from fgclip.model import FGCLIPModel

    c = tiny_clip_config(tiny_tokenizer, 64)
    for rows in (4, -1):
        cfg = FGCLIPConfig(
            text_config=c.text_config.to_dict(), vision_config=c.vision_config.to_dict(), long_text_positions=rows
        )
        with pytest.raises(ArgumentError, match="to exactly 248 rows") as err:
            FGCLIPModel(cfg)
        assert err.value.flag == "max_seq_length"


@pytest.mark.parametrize("value", ["1e39", "-3.5e38", "inf", "nan"])
def test_a_scale_init_a_float32_cannot_hold_is_refused(synthetic_root, tmp_path, value):
    """Past float32's largest value torch's fill_ raised RuntimeError (a traceback from check-config):
    now the subject refuses it at start-up, and check-config names the flag with that reason."""
    with pytest.raises(ArgumentError, match="float32 parameters"):
        train.parse(["--output_dir", str(tmp_path / "out"), f"--logit_scale_init_value={value}"])
    code, found = check(tmp_path, f"--logit_scale_init_value={value}")
    fail = found[("FGD303", "--logit_scale_init_value")]
    assert code == 1 and fail["status"] == "FAIL" and "float32 parameters" in fail["message"], fail


@pytest.mark.parametrize("epochs", ["inf", "nan", "1e308"])
def test_epochs_that_count_no_finite_run_leave_its_length_unknown(synthetic_root, tmp_path, epochs):
    """num_train_epochs inf / nan / 1e308 under --max_steps -1: math.ceil raised OverflowError or
    ValueError (a traceback); now the run's length is unknown and says why."""
    from fgclip_doctor.units import steps_for_epochs

    assert steps_for_epochs(512, float(epochs), 8, 1, 1) is None
    assert steps_for_epochs(512, 2.5, 8, 1, 1) == 160
    code, found = check(tmp_path, f"--max_steps -1 --num_train_epochs {epochs}")
    assert code in (0, 1) and not [f for f in found.values() if f["status"] == "FAIL"]
    skipped = [f["message"] for f in found.values() if f["status"] == "SKIP"]
    assert any(f"num_train_epochs {float(epochs):g} counts no finite run" in m for m in skipped), skipped


@pytest.mark.parametrize("value", ["3.4e38", "-3.4e38"])
def test_a_scale_init_a_float32_holds_is_not_refused(synthetic_root, tmp_path, value):
    code, found = check(tmp_path, f"--logit_scale_init_value={value}")
    assert ("FGD303", "--logit_scale_init_value") not in found and code == 1  # FGD102 FAILs the scale itself
    assert found[("FGD102", "finegrained")]["status"] == "FAIL"


def test_a_logit_scale_too_large_for_a_float_temperature_is_a_finding(synthetic_root, tmp_path):
    code, found = check(tmp_path, "--logit_scale_init_value 99999999999999999999")
    assert code == 1
    for scale in ("finegrained", "hardneg"):
        fail = found[("FGD102", scale)]
        assert fail["status"] == "FAIL" and "(T inf)" in fail["measured"], fail


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("memory_bank_size", "-1", "needs at least one row"),
        ("memory_bank_size", "0", "needs at least one row"),
        ("gradient_accumulation_steps", "0", "must be at least 1"),
        ("per_device_train_batch_size", "-1", "must be at least 1"),
    ],
)
def test_subject_refusals_at_start_up_are_the_subjects(synthetic_root, tmp_path, flag, value, why):
    """fgclip.train's own parse refuses the value with the reason check-config prints."""
    with pytest.raises(ArgumentError, match=why):
        train.parse(["--output_dir", str(tmp_path / "out"), f"--{flag}", value])
    code, found = check(tmp_path, f"--{flag} {value}")
    fail = found[("FGD303", f"--{flag}")]
    assert code == 1 and fail["status"] == "FAIL" and why in fail["message"]


# ---- every numeric flag at every hostile value ----------------------------------------------------


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("flag", SUBJECT_FLAGS)
def test_subject_numeric_flag(synthetic_root, tmp_path, flag, value):
    code, found = check(tmp_path, f"--{flag} {value}")
    untypable = KINDS[flag] is int and not re.fullmatch(r"-?\d+", value)
    if untypable:  # 1e20, inf, nan for an int flag: its parser rejects it, and the doctor says so
        assert found[("FGD303", f"--{flag}")]["status"] == "FAIL"


@pytest.mark.parametrize("value", VALUES)
def test_every_other_numeric_training_flag_at_once(synthetic_root, tmp_path, value):
    """The TrainingArguments flags the doctor does not read, all at `value` in one launch."""
    assert len(PASS_THROUGH) > 15, PASS_THROUGH  # the parser's numeric fields were found
    check(tmp_path, " ".join(f"--{n} {value}" for n in PASS_THROUGH))


def test_an_earlier_occurrence_the_parser_refuses_is_a_finding_at_its_line(synthetic_root, tmp_path):
    # `--seed 1e20` before the script's own `--seed 0`: argparse types both, and dies on the first
    code, found = check(tmp_path, "--seed 1e20")
    assert code == 1
    fail = found[("FGD303", "--seed")]
    assert fail["status"] == "FAIL" and "--seed 1e20 is rejected" in fail["message"]
    line = next(i for i, text in enumerate((tmp_path / "launch.sh").read_text().splitlines(), 1) if "1e20" in text)
    assert [source.rsplit("/", 1)[-1] for source in fail["sources"]] == [f"launch.sh:{line} --seed"]
    code, found = check(tmp_path, "--seed 7")  # typable: the last occurrence wins, nothing to say
    assert ("FGD303", "--seed") not in found


@pytest.mark.parametrize("value", ["0", "-3", str(-(10**400))])
def test_max_boxes_that_keep_no_box_fail_the_region_term(synthetic_root, tmp_path, value):
    # the subject's loader keeps a box while fewer than max_boxes are kept: none at 0 or below, and the
    # run then trains the global loss alone, silently (its logs have no region_loss)
    code, found = check(tmp_path, f"--max_boxes {value}")
    assert code == 1
    region = found[("FGD201", "region")]
    assert region["status"] == "FAIL" and "no box reaches the region term" in region["message"], region


def test_max_boxes_of_one_keeps_the_region_term(synthetic_root, tmp_path):
    code, found = check(tmp_path, "--max_boxes 1")
    assert found[("FGD201", "region")]["status"] == "PASS", found[("FGD201", "region")]


# ---- any value, any numeric flag, a few at once -----------------------------------------------------

HUGE = 10**400  # past every float: int("1" + 400 zeros) is fine, float() of it overflows
SPECIAL = ["0", "-1", "1e20", "inf", "-inf", "nan", "1e39", "-1e39", "1e308", "1e309", "-0.0", str(HUGE), str(-HUGE)]
values = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(min_value=-(2**130), max_value=2**130).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"{x:e}"),
)
#: (flag, value) pairs: several, so that one flag can open another's branch (--max_steps -1 makes
#: check-config count num_train_epochs); a flag given twice takes its last value, as argparse does, once
#: every occurrence has been typed
FORMS = st.sampled_from([" ", "="])  # `--x v` or `--x=v`
pairs = st.lists(st.tuples(st.sampled_from(SUBJECT_FLAGS + PASS_THROUGH), values, FORMS), min_size=1, max_size=3)


def _untypable(flag: str, value: str, sep: str) -> bool:
    """The subject's parser refuses it: an int flag's value that is no integer, or (as `--x v`) a value
    that starts with '-' and is no number to argparse (`-1e39`, `-inf`: "expected one argument")."""
    if KINDS[flag] is int and not re.fullmatch(r"-?\d+", value):
        return True
    return sep == " " and value.startswith("-") and not re.fullmatch(r"-\d+|-\d*\.\d+", value)


@fuzz_settings(12)
@given(pairs)
@example([("max_seq_length", "4", " ")])  # the three escapes of issue 20, then those the fuzzing found
@example([("max_seq_length", "-1", " ")])
@example([("logit_scale_init_value", "99999999999999999999", " ")])
@example([("logit_scale_init_value", "1e39", " ")])
@example([("max_steps", "-1", " "), ("num_train_epochs", "inf", " ")])
@example([("max_steps", "-1", " "), ("num_train_epochs", "1e308", "=")])
@example([("logit_scale_init_value", "-1e39", "=")])
@example([("per_device_train_batch_size", str(HUGE), " ")])  # found by the 10,000-example run: float overflow
@example([("max_boxes", str(-HUGE), " ")])  # found by the 10,000-example run: the mean boxes overflowed
@example([("seed", "1e20", " ")])  # the script's own `--seed 0` comes after: the run still dies at start
def test_numeric_flags_at_any_value(synthetic_root, tmp_path, pairs):
    """Every numeric flag of the subject at any value (0, -1, 1e20, inf, nan, past float32 and float64,
    huge integers), a few at once: findings (exit 0 / 1), or one error line and exit 2, never a
    traceback (run_cli's contract). A value an int flag's parser cannot type is a FAIL naming a flag."""
    # before the script's own --seed 0 --dataloader_num_workers 0: argparse types every occurrence of a
    # flag, so `--seed 1e20 ... --seed 0` dies at start though its last value is fine, and the doctor says so
    code, found = check(tmp_path, " ".join(f"--{flag}{sep}{value}" for flag, value, sep in pairs))
    assert code in (0, 1)  # a launch with odd values is judged, never refused as the doctor's input
    if any(_untypable(flag, value, sep) for flag, value, sep in pairs):
        refused = {subject for (rule, subject), f in found.items() if rule == "FGD303" and f["status"] == "FAIL"}
        assert refused & {f"--{flag}" for flag, _value, _sep in pairs}, sorted(found)
