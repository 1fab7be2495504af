"""Device-side accumulators: sums, minima and maxima updated in hooks without host syncs.

A hook adds a row of 0-dim tensors (`add`), and `read()` brings everything back in ONE
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

    def add(self, sums: list[torch.Tensor], mins: list[torch.Tensor] = (), maxs: list[torch.Tensor] = ()) -> None:
        """Accumulate one observation; every entry is a 0-dim tensor (or a Python number)."""
        device = next((t.device for t in (*sums, *mins, *maxs) if isinstance(t, torch.Tensor)), "cpu")
        if self._sums is None:
            self._alloc(device)

        def vec(values):
            return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])

        self._sums += vec(sums)
        if self.min_names:
            torch.minimum(self._mins, vec(mins), out=self._mins)
        if self.max_names:
            torch.maximum(self._maxs, vec(maxs), out=self._maxs)

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
    flat = torch.cat([t.reshape(-1).to("cpu" if t.device.type == "meta" else t.device) for a in live.values()
                      for t in a.tensors()])
    values = flat.tolist()  # the one sync of the interval
    out, i = {}, 0
    for key, acc in live.items():
        n = len(acc.sum_names) + len(acc.min_names) + len(acc.max_names)
        out[key] = acc.unpack(values[i:i + n])
        i += n
        if reset:
            acc.reset()
    return out
