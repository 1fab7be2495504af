"""Logged series, [(optimizer step, value), ...] in step order: the value at a step, the trend.

Ground floor: pure functions, imports nothing of ours. Sources read series from trainer_state.json
or the live probes; checks judge them (loss milestones); commands show them.
"""

from __future__ import annotations

import math


def value_at(points: list[tuple[int, float]], step: int, interval: int | None = None) -> tuple[int, float] | None:
    """(logged step, value) of the log nearest to `step` (earlier wins a tie), or None when the
    run has not reached `step` (the last log is more than one logging interval before it)."""
    if not points:
        return None
    gap = interval or (points[-1][0] - points[-2][0] if len(points) > 1 else 0)
    if step > points[-1][0] + max(gap, 0) // 2:
        return None
    return min(points, key=lambda p: (abs(p[0] - step), p[0]))


def trend(points: list[tuple[int, float]]) -> str:
    """falling / flat / rising: mean of the last third against the first third (5 % band)."""
    vals = [v for _, v in points if math.isfinite(v)]
    if len(vals) < 3:
        return "too short"
    third = max(1, len(vals) // 3)
    a, b = sum(vals[:third]) / third, sum(vals[-third:]) / third
    if abs(b - a) <= 0.05 * max(abs(a), 1e-12):
        return "flat"
    return "falling" if b < a else "rising"
