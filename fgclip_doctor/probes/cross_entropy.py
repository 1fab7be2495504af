"""The generic probe: every `torch.nn.functional.cross_entropy` call during a run, measured; and
every sigmoid contrastive loss (SigLIP, FG-CLIP 2): `F.logsigmoid` / `F.binary_cross_entropy_with_logits`
on a 2-D [rows, candidates] logits matrix.

Works on training code the doctor has never seen. A contrastive loss hands cross-entropy a
logits matrix [rows, candidates] and the index of each row's positive, so each call tells:
candidates per positive (columns; finite ones only, so masked queue entries do not count),
chance level ln(candidates), the positive's logit vs the hardest negative, the logit range
and dtype, and whether targets sit at rank x rows + i (the DDP offset). Calls are named by the
loss term the subject probe announces, else by call site (`file.py:line function`).

On code the doctor did not write, the placed probe (probes/placed.py) enters the term whose own
function is running (`enter` / `leave`): while one runs, a TorchFunctionMode (torch's own hook
for functions called on tensors) sees its loss calls, wherever they were imported from, and
nothing of torch.nn.functional is replaced. The global patch of `install(patch=True)` stays the
fallback for calls outside any placed term, named by call site.

A sigmoid loss scores every (row, candidate) pair on its own. `logsigmoid` gets the signed
logits z * l (z = +1 on the diagonal, the positives, -1 elsewhere, as SigLIP builds them);
BCE-with-logits gets l and the 0/1 labels. Its loss is measured the SigLIP way, summed over a
row's candidates and averaged over rows, whatever the code then reduces, so that it compares
with the sigmoid chance level (sources/derived.py derives it: about ln N + 1).
"""

from __future__ import annotations

import inspect
import math
import os

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

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
    "chance",  # ln(candidates) for softmax, the sigmoid chance level for sigmoid calls
    "sigmoid",  # 1 for a sigmoid call
)
MINS = ("logit_min",)
MAXS = ("logit_max", "abs_max")
_TORCH_DIR = os.path.dirname(torch.__file__)


def call_site(skip_dirs: tuple[str, ...] = (_TORCH_DIR,)) -> str:
    """`file.py:line function` of the first frame outside torch (and this probe): the name of a
    loss term the reader could not place (the fallback), read from the caller's stack."""
    frame = inspect.currentframe()
    while frame is not None and (
        frame.f_code.co_filename.startswith(skip_dirs) or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back
    if frame is None:
        return "unknown"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}"


def ce_observation(logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, rank: int, sigmoid: bool = False):
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
    if sigmoid:  # ln N + (N - 1) ln(N / (N - 1)) per row (sources/derived.py chance_level)
        m = n_eff.clamp(min=2.0)
        chance = (m.log() + (m - 1) * (m / (m - 1)).log()).mean()
    else:
        chance = ln_c
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
            chance,
            one * float(sigmoid),
        ]
    )
    xmin = torch.where(finite, x, math.inf).amin()
    xmax = torch.where(finite, x, -math.inf).amax()
    return sums, xmin.reshape(1), torch.stack([xmax, torch.maximum(xmax.abs(), xmin.abs())])


class _TermMode(TorchFunctionMode):
    """Sees the loss calls made while a placed term's function runs (the probe's `enter`)."""

    def __init__(self, probe: CrossEntropyProbe) -> None:
        super().__init__()
        self.probe = probe

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in LOSS_CALLS and args and isinstance(args[0], torch.Tensor):
            LOSS_CALLS[name](self.probe, out, *args, **kwargs)
        return out


def _seen_ce(probe, out, input, target=None, *args, **kwargs):
    probe.observe(input, target, out)


def _seen_logsigmoid(probe, out, input, *args, **kwargs):
    if input.dim() == 2 and 2 <= input.shape[0] <= input.shape[1]:
        # SigLIP: input = z * logits, z = 2 eye - 1; the loss of a row is -sum_j out[i, j]
        eye = torch.eye(*input.shape, device=input.device, dtype=torch.bool)
        unsigned = torch.where(eye, input, -input).detach()
        probe.observe_sigmoid(unsigned, eye, -out.detach().float().sum(1))


def _seen_bce(probe, out, input, target=None, *args, **kwargs):
    if (
        target is not None
        and input.dim() == 2
        and target.shape == input.shape
        and 2 <= input.shape[0] <= input.shape[1]
    ):
        bce = getattr(F.binary_cross_entropy_with_logits, "__wrapped__", F.binary_cross_entropy_with_logits)
        with torch.no_grad():
            rows = bce(input.detach().float(), target.detach().float(), reduction="none").sum(1)
        probe.observe_sigmoid(input.detach(), target.detach() > 0.5, rows)


