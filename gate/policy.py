"""The gate's policy file (TOML): which runs to judge, against which baseline, by which checks.

A policy is read once, validated completely, and turned into frozen dataclasses; any mistake
is a ``UsageError`` naming the file and the line at fault, so CI fails with exit code 2 and a
message a person can act on instead of a traceback. ``handoffs.example.toml`` documents it.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from handoffs import taxonomy as tx
from handoffs.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

FAIL = "fail"
WARN = "warn"
PASS = "pass"
SEVERITIES = (FAIL, WARN)
RULES = (FAIL, WARN, PASS)

LOWER = "lower"  # lower values are better
HIGHER = "higher"
DIRECTIONS = (LOWER, HIGHER)

RATE = "rate"  # share of runs with at least one finding of the mode
COUNT = "count"  # findings of the mode per run
STATS = (RATE, COUNT)

# Metrics the detectors compute, and which way is better for each. A metric not listed here
# may still be gated if its check says ``direction``: new detectors need no gate release.
METRIC_DIRECTIONS: dict[str, str] = {
    tx.OVERWRITE_RATE: LOWER,
    tx.TOKENS_BEFORE_INTERRUPTION: HIGHER,
    tx.AUTONOMOUS_COMPLETION_RATE: HIGHER,
    tx.REWRITE_BUG_RATE: LOWER,
    tx.ORIGINAL_BUG_RATE: LOWER,
    tx.ERROR_AMPLIFICATION: LOWER,
    tx.COORDINATION_OVERHEAD: LOWER,
}
# What a run must have for each of those metrics to have a value at all (every ratio is
# undefined without its denominator): a run measured without one has nothing to judge.
METRIC_NEEDS: dict[str, str] = {
    tx.OVERWRITE_RATE: "a delegation",
    tx.TOKENS_BEFORE_INTERRUPTION: "a delegation its delegator intervened in",
    tx.AUTONOMOUS_COMPLETION_RATE: "a delegation",
    tx.REWRITE_BUG_RATE: "a verification of a delegator's rewrite",
    tx.ORIGINAL_BUG_RATE: "a verification of a delegate's output",
    tx.ERROR_AMPLIFICATION: "an error to amplify",
    tx.COORDINATION_OVERHEAD: "work by agents that do not delegate",
}
SCOPES = (tx.SCOPE_RUN, tx.SCOPE_AGENT, tx.SCOPE_PAIR)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class RunFilter:
    """Which runs a side of the comparison holds; empty fields do not filter."""

    run_ids: tuple[str, ...] = ()
    commit: str = ""  # a sha (7+ characters match as a prefix) or "current": the CI's commit
    branch: str = ""  # a branch name or "current"
    tag: str = ""
    test_id: str = ""  # prefix of the pytest node id the run was traced under
    since: str = ""  # ISO 8601 time or a duration back from now ("24h", "7d")
    until: str = ""
    max_runs: int = 10_000

    @property
    def empty(self) -> bool:
        return not (self.run_ids or self.commit or self.branch or self.tag or self.test_id
                    or self.since or self.until)


@dataclass(frozen=True)
class BaselineSpec:
    """How to find the baseline when ``--baseline`` is not given.

    With ``run_ids``, ``commit`` or ``tag`` set, those runs are the baseline. Otherwise it is
    the runs of the last ``commits`` commits on ``branch`` (``main`` unless set; green ones
    only when ``green``: commits whose latest recorded gate did not fail).
    """

    filter: RunFilter = field(default_factory=lambda: RunFilter(max_runs=200))
    green: bool = True
    commits: int = 1

    @property
    def explicit(self) -> bool:
        return bool(self.filter.run_ids or self.filter.commit or self.filter.tag)


@dataclass(frozen=True)
class Check:
    """One check: a metric or a failure mode, an absolute limit and/or a regression limit."""

    name: str
    line: int
    metric: str = ""
    failure_mode: str = ""
    scope: str = tx.SCOPE_RUN
    subject: str = ""  # for agent/pair scope: one agent ("writer") or pair ("sup->writer")
    direction: str = LOWER
    stat: str = RATE  # failure modes: what the regression test compares
    min_confidence: float = 0.0
    max: float | None = None
    min: float | None = None
    max_count: int | None = None
    max_rate: float | None = None
    max_regression: float | None = None  # relative: 0.10 = at most 10% worse than baseline
    max_increase: float | None = None  # absolute worsening allowed, in the metric's units
    severity: str = FAIL

    @property
    def is_regression(self) -> bool:
        return self.max_regression is not None or self.max_increase is not None

    @property
    def is_absolute(self) -> bool:
        return any(v is not None for v in (self.max, self.min, self.max_count, self.max_rate))

    def limit_text(self) -> str:
        """The check's limits as a person reads them: "<= 0.2 and mean <= 10% worse than baseline"."""
        parts = [f"{op} {value:g}" for op, value in (
            ("<=", self.max), (">=", self.min), ("count <=", self.max_count),
            ("share of runs <=", self.max_rate)) if value is not None]
        if self.is_regression:
            what = ("share of runs" if self.failure_mode and self.stat == RATE
                    else "findings per run" if self.failure_mode else "mean")
            if self.max_regression is not None:
                parts.append(f"{what} <= {self.max_regression:.0%} worse than baseline")
            else:
                # Higher is better: the floor is below the baseline, and the mean must stay above it.
                op, sign = ("<=", "+") if self.direction == LOWER else (">=", "-")
                parts.append(f"{what} {op} baseline {sign} {self.max_increase:g}")
        return " and ".join(parts)

    @property
    def target(self) -> str:
        """What the check measures, as a user would name it."""
        if self.metric:
            return self.metric if self.scope == tx.SCOPE_RUN else f"{self.metric} per {self.scope}"
        return f"{self.failure_mode} ({tx.BY_CODE[self.failure_mode].name})"


