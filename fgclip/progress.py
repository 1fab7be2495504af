"""A first run that talks: a progress bar while the synthetic data and the tiny base are made, and the
libraries kept quiet meanwhile.

    with quiet_libraries(), Bar(total=576 + 300) as bar:
        bar.stage("synthetic data")
        generate(root, progress=bar.advance)     # one tick per record
        bar.stage("tiny base")
        pretrain_base(root, root / "base", progress=bar.advance)   # one tick per step

The bar is drawn on stderr only when stderr is a terminal, at most ten times a second, and erased
when done: a log or a pipe gets nothing from it. `quiet_libraries` turns off, for the block, what
the libraries would print around it: transformers' progress bars (`Writing model shards: 100%` from
save_pretrained), log records up to WARNING from every logger (DeepSpeed, imported by accelerate's
unwrap inside save_pretrained, logs "Setting accelerator to CPU" to stdout) and Python warnings.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

WIDTH = 24  # characters of the bar itself


def shown(path: Path) -> str:
    """`path` with the home folder as `~` (the cache's default lives there)."""
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if home != "/" and (text == home or text.startswith(home + "/")) else text


class Bar:
    """`label [#######.........]  45%  12 s` redrawn in place on a terminal; nothing elsewhere."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        try:
            self.on = bool(self.stream.isatty())
        except (AttributeError, ValueError):  # a closed or replaced stream
            self.on = False
        self.total, self.done, self.label = max(1, total), 0, ""
        self.start = self.drawn_at = time.monotonic()
        self.width = 0  # of the last line drawn, to erase it

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stage(self, label: str) -> None:
        self.label = label
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.on or (not force and now - self.drawn_at < 0.1):
            return
        self.drawn_at = now
        filled = WIDTH * self.done // self.total
        line = (
            f"{self.label:<15} [{'#' * filled}{'.' * (WIDTH - filled)}] "
            f"{100 * self.done // self.total:3d}%  {now - self.start:3.0f} s"
        )
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def close(self) -> None:
        if self.on and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """The libraries' progress bars, warnings and log records up to WARNING off for the block (then
    as they were); errors still show."""
    from transformers.utils import logging as hf_logging

    bars, disabled = hf_logging.is_progress_bar_enabled(), logging.root.manager.disable
    hf_logging.disable_progress_bar()
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)
        if bars:
            hf_logging.enable_progress_bar()
