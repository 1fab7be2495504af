"""Helpers for the rules that read live observations (`observed.*` facts): which terms were
observed, and fractions as percentages. `<term>` is a loss term or, for code the doctor does not
know, the call site of a cross-entropy ("modeling_clip.py:77 clip_loss")."""

from __future__ import annotations

from fgclip_doctor.facts import Facts


def pct(fraction: float) -> str:
    """A fraction as a percentage to 3 significant digits: 0 %, 12.5 %, 100 %."""
    return f"{100 * float(fraction):.3g} %"


def observed_terms(facts: Facts, family: str, kinds: tuple[str, ...]) -> list[str]:
    """Terms of `observed.terms`, then any other term with an `observed.<family>.<term>.<kind>`
    fact (term names may hold dots: call sites such as "modeling_clip.py:77 clip_loss")."""
    listed = [str(t) for t in facts.value("observed.terms") or []]
    prefix = f"observed.{family}."
    found = set()
    for name in facts:
        if name.startswith(prefix):
            for kind in kinds:
                if name.endswith("." + kind) and len(name) > len(prefix) + len(kind) + 1:
                    found.add(name[len(prefix) : -len(kind) - 1])
    return listed + sorted(found - set(listed))