@dataclass(frozen=True)
class Policy:
    """A parsed, validated policy."""

    name: str
    source: str
    checks: tuple[Check, ...]
    runs: RunFilter = field(default_factory=RunFilter)
    baseline: BaselineSpec = field(default_factory=BaselineSpec)
    project: str = ""
    significance: float = 0.05
    min_runs: int = 5
    too_few_runs: str = WARN
    no_runs: str = FAIL
    detect: bool = True


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy file at ``path``."""
    if not str(path).strip():
        raise UsageError("--policy is empty: give the policy file's path (copy handoffs.example.toml to start one)")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM, as some Windows editors save
    except FileNotFoundError:
        raise UsageError(f"policy file {path} not found; copy handoffs.example.toml to start one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read policy file {path}: {exc}") from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse policy TOML; every mistake is a UsageError with ``source:line``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _decode_error_line(exc) or (len(text.splitlines()) or None)  # "at end of document"
        where = f"{source}:{line}" if line else source
        raise UsageError(f"{where}: not valid TOML: {exc}") from None
    return _Parser(text, source).policy(data)


def _decode_error_line(exc: Exception) -> int | None:
    lineno = getattr(exc, "lineno", None)  # Python 3.14 adds it; older ones only say it in text
    if lineno:
        return int(lineno)
    m = re.search(r"line (\d+)", str(exc))
    return int(m.group(1)) if m else None


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time, or a duration back from now ("90m", "24h", "7d"), as aware UTC."""
    now = now or datetime.now(timezone.utc)
    m = _DURATION.match(value)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _DURATION_UNITS[m.group(2)])
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")


