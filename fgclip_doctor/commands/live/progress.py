"""live's progress bar: optimizer steps done of N, and each loss term's latest loss.

Drawn on the terminal's stderr through a descriptor of its own (a copy of fd 2 taken when built,
before the run's output is sent to a file), from the moment `start()` is called, before the
training has imported anything; it never captures what others print (rich's redirect is off:
the training's output goes to the log, not above the bar). Off a terminal it draws nothing.
The loss terms come from the probes' latest read-back.
"""

from __future__ import annotations

import contextlib
import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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


def terminal_stderr():
    """A stream on a copy of the terminal behind stderr (None off a terminal)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        fd = sys.stderr.fileno()
        if os.isatty(fd):
            return os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
    return None


class ProgressBar:
    """A rich progress bar over optimizer steps with the loss terms (silent off a terminal).
    `update(step, history)` is the probes' step observer."""

    def __init__(self, steps: int, console: Console | None = None, status: str = "starting") -> None:
        self._own = None if console is not None else terminal_stderr()
        self.console = console or Console(file=self._own or sys.stderr)
        self.progress = Progress(
            TextColumn("live"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[terms]}"),
            console=self.console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            disable=not self.console.is_terminal,
        )
        self.task = self.progress.add_task("steps", total=steps, terms=status)

    def start(self) -> ProgressBar:
        self.progress.start()
        return self

    def status(self, text: str) -> None:
        """A line in place of the loss terms until the first read-back (`starting 2 processes`)."""
        self.progress.update(self.task, terms=text)

    def update(self, step: int, history: list[dict]) -> None:
        fields = {}
        if history:  # bar, counts and time take about 45 columns
            fields["terms"] = terms_text(term_losses(history[-1]), max(20, self.console.width - 48))
        self.progress.update(self.task, completed=step, **fields)

    def stop(self) -> None:
        self.progress.stop()
        if self._own is not None:
            self._own.close()
            self._own = None

    def __enter__(self) -> ProgressBar:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
