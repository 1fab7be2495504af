"""The repository explains itself: the README and docs/ point only at files a clone has, and
docs/rules.md gives the evidence for every rule the registry holds."""

from __future__ import annotations

import re
from pathlib import Path

from fgclip_doctor.checks.registry import all_rules, load_rules

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](target), anchors dropped
# `path` spans naming a file or folder of this repository by its first folder (not fgclip/ or
# scripts/: the README also cites FG-CLIP's own `fgclip/train/train_fgclip.py`, `scripts/train.sh`)
TOP = ("docs/", "tests/", "bench/", "fgclip_doctor/", ".ci/")
CODE_PATH = re.compile(r"`((?:" + "|".join(re.escape(t) for t in TOP) + r")[\w./-]*)`")


def test_the_docs_exist():
    names = {p.name for p in PAGES}
    assert {"architecture.md", "rules.md", "experiment.md", "seed-incident.md"} <= names


def test_every_link_and_path_is_in_the_repository():
    missing = []
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text and "DESIGN.md" not in text, page.name
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:: outside the repository by design
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.name}: {target}")
        for path in CODE_PATH.findall(text):
            if "<" not in path and "*" not in path and not (ROOT / path.rstrip(".")).exists():
                missing.append(f"{page.name}: `{path}`")
    assert missing == [], missing


def test_rules_page_names_every_rule():
    load_rules()
    text = (ROOT / "docs" / "rules.md").read_text()
    unnamed = [f"{r.code} {r.name}" for r in all_rules() if r.code not in text or r.name not in text]
    assert unnamed == []
