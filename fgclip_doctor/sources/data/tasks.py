"""check-data's units of work: the files of a --data_path (formats.py) cut into tasks (`plan`:
byte ranges of a JSON Lines file, a whole JSON array), and each task's records streamed through a
RecordChecker (`read_task`).

A range owns the lines that *start* in it: its worker seeks there, skips to the next line start
and streams its lines from the file read in windows, a block at a time. A JSON array is
one document: streamed too (formats.read_array, one item at a time) but by one worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgclip_doctor.sources.data.formats import layout, read_array
from fgclip_doctor.sources.data.record import RecordChecker

CHUNK_BYTES = 32 << 20  # one task: large enough to amortise the seek, small enough to balance
WINDOW_BYTES = 8 << 20  # read at a time inside a task (more for a longer line): a worker's resident
# size grows by one window at most; the file's size is read again before each window
BLOCK_BYTES = 256 << 10  # checked at a time: a block's decoded records stay in the CPU's cache
# (~25 % less CPU per record than 4 MiB blocks on the bench's records)


@dataclass(frozen=True)
class Task:
    """One unit of work: the lines starting in [start, end) of a JSON Lines file, or a whole array."""

    index: int
    file: str
    start: int
    end: int
    kind: str  # "lines" | "array"
    clean_part: str | None = None


def plan(files: list[Path], chunk_bytes: int = CHUNK_BYTES) -> list[Task]:
    """Byte-range tasks: JSON Lines files cut every chunk_bytes, JSON arrays whole."""
    tasks: list[Task] = []
    for f in files:
        size = f.stat().st_size
        if layout(f) == "array":  # by the first byte, whatever the suffix (FG-CLIP json.load()s it)
            tasks.append(Task(len(tasks), str(f), 0, size, "array"))
            continue
        for start in range(0, max(size, 1), chunk_bytes):
            tasks.append(Task(len(tasks), str(f), start, min(size, start + chunk_bytes), "lines"))
    return tasks


# --- one task --------------------------------------------------------------------------------


def _lines(task: Task, chk: RecordChecker) -> int:
    """Stream the lines that start in [start, end); return how many (blank ones included)."""
    n = 0
    with open(task.file, "rb") as fh:
        pos = task.start
        if pos > 0:  # skip the line that started in the previous range
            fh.seek(pos - 1)
            pos += len(fh.readline()) - 1
        window = WINDOW_BYTES
        while pos < min(task.end, size := os.fstat(fh.fileno()).st_size):  # the size now: a file
            base = pos  # cut short meanwhile is read no further
            length = min(base + window, size) - base
            data = _read(fh, base, length)
            done, n = _window(data, 0, task.end - base, n, chk)
            if done > 0:  # whole lines checked
                pos, window = base + done, WINDOW_BYTES
            elif base + length < size:  # a line longer than the window: read more
                window *= 2
            else:  # the file's last line, without a newline
                fh.seek(pos)
                tail = fh.read(size - pos) + b"\n"
                n, pos = _block(tail, 0, len(tail), n, chk), size
    return n


def _read(fh, base: int, length: int) -> bytes:
    """`length` bytes of the file from `base` (fewer where the file was cut short meanwhile).

    Read, not mapped: a mapped file cut short while a window of it is checked kills the worker
    with SIGBUS, and a pool never returns a dead worker's task (a hang, where read() just sees
    fewer bytes). The copy costs ~0.4 us of system time per record."""
    fh.seek(base)
    return fh.read(length)


def _window(data: bytes, at: int, limit: int, n: int, chk: RecordChecker) -> tuple[int, int]:
    """Check the whole lines of `data` from `at` that start before `limit`, a block at a time;
    return (where the first line not checked starts, the last line checked)."""
    size = len(data)
    while at < min(limit, size):
        end = data.rfind(b"\n", at, min(at + BLOCK_BYTES, size)) + 1
        if not end:  # a line longer than a block
            end = data.find(b"\n", at) + 1
            if not end:  # ... and than what is mapped
                break
        if end > limit:  # lines starting at `limit` or later belong to the next range
            end = data.find(b"\n", limit - 1) + 1
        n = _block(data, at, end, n, chk)
        at = end
    return at, n


def _block(data, start: int, end: int, n: int, chk: RecordChecker) -> int:
    """Check the lines of `data[start:end]` (it ends with a newline): through the fast path
    (bulk.py) when it is on and they are UTF-8 (msgspec does not check the strings it skips),
    else line by line."""
    if chk.bulk is not None and (_ascii(data, start, end) or _utf8(data[start:end])):
        return chk.bulk.block(data, start, end, n)
    raw = data[start:end]
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError:  # decoded per line: a line that is not UTF-8 is not JSON
        lines = []
        for part in raw.split(b"\n"):
            try:
                lines.append(part.decode("utf-8"))
            except UnicodeDecodeError as err:
                lines.append(err)
    lines.pop()  # after the last newline
    line = chk.line
    for text in lines:
        n += 1
        if type(text) is str:
            line(n, text)
        else:
            chk.p.records += 1
            chk.note("not_json", n, "not UTF-8 (byte %d)", text.start)
    return n


def _ascii(data, start: int, end: int) -> bool:
    """No byte of data[start:end] above 127 (numpy's max: ~10x less CPU than bytes.isascii)."""
    return int(np.frombuffer(data, np.uint8, end - start, start).max()) < 128


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_task(task: Task, chk: RecordChecker) -> int:
    """Stream the task's records through `chk`; the lines the task owns (blank ones included)."""
    return (_lines if task.kind == "lines" else read_array)(task, chk)
