"""A queue of region text features used as extra negatives for the region loss (MoCo-style).

The team's extension of FG-CLIP. Two properties matter to the doctor:
- the warmup is counted in FORWARD CALLS (micro-steps), not optimizer steps: with gradient
  accumulation 8, a warmup of 400 calls is optimizer step 50;
- every piece of state is a persistent buffer, so the bank is saved in checkpoints and restored
  on resume (a non-persistent queue silently restarts random; lightly PR #993).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from fgclip import faults
from fgclip.arguments import ArgumentError, bank_size_problem
from fgclip.warmup import reached

DIAG_ENV = "ENABLE_RUNTIME_DIAG"


class RegionMemoryBank(nn.Module):
    """FIFO queue of detached, L2-normalised region caption features and their caption ids."""

    def __init__(
        self, dim: int, size: int = 128, warmup_forward_calls: int = 50, mask_same_caption: bool = True
    ) -> None:
        super().__init__()
        if why := bank_size_problem(size, dim):
            raise ArgumentError("memory_bank_size", size, why)
        self.size = size
        self.warmup_forward_calls = warmup_forward_calls
        self.mask_same_caption = mask_same_caption
        # Random unit rows until filled: pairwise cosine ~ 1/sqrt(D) tells "never filled" apart.
        keep = not faults.active("bank-not-persistent")  # casebook: lightly#993's non-persistent queue
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1), persistent=keep)  # [Q, D]
        self.register_buffer("queue_ids", torch.zeros(size, dtype=torch.long), persistent=keep)  # [Q] caption ids
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long), persistent=keep)  # next slot to write
        self.register_buffer("fill", torch.zeros((), dtype=torch.long), persistent=keep)  # slots written, <= Q
        self.register_buffer("forward_calls", torch.zeros((), dtype=torch.long), persistent=keep)
        self.register_buffer("enabled_at_call", torch.full((), -1, dtype=torch.long), persistent=keep)

    @property
    def active(self) -> bool:
        """True once warm: region candidates are then in-batch boxes + the filled queue."""
        return int(self.enabled_at_call) >= 0 and int(self.fill) > 0

    def tick(self) -> bool:
        """Count one training forward call (calls count from 1); switch on at the call that reaches
        the warmup (fgclip.warmup: call max(warmup, 1)). Returns active: on, and the queue holds a row."""
        self.forward_calls += 1
        calls = int(self.forward_calls)
        if int(self.enabled_at_call) < 0 and reached(calls, self.warmup_forward_calls):
            self.enabled_at_call.fill_(calls)
            if os.environ.get(DIAG_ENV) == "1":
                print(f"[Memory Bank] enabled @ training_step {calls}", flush=True)
        return self.active

    def candidates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A copy of the filled part of the queue: features [F, D] and caption ids [F].

        Copied because `enqueue` overwrites the queue in place before backward runs.
        """
        n = int(self.fill)
        return self.queue[:n].clone(), self.queue_ids[:n].clone()

    @torch.no_grad()
    def enqueue(self, feats: torch.Tensor, caption_ids: torch.Tensor) -> None:
        """Write `feats` [k, D] (detached, normalised here) and their ids [k] at the pointer, wrapping."""
        k = feats.shape[0]
        if k == 0:
            return
        if k > self.size:  # keep the newest entries only
            feats, caption_ids, k = feats[-self.size :], caption_ids[-self.size :], self.size
        feats = feats.detach().float()
        if not faults.active("bank-unnormalised"):  # casebook: the fault queues raw features
            feats = F.normalize(feats, dim=1)
        feats = feats.to(self.queue.dtype)
        slots = (int(self.ptr) + torch.arange(k, device=self.queue.device)) % self.size  # wraps
        self.queue[slots] = feats
        self.queue_ids[slots] = caption_ids.to(self.queue_ids.device)
        self.ptr.fill_((int(self.ptr) + k) % self.size)
        self.fill.fill_(min(self.size, int(self.fill) + k))

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, warmup_forward_calls={self.warmup_forward_calls}, "
            f"mask_same_caption={self.mask_same_caption}"
        )
