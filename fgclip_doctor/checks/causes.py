"""Root causes: findings that follow from another rule's finding, so the report shows one story.

The seed's warmup of 400 forward calls fails three rules: step-units (the warmup is counted in
forward calls and is never reached), bank-active (so the bank never switches on) and
negatives-count's region term (so the region loss sees the in-batch boxes only). One fix repairs
all three; the report puts the consequences under their root and points them to its fix.
"""

from __future__ import annotations

from fgclip_doctor.checks.registry import Finding, Status

#: (rule, subject) of a consequence -> ((rule, subject) of its cause, a word the consequence's message
#: holds when it is that cause's: negatives-count's region term is short for other reasons too)
CAUSES: dict[tuple[str, str], tuple[tuple[str, str], str]] = {
    ("bank-active", ""): (("step-units", "bank warmup"), "warmup"),
    ("negatives-count", "region"): (("bank-active", ""), "bank"),
}
PROBLEMS = (Status.FAIL, Status.WARN)


def root_of(f: Finding, findings: list[Finding]) -> Finding | None:
    """The finding at the root of `f`'s chain of causes among `findings` (None when `f` is its own
    root): a cause counts only as a problem of the same status as `f`."""
    present = {(g.rule, g.subject): g for g in findings if Status(g.status) in PROBLEMS}
    root, seen = None, {(f.rule, f.subject)}
    key = (f.rule, f.subject)
    while key in CAUSES:
        (cause, word), here = CAUSES[key], present.get(key, f)
        found = present.get(cause)
        if found is None or Status(found.status) is not Status(f.status) or word not in here.message or cause in seen:
            break
        root, key = found, cause
        seen.add(cause)
    return root
