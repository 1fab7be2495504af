"""Which annotation files FG-CLIP's ``--data_path`` names, and how each one is laid out.

FG-CLIP's ``LazySupervisedBboxDataset`` (train_fgclip.py, train_fgclip2.py) takes data_path as
  * a ``.txt`` file: one JSON file per line, ``line.rstrip()``, opened as written, so a relative
    path is relative to the folder training runs in, not to the list;
  * a ``.json`` / ``.jsonl`` file: ``json.load`` of the whole file, i.e. one JSON array;
  * anything else, a folder: its ``*.json`` files, then its ``*.jsonl`` files (glob: no hidden
    files; glob's order is the file system's, here sorted so that record numbers are stable).
The bundled subject (fgclip.data) and the doctor also read JSON Lines: ``layout`` tells the two
apart by the first non-whitespace byte ('[' = one array), never by the suffix.

Shared by the subject's loader and the doctor's check-data; imports nothing of the doctor.
"""

from __future__ import annotations

from pathlib import Path

JSON_WHITESPACE = b" \t\r\n"  # JSON's own whitespace (json.load skips exactly these)


def listed_files(txt) -> list[Path]:
    """The JSON files a ``.txt`` list names, in order (blank lines skipped), as FG-CLIP opens them."""
    with open(txt, encoding="utf-8") as fh:
        return [Path(line.rstrip()) for line in fh if line.strip()]


def data_files(path) -> list[Path]:
    """The annotation files FG-CLIP's loader reads for ``path``, in its order."""
    path = Path(path)
    if path.is_dir():

        def named(suffix: str) -> list[Path]:
            return sorted(
                p for p in path.iterdir() if p.suffix == suffix and not p.name.startswith(".") and p.is_file()
            )

        return named(".json") + named(".jsonl")
    if path.suffix == ".txt":
        return listed_files(path)
    return [path]


def layout(file) -> str:
    """'array' when the file's first non-whitespace byte is '[' (one JSON array), else 'lines'."""
    with open(file, "rb") as fh:
        while chunk := fh.read(1 << 16):
            rest = chunk.lstrip(JSON_WHITESPACE)
            if rest:
                return "array" if rest[:1] == b"[" else "lines"
    return "lines"  # empty or blank: no records
