"""DoctorCallback: the probes plus the live rules, for users' own long runs (and `live`).

    from fgclip_doctor.callback import DoctorCallback
    DoctorCallback(interval=50, abort_on="fail", base_facts=facts).attach(trainer)

The probes (probes/callback.py) measure; this module gives them their judge: at each read-back
the probe record becomes facts on top of `base_facts` (sources/live.py) and the live ("L")
rules run on them (checks/). Sits above checks and sources; probes never import either.
"""

from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, run_rules
from fgclip_doctor.facts import Facts
from fgclip_doctor.probes.callback import ProbeCallback
from fgclip_doctor.probes.record import ProbeRecord
from fgclip_doctor.settings import Settings
from fgclip_doctor.sources.live import observed_facts


class DoctorCallback(ProbeCallback):
    """ProbeCallback judged by the live rules; `abort_on="fail"` judges only with `base_facts`
    (the launch's facts: the expectations the measurements are held to)."""

    def __init__(
        self,
        interval: int = 5,
        abort_on: str | None = None,
        rank: int = 0,
        settings: Settings | None = None,
        base_facts: Facts | None = None,
    ) -> None:
        self.settings, self.base_facts = settings, base_facts
        super().__init__(interval, abort_on, rank, judge=self.judge_record if base_facts is not None else None)

    def judge_record(self, record: ProbeRecord) -> list[Finding]:
        """The live rules' findings on the record's facts over `base_facts`."""
        facts = observed_facts(record, self.base_facts)
        return run_rules(facts, "L", self.settings, command="live")
