"""live's progress bar: optimizer steps done of N, and each loss term's latest loss.

Drawn on the terminal's stderr (bound when built, before the run's own output is captured);
off a terminal it draws nothing. The loss terms come from the probes' latest read-back.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import TrainerCallback


def term_losses(snapshot: dict) -> dict[str, float]:
    """term -> its mean loss over the read-back's interval (every call's loss, else the sampled ones)."""
    out = {}
    for term, s in snapshot.get("terms", {}).items():
        if s.get("loss_calls"):
            out[term] = s["loss_sum"] / s["loss_calls"]
        elif s.get("calls"):
            out[term] = s["loss"] / s["calls"]
    return out


def terms_text(losses: dict[str, float], width: int) -> str:
    """`global 0.399 · region 3.21 · ...`, cut at a separator to fit `width` columns."""
    parts = [f"{term} {loss:.3g}" for term, loss in losses.items()]
    text = ""
    for part in parts:
        candidate = f"{text} · {part}" if text else part
        if len(candidate) > width:
            return text + " …" if text else part[: max(0, width - 1)] + "…"
        text = candidate
    return text


class ProgressCallback(TrainerCallback):
    """A rich progress bar over optimizer steps with the loss terms (silent off a terminal)."""

    def __init__(self, steps: int, console: Console | None = None) -> None:
        self.console = console or Console(file=sys.stderr)  # the real stderr, not a later redirect
        self.progress = Progress(
            TextColumn("live"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[terms]}"),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self.task = self.progress.add_task("steps", total=steps, terms="")
        self.history: list[dict] = []

    def watch(self, history: list[dict]) -> None:
        """Show the losses of this probe history (the DoctorCallback's, appended at each read-back)."""
        self.history = history

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress.start()

    def on_step_end(self, args, state, control, **kwargs):
        fields = {}
        if self.history:  # bar, counts and time take about 45 columns
            fields["terms"] = terms_text(term_losses(self.history[-1]), max(20, self.console.width - 48))
        self.progress.update(self.task, completed=state.global_step, **fields)

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.stop()
