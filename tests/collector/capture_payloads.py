"""Span payloads exactly as the frameworks' own instrumentations emit them, for normalisation tests.

Each capture runs an example team (``examples/*_team.py``, scripted models, no API key) with
the framework's native runner, under its OpenInference instrumentor (and AutoGen's built-in
GenAI tracing), into an in-memory exporter; spans are kept as the collector would store them
(attribute values as strings). ``test_normalise.py`` reads the recorded files so the main suite
needs no framework, and re-captures live in the ``frameworks`` tests. To refresh the files:

    /work/venv-fw/bin/python tests/collector/capture_payloads.py openai_agents autogen langgraph
    /work/venv-crew/bin/python tests/collector/capture_payloads.py crewai
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = Path(__file__).parent / "payloads"
# Which example scenarios each capture runs, in this order, one trace or more each.
SCENARIOS = {
    "openai_agents": ["handoff", "overwrite", "open"],
    "autogen": ["swarm"],
    "langgraph": ["overwrite"],
    "crewai": ["overwrite"],
}


def _example(name: str) -> Any:
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"capture_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the example's annotations through it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


def _run_openai_agents(provider: Any) -> None:
    from agents import Runner
    from agents.exceptions import MaxTurnsExceeded
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    OpenAIAgentsInstrumentor().instrument(tracer_provider=provider)
    ex = _example("openai_agents_team")
    try:
        for scenario in SCENARIOS["openai_agents"]:
            agent, max_turns = ex.build(scenario)
            try:
                asyncio.run(Runner.run(agent, ex.TASK, max_turns=max_turns))
            except MaxTurnsExceeded:
                pass
    finally:
        OpenAIAgentsInstrumentor().uninstrument()


def _run_autogen(provider: Any) -> None:
    from openinference.instrumentation.autogen_agentchat import AutogenAgentChatInstrumentor
    from opentelemetry import trace

    # AutoGen's runtime traces through the global provider (its built-in GenAI spans).
    trace.set_tracer_provider(provider)
    AutogenAgentChatInstrumentor().instrument(tracer_provider=provider)
    ex = _example("autogen_team")
    try:
        asyncio.run(ex.build("swarm", "overwrite").run(task=ex.TASK))
    finally:
        AutogenAgentChatInstrumentor().uninstrument()


def _run_langgraph(provider: Any) -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    LangChainInstrumentor().instrument(tracer_provider=provider)
    ex = _example("langgraph_team")
    try:
        ex.build("overwrite").invoke({"messages": [("user", ex.TASK)]})
    finally:
        LangChainInstrumentor().uninstrument()


def _run_crewai(provider: Any) -> None:
    from openinference.instrumentation.crewai import CrewAIInstrumentor

    CrewAIInstrumentor().instrument(tracer_provider=provider)
    ex = _example("crewai_team")
    try:
        ex.build("overwrite").kickoff()
    finally:
        CrewAIInstrumentor().uninstrument()


RUNNERS: dict[str, Callable[[Any], None]] = {
    "openai_agents": _run_openai_agents, "autogen": _run_autogen,
    "langgraph": _run_langgraph, "crewai": _run_crewai,
}


def capture(name: str) -> list[dict[str, Any]]:
    """Run the ``name`` capture and return its spans as stored rows would hold them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from handoffs.sdk.encoding import attributes_str, span_id_hex, trace_id_hex

    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    RUNNERS[name](provider)
    provider.force_flush()
    spans = []
    for span in sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0):
        spans.append({
            "trace_id": trace_id_hex(span.context.trace_id),
            "span_id": span_id_hex(span.context.span_id),
            "parent_id": span_id_hex(span.parent.span_id) if span.parent is not None else "",
            "name": span.name,
            "start_ns": span.start_time,
            "end_ns": span.end_time,
            "status": span.status.status_code.name,
            "attributes": attributes_str(span.attributes),
            "resource": attributes_str(span.resource.attributes),
        })
    return spans


def main(names: list[str]) -> None:
    PAYLOADS.mkdir(exist_ok=True)
    for name in names:
        spans = capture(name)
        path = PAYLOADS / f"{name}.json"
        path.write_text(json.dumps(spans, indent=1, sort_keys=True) + "\n")
        print(f"{name}: {len(spans)} spans -> {path}")


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(RUNNERS))
