"""Findings: what a detector concluded about a trace, and how findings are kept in the store.

A ``Finding`` names the failure mode, the span and agent it points at, the step, a confidence,
evidence a person can read and the detector (name and version) that produced it. Findings live
in ``handoffs_findings`` (a ReplacingMergeTree: reads use ``FINAL``); which traces were judged,
and at what span count, lives in ``handoffs_detected_traces`` so detection can be incremental.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from handoffs import conventions as c
from handoffs import taxonomy
from handoffs.errors import StoreError
from handoffs.store import Store, among, schema


@dataclass(frozen=True)
class Finding:
    """One failure mode seen in one trace, pointing at a span, an agent and a step."""

    code: str
    trace_id: str
    span_id: str
    agent: str
    step: int
    confidence: float
    evidence: str
    detector: str
    detector_version: str
    run_id: str = ""
    source_id: str = ""
    project: str = ""

    @property
    def name(self) -> str:
        mode = taxonomy.BY_CODE.get(self.code)
        return mode.name if mode else self.code

    @property
    def category(self) -> str:
        mode = taxonomy.BY_CODE.get(self.code)
        return mode.category if mode else ""

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        """The findings table's identity: one row per (trace, code, span, agent, step)."""
        return (self.trace_id, self.code, self.span_id, self.agent, self.step)

    def to_json(self) -> dict[str, Any]:
        """The CLI's per-finding object (DESIGN.md)."""
        return {"code": self.code, "name": self.name, "agent": self.agent, "step": self.step,
                "span_id": self.span_id, "confidence": round(self.confidence, 4),
                "evidence": self.evidence}

    def evaluation_event(self) -> dict[str, str | float]:
        """The finding as OpenTelemetry GenAI ``gen_ai.evaluation.result`` event attributes
        (the score is a double, as the semantic conventions type it)."""
        return {c.GEN_AI_EVALUATION_NAME: f"handoffs.{self.code}",
                c.GEN_AI_EVALUATION_SCORE_LABEL: "fail",
                c.GEN_AI_EVALUATION_SCORE_VALUE: float(self.confidence),
                c.GEN_AI_EVALUATION_EXPLANATION: self.evidence}


