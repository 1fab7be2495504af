"""The rule registry: every check is one `Rule` with a stable code, a slug, docs and defaults.

A rule is a pure function `func(facts, ctx) -> Finding | list[Finding]`, registered with the
`@rule(...)` decorator in a rule-family module of `fgclip_doctor.checks` listed in
`RULE_MODULES`. Rules never read files; a rule whose facts are missing returns `ctx.skip(...)`.

    @rule("FGD101", "logit-scale-init", title="new loss scales start at the base's scale",
          severity="fail", where="CKL", fix="...", what="...", why="...", example="...",
          evidence="...", thresholds={"min_ratio": 0.5})
    def logit_scale_init(facts: Facts, ctx: RuleContext) -> Finding:
        if skip := ctx.require(facts, "model.logit_scale_init"):
            return skip
        ...
"""

from __future__ import annotations

import difflib
import importlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from fgclip_doctor.errors import DoctorUsageError
from fgclip_doctor.facts import Facts
from fgclip_doctor.phrases import in_words

if TYPE_CHECKING:
    from fgclip_doctor.settings import Settings

#: Rule-family modules (names inside `fgclip_doctor.checks`) imported before rules are listed or
#: run, so that their `@rule` decorators register. Rule authors append their module here.
RULE_MODULES: list[str] = [
    "temperature",
    "scale_decay",
    "logits",
    "negatives",
    "bank",
    "schedule",
    "resume",
    "data",
    "features",
    "optim",
    "loss_health",
    "loss_levels",
]