#: loss primitives by the name torch hands a TorchFunctionMode
LOSS_CALLS = {
    "cross_entropy": _seen_ce,
    "log_sigmoid": _seen_logsigmoid,
    "binary_cross_entropy_with_logits": _seen_bce,
}


class CrossEntropyProbe:
    """Per-term accumulators and column history of the loss calls of a run: calls inside a placed
    term (`enter`) through a TorchFunctionMode, the others through a patch of F (`install`)."""

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
        self._terms: list[list] = []  # [term, its loss calls so far]: the placed terms running, innermost last
        self._mode = _TermMode(self)

    def enter(self, term: str) -> None:
        """A placed term's own function starts: its loss calls are `term` (then `term/reverse`)."""
        self._terms.append([term, 0])
        if len(self._terms) == 1:
            self._mode.__enter__()

    def leave(self) -> None:
        """That function returned (or raised)."""
        if self._terms:
            self._terms.pop()
            if not self._terms:
                self._mode.__exit__(None, None, None)

    def _one(self, like: torch.Tensor) -> torch.Tensor:
        one = self._ones.get(like.device)
        if one is None:
            one = self._ones[like.device] = torch.ones((), device=like.device)
        return one

    def term_name(self) -> str:
        if self._terms:
            frame = self._terms[-1]
            frame[1] += 1
            return frame[0] if frame[1] == 1 else f"{frame[0]}/reverse"
        if self.current_term is None:
            return call_site()
        self.calls_in_term += 1
        # A head's first cross-entropy is its primary direction (image->text, box->caption).
        return self.current_term if self.calls_in_term == 1 else f"{self.current_term}/reverse"

    def observe(self, logits, target, loss, sigmoid: bool = False) -> None:
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
            acc.add(*ce_observation(logits, target, loss, self.rank, sigmoid))
        self.calls += 1
        cols = self.columns.setdefault(term, [])
        if not cols or cols[-1][1] != logits.shape[1]:
            cols.append(ColumnChange(self.forward_call, int(logits.shape[1])))  # shapes are host ints: no sync
        self.rows[term] = int(logits.shape[0])
        self.dtypes[term] = str(logits.dtype)

    def observe_sigmoid(self, logits: torch.Tensor, positives: torch.Tensor, row_loss: torch.Tensor) -> None:
        """A sigmoid loss: unsigned logits [N, C], the positives' mask, the loss of each row [N]."""
        if logits.dim() != 2 or logits.shape[0] < 2 or logits.shape[0] > logits.shape[1]:
            return  # not a [rows, candidates] contrastive matrix
        self.observe(logits, positives.float().argmax(1), row_loss, sigmoid=True)

    def install(self, patch: bool = True) -> CrossEntropyProbe:
        """Patch cross_entropy, logsigmoid and binary_cross_entropy_with_logits in
        torch.nn.functional (module attributes: every caller goes through them); with
        `patch=False` only placed terms are measured (through the mode)."""
        if not patch:
            return self
        self._original = {n: getattr(F, n) for n in ("cross_entropy", "logsigmoid", "binary_cross_entropy_with_logits")}
        ce, logsig, bce = self._original.values()
        probe = self

        # Inside a placed term the mode observes (it sees this wrapper as the function called).
        def cross_entropy(input, target, *args, **kwargs):
            out = ce(input, target, *args, **kwargs)
            if not probe._terms:
                _seen_ce(probe, out, input, target)
            return out

        def logsigmoid(input, *args, **kwargs):
            out = logsig(input, *args, **kwargs)
            if not probe._terms:
                _seen_logsigmoid(probe, out, input)
            return out

        def binary_cross_entropy_with_logits(input, target, *args, **kwargs):
            out = bce(input, target, *args, **kwargs)
            if not probe._terms:
                _seen_bce(probe, out, input, target)
            return out

        for name, fn in zip(self._original, (cross_entropy, logsigmoid, binary_cross_entropy_with_logits)):
            fn.__wrapped__ = self._original[name]
            setattr(F, name, fn)
        return self

    def remove(self) -> None:
        while self._terms:  # a term left open by an error the hooks did not see
            self.leave()
        if self._original:
            for name, fn in self._original.items():
                setattr(F, name, fn)
            self._original = None
