"""DoctorCallback in a user's own Trainer: added with `add_callback` after the Trainer is built,
with nothing but `abort_on`, it judges the live rules, logs doctor/* keys and stops a run at chance.
Real, short Trainer runs of tiny models on the CPU."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
import transformers
from transformers import Trainer, TrainerCallback, TrainingArguments

from fgclip_doctor.callback import DoctorCallback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from train_plain_clip import RandomPairs, collate, tiny_clip  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Reporter(TrainerCallback):
    """Stands for TensorBoard / W&B: built with the Trainer, so before any add_callback; keeps what it is given."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.seen.append(dict(logs))


def plain_clip_trainer(
    tmp_path, lr: float, scale: float, steps: int = 60, callbacks=None, scratch: bool = False
) -> Trainer:
    """A plain transformers CLIPModel Trainer: 12 candidates per row (chance ln 12 = 2.48). A
    fine-tune (from_pretrained of a saved tiny CLIP, as a user's run starts), or with `scratch`
    the model built from its config (random weights: loss-chance waits its scratch_steps)."""
    torch.manual_seed(0)
    model = tiny_clip(scale)
    if not scratch:
        model.save_pretrained(tmp_path / "base")
        model = transformers.CLIPModel.from_pretrained(tmp_path / "base")
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=12,
        learning_rate=lr,
        max_steps=steps,
        logging_steps=5,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=RandomPairs(n=96),
        data_collator=collate,
        callbacks=callbacks,
    )


def test_loss_far_above_chance_stops_the_run_and_logs_doctor_keys(tmp_path, caplog):
    # LR 1e-9 and a logit scale of e^4.6 ~ 100: the loss sits at ~8x ln 12 and does not move.
    # As the README says: the doctor first in `callbacks=`, the reporter after it (report_to="none").
    cb, reporter = DoctorCallback(abort_on="fail"), Reporter()
    trainer = plain_clip_trainer(tmp_path, lr=1e-9, scale=4.6, callbacks=[cb, reporter])
    with caplog.at_level("WARNING", logger="fgclip_doctor"):
        trainer.train()
    stop = trainer.state.global_step
    assert 20 <= stop <= 25  # loss-chance judges from step 20 on (a trend needs a few points): not 60
    [fail] = [f for f in cb.findings if f.status == "FAIL"]
    assert fail.rule == "loss-chance" and float(fail.measured.split()[0]) > 5
    term = fail.subject
    assert "contrastive_loss" in term  # CLIP's own loss, named by its call site
    steps = [h for h in cb.logs if "loss" in h]
    assert [h["step"] for h in steps] == list(range(5, stop + 1, 5))
    assert steps[0]["doctor/fail"] == 0 and steps[0]["doctor/logit-scale-frozen/global"] == 1  # a WARN
    assert steps[-1]["doctor/fail"] == 1 and steps[-1][f"doctor/loss-chance/{term}"] == 2
    # The reporter after the doctor got the doctor/ keys in the same dict: what TensorBoard would get.
    assert reporter.seen[-1]["doctor/fail"] == 1 and f"doctor/loss-chance/{term}" in reporter.seen[-1]
    # Nothing written into the Trainer's state, nothing reordered.
    assert not [k for h in trainer.state.log_history for k in h if k.startswith("doctor/")]
    assert [type(c) for c in trainer.callback_handler.callbacks[-3:-1]] == [DoctorCallback, Reporter]
    # One line says why the run stopped (rule, subject, measured, step), then the findings.
    said = [r.getMessage() for r in caplog.records if r.name == "fgclip_doctor"]
    assert said[0] == (
        f"fgclip-doctor stopped the run at optimizer step {stop}: FAIL loss-chance ({term}), measured {fail.measured}"
    )
    assert f"FAIL loss-chance {term}: " in said[1] and "WARN logit-scale-frozen global" in said[1]
    assert cb.stopped_at == stop


def test_from_scratch_at_chance_is_not_stopped_inside_its_window(tmp_path):
    # The same stuck run from random weights (measured: no config._name_or_path): at or above
    # chance is what a run from scratch looks like for its first steps; loss-chance waits.
    trainer = plain_clip_trainer(tmp_path, lr=1e-9, scale=4.6, steps=40, scratch=True)
    cb = DoctorCallback(abort_on="fail").attach(trainer)
    trainer.train()
    assert trainer.state.global_step == 40 and cb.stopped_at is None
    chance = [f for f in cb.findings if f.rule == "loss-chance"]
    assert chance and all(f.status == "SKIP" and "random weights" in f.message for f in chance)


def test_add_callback_after_the_reporters_still_stops_and_logs(tmp_path):
    # `trainer.add_callback(cb)` (the doctor after the reporting callbacks): the run still stops;
    # the reporter before it never sees doctor/ keys, and nothing is moved to make it so.
    reporter = Reporter()
    trainer = plain_clip_trainer(tmp_path, lr=1e-9, scale=4.6, callbacks=[reporter])
    cb = DoctorCallback(abort_on="fail").attach(trainer)
    trainer.train()
    assert trainer.state.global_step < 60 and cb.stopped_at == trainer.state.global_step
    assert cb.logs[-1]["doctor/fail"] == 1
    assert not [k for seen in reporter.seen for k in seen if k.startswith("doctor/")]
    assert trainer.callback_handler.callbacks[-1] is cb


