"""Seeding for gate tests: run spans (the runs view turns them into runs), metrics, findings.

The detectors are not asked to compute anything here: tests write the metrics and findings
a detector would have written, so each test controls exactly what the gate sees.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence

import pyarrow as pa

from handoffs import conventions as c
from handoffs import taxonomy as tx
from handoffs.store import SpanBatch, Store
from handoffs.store.schema import DETECTED_TABLE, FINDINGS_TABLE, METRICS_TABLE

PROJECT = "gate-tests"


class Seeder:
    """Writes runs with their metrics and findings into one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = time.time_ns() - 86_400 * 10**9  # a day ago: time windows in tests stay clear

    def run(self, run_id: str, *, commit: str = "", branch: str = "", tags: Sequence[str] = (),
            metrics: dict[str, float] | None = None, findings: Sequence[dict] = (),
            test_id: str = "", agent_metrics: dict[str, dict[str, float]] | None = None,
            judged: bool = True) -> str:
        """One run: its run span, its run-scope (and agent-scope) metrics, its findings, and
        (``judged``) the mark detection leaves on the traces it judged."""
        self.clock += 1_000_000_000
        trace_id = uuid.uuid4().hex
        batch = SpanBatch()
        batch.append(trace_id=trace_id, span_id=uuid.uuid4().hex[:16], name=f"handoffs.run {run_id}",
                     start_ns=self.clock, duration_ns=5_000, service_name="team",
                     resource_attributes={c.SERVICE_NAME: "team", c.RESOURCE_PROJECT: PROJECT},
                     attributes={c.SPAN_TYPE: c.SpanType.RUN.value, c.RUN_ID: run_id,
                                 c.RUN_COMMIT: commit, c.RUN_BRANCH: branch,
                                 c.RUN_TAGS: json.dumps(list(tags)), c.RUN_TEST_ID: test_id})
        self.store.insert_spans(batch)
        rows = [(tx.SCOPE_RUN, run_id, m, v) for m, v in (metrics or {}).items()]
        for agent, values in (agent_metrics or {}).items():
            rows += [(tx.SCOPE_AGENT, agent, m, v) for m, v in values.items()]
        if rows:
            self.store.insert(METRICS_TABLE, pa.table({
                "project": [PROJECT] * len(rows), "run_id": [run_id] * len(rows),
                "scope": [r[0] for r in rows], "subject": [r[1] for r in rows],
                "metric": [r[2] for r in rows], "value": [float(r[3]) for r in rows],
                "numerator": [0.0] * len(rows), "denominator": [0.0] * len(rows)}))
        if findings:
            self.store.insert(FINDINGS_TABLE, pa.table({
                "project": [PROJECT] * len(findings), "run_id": [run_id] * len(findings),
                "trace_id": [trace_id] * len(findings),
                "code": [f["code"] for f in findings],
                "name": [tx.BY_CODE[f["code"]].name for f in findings],
                "agent": [f.get("agent", "writer") for f in findings],
                "step": pa.array([f.get("step", i + 1) for i, f in enumerate(findings)], pa.int32()),
                "span_id": [f.get("span_id", uuid.uuid4().hex[:16]) for f in findings],
                "confidence": [float(f.get("confidence", 0.9)) for f in findings],
                "evidence": [f.get("evidence", "seeded") for f in findings],
                "detector": ["test"] * len(findings), "detector_version": ["0"] * len(findings)}))
        if judged:
            self.store.insert(DETECTED_TABLE, pa.table({
                "project": [PROJECT], "trace_id": [trace_id], "detector_version": ["test"],
                "span_count": pa.array([1], pa.uint64())}))
        return trace_id

