"""FG-CLIP's annotation formats, as its loader reads them: which files (`annotation_files`), cut
into tasks (`plan`: byte ranges of a `.jsonl`, a whole `.json` list), and each task's records
streamed through a RecordChecker (`read_task`).

A range owns the lines that *start* in it: its worker seeks there, skips to the next line start
and streams its lines. A `.json` list is one document: streamed too (items decoded one at a
time from a sliding buffer) but by one worker.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.data.record import RecordChecker, decode

CHUNK_BYTES = 32 << 20  # one task: large enough to amortise the seek, small enough to balance
BLOCK_BYTES = 4 << 20  # read size inside a task
MAX_JSON_ITEM = 64 << 20  # a .json list item larger than this is treated as broken JSON


@dataclass(frozen=True)
class Task:
    """One unit of work: the lines starting in [start, end) of a .jsonl, or a whole .json."""

    index: int
    file: str
    start: int
    end: int
    kind: str  # "lines" | "json"
    clean_part: str | None = None


def annotation_files(path: Path) -> list[Path]:
    """The files FG-CLIP's loader reads for `path` (DoctorInputError when there are none)."""
    if not path.exists():
        raise DoctorInputError(path, "no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file())
        if not files:
            raise DoctorInputError(path, "folder holds no .json or .jsonl annotation files")
        return files
    return [path]


def plan(files: list[Path], chunk_bytes: int = CHUNK_BYTES) -> list[Task]:
    """Byte-range tasks: .jsonl files cut every chunk_bytes, .json files whole."""
    tasks: list[Task] = []
    for f in files:
        size = f.stat().st_size
        if f.suffix != ".jsonl":  # the loader json.load()s anything that is not .jsonl
            tasks.append(Task(len(tasks), str(f), 0, size, "json"))
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
        tail = b""
        while pos < task.end:
            block = fh.read(BLOCK_BYTES)
            data = tail + block
            if not block:  # last line without a newline
                data, tail = (data + b"\n" if data else b""), b""
                if not data:
                    break
            cut = data.rfind(b"\n") + 1
            data, tail = data[:cut], data[cut:]
            limit = task.end - pos  # lines starting at or beyond `limit` belong to the next range
            if limit < len(data):
                data = data[:data.index(b"\n", limit - 1) + 1]
            pos += len(data)
            n = _block(data, n, chk)
    return n


def _block(data: bytes, n: int, chk: RecordChecker) -> int:
    """Check the complete lines of `data` (decoded at once; per line if it is not UTF-8)."""
    try:
        lines = data.decode("utf-8").split("\n")
        raws = None
    except UnicodeDecodeError:
        raws = data.split(b"\n")
        lines = []
        for raw in raws:
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                lines.append(err)
    lines.pop()  # after the last newline
    keep, record, loads = chk.clean is not None, chk.record, decode
    for text in lines:
        n += 1
        if type(text) is not str:
            chk.p.records += 1
            chk.note("not_json", n, "not UTF-8 (byte %d)", text.start)
        elif text and not text.isspace():  # the loader skips blank lines
            try:
                rec = loads(text)
            except (ValueError, RecursionError) as err:
                chk.not_json(n, err)
                continue
            record(n, rec, text.rstrip("\r") if keep else None)
    return n


_WS = json.decoder.WHITESPACE.match  # JSON's own whitespace: space, tab, newline, return


def _json_document(task: Task, chk: RecordChecker) -> int:
    """Stream one .json document: a list of records (or one record), item by item."""
    raw_decode = json.JSONDecoder().raw_decode
    with open(task.file, encoding="utf-8") as fh:  # as the loader opens it (universal newlines)
        buf, pos, line, eof = "", 0, 1, False

        def more() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            chunk = fh.read(BLOCK_BYTES)
            eof = not chunk
            buf, pos = buf[pos:] + chunk, 0
            return bool(chunk)

        def skip_ws() -> str:  # the next non-blank character ("" at the end of the file)
            nonlocal pos, line
            while True:
                end = _WS(buf, pos).end()
                line += buf.count("\n", pos, end)
                pos = end
                if pos < len(buf) or not more():
                    return buf[pos:pos + 1]

        def broken(what: str) -> int:
            chk.p.records += 1
            chk.note("not_json", line, "not JSON (%s): the loader cannot read this file", what)
            return line

        def item():  # decode one value at pos, reading more while it is incomplete
            nonlocal pos, line
            while True:
                try:
                    value, end = raw_decode(buf, pos)
                except json.JSONDecodeError as err:
                    if len(buf) - pos > MAX_JSON_ITEM or not more():
                        raise err
                    continue
                if end == len(buf) and more():  # a number may go on in the next block
                    continue
                line += buf.count("\n", pos, end)
                pos = end
                return value

        try:
            first = skip_ws()
            if first == "":
                return broken("empty document")
            if first != "[":  # one record: the loader wraps it in a list
                start = line
                chk.record(start, item(), None)
                return line if skip_ws() == "" else broken("extra data after the first value")
            pos += 1
            if skip_ws() == "]":
                pos += 1
            else:
                while True:
                    start = line
                    chk.record(start, item(), None)
                    c = skip_ws()
                    pos += 1
                    if c == "]":
                        break
                    if c != ",":
                        return broken(f"expected ',' or ']', found {c!r}" if c else "unterminated list")
                    skip_ws()
            return line if skip_ws() == "" else broken("extra data after the list")
        except (json.JSONDecodeError, RecursionError) as err:
            return broken(f"{getattr(err, 'msg', err)}" + (f", col {err.colno}" if hasattr(err, "colno") else ""))
        except UnicodeDecodeError:
            return broken("not UTF-8")


def read_task(task: Task, chk: RecordChecker) -> int:
    """Stream the task's records through `chk`; the lines the task owns (blank ones included)."""
    return (_lines if task.kind == "lines" else _json_document)(task, chk)
