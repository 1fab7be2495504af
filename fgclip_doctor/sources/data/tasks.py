"""check-data's units of work: the files of a --data_path (formats.py) cut into tasks (`plan`:
byte ranges of a JSON Lines file, a whole JSON array), and each task's records streamed through a
RecordChecker (`read_task`).

A range owns the lines that *start* in it: its worker seeks there, skips to the next line start
and streams its lines. A JSON array is one document: streamed too (formats.read_array, one item
at a time) but by one worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fgclip_doctor.sources.data.formats import layout, read_array
from fgclip_doctor.sources.data.record import RecordChecker

CHUNK_BYTES = 32 << 20  # one task: large enough to amortise the seek, small enough to balance
BLOCK_BYTES = 256 << 10  # read size inside a task: a block's decoded records stay in the CPU's
# cache (~25 % less CPU per record than 4 MiB blocks on the bench's records)


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
        buf, have = bytearray(BLOCK_BYTES), 0  # one buffer, reused: buf[:have] is the carried partial line
        while pos < task.end:
            if have == len(buf):  # a line longer than the buffer: a new one twice the size
                buf = buf + bytes(len(buf))
            with memoryview(buf) as free:
                got = fh.readinto(free[have:])
            size = have + got
            if not got:  # last line without a newline
                if not size:
                    break
                if size == len(buf):
                    buf = buf + b"\n"
                buf[size] = 10
                size += 1
            end = buf.rfind(b"\n", 0, size) + 1  # buf[:end]: complete lines (bytes past size are stale)
            limit = task.end - pos  # lines starting at or beyond `limit` belong to the next range
            if limit < end:
                end = buf.index(b"\n", limit - 1) + 1
            n = _block(buf, end, n, chk)
            have, pos = size - end, pos + end
            buf[:have] = buf[end:size]  # same length: no resize (a view of buf may not be alive)
    return n


def _block(data: bytes, end: int, n: int, chk: RecordChecker) -> int:
    """Check the complete lines of `data[:end]` (bytes past `end` may be stale): through the fast
    path (bulk.py) when it is on and they are UTF-8 (msgspec does not check the strings it skips),
    else line by line."""
    if chk.bulk is not None and (data.isascii() or _utf8(data[:end])):
        return chk.bulk.block(data, end, n)
    try:
        lines = data[:end].decode("utf-8").split("\n")
    except UnicodeDecodeError:  # decoded per line: a line that is not UTF-8 is not JSON
        lines = []
        for raw in data[:end].split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
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


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_task(task: Task, chk: RecordChecker) -> int:
    """Stream the task's records through `chk`; the lines the task owns (blank ones included)."""
    return (_lines if task.kind == "lines" else read_array)(task, chk)