def test_a_learning_run_is_not_stopped(tmp_path):
    trainer = plain_clip_trainer(tmp_path, lr=3e-3, scale=2.6592, steps=30)
    cb = DoctorCallback(abort_on="fail")
    trainer.add_callback(cb)
    trainer.train()
    assert trainer.state.global_step == 30
    assert not [f for f in cb.findings if f.status == "FAIL"], cb.findings
    logged = [h for h in cb.logs if "loss" in h]
    assert logged and all(h["doctor/fail"] == 0 for h in logged)
    assert any(f.rule == "loss-chance" and f.status == "PASS" for f in cb.findings)


def test_warmup_from_the_trainer_args_defers_loss_chance(tmp_path):
    # The same stuck run with a 40-step LR warmup: at chance is expected during warmup, no stop before it.
    trainer = plain_clip_trainer(tmp_path, lr=1e-9, scale=4.6, steps=50)
    trainer.args.warmup_steps = 40
    cb = DoctorCallback(abort_on="fail")
    trainer.add_callback(cb)
    trainer.train()
    assert trainer.state.global_step == 40  # judged first at step 40 (>= warmup), and stopped then
    assert cb.record().trainer_args["warmup_steps"] == 40


def test_learning_rate_zero_stops_the_run(tmp_path):
    trainer = plain_clip_trainer(tmp_path, lr=0.0, scale=2.6592)
    cb = DoctorCallback(abort_on="fail")
    trainer.add_callback(cb)
    trainer.train()
    assert trainer.state.global_step <= 20  # 60 asked for
    fails = {f.rule for f in cb.findings if f.status == "FAIL"}
    assert fails and fails <= {"lr-zero", "loss-chance", "loss-plateau"}, fails
    assert cb.logs[-1]["doctor/fail"] == len([f for f in cb.findings if f.status == "FAIL"])


def test_abort_on_must_be_known():
    with pytest.raises(ValueError, match="abort_on"):
        DoctorCallback(abort_on="FAIL!")


def test_healthy_subject_run_stops_nothing_and_has_no_fail(synthetic_root, tmp_path, monkeypatch):
    from fgclip.train import main

    cb = DoctorCallback(abort_on="fail")
    original = transformers.Trainer.__init__

    def init(self, *a, **k):  # the user's script: trainer = FGCLIPTrainer(...); trainer.add_callback(cb)
        original(self, *a, **k)
        self.add_callback(cb)

    monkeypatch.setattr(transformers.Trainer, "__init__", init)
    out = tmp_path / "tiny"
    trainer = main(["--preset", "tiny", "--output_dir", str(out), "--save_strategy", "no", "--report_to", "none"])
    assert trainer.state.global_step == trainer.args.max_steps
    logged = [h for h in cb.logs if "loss" in h]
    assert logged and all(h["doctor/fail"] == 0 for h in logged), logged
    assert not [f for f in cb.findings if f.status == "FAIL"], [f for f in cb.findings if f.status == "FAIL"]
    judged = {f.rule for f in cb.findings if f.status != "SKIP"}
    assert {"loss-chance", "logit-scale-clamp", "bank-hygiene"} <= judged, judged


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("index", range(len(readme_python_blocks())))
def test_readme_callback_example_runs_as_written(tmp_path, monkeypatch, index, request):
    """Each python block of the README, run on a tiny real Trainer bound to `trainer`."""
    block = readme_python_blocks()[index]
    assert "DoctorCallback" in block
    if "launch_facts" in block:  # reads the bundled subject's launch (a compat run has no subject)
        request.getfixturevalue("subject_here")
    monkeypatch.chdir(ROOT)  # the README's paths are relative to the repository
    trainer = plain_clip_trainer(tmp_path, lr=0.0, scale=4.6, steps=60)
    reporters: list[Reporter] = []

    # TensorBoard is not installed here: a reporter stands in for it, built as the Trainer builds it
    class StandIn(Reporter):
        def __init__(self) -> None:
            super().__init__()
            reporters.append(self)

    monkeypatch.setattr(transformers.integrations, "TensorBoardCallback", StandIn)
    given = {"trainer": trainer, "model": trainer.model, "args": trainer.args}
    given.update(data=trainer.train_dataset, collate=trainer.data_collator)
    exec(compile(block, f"README.md python block {index + 1}", "exec"), given)
    trainer = given["trainer"]
    assert trainer.state.global_step == 50  # judged at step 50 (interval=50): at chance, stopped
    [cb] = [c for c in trainer.callback_handler.callbacks if isinstance(c, DoctorCallback)]
    assert cb.logs[-1]["doctor/fail"] >= 1
    assert len(reporters) == ("TensorBoardCallback" in block)
    for reporter in reporters:  # listed after the doctor: it got the doctor's keys
        assert reporter.seen[-1]["doctor/fail"] >= 1
