"""DoctorCallback: the probes plus the live rules, for users' own long runs (and `live`).

    from fgclip_doctor.callback import DoctorCallback
    trainer.add_callback(DoctorCallback(interval=50, abort_on="fail"))

The probes (probes/callback.py) measure; this module gives them their judge: at each read-back
the probe record becomes facts (sources/live.py) and every live ("L") rule runs on them
(checks/): loss against chance, candidates, logits, gradients, scales, the bank. Rules whose
facts a bare run cannot give (the launch's intended batch, warmup, bank size) say SKIP;
`base_facts` (what `check-config` collects from the launch) adds them. Sits above checks and
sources; probes never import either.
"""

from __future__ import annotations

from pathlib import Path

from fgclip_doctor.checks.registry import Finding, run_rules
from fgclip_doctor.facts import Facts
from fgclip_doctor.probes.callback import ProbeCallback, StepObserver
from fgclip_doctor.probes.record import ProbeRecord
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.launch.target import read_target
from fgclip_doctor.sources.live import observed_facts
from fgclip_doctor.sources.run_config import collect_facts


class DoctorCallback(ProbeCallback):
    """ProbeCallback judged by the live rules at every read-back; `abort_on="fail"` stops the
    run at the first FAIL ("warn": at the first WARN or FAIL). `base_facts`: the launch's facts,
    the expectations the measurements are also held to. `sites` / `unplaced`: where the static
    reader placed the probes in code the doctor did not write (the facts code.probe_sites /
    code.probe_unplaced; `live` passes them), None: the bundled subject's own classes."""

    def __init__(
        self,
        interval: int = 5,
        abort_on: str | None = None,
        rank: int | None = None,
        settings: Settings | None = None,
        base_facts: Facts | None = None,
        step_observer: StepObserver | None = None,
        sites: list[dict] | None = None,
        unplaced: dict[str, str] | None = None,
    ) -> None:
        self.settings, self.base_facts = settings, base_facts
        super().__init__(
            interval,
            abort_on,
            rank,
            judge=self.judge_record,
            step_observer=step_observer,
            sites=sites,
            unplaced=unplaced,
        )

    def judge_record(self, record: ProbeRecord) -> list[Finding]:
        """The live rules' findings on the record's facts (over `base_facts` when given)."""
        facts = observed_facts(record, self.base_facts, world_size=record.world_size)
        if "run.world_size" not in facts:
            facts.set("run.world_size", record.world_size, "live: TrainingArguments.world_size")
        return run_rules(facts, "L", self.settings, command="live")


def launch_facts(target: str | Path, dataset_size: int | None = None) -> Facts:
    """What `check-config TARGET` reads from a launch script or args file, as `base_facts`."""
    return collect_facts(read_target(Path(target)), dataset_size)
