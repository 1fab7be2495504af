"""Schedule rules (FGD3xx): step units. Also the warmup arithmetic shared with the bank rules.

Two units count a run: forward calls (micro-steps, one per batch per process) and optimizer
steps (one per `grad_accum` forward calls). A warmup counted in forward calls ends at optimizer
step ceil(warmup / accum); every message states both units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts

#: facts the timing below may read, in provenance order
TIMING_FACTS = ("bank.warmup_forward_calls", "train.grad_accum", "bank.switch_on_step",
                "train.optimizer_steps", "train.forward_calls")
RUN_LENGTH_UNKNOWN = ("run length unknown: give max_steps, or readable annotations / "
                      "--dataset-size with num_train_epochs")


@dataclass
class WarmupTiming:
    """When a forward-call warmup is reached, against the run's length (None = not known)."""

    warmup: int | None  # forward calls
    accum: int | None
    switch_on_step: int | None  # optimizer step the warmup is reached in
    steps: int | None  # optimizer steps in the run
    calls: int | None  # forward calls in the run (per process)

    @property
    def reached(self) -> bool | None:
        """True when the warmup ends before the run does (early enough to be used), else False."""
        if self.warmup is not None and self.calls is not None:
            return self.warmup < self.calls
        if self.switch_on_step is not None and self.steps is not None:
            return self.switch_on_step <= self.steps
        return None

    def warmup_text(self) -> str:
        """'400 forward calls = optimizer step 50 at gradient accumulation 8'."""
        if self.warmup is None:
            return f"optimizer step {self.switch_on_step}"
        if self.switch_on_step is None:
            return f"{self.warmup} forward calls"
        return (f"{self.warmup} forward calls = optimizer step {self.switch_on_step} at gradient "
                f"accumulation {self.accum}")

    def run_text(self) -> str:
        """'the run ends at optimizer step 40 (320 forward calls)'."""
        calls = f" ({self.calls} forward calls)" if self.calls is not None else ""
        return f"the run ends at optimizer step {self.steps}{calls}"


def warmup_timing(facts: Facts) -> WarmupTiming:
    """The bank warmup vs the run, from whichever of TIMING_FACTS are known."""
    warmup = facts.value("bank.warmup_forward_calls")
    accum = facts.value("train.grad_accum")
    steps = facts.value("train.optimizer_steps")
    calls = facts.value("train.forward_calls")
    switch = facts.value("bank.switch_on_step")
    if switch is None and warmup is not None and accum:
        switch = math.ceil(int(warmup) / int(accum))
    if calls is None and steps is not None and accum:
        calls = int(steps) * int(accum)
    if steps is None and calls is not None and accum:
        steps = math.ceil(int(calls) / int(accum))
    return WarmupTiming(*(None if v is None else int(v) for v in (warmup, accum, switch, steps, calls)))


@rule("FGD301", "step-units", title="forward-call warmups end before the run does",
      severity="fail", where="CL",
      fix="count the warmup in optimizer steps, or divide it by the gradient accumulation "
          "(the seed: 400 -> 50 forward calls, about optimizer step 7)",
      what="A warmup counted in forward calls (micro-steps), such as the memory bank's, is "
           "converted to optimizer steps (ceil(warmup / accumulation)) and compared with the "
           "run's length; both units are reported.",
      why="Trainer logs, max_steps and save_steps count optimizer steps; code that counts its "
          "own forward calls runs `accumulation` times faster. With accumulation 8, a warmup of "
          "400 forward calls is optimizer step 50: a 40-step run never reaches it and the bank "
          "never switches on, silently.",
      example="memory_bank_warmup_steps 400, gradient_accumulation_steps 8, max_steps 40 -> "
              "FAIL: 400 forward calls = optimizer step 50; the run ends at step 40",
      evidence="the seed incident (region-loss-fix-summary: bank 'never' enabled, fixed with "
               "warmup 50 = step 6-7); transformers #18070 / #23099 on step accounting under "
               "gradient accumulation and resume.")
def step_units(facts: Facts, ctx: RuleContext) -> Finding:
    """One finding: the bank warmup against the run's end."""
    if facts.value("bank.enabled") is False:
        return ctx.skip("no memory bank in this model: no forward-call warmup to check",
                        ctx.sources_of(facts, "bank.enabled"))
    if skip := ctx.require(facts, "bank.warmup_forward_calls", "train.grad_accum"):
        return skip
    t = warmup_timing(facts)
    src = ctx.sources_of(facts, *TIMING_FACTS, "train.max_steps")
    if t.calls is None:
        return ctx.skip(RUN_LENGTH_UNKNOWN, src, "bank warmup")
    measured = f"{t.warmup} forward calls = optimizer step {t.switch_on_step}"
    expected = f"< {t.calls} forward calls (optimizer step {t.steps})"
    if not t.reached:
        return ctx.problem(measured, expected,
                           f"bank warmup {t.warmup_text()}; {t.run_text()}: never reached",
                           src, "bank warmup")
    return ctx.passed(measured, expected,
                      f"bank warmup {t.warmup_text()}; reached within the run ({t.run_text()})",
                      src, "bank warmup")
