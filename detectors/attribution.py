"""Root-cause attribution: for each failed trace, the agent and the step where it went wrong.

    from handoffs.detectors.attribution import attribute
    for row in attribute(store):     # {"trace_id", "source_id", "agent", "step", "confidence"}
        ...

Traces the SDK wrote carry structure, so the answer comes from it: the root of the earliest
error cascade (the earliest error with no erroneous ancestor, a failed check counting as an
error of the output's author), else the earliest finding. A trace is failed when it has an
error or a finding. Imported message logs carry only text: every one is attributed by
``handoffs.detectors.textual.attribute_messages``; dataset labels are never read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from handoffs import conventions as c
from handoffs.store import Store, schema
from handoffs.store import among as in_list  # "among" names this module's parameter

from . import cascade
from .findings import TraceFindings, load
from .pipeline import CHUNK_TRACES, detect_pending, message_logs, to_messages

# Confidence of a structural root cause: an error's root is near certain; a finding's step
# is where the failure shows, which may be after where it began.
ERROR_ROOT_CONFIDENCE = 0.9
FINDING_DISCOUNT = 0.8

Progress = Callable[[int, int], None]

# Per trace: its run, source and project, and its message spans, read from the
# attribute maps (attribution builds no normalised shape; detection reads these from its scratch).
TRACE_META_SQL = f"""
SELECT TraceId AS trace_id,
    anyIf(SpanAttributes['{c.RUN_ID}'], SpanAttributes['{c.RUN_ID}'] != '') AS run_id,
    anyIf(ResourceAttributes['{c.RESOURCE_SOURCE_ID}'], ResourceAttributes['{c.RESOURCE_SOURCE_ID}'] != '')
        AS source_id,
    anyIf(ResourceAttributes['{c.RESOURCE_PROJECT}'], ResourceAttributes['{c.RESOURCE_PROJECT}'] != '')
        AS project,
    countIf(SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.MESSAGE.value}') AS messages
FROM {schema.SPAN_TABLE}
WHERE TraceId IN {{traces:Array(String)}}
GROUP BY TraceId
"""


def stored_traces(store: Store, among: Sequence[str] | None = None) -> list[str]:
    """Ids of the traces in the store (only those of ``among`` when given)."""
    where = f"WHERE {in_list('TraceId', 'among', len(among))}" if among is not None else ""
    return [r["t"] for r in store.query(
        f"SELECT DISTINCT TraceId AS t FROM {schema.SPAN_TABLE} {where} ORDER BY t",
        {"among": list(among)} if among is not None else None)]


def _from_structure(tf: TraceFindings | None, result: cascade.TraceCascades | None) -> dict[str, Any] | None:
    root = result.root_cause() if result is not None else None
    if root is not None:
        return {"agent": result.agent_of(root) or root.delegate, "step": root.step,
                "confidence": ERROR_ROOT_CONFIDENCE}
    if tf is not None and tf.findings:
        first = min(tf.findings, key=lambda f: (f.step if f.step >= 0 else 1 << 30, -f.confidence))
        return {"agent": first.agent, "step": first.step,
                "confidence": round(first.confidence * FINDING_DISCOUNT, 4)}
    return None


def attribute(store: Store, trace_ids: Sequence[str] | None = None,
              progress: Progress | None = None) -> list[dict[str, Any]]:
    """The root cause (agent, step, confidence) of each failed trace in ``trace_ids`` (all when None)."""
    ids = list(trace_ids) if trace_ids is not None else stored_traces(store)
    detect_pending(store, ids)
    out: list[dict[str, Any]] = []
    if progress:
        progress(0, len(ids))
    for i in range(0, len(ids), CHUNK_TRACES):
        chunk = ids[i:i + CHUNK_TRACES]
        metas = {r["trace_id"]: r for r in store.query(TRACE_META_SQL, {"traces": chunk})}
        logs = [t for t in chunk if metas.get(t, {}).get("messages", 0) > 0]
        if logs:
            from .textual import attribute_messages

            for tid, rows in message_logs(store, logs).items():
                agent, step, confidence = attribute_messages(to_messages(rows))
                out.append({"trace_id": tid, "source_id": metas[tid]["source_id"], "agent": agent,
                            "step": int(step), "confidence": float(confidence)})
        structured = [t for t in chunk if t in metas and t not in set(logs)]
        found = {tf.trace_id: tf for tf in load(store, structured)} if structured else {}
        graphs = cascade.analyse_traces(store, structured)
        for tid in structured:
            root = _from_structure(found.get(tid), graphs.get(tid))
            if root is not None:
                out.append({"trace_id": tid, "source_id": metas[tid]["source_id"], **root})
        if progress:
            progress(min(i + CHUNK_TRACES, len(ids)), len(ids))
    return sorted(out, key=lambda r: r["trace_id"])
