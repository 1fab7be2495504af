"""What is known about a run: one typed record, every value with its provenance.

Ground floor of the doctor: imports nothing of ours. Sources fill a `Facts`; checks read it.
A fact that is not known is simply absent; checks turn absence into SKIP with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fact:
    """One value and where it came from, e.g. `scripts/train.sh:14 --gradient_accumulation_steps`."""

    value: Any
    source: str


class Facts:
    """Mapping of fact name -> Fact. Later `set` calls override earlier ones (higher priority source)."""

    def __init__(self) -> None:
        self._facts: dict[str, Fact] = {}
        self._why_unknown: dict[str, str] = {}  # fact name or prefix ("bank.") -> why it is absent

    def mark_unknown(self, name: str, why: str) -> None:
        """Say why `name` (a fact, or a prefix ending in ".") cannot be known, e.g. a launch flag
        whose value only exists when the script runs; SKIP reasons naming the fact cite it."""
        self._why_unknown.setdefault(name, why)

    def unknowns(self) -> dict[str, str]:
        """{fact name or prefix: why it is absent}, as recorded by mark_unknown (to merge readings)."""
        return dict(self._why_unknown)

    def why_unknown(self, text: str) -> list[str]:
        """The reasons recorded for absent facts named (or prefixed) in `text` (a SKIP reason)."""
        return list(
            dict.fromkeys(
                why for name, why in self._why_unknown.items() if name in text and name.rstrip(".") not in self._facts
            )
        )

    def why(self, name: str) -> list[str]:
        """Why the fact `name` is absent: the reason recorded for it; else those for a prefix of it
        ("bank."), or, for a name with placeholders (`candidates.<term>`), for a name it covers."""
        if name in self._facts:
            return []
        if name in self._why_unknown:  # said of the fact itself: more precise than of its family
            return [self._why_unknown[name]]
        covers = re.compile(re.sub(r"<[a-z_]+>", r"[^.]+", re.escape(name)))
        return list(
            dict.fromkeys(
                why
                for key, why in self._why_unknown.items()
                if key == name or (key.endswith(".") and _under(name, key)) or covers.fullmatch(key)
            )
        )

    def covers(self, name: str) -> bool:
        """Whether `name` is known; a name with placeholders (`scale.<scale>.init`) when any
        name it stands for is."""
        if "<" not in name:
            return name in self._facts
        pattern = re.compile(re.sub(r"<[a-z_]+>", r"[^.]+", re.escape(name)))
        return any(pattern.fullmatch(n) for n in self._facts)

    def set(self, name: str, value: Any, source: str) -> None:
        """Record `name = value`, citing `source`. A value of None is ignored (unknown stays unknown)."""
        if value is None:
            return
        self._facts[name] = Fact(value, source)

    def forget(self, name: str) -> None:
        """Drop `name`: a later source showed the value it held is not known after all."""
        self._facts.pop(name, None)

    def setdefault(self, name: str, value: Any, source: str) -> None:
        """Record only if nothing is known yet (for lower-priority sources such as code defaults)."""
        if name not in self._facts:
            self.set(name, value, source)

    def get(self, name: str) -> Fact | None:
        return self._facts.get(name)

    def value(self, name: str, default: Any = None) -> Any:
        fact = self._facts.get(name)
        return default if fact is None else fact.value

    def source(self, name: str) -> str:
        fact = self._facts.get(name)
        return "" if fact is None else fact.source

    def missing(self, *names: str) -> list[str]:
        """Names among `names` with no known value (for SKIP reasons)."""
        return [n for n in names if n not in self._facts]

    def __contains__(self, name: str) -> bool:
        return name in self._facts

    def __iter__(self) -> Iterator[str]:
        return iter(self._facts)

    def __len__(self) -> int:
        return len(self._facts)

    def items(self):
        return self._facts.items()

    def to_json(self) -> dict[str, dict[str, Any]]:
        """The public JSON form: {name: {"value", "source"}}; non-JSON values become strings."""
        out = {}
        for name, fact in sorted(self._facts.items()):
            out[name] = {"value": _jsonable(fact.value), "source": fact.source}
        return out


def _under(name: str, prefix: str) -> bool:
    """`name` lies under `prefix` ("scale.hardneg."); a placeholder segment of the name
    (`scale.<scale>.init`) stands for any."""
    parts, head = name.split("."), prefix.rstrip(".").split(".")
    return len(parts) > len(head) and all(p == h or p.startswith("<") for p, h in zip(parts, head))


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def unknown_flag(source: str) -> str:
    """Why a fact set by the flag at `source` is absent: its value exists only when the script runs."""
    return f"{source} has a value known only when the script runs (not guessed)"