@dataclass
class TraceFindings:
    """Everything detected in one trace (possibly nothing), with the ids that name it."""

    trace_id: str
    run_id: str = ""
    source_id: str = ""
    project: str = ""
    findings: list[Finding] = field(default_factory=list)
    # The error cascade graph's counts (error amplification = own / root errors), kept with the
    # trace's detected mark for the metrics.
    own_errors: int = 0
    root_errors: int = 0

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def to_json(self) -> dict[str, Any]:
        """The CLI's per-trace object: ``{"trace_id", "source_id", "findings": [...]}``."""
        ordered = sorted(self.findings, key=lambda f: (f.step, f.code, f.span_id))
        return {"trace_id": self.trace_id, "source_id": self.source_id, "run_id": self.run_id,
                "findings": [f.to_json() for f in ordered]}


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per table key, the most confident one (the table would keep only one too)."""
    best: dict[tuple[str, str, str, str, int], Finding] = {}
    for f in findings:
        if f.key not in best or f.confidence > best[f.key].confidence:
            best[f.key] = f
    return list(best.values())


_FINDING_COLUMNS = ("project", "run_id", "trace_id", "source_id", "code", "name", "category", "agent",
                    "step", "span_id", "confidence", "evidence", "detector", "detector_version")


def write(store: Store, traces: Sequence[TraceFindings], span_counts: dict[str, int],
          version: str, replace: Sequence[str] = ()) -> None:
    """Store the findings of ``traces`` and mark them detected at their span counts.

    Traces in ``replace`` were judged before: a finding of theirs that no longer holds (a
    delegation that has since closed) must not linger, so the old findings of those traces go
    first. A finding judged again replaces its stored row by itself (same sort key, newer
    ``detected_at``), so only traces that lost a finding pay for a delete: a pass judging every
    trace again (a new detector version) spent most of its time storing findings deleting rows
    it was about to write again. The detected marks are written last, so an interrupted run
    leaves the traces pending rather than half-judged.
    """
    stale = _lost_findings(store, traces, replace) if replace else []
    if stale:
        store.command(f"DELETE FROM {schema.FINDINGS_TABLE} WHERE {among('trace_id', 'traces', len(stale))}",
                      {"traces": stale})
    rows = [f for tf in traces for f in tf.findings]
    if rows:
        # Column by column with getattr: ``asdict`` deep-copies every finding and was most of
        # the write cost on large chunks.
        cols: dict[str, list[Any]] = {k: [getattr(f, k) for f in rows] for k in _FINDING_COLUMNS}
        store.insert(schema.FINDINGS_TABLE, pa.table({
            **{k: pa.array(v, pa.string()) for k, v in cols.items() if k not in ("step", "confidence")},
            "step": pa.array(cols["step"], pa.int32()),
            "confidence": pa.array(cols["confidence"], pa.float64()),
        }))
    if traces:
        store.insert(schema.DETECTED_TABLE, pa.table({
            "project": pa.array([tf.project for tf in traces], pa.string()),
            "trace_id": pa.array([tf.trace_id for tf in traces], pa.string()),
            "detector_version": pa.array([version] * len(traces), pa.string()),
            "span_count": pa.array([span_counts.get(tf.trace_id, 0) for tf in traces], pa.uint64()),
            "own_errors": pa.array([tf.own_errors for tf in traces], pa.uint32()),
            "root_errors": pa.array([tf.root_errors for tf in traces], pa.uint32()),
        }))


_STORED_KEYS = ("project", "trace_id", "code", "span_id", "agent", "step")  # the findings table's sort key


def _lost_findings(store: Store, traces: Sequence[TraceFindings], replace: Sequence[str]) -> list[str]:
    """The traces of ``replace`` with a stored finding (by sort key) that ``traces`` lack."""
    kept = {(f.project, f.trace_id, f.code, f.span_id, f.agent, f.step) for tf in traces for f in tf.findings}
    stored = store.query_arrow(
        f"SELECT DISTINCT {', '.join(_STORED_KEYS)} FROM {schema.FINDINGS_TABLE} "
        f"WHERE {among('trace_id', 'traces', len(replace))}", {"traces": list(replace)})
    columns = [stored.column(k).to_pylist() for k in _STORED_KEYS]
    return sorted({key[1] for key in zip(*columns, strict=True) if key not in kept})


# Where full detection got to in the span table: per partition, the highest block number of its
# parts then (ClickHouse numbers inserts in increasing blocks per partition; a merged part
# spans the blocks of its sources). Rows in parts ending above the mark arrived since.
_BLOCKS_SQL = f"""
SELECT partition_id, max(max_block_number) AS block FROM system.parts
WHERE database = currentDatabase() AND table = '{schema.SPAN_TABLE}' AND active
GROUP BY partition_id"""

# Parts holding rows written after the mark; ClickHouse prunes parts on this condition before
# reading a granule, so its cost follows what arrived, not the store's size.
_NEW_ROWS = ("toUInt64(splitByChar('_', _part)[3]) > "
             "arrayElement({mark_blocks:Array(UInt64)}, indexOf({mark_parts:Array(String)}, _partition_id))")


def span_blocks(store: Store) -> dict[str, int]:
    """Highest block number per partition of the span table now (empty when the table is not
    a local MergeTree, e.g. a Distributed table, where detection falls back to a full scan)."""
    try:
        return {r["partition_id"]: int(r["block"]) for r in store.query(_BLOCKS_SQL)}
    except StoreError:  # system.parts not readable (restricted user): full scans still work
        return {}


def watermark(store: Store, version: str) -> dict[str, int]:
    """The span table's blocks at the last full detection by ``version`` (empty: none yet)."""
    return {r["partition_id"]: int(r["max_block"]) for r in store.query(
        f"SELECT partition_id, argMax(max_block, marked_at) AS max_block FROM {schema.WATERMARK_TABLE} "
        "WHERE detector_version = {version:String} GROUP BY partition_id", {"version": version})}


def mark(store: Store, version: str, blocks: dict[str, int]) -> None:
    """Record that every span in ``blocks`` (from ``span_blocks``) has been judged by ``version``."""
    if not blocks:
        return
    store.insert(schema.WATERMARK_TABLE, pa.table({
        "detector_version": pa.array([version] * len(blocks), pa.string()),
        "partition_id": pa.array(list(blocks), pa.string()),
        "max_block": pa.array(list(blocks.values()), pa.uint64()),
    }))


