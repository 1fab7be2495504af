"""The public JSON report schema, checked field by field (shared by every command's tests)."""

from __future__ import annotations

import json

from fgclip_doctor import __version__

SCHEMA_TOP = {
    "tool": str,
    "version": str,
    "command": str,
    "target": (str, type(None)),
    "facts": dict,
    "findings": list,
    "summary": dict,
    "exit_code": int,
}
SCHEMA_FINDING = {
    "code": str,
    "rule": str,
    "status": str,
    "severity": str,
    "measured": str,
    "expected": str,
    "message": str,
    "fix": str,
    "sources": list,
    "subject": str,
    "missing": list,
}


def exit_of(doc: dict) -> int:
    """The exit code the findings call for without --strict: 1 on any FAIL, else 0 (SKIP never fails)."""
    return 1 if any(f["status"] == "FAIL" for f in doc["findings"]) else 0


def validate(doc: dict, extra: set[str] = frozenset()) -> None:
    """A small schema check of the public JSON document, field by field; its exit code is the one its
    findings call for (1 on a FAIL; a WARN only under --strict)."""
    assert set(doc) == set(SCHEMA_TOP) | extra
    warned = any(f["status"] == "WARN" for f in doc["findings"])
    assert doc["exit_code"] == exit_of(doc) or (warned and doc["exit_code"] == 1), doc["exit_code"]
    for key, typ in SCHEMA_TOP.items():
        assert isinstance(doc[key], typ), key
    assert doc["tool"] == "fgclip-doctor" and doc["version"] == __version__
    for name, fact in doc["facts"].items():
        assert isinstance(name, str) and set(fact) == {"value", "source"}
        assert isinstance(fact["source"], str)
    for f in doc["findings"]:
        assert set(f) == set(SCHEMA_FINDING)
        for key, typ in SCHEMA_FINDING.items():
            assert isinstance(f[key], typ), key
        assert f["status"] in {"PASS", "WARN", "FAIL", "SKIP"}
        assert f["severity"] in {"fail", "warn"}
        assert all(isinstance(s, str) for s in f["sources"] + f["missing"])
        assert not f["missing"] or f["status"] == "SKIP"
    assert set(doc["summary"]) == {"pass", "warn", "fail", "skip"}
    assert all(isinstance(v, int) for v in doc["summary"].values())
    assert doc["exit_code"] in (0, 1)
    json.dumps(doc, allow_nan=False)  # strict JSON
