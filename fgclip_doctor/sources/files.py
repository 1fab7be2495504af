"""Files as the user names them: paths shown relative to the current directory, text inputs
read with one-line errors. Shared by every source subpackage (imports only the ground floor)."""

from __future__ import annotations

from pathlib import Path

from fgclip_doctor.errors import DoctorInputError, read_error


def display_path(path: object) -> str:
    """`path` relative to the current directory when it lies below it, else as given."""
    p = Path(str(path))
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def read_text_file(path: object) -> str:
    """Read a text input as UTF-8 (BOM dropped, CRLF -> LF).

    Raises DoctorInputError for a missing, unreadable, binary or non-UTF-8 file, so the CLI
    prints one line naming the file instead of a traceback.
    """
    p = Path(str(path))
    try:
        data = p.read_bytes()
    except OSError as err:
        raise read_error(path, err) from None
    # NUL bytes never occur in scripts or configs; they mark a binary (checkpoint, archive, ...).
    if b"\0" in data:
        raise DoctorInputError(path, "binary file, expected text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DoctorInputError(path, f"not UTF-8 text (byte 0x{data[err.start]:02x} at line {line})") from None
    return text.replace("\r\n", "\n")
