"""Detection end to end: pick the traces to judge, run every detector on them, store findings.

Traces are judged in chunks (``CHUNK_TRACES`` at a time) so memory stays bounded and progress
can be reported; each chunk runs the structural SQL detectors, the error-cascade graph, and,
for imported message logs, the text models of ``handoffs.detectors.textual``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

from handoffs import conventions as c
from handoffs.collector.normalise import resolve_traces
from handoffs.store import Store, schema

from . import cascade, structural
from .findings import Finding, TraceFindings, dedupe, load, mark, pending, span_blocks, watermark, write
from .normalise import RANGE_FILTER, TRACE_FILTER, Scratch, drop_stale_scratch

log = logging.getLogger("handoffs.detectors")

CHUNK_TRACES = 2000  # traces per chunk when judging a list of them
RANGE_TRACES = 20000  # traces per chunk when judging the whole store by id ranges
# A store this small is judged whole in passing (``detect_current``) even with no full pass to
# count new rows from: a few seconds at the pass's 100-200k spans/s.
PASSING_SPANS = 250_000
VERSION = f"structural-{structural.VERSION}"

Progress = Callable[[int, int], None]  # (traces done, traces total)
ShapeHook = Callable[[Scratch], None]  # given each chunk's normalised shape (metrics gather from it)

_MESSAGES_SQL = f"""
SELECT TraceId AS trace_id, toInt32OrDefault(SpanAttributes['{c.STEP}'], toInt32(-1)) AS step,
    SpanAttributes['{c.GEN_AI_AGENT_NAME}'] AS agent, SpanAttributes['{c.MESSAGE_ROLE}'] AS role,
    SpanAttributes['{c.MESSAGE_CONTENT}'] AS content, SpanId AS span_id
FROM {schema.SPAN_TABLE} FINAL
{TRACE_FILTER} WHERE SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.MESSAGE.value}'
ORDER BY trace_id, step
"""


STAGE_MESSAGE = "stage %s %.6f"  # (name, seconds): how long one stage of judging took


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Log how long one stage of judging a chunk took (DEBUG; ``bench/detection.py`` sums them)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        log.debug(STAGE_MESSAGE, name, time.perf_counter() - started)


def version() -> str:
    """The detector set's version: structural queries plus the text models when present."""
    try:
        from . import textual
    except ImportError:
        return VERSION
    return f"{VERSION}+textual-{getattr(textual, 'VERSION', getattr(textual, 'ATTRIBUTION_VERSION', '0'))}"