WHERE_LETTERS = "CKLD"  # C config/code, K checkpoint, L live run, D data
SEVERITIES = ("fail", "warn")
_CODE_RE = re.compile(r"^FGD\d{3}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class Status(str, Enum):
    """Outcome of one finding."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass
class Finding:
    """One result of one rule (about one `subject`, when a rule checks several things)."""

    code: str
    rule: str
    status: Status
    severity: str
    measured: str
    expected: str
    message: str
    fix: str
    sources: tuple[str, ...] = ()
    subject: str = ""
    missing: tuple[str, ...] = ()  # a SKIP: the facts it needed and did not have (vocabulary names)


RuleFunc = Callable[[Facts, "RuleContext"], "Finding | list[Finding]"]


@dataclass(frozen=True)
class Rule:
    """A registered check and its documentation (shown by `fgclip-doctor rules NAME`)."""

    code: str
    name: str
    title: str
    severity: str
    where: str
    fix: str
    what: str
    why: str
    example: str
    evidence: str
    thresholds: dict[str, float]
    func: RuleFunc = field(repr=False, compare=False)


_RULES: dict[str, Rule] = {}  # code -> Rule
_loaded = False


def rule(
    code: str,
    name: str,
    *,
    title: str,
    severity: str,
    where: str,
    fix: str,
    what: str,
    why: str,
    example: str,
    evidence: str,
    thresholds: dict[str, float] | None = None,
) -> Callable[[RuleFunc], RuleFunc]:
    """Decorator registering `func(facts, ctx)` as rule `code`/`name`; duplicates raise ValueError."""
    if not _CODE_RE.match(code):
        raise ValueError(f"rule code {code!r} must look like FGD101")
    if not _NAME_RE.match(name):
        raise ValueError(f"rule name {name!r} must be a lowercase slug like logit-scale-init")
    if severity not in SEVERITIES:
        raise ValueError(f"rule {code}: severity must be one of {SEVERITIES}, got {severity!r}")
    if not where or any(c not in WHERE_LETTERS for c in where):
        raise ValueError(f"rule {code}: where must be letters among {WHERE_LETTERS!r}, got {where!r}")

    def register(func: RuleFunc) -> RuleFunc:
        if code in _RULES:
            raise ValueError(f"duplicate rule code {code} ({_RULES[code].name} and {name})")
        if any(r.name == name for r in _RULES.values()):
            raise ValueError(f"duplicate rule name {name!r}")
        _RULES[code] = Rule(
            code,
            name,
            title,
            severity,
            where,
            fix,
            what,
            why,
            example,
            evidence,
            {k: float(v) for k, v in (thresholds or {}).items()},
            func,
        )
        return func

    return register


def _text(value: Any) -> str:
    if isinstance(value, float):
        return str(value) if not math.isfinite(value) else f"{value:.6g}"
    return "" if value is None else str(value)


@dataclass
class RuleContext:
    """What a rule gets besides the facts: itself, its thresholds, the command, and constructors."""

    rule: Rule
    thresholds: dict[str, float]
    command: str = ""
    expect: tuple[str, ...] = ()

    def threshold(self, key: str) -> float:
        """The merged threshold `key` (rule default, overridden by settings)."""
        try:
            return self.thresholds[key]
        except KeyError:
            raise KeyError(f"rule {self.rule.name} has no threshold {key!r}") from None

    def _finding(
        self,
        status: Status,
        severity: str,
        measured: Any,
        expected: Any,
        message: str,
        sources: Sequence[str],
        subject: str,
        fix: str | None,
    ) -> Finding:
        return Finding(
            self.rule.code,
            self.rule.name,
            status,
            severity,
            _text(measured),
            _text(expected),
            message,
            self.rule.fix if fix is None else fix,
            tuple(s for s in sources if s),
            subject,
        )

    def passed(
        self, measured: Any, expected: Any, message: str = "", sources: Sequence[str] = (), subject: str = ""
    ) -> Finding:
        """A PASS finding."""
        return self._finding(Status.PASS, self.rule.severity, measured, expected, message, sources, subject, None)

    def failed(
        self,
        measured: Any,
        expected: Any,
        message: str,
        sources: Sequence[str] = (),
        subject: str = "",
        fix: str | None = None,
    ) -> Finding:
        """A FAIL finding (severity "fail"), whatever the rule's default severity."""
        return self._finding(Status.FAIL, "fail", measured, expected, message, sources, subject, fix)

    def warned(
        self,
        measured: Any,
        expected: Any,
        message: str,
        sources: Sequence[str] = (),
        subject: str = "",
        fix: str | None = None,
    ) -> Finding:
        """A WARN finding (severity "warn"), e.g. the softer half of a two-level rule."""
        return self._finding(Status.WARN, "warn", measured, expected, message, sources, subject, fix)

    def problem(
        self,
        measured: Any,
        expected: Any,
        message: str,
        sources: Sequence[str] = (),
        subject: str = "",
        fix: str | None = None,
    ) -> Finding:
        """FAIL or WARN according to the rule's severity."""
        make = self.failed if self.rule.severity == "fail" else self.warned
        return make(measured, expected, message, sources, subject, fix)

    def skip(self, reason: str, sources: Sequence[str] = (), subject: str = "") -> Finding:
        """A SKIP finding; `reason` (why it could not be checked) goes into `message`."""
        return self._finding(Status.SKIP, self.rule.severity, "", "", reason, sources, subject, "")

    def require(self, facts: Facts, *names: str, subject: str = "") -> Finding | None:
        """SKIP naming the missing facts among `names`, or None when all are known."""
        missing = facts.missing(*names)
        if not missing:
            return None
        return self.skip("not known: " + ", ".join(missing), subject=subject)

    @staticmethod
    def sources_of(facts: Facts, *names: str) -> tuple[str, ...]:
        """The provenance of the given facts (unknown ones left out), for `sources=`."""
        return tuple(facts.source(n) for n in names if facts.source(n))


def load_rules() -> None:
    """Import every module in `RULE_MODULES` so its rules register (idempotent per module)."""
    for module in RULE_MODULES:
        importlib.import_module(f"fgclip_doctor.checks.{module}")


def all_rules() -> list[Rule]:
    """Every registered rule, sorted by code."""
    load_rules()
    return [_RULES[c] for c in sorted(_RULES)]


def _lookup(name_or_code: str) -> Rule | None:
    key = name_or_code.strip()
    for r in _RULES.values():
        if key.upper() == r.code or key.lower() == r.name:
            return r
    return None


def _unknown(name: str, what: str = "rule") -> DoctorUsageError:
    choices = [r.name for r in _RULES.values()] + [r.code for r in _RULES.values()]
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=3, cutoff=0.5)
    close = [next(c for c in choices if c.lower() == m) for m in close]
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    return DoctorUsageError(f"unknown {what} {name!r}{hint} (`fgclip-doctor rules` lists them)")


