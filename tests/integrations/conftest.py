"""Fixtures for the framework integrations: the SDK writing into a fresh store, the examples,
and what the store then holds (delegations, terminations, detector findings).

The framework tests are marked ``frameworks`` and skip when the framework is not importable;
``docs/integrations.md`` says how to install them (a separate venv) and run them for real.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from handoffs import conventions as c
from handoffs import sdk
from handoffs.sdk.export import StoreSpanExporter
from handoffs.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def traced(store: Store) -> Iterator[Store]:
    """The SDK configured to write into ``store`` (content kept, so tests can read it)."""
    sdk.configure("integration-test", exporter=StoreSpanExporter(store), capture_content=True)
    yield store
    sdk.shutdown()


def example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (the runnable example is what the tests exercise)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"handoffs_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def delegations(store: Store) -> list[dict[str, Any]]:
    """Every delegation span with its status, ends and the decision actions on it, in step order."""
    sdk.flush()
    return store.query(f"""
SELECT SpanAttributes['{c.SOURCE_AGENT}'] AS source, SpanAttributes['{c.TARGET_AGENT}'] AS target,
    SpanAttributes['{c.DELEGATION_STATUS}'] AS status, SpanAttributes['{c.MODE}'] AS mode,
    arrayFilter(x -> x != '', arrayMap(a -> a['{c.DECISION_ACTION}'], Events.Attributes)) AS decisions,
    arrayFilter(x -> x != '', arrayMap(a -> a['{c.OUTPUT_CONTENT}'], Events.Attributes)) AS outputs,
    arrayFilter(x -> x != '', arrayMap(a -> a['{c.OUTPUT_TOKENS}'], Events.Attributes)) AS tokens,
    TraceId AS trace
FROM otel_traces FINAL
WHERE SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.DELEGATION.value}'
ORDER BY toInt32OrZero(SpanAttributes['{c.STEP}'])""")


def tools(store: Store) -> list[dict[str, Any]]:
    """Tool spans (hand-offs excluded) with the agent that called them and whether they failed."""
    sdk.flush()
    return store.query(f"""
SELECT SpanAttributes['{c.GEN_AI_TOOL_NAME}'] AS tool, SpanAttributes['{c.GEN_AI_AGENT_NAME}'] AS agent,
    StatusCode = 'Error' AS failed
FROM otel_traces FINAL
WHERE SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.TOOL.value}'
ORDER BY toInt32OrZero(SpanAttributes['{c.STEP}'])""")


def terminations(store: Store) -> list[dict[str, Any]]:
    sdk.flush()
    return store.query(f"""
SELECT a['{c.TERMINATION_REASON}'] AS reason, a['{c.TERMINATION_SUCCESS_CLAIMED}'] AS success
FROM otel_traces FINAL ARRAY JOIN Events.Name AS n, Events.Attributes AS a
WHERE n = '{c.EVENT_TERMINATION}'""")


def detected_codes(store: Store) -> set[str]:
    """Codes ``handoffs detect`` reports on what the store holds."""
    from handoffs.detectors import detect

    sdk.flush()
    return {f.code for tf in detect(store, incremental=False) for f in tf.findings}


def turns(store: Store) -> list[dict[str, Any]]:
    """Agent turns in step order, with the target of the delegation each sits in ('' at the top)."""
    sdk.flush()
    return store.query(f"""
SELECT a.SpanAttributes['{c.GEN_AI_AGENT_NAME}'] AS agent, p.SpanAttributes['{c.TARGET_AGENT}'] AS within
FROM (SELECT * FROM otel_traces FINAL WHERE SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.AGENT.value}') AS a
LEFT JOIN (SELECT * FROM otel_traces FINAL) AS p ON p.TraceId = a.TraceId AND p.SpanId = a.ParentSpanId
ORDER BY toInt32OrZero(a.SpanAttributes['{c.STEP}'])""")


def run_events(store: Store) -> list[list[str]]:
    """The event names of each run span (termination, checkpoint, resume), in trace order."""
    sdk.flush()
    rows = store.query(f"""
SELECT Events.Name AS events FROM otel_traces FINAL
WHERE SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.RUN.value}' ORDER BY Timestamp""")
    return [list(r["events"]) for r in rows]