def pending(store: Store, version: str, trace_ids: Sequence[str] | None, incremental: bool,
            since: dict[str, int] | None = None) -> tuple[list[str], dict[str, int], set[str], int]:
    """Traces to judge: (ids, span count of each, ids whose stored findings may be stale, traces
    in scope; 0 when only the traces of new rows were looked at).

    Incremental: only traces never judged by ``version``, or whose span count changed since.
    With ``since`` (a ``watermark``), only traces having rows written after it are counted, so
    the cost follows what arrived rather than the size of the store. Spans are counted by
    distinct id: a row rewritten (read-time normalisation) is not a new span.
    """
    params: dict[str, Any] = {"version": version}
    if trace_ids is not None:
        scope = among("TraceId", "traces", len(trace_ids))
        params["traces"] = list(trace_ids)
    elif incremental and since:
        scope = f"TraceId IN (SELECT DISTINCT TraceId FROM {schema.SPAN_TABLE} WHERE {_NEW_ROWS})"
        params["mark_parts"] = list(since)
        params["mark_blocks"] = list(since.values())
    else:
        scope = "1"
    rows = store.query_arrow(f"""
        SELECT t.trace_id AS trace_id, t.n AS spans, d.n AS judged_at, d.any_version AS seen
        FROM (SELECT TraceId AS trace_id, uniqExact(SpanId) AS n FROM {schema.SPAN_TABLE}
              WHERE {scope} GROUP BY TraceId) AS t
        LEFT JOIN (SELECT trace_id, maxIf(span_count, detector_version = {{version:String}}) AS n,
                          1 AS any_version
                   FROM {schema.DETECTED_TABLE} FINAL
                   WHERE {scope.replace("TraceId", "trace_id", 1)} GROUP BY trace_id) AS d
            ON d.trace_id = t.trace_id
        ORDER BY trace_id""", params).to_pydict()
    ids, counts, seen = [], {}, set()
    total = 0 if trace_ids is None and incremental and since else len(rows.get("trace_id", []))
    for tid, n, judged, was_seen in zip(rows.get("trace_id", []), rows.get("spans", []),
                                        rows.get("judged_at", []), rows.get("seen", []), strict=True):
        if incremental and judged == n:
            continue
        ids.append(tid)
        counts[tid] = int(n)
        if was_seen and judged != n:  # judged at this size by this version: same findings again
            seen.add(tid)
    return ids, counts, seen, total


LOAD_PAGE = 10_000  # traces per page when reading findings back (``load_pages``)


def load(store: Store, trace_ids: Sequence[str] | None = None) -> list[TraceFindings]:
    """Stored findings of ``trace_ids`` (every judged trace when None), one entry per trace."""
    return [tf for page in load_pages(store, trace_ids) for tf in page]


def load_pages(store: Store, trace_ids: Sequence[str] | None = None,
               page: int = LOAD_PAGE) -> Iterator[list[TraceFindings]]:
    """``load`` a page of traces at a time, in trace id order, so that whoever prints every
    judged trace holds one page, not the store (310k traces at 10M spans)."""
    if trace_ids is not None:
        ids = sorted(set(trace_ids))
        for i in range(0, len(ids), page):
            chunk = ids[i:i + page]
            yield _load(store, among("trace_id", "traces", len(chunk)), {"traces": chunk})
        return
    after = ""  # every trace id sorts after the empty string
    while True:
        # Keyset paging over the judged traces: each page starts where the last one ended.
        ids = [r["trace_id"] for r in store.query(f"""
            SELECT DISTINCT trace_id FROM {schema.DETECTED_TABLE} WHERE trace_id > {{after:String}}
            ORDER BY trace_id LIMIT {{page:UInt32}}""", {"after": after, "page": page})]
        if not ids:
            return
        yield _load(store, "trace_id >= {lo:String} AND trace_id <= {hi:String}",
                    {"lo": ids[0], "hi": ids[-1]})
        after = ids[-1]


def _load(store: Store, where: str, params: dict[str, Any]) -> list[TraceFindings]:
    """Stored findings of the judged traces ``where`` selects (a condition on ``trace_id``)."""
    # Run and source ids come from the runs table, so traces without findings carry them too.
    traces = store.query(f"""
        SELECT d.trace_id AS trace_id, d.project AS project, r.run_id AS run_id, r.source_id AS source_id
        FROM (SELECT trace_id, any(project) AS project FROM {schema.DETECTED_TABLE} FINAL
              WHERE {where} GROUP BY trace_id) AS d
        LEFT JOIN (SELECT trace_id, any(run_id) AS run_id, any(source_id) AS source_id
                   FROM {schema.RUNS_TABLE} FINAL WHERE {where} GROUP BY trace_id) AS r
            ON r.trace_id = d.trace_id
        ORDER BY trace_id""", params)
    rows = store.query(f"""
        SELECT project, run_id, trace_id, source_id, code, agent, step, span_id, confidence, evidence,
            detector, detector_version
        FROM {schema.FINDINGS_TABLE} FINAL WHERE {where}
        ORDER BY trace_id, step, code""", params)
    out: dict[str, TraceFindings] = {
        r["trace_id"]: TraceFindings(r["trace_id"], r["run_id"], r["source_id"], r["project"]) for r in traces}
    for r in rows:
        tf = out.setdefault(r["trace_id"], TraceFindings(r["trace_id"]))
        tf.findings.append(Finding(**r))
        tf.run_id, tf.source_id, tf.project = r["run_id"], r["source_id"], r["project"]
    return list(out.values())
