"""Ingest normalisation cost: microseconds per span for our own spans (the pass-through) and for
the span payloads the frameworks' instrumentations emitted (tests/collector/payloads), and the
read-time ``resolve_traces`` on stored traces of the Agents SDK payload replicated.

    python bench/normalise.py                    # 200k spans per measurement, 500 traces resolved
    python bench/normalise.py --spans 50000 --traces 100
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

from handoffs import conventions as c
from handoffs.collector.normalise import normalise_span, resolve_traces
from handoffs.store import SpanBatch, open_store

PAYLOADS = Path(__file__).resolve().parents[1] / "tests" / "collector" / "payloads"


def per_span(spans: list[dict], total: int) -> float:
    """Mean microseconds of one ``normalise_span`` call over ``total`` calls cycling ``spans``."""
    work = [(s["name"], s["attributes"], s["resource"]) for s in spans]
    rounds = max(1, total // len(work))
    start = time.perf_counter()
    for _ in range(rounds):
        for name, attributes, resource in work:
            normalise_span(name, attributes, resource)
    return (time.perf_counter() - start) / (rounds * len(work)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--traces", type=int, default=500)
    args = parser.parse_args()

    ours = [{"name": "execute_tool transfer_to_writer", "resource": {},
             "attributes": {c.SPAN_TYPE: "delegation", c.GEN_AI_OPERATION_NAME: "execute_tool",
                            c.SOURCE_AGENT: "supervisor", c.TARGET_AGENT: "writer", c.STEP: "3"}}]
    print(f"our SDK's spans (pass-through): {per_span(ours, args.spans):.2f} us/span")
    for name in ("openai_agents", "autogen", "langgraph", "crewai"):
        spans = json.loads((PAYLOADS / f"{name}.json").read_text())
        print(f"{name:>14} payload ({len(spans)} spans): {per_span(spans, args.spans):.2f} us/span")

    template = json.loads((PAYLOADS / "openai_agents.json").read_text())
    with tempfile.TemporaryDirectory() as home:
        store = open_store(f"chdb://{home}/store")
        batch = SpanBatch()
        traces = []
        for _ in range(args.traces // 3 + 1):
            ids = {}
            for s in template:
                trace = ids.setdefault(s["trace_id"], uuid.uuid4().hex)
                batch.append(trace_id=trace, span_id=s["span_id"], parent_span_id=s["parent_id"], name=s["name"],
                             start_ns=s["start_ns"], duration_ns=s["end_ns"] - s["start_ns"],
                             attributes=normalise_span(s["name"], s["attributes"], s["resource"]))
            traces.extend(ids.values())
        store.insert_spans(batch)
        start = time.perf_counter()
        rewritten = resolve_traces(store, traces)
        took = time.perf_counter() - start
        print(f"resolve_traces: {len(traces)} traces, {len(batch)} spans, {rewritten} rewritten in {took:.2f} s "
              f"({len(batch) / took:,.0f} spans/s); second call rewrote {resolve_traces(store, traces)}")
        store.close()


if __name__ == "__main__":
    main()
