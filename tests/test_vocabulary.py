"""Every fact name a module of fgclip_doctor writes is in the vocabulary (vocabulary.FACTS).

A name is written by `facts.set(NAME, ...)` / `facts.setdefault(NAME, ...)` with a string literal
or an f-string. FACTS entries may hold placeholders (`scale.<scale>.init`); an f-string's
formatted parts stand for anything (`f"scale.{s}.init"`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import fgclip_doctor
from fgclip_doctor.vocabulary import FACTS

PACKAGE = Path(fgclip_doctor.__file__).parent
HOLE = "\0"  # an f-string's formatted part


def written_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of each fact name written in `tree`; f-string parts become HOLE."""
    out = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("set", "setdefault")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "facts"
            and node.args
        ):
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            out.append((node.lineno, arg.value))
        elif isinstance(arg, ast.JoinedStr):
            out.append((node.lineno, "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in arg.values)))
    return out


def _pattern(text: str, hole: str) -> re.Pattern:
    """`text` as a regex: literal, except HOLE / `<placeholder>` parts, which match anything."""
    parts = re.split(hole, text)
    return re.compile(".+".join(re.escape(p) for p in parts))


def known(name: str) -> bool:
    """`name` (with HOLEs) is a FACTS entry, or matches one (placeholders on either side)."""
    if name in FACTS:
        return True
    written = _pattern(name, HOLE)
    return any(
        written.fullmatch(entry) or _pattern(entry, r"<[a-z_]+>").fullmatch(name.replace(HOLE, "x")) for entry in FACTS
    )


def test_the_scan_finds_names_and_placeholders_match():
    tree = ast.parse('facts.set("a.b", 1, "s")\nfacts.setdefault(f"scale.{s}.init", 1, "s")\nother.set("x", 1)')
    assert [n for _, n in written_names(tree)] == ["a.b", f"scale.{HOLE}.init"]
    assert known("scale.global.init") and known(f"scale.{HOLE}.init") and known(f"resume.scale.{HOLE}")
    assert not known("scale.global.nonsense") and not known(f"nonsense.{HOLE}")


def test_every_fact_written_by_every_module_is_in_the_vocabulary():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40  # the whole package, not one module
    written = [
        (path, line, name)
        for path in modules
        for line, name in written_names(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert len(written) > 100
    unknown = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name.replace(HOLE, '{...}')}"
        for path, line, name in written
        if not known(name)
    ]
    assert not unknown, "fact names missing from vocabulary.FACTS:\n" + "\n".join(unknown)