class _Parser:
    """Validation with line numbers: TOML keeps none, so they are found in the source text."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = text.splitlines()
        # (table name, occurrence index) -> (first line, last line), 1-based
        self.spans: dict[tuple[str, int], tuple[int, int]] = {}
        seen: dict[str, int] = {}
        current: tuple[str, int] = ("", 0)
        start = 1
        for i, raw in enumerate(self.lines, start=1):
            m = _HEADER.match(raw)
            if not m:
                continue
            self.spans[current] = (start, i - 1)
            name = m.group(2)
            index = seen.get(name, 0)
            seen[name] = index + 1
            current, start = (name, index), i
        self.spans[current] = (start, len(self.lines))

    def line_of(self, table: str, index: int = 0, key: str | None = None) -> int:
        """The line of ``key`` in the ``index``-th ``[table]``, else of the table, else 1.

        TOML spells a key in several places: ``key = ...`` or ``key.sub = ...`` (quoted or not)
        inside the table, a sub-table header ``[table.key]``, or a dotted key ``table.key = ...``
        before any header; each is looked for, the table's own lines first.
        """
        first, last = self.spans.get((table, index), (0, -1))
        dotted = re.compile(rf"^\s*{re.escape(table)}\s*\.") if table else None
        if key is not None:
            name = rf"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')"
            inside = re.compile(rf"^\s*{name}\s*[=.]")
            for i in range(first, last + 1):
                if inside.match(self.lines[i - 1]):
                    return i
            if table:
                outside = re.compile(rf"^\s*(?:\[\[?\s*)?{re.escape(table)}\s*\.\s*{name}\s*[=.\]]")
                after_first = list(range(max(first, 1), len(self.lines) + 1)) + list(range(1, max(first, 1)))
                for i in after_first:
                    if outside.match(self.lines[i - 1]):
                        return i
        if first:
            return first
        if dotted is not None:
            return next((i for i, text in enumerate(self.lines, 1) if dotted.match(text)), 1)
        return 1

    def error(self, line: int, message: str) -> UsageError:
        return UsageError(f"{self.source}:{line}: {message}")

    # --- typed getters ---------------------------------------------------------------------
    def _get(self, table: dict, name: str, idx: int, key: str, kind: type | tuple, default: Any,
             what: str) -> Any:
        if key not in table:
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are ints to Python; a number field must not take ``true``.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.error(self.line_of(name, idx, key), f"{key} must be {what}, not {value!r}")
        return value

    def _str(self, t: dict, name: str, idx: int, key: str, default: str = "",
             choices: tuple[str, ...] | None = None) -> str:
        value = self._get(t, name, idx, key, str, default, "a string")
        if choices and key in t and value not in choices:
            raise self.error(self.line_of(name, idx, key),
                             f"{key} = {value!r} is not one of {', '.join(choices)}")
        return value

    def _num(self, t: dict, name: str, idx: int, key: str, default: float | None = None,
             low: float | None = None, high: float | None = None) -> float | None:
        value = self._get(t, name, idx, key, (int, float), default, "a number")
        if value is None:
            return None
        if not math.isfinite(value):  # TOML has nan and inf: no comparison with nan ever fails
            raise self.error(self.line_of(name, idx, key), f"{key} must be a finite number, not {value}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self.error(self.line_of(name, idx, key), f"{key} = {value} must be {bounds}")
        return float(value)

    def _int(self, t: dict, name: str, idx: int, key: str, default: int | None, low: int) -> int | None:
        value = self._get(t, name, idx, key, int, default, "a whole number")
        if value is not None and value < low:
            raise self.error(self.line_of(name, idx, key), f"{key} = {value} must be at least {low}")
        return value

    def _bool(self, t: dict, name: str, idx: int, key: str, default: bool) -> bool:
        return self._get(t, name, idx, key, bool, default, "true or false")

    def _only(self, t: dict, name: str, idx: int, allowed: set[str]) -> None:
        for key in t:
            if key not in allowed:
                raise self.error(self.line_of(name, idx, key),
                                 f"unknown key {key!r} in [{name}]; expected one of {', '.join(sorted(allowed))}")

    # --- sections -------------------------------------------------------------------------
    def policy(self, data: dict) -> Policy:
        top = {"gate", "runs", "baseline", "check"}
        for key in data:
            if key not in top:
                line = self.line_of(key) if (key, 0) in self.spans else self.line_of("", 0, key)
                raise self.error(line, f"unknown table or key {key!r}; expected [gate], [runs], "
                                       "[baseline] and [[check]] tables")
        for key in ("gate", "runs", "baseline"):
            if key in data and not isinstance(data[key], dict):
                raise self.error(self.line_of("", 0, key), f"{key} must be a table: [{key}]")
        gate = data.get("gate", {})
        self._only(gate, "gate", 0, {"name", "project", "significance", "min_runs", "too_few_runs",
                                     "no_runs", "detect"})
        raw_checks = data.get("check", [])
        if isinstance(raw_checks, dict):  # [check]: one table, where checks are an array of them
            line = next((i for i, text in enumerate(self.lines, 1) if text.strip().startswith("[check]")), 1)
            raise self.error(line, "[check] is written [[check]] (double brackets): each check is one "
                                   "table of an array")
        if not isinstance(raw_checks, list) or not raw_checks:
            raise self.error(1, "the policy has no checks; add at least one [[check]] table "
                                "(see handoffs.example.toml)")
        checks = tuple(self.check(c, i) for i, c in enumerate(raw_checks))
        names = [c.name for c in checks]
        for i, check in enumerate(checks):
            if names.index(check.name) != i:
                raise self.error(check.line, f"two checks are named {check.name!r}; give each a unique name")
        return Policy(
            name=self._str(gate, "gate", 0, "name", Path(self.source).stem),
            source=self.source,
            checks=checks,
            runs=self.run_filter(data.get("runs", {}), "runs", extra=set(), default_max=10_000),
            baseline=self.baseline(data.get("baseline", {})),
            project=self._str(gate, "gate", 0, "project"),
            significance=self._num(gate, "gate", 0, "significance", 0.05, 0.0001, 0.5),
            min_runs=self._int(gate, "gate", 0, "min_runs", 5, 2),
            too_few_runs=self._str(gate, "gate", 0, "too_few_runs", WARN, RULES),
            no_runs=self._str(gate, "gate", 0, "no_runs", FAIL, RULES),
            detect=self._bool(gate, "gate", 0, "detect", True),
        )

    def run_filter(self, t: dict, name: str, extra: set[str], default_max: int) -> RunFilter:
        keys = {"run_ids", "commit", "branch", "tag", "test_id", "since", "until", "max_runs"}
        self._only(t, name, 0, keys | extra)
        run_ids = self._get(t, name, 0, "run_ids", list, [], "a list of run ids")
        if not all(isinstance(r, str) for r in run_ids):
            raise self.error(self.line_of(name, 0, "run_ids"), "run_ids must be a list of strings")
        window = {}
        for key in ("since", "until"):
            value = self._str(t, name, 0, key)
            if value:
                try:
                    window[key] = parse_time(value)
                except ValueError:
                    raise self.error(self.line_of(name, 0, key),
                                     f"{key} = {value!r} is neither an ISO 8601 time "
                                     "(2026-01-31T12:00:00Z) nor a duration (90m, 24h, 7d)") from None
        if len(window) == 2 and window["since"] >= window["until"]:
            raise self.error(self.line_of(name, 0, "until"), f"until = {t['until']!r} is not after "
                             f"since = {t['since']!r}: no run could match")
        return RunFilter(
            run_ids=tuple(run_ids),
            commit=self._str(t, name, 0, "commit"),
            branch=self._str(t, name, 0, "branch"),
            tag=self._str(t, name, 0, "tag"),
            test_id=self._str(t, name, 0, "test_id"),
            since=self._str(t, name, 0, "since"),
            until=self._str(t, name, 0, "until"),
            max_runs=self._int(t, name, 0, "max_runs", default_max, 1),
        )

    def baseline(self, t: dict) -> BaselineSpec:
        flt = self.run_filter(t, "baseline", extra={"green", "commits"}, default_max=200)
        return BaselineSpec(filter=flt, green=self._bool(t, "baseline", 0, "green", True),
                            commits=self._int(t, "baseline", 0, "commits", 1, 1))

    def check(self, t: Any, i: int) -> Check:
        line = self.line_of("check", i)
        if not isinstance(t, dict):
            raise self.error(line, "each check must be a [[check]] table")
        self._only(t, "check", i, {"name", "metric", "failure_mode", "scope", "subject", "direction",
                                   "stat", "min_confidence", "max", "min", "max_count", "max_rate",
                                   "max_regression", "max_increase", "severity"})
        metric = self._str(t, "check", i, "metric")
        mode = self._str(t, "check", i, "failure_mode")
        if bool(metric) == bool(mode):
            raise self.error(line, "a check needs exactly one of metric = \"...\" or failure_mode = \"...\"")
        direction = self._str(t, "check", i, "direction", "", DIRECTIONS)
        if metric:
            for key in ("max_count", "max_rate", "stat", "min_confidence"):
                if key in t:
                    raise self.error(self.line_of("check", i, key),
                                     f"{key} applies to failure_mode checks; for a metric use max, min, "
                                     "max_regression or max_increase")
            known = metric in METRIC_DIRECTIONS or (
                metric.startswith(tx.FAILURE_RATE_PREFIX)
                and metric.removeprefix(tx.FAILURE_RATE_PREFIX) in tx.BY_CODE)
            if not known and not direction:
                raise self.error(self.line_of("check", i, "metric"),
                                 f"unknown metric {metric!r}: use one of {', '.join(METRIC_DIRECTIONS)} "
                                 f"or {tx.FAILURE_RATE_PREFIX}<code>, or say direction = \"lower\"|\"higher\" "
                                 "for a metric of your own")
            own = METRIC_DIRECTIONS.get(metric, LOWER) if known else direction
            if direction and direction != own:
                # It would silently turn the check around: a rise in overwrites would pass.
                raise self.error(self.line_of("check", i, "direction"),
                                 f"{metric} is {own}-is-better: drop direction (it is for metrics of your own)")
            direction = direction or own
        else:
            if mode not in tx.BY_CODE:
                raise self.error(self.line_of("check", i, "failure_mode"),
                                 f"unknown failure mode {mode!r}: use one of {', '.join(tx.BY_CODE)}")
            for key in ("max", "min", "scope", "subject", "direction"):
                if key in t:
                    raise self.error(self.line_of("check", i, key),
                                     f"{key} applies to metric checks; for a failure mode use max_count, "
                                     "max_rate, max_regression or max_increase")
            direction = LOWER
        check = Check(
            name=self._str(t, "check", i, "name", ""),
            line=line,
            metric=metric,
            failure_mode=mode,
            scope=self._str(t, "check", i, "scope", tx.SCOPE_RUN, SCOPES),
            subject=self._str(t, "check", i, "subject"),
            direction=direction,
            stat=self._str(t, "check", i, "stat", RATE, STATS),
            min_confidence=self._num(t, "check", i, "min_confidence", 0.0, 0.0, 1.0),
            max=self._num(t, "check", i, "max"),
            min=self._num(t, "check", i, "min"),
            max_count=self._int(t, "check", i, "max_count", None, 0),
            max_rate=self._num(t, "check", i, "max_rate", None, 0.0, 1.0),
            max_regression=self._num(t, "check", i, "max_regression", None, 0.0),
            max_increase=self._num(t, "check", i, "max_increase", None, 0.0),
            severity=self._str(t, "check", i, "severity", FAIL, SEVERITIES),
        )
        if not (check.is_absolute or check.is_regression):
            raise self.error(line, "this check sets no limit: add max/min (metrics), max_count/max_rate "
                                   "(failure modes), or max_regression/max_increase (against the baseline)")
        if check.min is not None and check.max is not None and check.min > check.max:
            raise self.error(self.line_of("check", i, "min"),
                             f"min = {check.min:g} is above max = {check.max:g}: no value could pass")
        if check.subject and check.scope == tx.SCOPE_RUN:
            raise self.error(self.line_of("check", i, "subject"),
                             'subject names an agent (scope = "agent") or a pair "delegator->delegate" '
                             '(scope = "pair"); a run-scope check judges each run whole')
        if check.scope == tx.SCOPE_PAIR and check.subject:
            ends = [end.strip() for end in check.subject.split("->")]
            if len(ends) != 2 or not all(ends):
                raise self.error(self.line_of("check", i, "subject"),
                                 f'subject = {check.subject!r}: a pair is "delegator->delegate"')
            object.__setattr__(check, "subject", "->".join(ends))
        if check.max_regression is not None and check.max_increase is not None:
            raise self.error(self.line_of("check", i, "max_increase"),
                             "set max_regression (relative) or max_increase (absolute), not both")
        if not check.name:
            per = f" per {check.scope}" if metric and check.scope != tx.SCOPE_RUN else ""
            subject = f" {check.subject}" if check.subject else ""
            object.__setattr__(check, "name", f"{metric or mode}{per}{subject} {check.limit_text()}")
        return check