def get_rule(name_or_code: str) -> Rule:
    """The rule with this slug or code (case-insensitive); DoctorUsageError with close names if none."""
    load_rules()
    found = _lookup(name_or_code)
    if found is None:
        raise _unknown(name_or_code)
    return found


def _matches(r: Rule, selector: str) -> bool:
    """A selector is a slug, a code, or a code prefix such as "FGD1" (all temperature rules)."""
    s = selector.strip()
    return s.lower() == r.name or (s.upper().startswith("FGD") and r.code.startswith(s.upper()))


def _check_selectors(selectors: Sequence[str], option: str) -> None:
    for s in selectors:
        if not any(_matches(r, s) for r in _RULES.values()):
            raise _unknown(s, f"rule in {option}")


def _thresholds_for(r: Rule, settings: Settings | None) -> dict[str, float]:
    merged = dict(r.thresholds)
    if settings is not None:
        for key in (r.name, r.code):
            merged.update(settings.thresholds.get(key, {}))
    return merged


def _check_thresholds(settings: Settings) -> None:
    for table, values in settings.thresholds.items():
        r = _lookup(table)
        if r is None:
            raise _unknown(table, "rule in thresholds")
        unknown = sorted(set(values) - set(r.thresholds))
        if r.thresholds and unknown:  # a rule with no defaults (opt-in) accepts any keys
            raise DoctorUsageError(
                f"thresholds for {r.name}: unknown key {unknown[0]!r} (known: {', '.join(sorted(r.thresholds))})"
            )


def selected_rules(where: str, settings: Settings | None = None) -> list[Rule]:
    """Rules that apply at `where` (one of C K L D) after settings.select / settings.ignore."""
    if len(where) != 1 or where not in WHERE_LETTERS:
        raise ValueError(f"where must be one of {WHERE_LETTERS!r}, got {where!r}")
    rules = [r for r in all_rules() if where in r.where]
    if settings is None:
        return rules
    _check_selectors(settings.select, "select")
    _check_selectors(settings.ignore, "ignore")
    _check_thresholds(settings)
    if settings.select:
        rules = [r for r in rules if any(_matches(r, s) for s in settings.select)]
    return [r for r in rules if not any(_matches(r, s) for s in settings.ignore)]


def run_rules(facts: Facts, where: str, settings: Settings | None = None, *, command: str = "") -> list[Finding]:
    """Run every selected rule applying at `where` on `facts`; findings in rule-code order.

    Unknown names in select / ignore / thresholds raise DoctorUsageError. A rule must return at
    least one Finding (a rule with nothing to check returns `ctx.skip(reason)`).
    """
    expect = tuple(settings.expect) if settings is not None else ()
    findings: list[Finding] = []
    for r in selected_rules(where, settings):
        ctx = RuleContext(r, _thresholds_for(r, settings), command, expect)
        result = r.func(facts, ctx)
        produced = [result] if isinstance(result, Finding) else list(result or [])
        if not produced or not all(isinstance(f, Finding) for f in produced):
            raise TypeError(
                f"rule {r.code} {r.name} must return a Finding or a non-empty list "
                f"of Findings (use ctx.skip(reason)), got {result!r}"
            )
        for f in produced:  # a SKIP says its missing facts in words, and why each is unknown
            if f.status is Status.SKIP:
                f.message, names = in_words(f.message, facts.why, facts.covers)
                f.missing = tuple(names)
        findings.extend(produced)
    return findings


@contextmanager
def scratch_registry() -> Iterator[None]:
    """For tests: an empty registry (RULE_MODULES not loaded) inside the block; rules registered
    there are forgotten afterwards and the real ones come back."""
    global RULE_MODULES
    saved, modules = dict(_RULES), RULE_MODULES
    _RULES.clear()
    RULE_MODULES = []
    try:
        yield
    finally:
        _RULES.clear()
        _RULES.update(saved)
        RULE_MODULES = modules
