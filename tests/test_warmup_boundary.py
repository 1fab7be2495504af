"""One truth for the bank's switch-on boundary: the subject's real RegionMemoryBank, the shared
definition (fgclip/warmup.py) and check-config's verdicts agree at warmup - 1, warmup, warmup + 1.

The bank counts forward calls from 1 and switches on at the call that reaches its warmup, so a
warmup of 320 in a 40-step run at accumulation 8 (320 forward calls) switches on at the run's last
call: reached. check-config once FAILed that launch "never reached" (its calls branch compared
`warmup < calls`) while its steps branch said reached.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fuzz_cli import run_cli

from fgclip.memory_bank import RegionMemoryBank
from fgclip.warmup import reached, switch_on_at
from fgclip_doctor.checks.schedule import warmup_timing
from fgclip_doctor.facts import Facts
from fgclip_doctor.units import switch_on_step

REPO = Path(__file__).resolve().parent.parent
#: (gradient accumulation, optimizer steps): the issue's run, no accumulation, an odd one
RUNS = [(8, 40), (1, 5), (3, 7)]


def run_bank(warmup: int, calls: int) -> RegionMemoryBank:
    """The subject's bank through `calls` training forward calls, in the order the model's
    region loss uses it (tick, read the queue when active, enqueue this call's keys)."""
    bank = RegionMemoryBank(4, size=8, warmup_forward_calls=warmup)
    keys, ids = torch.eye(4)[:2], torch.arange(2)
    for _ in range(calls):
        if bank.tick():
            bank.candidates()
        bank.enqueue(keys, ids)
    return bank


@pytest.mark.parametrize(("accum", "steps"), RUNS)
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_real_bank_and_the_shared_definition_agree(accum, steps, offset):
    calls = steps * accum
    warmup = calls + offset  # the boundary: warmup - 1, warmup, warmup + 1 calls in the run
    bank = run_bank(warmup, calls)
    switched = int(bank.enabled_at_call) >= 0
    assert switched == (offset <= 0)  # the bank itself: on exactly when its warmup is <= the calls
    assert reached(calls, warmup) is switched
    if switched:
        assert int(bank.enabled_at_call) == switch_on_at(warmup) == warmup
    # the doctor's timing, in both of its branches (calls known; only steps known)
    facts = Facts()
    facts.set("bank.warmup_forward_calls", warmup, "test")
    facts.set("train.grad_accum", accum, "test")
    facts.set("train.optimizer_steps", steps, "test")
    assert warmup_timing(facts).reached is switched
    steps_only = Facts()
    steps_only.set("bank.switch_on_step", switch_on_step(warmup, accum), "test")
    steps_only.set("train.optimizer_steps", steps, "test")
    assert warmup_timing(steps_only).reached is switched


@pytest.mark.parametrize("warmup", [0, 1, 2])
def test_small_warmups_switch_on_at_the_first_call_they_can(warmup):
    """Warmups 0 and 1 both switch on at call 1 (the counter is compared after it is advanced)."""
    bank = run_bank(warmup, 3)
    assert int(bank.enabled_at_call) == switch_on_at(warmup) == max(warmup, 1)
    assert switch_on_step(warmup, 8) == 1  # call 1 or 2 falls in optimizer step 1, never "step 0"
    assert not reached(0, warmup)  # a run without a forward call reaches nothing


def _verdicts(tmp_path: Path, warmup: int) -> dict[tuple[str, str], str]:
    text = (REPO / "scripts" / "train_tiny.sh").read_text()
    text = text.replace("--memory_bank_warmup_steps 50", f"--memory_bank_warmup_steps {warmup}")
    text = text.replace("--gradient_accumulation_steps 1", "--gradient_accumulation_steps 8")
    text = text.replace("--max_steps 60", "--max_steps 40")
    script = tmp_path / f"warmup_{warmup}.sh"
    script.write_text(text)
    out = run_cli(["check-config", script, "--format", "json"], inspected=[script])
    return {(f["code"], f["subject"] or ""): f["status"] for f in json.loads(out.stdout)["findings"]}


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_check_config_verdict_is_the_real_banks(synthetic_root, tmp_path, offset):
    """--memory_bank_warmup_steps 319 / 320 / 321, accumulation 8, --max_steps 40: the real bank
    switches on for 319 and 320 (at the last call), never for 321; check-config says the same."""
    warmup = 320 + offset
    switched = int(run_bank(warmup, 320).enabled_at_call) >= 0
    verdicts = _verdicts(tmp_path, warmup)
    want = "PASS" if switched else "FAIL"
    assert verdicts[("FGD301", "bank warmup")] == want
    assert verdicts[("FGD202", "")] == want
    assert verdicts[("FGD201", "region")] == want
