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


def recent_fall(points: list[tuple[int, float]], window: int = 5) -> tuple[float, float] | None:
    """How far a series fell over its last `window` finite logs, and its own noise there:
    (drop, noise) from the least-squares line through them, drop = -slope x (last step - first),
    noise = the standard deviation of the residuals about that line. None with fewer than 3 logs."""
    pts = [(float(s), v) for s, v in points if math.isfinite(v)][-window:]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx, my = sum(s for s, _ in pts) / n, sum(v for _, v in pts) / n
    sxx = sum((s - mx) ** 2 for s, _ in pts)
    if sxx == 0:
        return None
    slope = sum((s - mx) * (v - my) for s, v in pts) / sxx
    resid = [v - (my + slope * (s - mx)) for s, v in pts]
    noise = math.sqrt(sum(r * r for r in resid) / (n - 2)) if n > 2 else 0.0
    return -slope * (pts[-1][0] - pts[0][0]), noise
