"""FG-CLIP's data layouts for check-data: which files a --data_path names, and one JSON array
streamed item by item.

Files and layouts are the subject's one definition (fgclip.data_files, FG-CLIP's loader rules):
a `.txt` list (paths relative to the folder training runs in), a folder (`*.json`, then
`*.jsonl`), or one file; each file is one JSON array (first non-whitespace byte '[', whatever
the suffix) or JSON Lines.

An array is streamed with ijson's C backend (yajl2_c): one item alive at a time, so a 1M-record
array stays flat in memory. yajl is stricter than Python's json, which FG-CLIP's loader uses
(NaN, Infinity, integers beyond 64 bits, floats beyond 1e308 are valid to json.load): when ijson
stops on an error, the file is read again by an exact streaming reader built on Python's own
json decoder, so a NaN box counts as `nonfinite`, never as a broken file. Provenance of an
item is its 0-based index in the array (`file:index`, the loader's list index for one file).
"""

from __future__ import annotations

import json
from pathlib import Path

import ijson

from fgclip.data_files import data_files, layout, listed_files  # noqa: F401 (layout: re-exported)
from fgclip_doctor.errors import DoctorInputError

BUF_BYTES = 1 << 20  # ijson read size (1 MiB: ~15 % faster than its 64 KiB default)
MAX_ITEM_CHARS = 64 << 20  # an array item larger than this is treated as broken JSON
_WS = json.decoder.WHITESPACE.match  # JSON's whitespace: space, tab, newline, return
#: how to get annotations to try check-data on, said where none are found (the README's example
#: reads data/synthetic, which a fresh clone does not have)
MAKE_DATA = " (synthetic FG-CLIP annotations to try: python -m fgclip.synthetic --out data/synthetic --no-base)"


def annotation_files(path: Path) -> list[Path]:
    """The files FG-CLIP's loader reads for `path` (DoctorInputError when there are none, or when
    a `.txt` list names a file that is not there)."""
    path = Path(path)
    if not path.exists():
        raise DoctorInputError(path, "no such file or directory" + MAKE_DATA)
    if path.is_dir():
        files = data_files(path)
        if not files:
            raise DoctorInputError(path, "folder holds no .json or .jsonl annotation files")
        return files
    if path.suffix != ".txt":
        return [path]
    try:
        files = listed_files(path)
    except UnicodeDecodeError as err:
        raise DoctorInputError(path, f"file list is not UTF-8 (byte {err.start})") from None
    if not files:
        raise DoctorInputError(path, "file list names no annotation files")
    for f in files:
        if not f.is_file():
            hint = ""
            if not f.is_absolute() and (path.parent / f).is_file():
                hint = (
                    f"; {path.parent / f} exists, but FG-CLIP opens listed paths relative to "
                    "the folder training runs in: run check-data from there"
                )
            raise DoctorInputError(path, f"lists {f}, which is not a file (from {Path.cwd()}){hint}")
    return files


def read_array(task, chk) -> int:
    """Check every item of the JSON array in `task.file`; return how many items were read.

    `chk` is the task's RecordChecker; on an ijson error its counts are reset and the file is
    read again exactly (see the module docstring)."""
    try:
        return _ijson_items(task.file, chk)
    except (ijson.JSONError, UnicodeDecodeError, RecursionError):
        _restart(chk)
        return _exact_items(task.file, chk)


def _ijson_items(file: str, chk) -> int:
    n = 0
    record = chk.record
    with open(file, "rb") as fh:
        for n, rec in enumerate(ijson.items(fh, "item", use_float=True, buf_size=BUF_BYTES), 1):
            record(n - 1, rec, None)
    return n


def _restart(chk) -> None:
    """Forget what the fast pass counted (and wrote to the clean copy)."""
    chk.p.__init__(task=chk.p.task)
    if chk.clean is not None:
        chk.clean.seek(0)
        chk.clean.truncate()


def _exact_items(file: str, chk) -> int:
    """Stream the array with Python's json decoder, one item at a time from a sliding buffer."""
    raw_decode = json.JSONDecoder().raw_decode
    n = 0
    with open(file, encoding="utf-8") as fh:  # as the loader opens it
        buf, pos, eof = "", 0, False

        def more() -> bool:  # append a block (dropping what is before pos); False at the end
            nonlocal buf, pos, eof
            chunk = "" if eof else fh.read(BUF_BYTES)
            eof = not chunk
            if chunk:
                buf, pos = buf[pos:] + chunk, 0
            return bool(chunk)

        def peek() -> str:  # the next non-blank character ("" at the end of the file)
            nonlocal pos
            while True:
                pos = _WS(buf, pos).end()
                if pos < len(buf) or not more():
                    return buf[pos : pos + 1]

        def item():  # decode one value at pos, reading more while it is incomplete
            nonlocal pos
            while True:
                try:
                    value, end = raw_decode(buf, pos)
                except json.JSONDecodeError:
                    if len(buf) - pos > MAX_ITEM_CHARS or not more():
                        raise
                    continue
                if len(buf) - end < 64 and more():  # a number ("0.5" of "0.5e-3") may go on
                    continue
                pos = end
                return value

        def broken(what: str) -> int:
            chk.p.records += 1
            chk.note("not_json", n, "not JSON (%s): the loader cannot read this file", what)
            return n

        try:
            if peek() != "[":
                return broken("not an array")
            pos += 1
            if peek() == "]":
                pos += 1
            else:
                while True:
                    peek()  # raw_decode starts at a value, not at whitespace
                    chk.record(n, item(), None)
                    n += 1
                    c = peek()
                    pos += 1
                    if c == "]":
                        break
                    if c != ",":
                        return broken(
                            f"expected ',' or ']' after item {n - 1}, found {c!r}" if c else "unterminated array"
                        )
            return n if peek() == "" else broken("extra data after the array")
        except json.JSONDecodeError as err:
            return broken(f"{err.msg} in item {n}")
        except RecursionError:
            return broken(f"item {n} nested too deeply")
        except UnicodeDecodeError as err:
            return broken(f"not UTF-8 near byte {err.start} of a block")
