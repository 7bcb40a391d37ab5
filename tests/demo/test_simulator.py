"""The demo simulator: deterministic under a seed, honest ground truth, noise that is not failure."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from handoffs import conventions as c
from handoffs import sdk
from handoffs import taxonomy as t
from handoffs.demo import DemoRun, parse_kinds, simulate
from handoffs.errors import UsageError
from handoffs.store import Store

# Attributes whose values are ids minted per run (random by design): compared by shape only.
_IDS = {c.RUN_ID, c.GEN_AI_CONVERSATION_ID, c.DELEGATION_ID, c.OUTPUT_ID, c.INPUT_OUTPUT_IDS,
        c.VERIFICATION_TARGET, c.IDEMPOTENCY_KEY, c.RETRY_OF}


@pytest.fixture
def memory() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    sdk.configure("demo-test", exporter=exporter, schedule_delay=0.05)
    yield exporter
    sdk.shutdown()


def _emit(memory: InMemorySpanExporter, **kwargs: Any) -> tuple[list[DemoRun], list[ReadableSpan]]:
    memory.clear()
    runs = simulate(**kwargs)
    assert sdk.flush(30)
    return runs, sorted(memory.get_finished_spans(), key=lambda s: (s.attributes.get(c.RUN_ID, ""),
                                                                    s.attributes[c.STEP]))


def _shape(spans: list[ReadableSpan]) -> list[tuple[Any, ...]]:
    """Everything about the spans except ids and clocks."""
    by_id = {s.context.span_id: s for s in spans}

    def attrs(a: Any) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted((k, "<id>" if k in _IDS else v) for k, v in a.items()))

    return [(s.name, by_id[s.parent.span_id].name if s.parent else None, attrs(s.attributes),
             s.status.status_code.name, tuple((e.name, attrs(e.attributes)) for e in s.events))
            for s in spans]


def test_the_same_seed_gives_the_same_runs(memory: InMemorySpanExporter) -> None:
    runs_a, spans_a = _emit(memory, n_runs=12, seed=5)
    runs_b, spans_b = _emit(memory, n_runs=12, seed=5)
    assert [(r.topology, r.workers, r.kinds, r.injected) for r in runs_a] == \
           [(r.topology, r.workers, r.kinds, r.injected) for r in runs_b]
    assert _shape(spans_a) == _shape(spans_b)
    assert {r.run_id for r in runs_a}.isdisjoint({r.run_id for r in runs_b})  # new runs, not duplicates
    _, spans_c = _emit(memory, n_runs=12, seed=6)
    assert _shape(spans_c) != _shape(spans_a)


def test_ground_truth_is_on_the_run_span_and_points_at_what_happened(memory: InMemorySpanExporter) -> None:
    runs, spans = _emit(memory, n_runs=60, seed=11, failure_rate=1.0)
    by_run: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        by_run.setdefault(s.attributes[c.RUN_ID], []).append(s)
    seen: Counter[str] = Counter()
    for run in runs:
        assert run.injected, "failure_rate=1 injects into every run"
        trace = by_run[run.run_id]
        root = next(s for s in trace if s.attributes[c.SPAN_TYPE] == "run")
        assert json.loads(root.attributes[c.DEMO_INJECTED]) == run.injected
        for inj in run.injected:
            seen[inj["code"]] += 1
            _assert_points_at(inj, trace)
    assert set(seen) == set(parse_kinds("all"))  # every kind shows up in 60 runs


def _at_step(trace: list[ReadableSpan], step: int) -> tuple[ReadableSpan | None, Any]:
    for s in trace:
        if s.attributes[c.STEP] == step:
            return s, None
        for e in s.events:
            if e.attributes.get(c.STEP) == step:
                return s, e
    raise AssertionError(f"no span or event at step {step}")


def _assert_points_at(inj: dict[str, Any], trace: list[ReadableSpan]) -> None:
    span, event = _at_step(trace, inj["step"])
    code, agent = inj["code"], inj["agent"]
    if code == t.OVERWRITE:
        assert event.name == c.EVENT_DECISION and event.attributes[c.DECISION_ACTION] == "overwrote"
        assert event.attributes[c.DECISION_AGENT] == agent
        assert inj["step"] - span.attributes[c.STEP] <= 5  # within the first 5 steps of the hand-off
        outputs = [e for e in span.events if e.name == c.EVENT_OUTPUT and e.timestamp <= event.timestamp]
        assert outputs and not any(e.attributes[c.OUTPUT_UNIT_COMPLETE] for e in outputs)
    elif code == t.PREMATURE_TERMINATION:
        assert event.name == c.EVENT_TERMINATION and event.attributes[c.TERMINATION_SUCCESS_CLAIMED]
        open_handoffs = [s for s in trace if s.attributes.get(c.DELEGATION_STATUS) == "open"]
        failed_checks = [s for s in trace if s.attributes.get(c.VERIFICATION_VERDICT) == "fail"]
        assert open_handoffs or failed_checks
    elif code == t.MISSING_VERIFICATION:
        assert event.name == c.EVENT_DECISION and event.attributes[c.DECISION_ACTION] == "accepted"
        targets = {s.attributes.get(c.VERIFICATION_TARGET) for s in trace}
        assert event.attributes[c.OUTPUT_ID] not in targets
        assert span.attributes[c.DELEGATION_ID] not in targets
    elif code == t.STEP_REPETITION:
        assert event is None and span.attributes[c.SPAN_TYPE] == "tool"
        same = [s for s in trace if s.attributes.get(c.GEN_AI_TOOL_NAME) == span.attributes[c.GEN_AI_TOOL_NAME]
                and s.attributes.get(c.TOOL_ARGS_HASH) == span.attributes[c.TOOL_ARGS_HASH]
                and s.attributes.get(c.GEN_AI_AGENT_NAME) == agent]
        assert len(same) >= 2 and not any(c.RETRY_OF in s.attributes for s in same)
    elif code == t.ERROR_CASCADE:
        assert event is None and span.status.status_code.name == "ERROR"
        assert span.attributes[c.GEN_AI_AGENT_NAME] == agent
        later_errors = [s for s in trace if s.status.status_code.name == "ERROR"
                        and s.attributes[c.STEP] > inj["step"] and c.RETRY_OF not in s.attributes]
        assert later_errors, "the error spread downstream"
    else:
        raise AssertionError(f"unexpected code {code}")


def test_clean_runs_have_noise_but_no_ground_truth(memory: InMemorySpanExporter) -> None:
    runs, spans = _emit(memory, n_runs=30, seed=2, inject="none")
    assert all(r.injected == [] and r.kinds == [] for r in runs)
    decisions = Counter(e.attributes[c.DECISION_ACTION] for s in spans for e in s.events
                        if e.name == c.EVENT_DECISION)
    assert decisions["accepted"] and decisions["modified"] and decisions["rejected"]
    assert "overwrote" not in decisions
    deploys = [s for s in spans if s.attributes.get(c.TOOL_HIGH_STAKES)]
    assert deploys and all(e.name == c.EVENT_APPROVAL for s in deploys for e in s.events)
    retries = [s for s in spans if c.RETRY_OF in s.attributes]
    assert retries and all(s.attributes[c.IDEMPOTENCY_KEY] for s in retries)
    assert {r.topology for r in runs} == {"centralized", "independent"}
    assert len({len(r.workers) for r in runs}) == 3  # teams of 2, 3 and 4 workers
    # everything accepted was verified, every delegation closed, nothing claimed over a failed check
    targets = {s.attributes.get(c.VERIFICATION_TARGET) for s in spans}
    for s in spans:
        if s.attributes.get(c.SPAN_TYPE) == "delegation":
            assert s.attributes[c.DELEGATION_STATUS] == "completed"
            for e in s.events:
                if e.name == c.EVENT_DECISION and e.attributes[c.DECISION_ACTION] == "accepted":
                    assert {e.attributes[c.OUTPUT_ID], s.attributes[c.DELEGATION_ID]} & targets


def test_inject_selects_kinds_and_failure_rate_the_share(memory: InMemorySpanExporter) -> None:
    runs, _ = _emit(memory, n_runs=20, seed=4, inject="overwrite", failure_rate=1.0)
    assert all(r.kinds == [t.OVERWRITE] for r in runs)
    assert all([i["code"] for i in r.injected] == [t.OVERWRITE] for r in runs)
    runs, _ = _emit(memory, n_runs=40, seed=4, inject="FM-1.3,error-cascade", failure_rate=0.5)
    assert {k for r in runs for k in r.kinds} == {t.STEP_REPETITION, t.ERROR_CASCADE}
    assert 5 < sum(bool(r.kinds) for r in runs) < 35


def test_bad_inject_values_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown failure kind 'overwrites'"):
        parse_kinds("overwrites")
    assert parse_kinds("none") == [] and parse_kinds("FM-3.1,premature-termination") == [t.PREMATURE_TERMINATION]
    with pytest.raises(UsageError):
        simulate(1, failure_rate=2.0)


def test_simulate_writes_straight_into_a_store(store: Store) -> None:
    runs = simulate(8, seed=9, store=store, failure_rate=1.0)
    rows = store.query("SELECT run_id, topology, attributes[{k:String}] AS injected FROM handoffs_runs FINAL "
                       "ORDER BY run_id", {"k": c.DEMO_INJECTED})
    assert [r["run_id"] for r in rows] == sorted(r.run_id for r in runs)
    by_id = {r.run_id: r for r in runs}
    for row in rows:
        assert json.loads(row["injected"]) == by_id[row["run_id"]].injected
        assert row["topology"] == by_id[row["run_id"]].topology
    traces = store.scalar("SELECT uniqExact(TraceId) FROM otel_traces")
    assert traces == 8