def message_logs(store: Store, trace_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Message spans of imported conversation logs, per trace, in step order."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if trace_ids:
        for row in store.query_arrow(_MESSAGES_SQL, {"traces": list(trace_ids)}).to_pylist():
            out[row["trace_id"]].append(row)
    return out


def to_messages(rows: Sequence[dict[str, Any]]) -> list[Any]:
    """Rows of ``message_logs`` as ``textual.Message`` objects."""
    from .textual import Message

    return [Message(step=r["step"], agent=r["agent"], role=r["role"], content=r["content"]) for r in rows]


def _text_findings(meta: dict[str, Any], rows: Sequence[dict[str, Any]], ver: str) -> list[Finding]:
    from .textual import classify_messages

    span_of_step = {r["step"]: r["span_id"] for r in rows}
    out = []
    for tf in classify_messages(to_messages(rows)):
        out.append(Finding(code=tf.code, trace_id=meta["trace_id"], span_id=span_of_step.get(tf.step, ""),
                           agent=tf.agent, step=int(tf.step), confidence=float(tf.confidence),
                           evidence=tf.evidence, detector="textual", detector_version=ver,
                           run_id=meta["run_id"], source_id=meta["source_id"], project=meta["project"]))
    return out


def judge(store: Store, trace_ids: Sequence[str] | None = None, ver: str | None = None,
          trace_range: tuple[str, str] | None = None,
          on_shape: ShapeHook | None = None) -> list[TraceFindings]:
    """Run every detector on ``trace_ids`` (or on every trace id in ``trace_range``, both ends
    included) and return findings per trace; stores nothing. The chunk's cascade graph is built
    on a thread while the structural statement runs. ``on_shape`` is given the chunk's
    normalised shape once the detectors have read it (while the graph may still be building)."""
    ver = ver or version()
    if trace_range is not None:
        where, params = RANGE_FILTER, {"lo": trace_range[0], "hi": trace_range[1]}
    elif trace_ids:
        where, params = TRACE_FILTER, {"traces": list(trace_ids)}
    else:
        return []
    metas: dict[str, dict[str, Any]] = {}
    found: dict[str, list[Finding]] = defaultdict(list)

    def add(code: str, detector: str, row: dict[str, Any]) -> None:
        meta = metas.get(row["trace_id"], {})
        found[row["trace_id"]].append(Finding(
            code=code, trace_id=row["trace_id"], span_id=row["span_id"], agent=row["agent"] or "",
            step=int(row["step"]), confidence=float(row["confidence"]), evidence=row["evidence"],
            detector=detector, detector_version=ver, run_id=meta.get("run_id", ""),
            source_id=meta.get("source_id", ""), project=meta.get("project", "")))

    # The graph is Python and the engine releases the interpreter lock while a query runs, so a
    # thread builds it on the other core meanwhile (a child process did no better: BENCHMARKS.md).
    with ExitStack() as scratch_held, ThreadPoolExecutor(1, thread_name_prefix="handoffs-cascade") as graph:
        with _stage("normalised shape"):
            scratch = scratch_held.enter_context(Scratch(store, where, params))
        with _stage("trace facts"):
            metas.update(scratch.facts())
        # Spans of other instrumentations (normalised at ingest, or straight from the
        # OpenTelemetry Collector's exporter and not at all) get their trace's read-time facts
        # once, then the traces are read again. Traces of our SDK never pay for it.
        foreign = [t for t, m in metas.items() if m["unresolved"] > 0]
        if foreign:
            with _stage("foreign spans normalised"):
                if resolve_traces(store, foreign):
                    scratch.rebuild()
                    metas.clear()
                    metas.update(scratch.facts())
        with _stage("cascade spans read"):
            nodes = cascade.nodes_table(store, None, scratch)
        graphs = graph.submit(cascade.table_results, nodes)
        with _stage("structural queries"):
            detectors = structural.possible(store, scratch)
            rows = store.query_arrow(structural.statement(scratch, detectors)).to_pylist() if detectors else []
            for row in rows:
                add(row["code"], structural.BY_CODE[row["code"]].name, row)
        if on_shape is not None:
            with _stage("shape hook"):
                on_shape(scratch)
        with _stage("cascade graph"):
            rows, amplification = graphs.result()
            for row in rows:
                add(row["code"], structural.BY_CODE[row["code"]].name, row)
    logs = [t for t, m in metas.items() if m["messages"] > 0]
    if logs:
        with _stage("text models"):
            for tid, rows in message_logs(store, logs).items():
                found[tid].extend(_text_findings(metas[tid], rows, ver))
    out = []
    for tid in (trace_ids if trace_range is None else sorted(metas)):
        meta = metas.get(tid, {})
        own, roots = amplification.get(tid, (0, 0))
        out.append(TraceFindings(tid, meta.get("run_id", ""), meta.get("source_id", ""),
                                 meta.get("project", ""), dedupe(found.get(tid, [])), own, roots))
    return out


def chunks(ids: Sequence[str], every: bool) -> Iterator[tuple[list[str], str, dict[str, Any]]]:
    """``ids`` a chunk at a time, with the ``Scratch`` filter and parameters that read it.

    ``every``: the ids are every stored trace, so a chunk is a range of the span table's sort
    key (``RANGE_TRACES`` ids, read through its primary index); else a list of ``CHUNK_TRACES``.
    """
    if every:
        ordered = sorted(ids)
        for i in range(0, len(ordered), RANGE_TRACES):
            chunk = ordered[i:i + RANGE_TRACES]
            yield chunk, RANGE_FILTER, {"lo": chunk[0], "hi": chunk[-1]}
    else:
        for i in range(0, len(ids), CHUNK_TRACES):
            chunk = list(ids[i:i + CHUNK_TRACES])
            yield chunk, TRACE_FILTER, {"traces": chunk}


def detect_pending(store: Store, trace_ids: Sequence[str] | None = None, incremental: bool = True,
                   progress: Progress | None = None, on_shape: ShapeHook | None = None) -> list[TraceFindings]:
    """Judge the traces that need it, store their findings; return the freshly judged traces.

    When every stored trace needs judging (a first run, or ``incremental=False``) the chunks
    are ranges of the span table's sort key, read through its primary index, not id lists.
    ``on_shape`` is given the normalised shape of every chunk judged (see ``judge``): a full
    pass (every trace, ``incremental=False``) hands it every trace (``metrics.MetricSums.add``).
    """
    return [tf for chunk in judge_pending(store, trace_ids, incremental, progress, on_shape) for tf in chunk]


def judge_pending(store: Store, trace_ids: Sequence[str] | None = None, incremental: bool = True,
                  progress: Progress | None = None, on_shape: ShapeHook | None = None
                  ) -> Iterator[list[TraceFindings]]:
    """``detect_pending`` a chunk at a time, in trace id order, each chunk once its findings are
    stored: a caller that prints them holds one chunk, not every judged trace. The store's
    detection mark moves only when the iterator is exhausted (a caller that stops early leaves
    the rest pending)."""
    ver = version()
    dropped = drop_stale_scratch(store)
    if dropped:
        log.info("dropped %d scratch table(s) left by a detection that was killed", len(dropped))
    blocks = span_blocks(store) if trace_ids is None else {}
    since = watermark(store, ver) if blocks and incremental else {}
    with _stage("traces to judge"):
        ids, counts, seen, total = pending(store, ver, trace_ids, incremental, since)
    every = trace_ids is None and bool(ids) and len(ids) == total
    done = 0
    if progress:
        progress(0, len(ids))
    for chunk, _, params in chunks(ids, every):
        if every:
            judged = [tf for tf in judge(store, ver=ver, trace_range=(params["lo"], params["hi"]),
                                         on_shape=on_shape) if tf.trace_id in counts]
        else:
            judged = judge(store, chunk, ver, on_shape=on_shape)
        with _stage("findings stored"):
            write(store, judged, counts, ver, replace=[t for t in chunk if t in seen])
        done += len(judged)
        if progress:
            progress(done, len(ids))
        yield judged
    mark(store, ver, blocks)  # only after every chunk is stored: an interrupted run stays pending
    if every:
        # Every stored trace judged: those judged before have each finding and mark in a second
        # version now, which the engine may leave unmerged for long, and every FINAL read (the
        # dashboard's pages, the next pass's pending traces) would merge them meanwhile.
        with _stage("versions merged"):
            store.merge_versions(schema.FINDINGS_TABLE, schema.DETECTED_TABLE)
    log.info("judged %d trace(s) with detector set %s", done, ver)


def detect_current(store: Store, trace_ids: Sequence[str]) -> int:
    """Judge ``trace_ids`` where new or grown, then the store's other new or grown traces when
    that costs what arrived, not what is stored; return 0, or the number of stored spans when
    the rest was left to a full pass (``handoffs detect``).

    What arrived is read from the full pass of this detector set recorded in the store (its
    watermark). With none (a store never judged, or judged by an earlier set before an upgrade,
    or a Distributed table, which records none), finding the new traces means reading every
    stored one, and judging them all: months of traces, for whoever only needed ``trace_ids``
    (the gate, for the runs it compares). A store of up to ``PASSING_SPANS`` is judged whole.
    """
    if trace_ids:
        detect_pending(store, list(trace_ids))
    if watermark(store, version()):
        detect_pending(store)
        return 0
    spans = int(store.scalar(f"SELECT count() FROM {schema.SPAN_TABLE}") or 0)
    if spans <= PASSING_SPANS:
        detect_pending(store)
        return 0
    return spans


def detect(store: Store, trace_ids: Sequence[str] | None = None, incremental: bool = True,
           progress: Progress | None = None) -> list[TraceFindings]:
    """Judge ``trace_ids`` (every stored trace when None) and return findings for each of them.

    Incremental: traces already judged by this detector version at their current span count
    are not judged again; their stored findings are returned. Idempotent: running it twice
    stores no duplicate findings. Findings are stored in ``handoffs_findings``.
    """
    return with_stored(store, detect_pending(store, trace_ids, incremental, progress), trace_ids)


def with_stored(store: Store, fresh: list[TraceFindings],
                trace_ids: Sequence[str] | None = None) -> list[TraceFindings]:
    """``fresh`` (just judged) with the stored findings of every other trace in ``trace_ids``
    (every judged trace when None), in trace id order."""
    fresh_ids = {tf.trace_id for tf in fresh}
    if trace_ids is not None and set(trace_ids) <= fresh_ids:
        return fresh
    stored = [tf for tf in load(store, trace_ids) if tf.trace_id not in fresh_ids]
    return sorted(fresh + stored, key=lambda tf: tf.trace_id)
