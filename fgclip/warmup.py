"""When a warmup counted in events (forward calls, or optimizer steps) has switched something on.

The one definition shared by the subject's memory bank (`RegionMemoryBank.tick`) and the
doctor's rules (fgclip_doctor/units.py imports it): imports nothing, so the doctor can read it
without torch.

Counts start at 1: the bank adds one to its counter, then compares. Event `n` has reached a
warmup `w` when n >= w, so a warmup of 0 or 1 switches on at the first event, and a run of N
events reaches warmup w exactly when N >= max(w, 1). Warmup 320 in a run of 320 forward calls
(40 optimizer steps at accumulation 8) switches on at the run's last forward call: reached.
"""

from __future__ import annotations


def switch_on_at(warmup: int) -> int:
    """The event (counted from 1) at which a warmup of `warmup` events switches on."""
    return max(int(warmup), 1)


def reached(events: int, warmup: int) -> bool:
    """True once `events` events (the latest one's number, counted from 1) have reached the warmup:
    the bank's test at each forward call, and the doctor's for a whole run of `events` calls."""
    return int(events) >= switch_on_at(warmup)
