"""The generic probe: every `torch.nn.functional.cross_entropy` call during a run, measured.

Works on training code the doctor has never seen. A contrastive loss hands cross-entropy a
logits matrix [rows, candidates] and the index of each row's positive, so each call tells:
candidates per positive (columns; finite ones only, so masked queue entries do not count),
chance level ln(candidates), the positive's logit vs the hardest negative, the logit range
and dtype, and whether targets sit at rank x rows + i (the DDP offset). Calls are named by the
loss term the subject probe announces, else by call site (`file.py:line function`).
"""

from __future__ import annotations

import math
import os
import sys

import torch
import torch.nn.functional as F

from fgclip_doctor.probes.accumulator import Accumulator
from fgclip_doctor.probes.record import ColumnChange

SUMS = (
    "calls",
    "rows",
    "loss",
    "ratio",
    "ln_candidates",
    "candidates",
    "pos",
    "hardest",
    "margin",
    "top1",
    "offset_ok",
    "nonfinite_loss",
)
MINS = ("logit_min",)
MAXS = ("logit_max", "abs_max")
_TORCH_DIR = os.path.dirname(torch.__file__)


def call_site(skip_dirs: tuple[str, ...] = (_TORCH_DIR,)) -> str:
    """`file.py:line function` of the first frame outside torch (and this probe)."""
    frame = sys._getframe(2)
    while frame is not None and (
        frame.f_code.co_filename.startswith(skip_dirs) or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back
    if frame is None:
        return "unknown"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}"


def ce_observation(logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, rank: int):
    """One call's statistics as stacked device tensors in SUMS / MINS / MAXS order (no host sync)."""
    x = logits.detach().float()  # [N, C]
    n, c = x.shape
    if target.dtype.is_floating_point and target.shape == logits.shape:  # soft / one-hot targets
        t = target.detach().argmax(1)
    else:
        t = target.detach().long()
    finite = torch.isfinite(x)
    pos = x.gather(1, t[:, None]).squeeze(1)  # [N]
    neg = torch.where(finite, x, -math.inf).scatter(1, t[:, None], -math.inf)
    hardest = neg.amax(1)  # [N]
    n_eff = finite.sum(1).clamp(min=1).float()  # candidates actually in each row
    ln_c = n_eff.log().mean()
    loss_v = loss.detach().float().mean()
    offset = (t == torch.arange(n, device=t.device) + rank * n).float().mean()
    top1 = (x.argmax(1) == t).float().mean()
    one = torch.ones((), device=x.device)
    sums = torch.stack(
        [
            one,
            one * n,
            loss_v,
            loss_v / ln_c.clamp(min=1e-12),
            ln_c,
            n_eff.mean(),
            pos.mean(),
            hardest.mean(),
            (pos - hardest).mean(),
            top1,
            offset,
            (~torch.isfinite(loss_v)).float(),
        ]
    )
    xmin = torch.where(finite, x, math.inf).amin()
    xmax = torch.where(finite, x, -math.inf).amax()
    return sums, xmin.reshape(1), torch.stack([xmax, torch.maximum(xmax.abs(), xmin.abs())])


class CrossEntropyProbe:
    """Wraps F.cross_entropy for the duration of a run; per-term accumulators and column history."""

    def __init__(self, rank: int = 0, sample_every: int = 5) -> None:
        self.rank = rank
        self.current_term: str | None = None  # set by the subject probe while a loss head runs
        self.calls_in_term = 0
        self.accumulators: dict[str, Accumulator] = {}
        self.columns: dict[str, list[ColumnChange]] = {}  # term -> [(forward call, columns)] on change
        self.forward_call = 0  # the model's forward calls so far (set by the callback's hook)
        self.rows: dict[str, int] = {}
        self.dtypes: dict[str, str] = {}
        self.calls = 0
        self.sample_every = max(1, sample_every)
        self.term_calls: dict[str, int] = {}
        self.losses: dict[str, Accumulator] = {}  # term -> loss sum and calls, every call
        self._ones: dict = {}
        self._original = None

    def _one(self, like: torch.Tensor) -> torch.Tensor:
        one = self._ones.get(like.device)
        if one is None:
            one = self._ones[like.device] = torch.ones((), device=like.device)
        return one

    def term_name(self) -> str:
        if self.current_term is None:
            return call_site()
        self.calls_in_term += 1
        # A head's first cross-entropy is its primary direction (image->text, box->caption).
        return self.current_term if self.calls_in_term == 1 else f"{self.current_term}/reverse"

    def observe(self, logits, target, loss) -> None:
        if logits.dim() != 2 or target is None:
            return  # not a [rows, candidates] contrastive call (e.g. token-level LM loss)
        term = self.term_name()
        acc = self.accumulators.get(term)
        if acc is None:
            acc = self.accumulators[term] = Accumulator(SUMS, MINS, MAXS)
            self.losses[term] = Accumulator(("loss_sum", "loss_calls"))
        # Every call: the loss (3 small ops). One call in `sample_every`: the full statistics
        # (about 40 small ops, which on a CPU step of ~0.1 s would cost several percent).
        self.losses[term].add(torch.stack([loss.detach().float().mean(), self._one(loss)]))
        n = self.term_calls[term] = self.term_calls.get(term, 0) + 1
        if (n - 1) % self.sample_every == 0:
            acc.add(*ce_observation(logits, target, loss, self.rank))
        self.calls += 1
        cols = self.columns.setdefault(term, [])
        if not cols or cols[-1][1] != logits.shape[1]:
            cols.append(ColumnChange(self.forward_call, int(logits.shape[1])))  # shapes are host ints: no sync
        self.rows[term] = int(logits.shape[0])
        self.dtypes[term] = str(logits.dtype)

    def install(self) -> CrossEntropyProbe:
        """Patch torch.nn.functional.cross_entropy (module attribute: every caller goes through it)."""
        original = self._original = F.cross_entropy
        probe = self

        def cross_entropy(input, target, *args, **kwargs):
            out = original(input, target, *args, **kwargs)
            probe.observe(input, target, out)
            return out

        cross_entropy.__wrapped__ = original
        F.cross_entropy = cross_entropy
        return self

    def remove(self) -> None:
        if self._original is not None:
            F.cross_entropy = self._original
            self._original = None
