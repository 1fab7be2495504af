"""Device-side accumulators: sums, minima and maxima updated in hooks without host syncs.

A hook adds one stacked row per buffer (`add`), and `read_all` brings everything back in ONE
`.tolist()` per interval. Nothing here calls `.item()`, `.cpu()` or branches on a tensor value.
"""

from __future__ import annotations

import math

import torch


class Accumulator:
    """Named sums / mins / maxes on one device; lazily allocated at the first `add`."""

    def __init__(self, sums: tuple[str, ...], mins: tuple[str, ...] = (), maxs: tuple[str, ...] = ()) -> None:
        self.sum_names, self.min_names, self.max_names = sums, mins, maxs
        self._sums = self._mins = self._maxs = None

    def _alloc(self, device) -> None:
        self._sums = torch.zeros(len(self.sum_names), dtype=torch.float64, device=device)
        self._mins = torch.full((len(self.min_names),), math.inf, dtype=torch.float64, device=device)
        self._maxs = torch.full((len(self.max_names),), -math.inf, dtype=torch.float64, device=device)

    def add(self, sums, mins=None, maxs=None) -> None:
        """Accumulate one observation: `sums` / `mins` / `maxs` are 1-D device tensors in name
        order (one stacked tensor each: a single in-place op per buffer, no per-value work)."""
        if self._sums is None:
            self._alloc(sums.device)
        self._sums += sums
        if mins is not None:
            torch.minimum(self._mins, mins.to(self._mins.dtype), out=self._mins)
        if maxs is not None:
            torch.maximum(self._maxs, maxs.to(self._maxs.dtype), out=self._maxs)

    def tensors(self) -> list[torch.Tensor]:
        """The raw device buffers (for a single batched read-back across accumulators)."""
        if self._sums is None:
            return []
        return [self._sums, self._mins, self._maxs]

    def unpack(self, values: list[float]) -> dict[str, float]:
        """Turn the read-back values (sums, mins, maxs concatenated) into a dict."""
        names = self.sum_names + self.min_names + self.max_names
        return dict(zip(names, values))

    def reset(self) -> None:
        if self._sums is not None:
            self._sums.zero_()
            self._mins.fill_(math.inf)
            self._maxs.fill_(-math.inf)


def read_all(accumulators: dict[str, Accumulator], reset: bool = True) -> dict[str, dict[str, float]]:
    """Read every accumulator back with one host transfer; reset them for the next interval."""
    live = {k: a for k, a in accumulators.items() if a.tensors()}
    if not live:
        return {}
    flat = torch.cat(
        [t.reshape(-1).to("cpu" if t.device.type == "meta" else t.device) for a in live.values() for t in a.tensors()]
    )
    values = flat.tolist()  # the one sync of the interval
    out, i = {}, 0
    for key, acc in live.items():
        n = len(acc.sum_names) + len(acc.min_names) + len(acc.max_names)
        out[key] = acc.unpack(values[i : i + n])
        i += n
        if reset:
            acc.reset()
    return out
