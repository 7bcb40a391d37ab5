"""The seed metrics per run, per agent and per agent pair, stored in ``handoffs_metrics``.

    from handoffs.detectors import metrics
    metrics.compute_metrics(store)         # stored; returns how many rows
    rows = metrics.load(store)             # [{"run_id", "scope", "subject", "metric", "value", ...}]

ClickHouse reduces each trace to one row per delegation, per verification and per agent
(``_DELEGATIONS``, ``_VERIFICATIONS``, ``_AGENTS``) and sums them into scopes, in the engine
(in Python, summing the 1.4M cells of a 1M-span store took longer than the queries): ``run``
(subject = run id), ``agent`` (an agent's name) and ``pair`` (``"delegator->delegate"``).
Failure rates count stored findings; error amplification sums the counts detection kept with
each judged trace, so no cascade graph is built twice.
Definitions (DESIGN.md), with the choices the seeds leave open:

- overwrite_rate: delegations whose output the delegator overwrote (or modified) before the
  delegate completed its first logical unit, within 5 steps of the hand-off / delegations. A
  modification counts with no unit completed only where the trace records units (``unit_complete``
  defaults to false), as the overwrite detector reads it.
  Agent scope: the delegator's.
- tokens_before_interruption: output tokens the delegate delivered before the delegator's first
  intervention (overwrote, modified, rejected, rederived), mean over intervened delegations.
- autonomous_completion_rate: delegations completed with no intervention / delegations.
- rewrite_bug_rate, original_bug_rate: failed / all verifications of the delegator's rewrites
  (a check of a decision's result hash, or of a delegation after it was rewritten) and of the
  delegates' originals (a check of an output, or of a delegation not rewritten yet).
- error_amplification: own errors per root error along the data flow (``cascade``), as counted
  by detection.
- coordination_overhead: tokens of coordinating agents (those that delegate) / tokens of the
  others; without token counts, delegation and verification spans / tool and LLM spans.
- failure_rate:<code>: findings of the mode in the run (every code, zeros included); agent and
  pair scopes count the findings pointing at them (non-zero only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from handoffs import conventions as c
from handoffs import taxonomy as t
from handoffs.conventions import DecisionAction as Act
from handoffs.conventions import DelegationStatus, SpanType, Verdict
from handoffs.store import Store, among, schema

from .normalise import Scratch, ScratchTables
from .pipeline import chunks, detect_pending, version
from .structural import BEFORE_FIRST_UNIT

FIRST_STEPS = 5
_INTERVENTIONS = "('" + "','".join(a.value for a in (Act.OVERWROTE, Act.MODIFIED, Act.REJECTED,
                                                      Act.REDERIVED)) + "')"
_REWRITES = f"('{Act.OVERWROTE.value}','{Act.MODIFIED.value}')"

_RUN_OF = """tr AS (
    SELECT trace_id, anyIf(run_id, run_id != '') AS r, if(r = '', trace_id, r) AS rid,
        anyIf(project, project != '') AS project
    FROM s GROUP BY trace_id
)"""

_DELEGATIONS = f"""
SELECT tr.rid AS run_id, any(tr.project) AS project, x.span_id AS span_id, any(x.delegator) AS delegator,
    any(x.delegate) AS delegate,
    any(x.status) = '{DelegationStatus.COMPLETED.value}' AS completed,
    countIf(d.action IN {_INTERVENTIONS}) > 0 AS intervened,
    countIf(d.action IN {_REWRITES} AND d.step - x.step <= {FIRST_STEPS} AND {BEFORE_FIRST_UNIT})
        > 0 AS early_overwrite,
    any(o.tokens_before) AS tokens_before
FROM e AS x
INNER JOIN tr ON tr.trace_id = x.trace_id
LEFT JOIN decisions AS d ON d.trace_id = x.trace_id AND d.span_id = x.span_id
LEFT JOIN (
    SELECT op.trace_id AS trace_id, op.span_id AS span_id, countIf(op.unit_complete) AS units,
        minIf(op.ts, op.unit_complete) AS first_unit,
        sumIf(op.tokens, di.first_intervention = 0 OR toUnixTimestamp64Nano(op.ts) < di.first_intervention)
            AS tokens_before
    FROM outputs AS op
    LEFT JOIN (SELECT trace_id, span_id, minIf(ts, action IN {_INTERVENTIONS}) AS first_intervention_ts,
                      toUnixTimestamp64Nano(first_intervention_ts) AS first_intervention
               FROM decisions GROUP BY trace_id, span_id) AS di
        ON di.trace_id = op.trace_id AND di.span_id = op.span_id
    GROUP BY op.trace_id, op.span_id
) AS o ON o.trace_id = x.trace_id AND o.span_id = x.span_id
GROUP BY tr.rid, x.trace_id, x.span_id
"""

_VERIFICATIONS = f"""
SELECT tr.rid AS run_id, vv.span_id AS span_id, vv.verdict IN ('{Verdict.FAIL.value}', '{Verdict.ERROR.value}') AS bad,
    any(x.delegator) AS delegator, any(x.delegate) AS delegate,
    countIf(rw.ts < vv.ts AND rw.trace_id != '') > 0 OR any(rh.trace_id) != '' AS rewrite
FROM v AS vv
INNER JOIN tr ON tr.trace_id = vv.trace_id
LEFT JOIN produced AS p ON p.trace_id = vv.trace_id AND p.output_id = vv.check_target
LEFT JOIN (SELECT trace_id, result_hash, any(span_id) AS span_id FROM decisions
           WHERE action IN {_REWRITES} AND result_hash != '' GROUP BY trace_id, result_hash) AS rh
    ON rh.trace_id = vv.trace_id AND rh.result_hash = vv.check_target
INNER JOIN e AS x ON x.trace_id = vv.trace_id
    AND (x.delegation_id = vv.check_target OR x.span_id = vv.check_target OR x.span_id = p.span_id
         OR x.span_id = rh.span_id)
LEFT JOIN (SELECT trace_id, span_id, ts FROM decisions WHERE action IN {_REWRITES}) AS rw
    ON rw.trace_id = x.trace_id AND rw.span_id = x.span_id AND p.output_id = ''
WHERE vv.verdict != '' AND vv.check_target != ''
GROUP BY tr.rid, vv.trace_id, vv.span_id, vv.verdict
"""

_AGENTS = f"""
SELECT tr.rid AS run_id, a.agent AS agent, a.tokens AS tokens, a.coord_spans AS coord_spans,
    a.work_spans AS work_spans, has(c.coordinators, a.agent) AS coordinator
FROM (
    SELECT trace_id, agent, sum(input_tokens + output_tokens) AS tokens,
        countIf(type IN ('{SpanType.DELEGATION.value}', '{SpanType.VERIFICATION.value}')) AS coord_spans,
        countIf(type IN ('{SpanType.TOOL.value}', '{SpanType.LLM.value}')) AS work_spans
    FROM s WHERE agent != '' GROUP BY trace_id, agent
) AS a
INNER JOIN tr ON tr.trace_id = a.trace_id
LEFT JOIN (SELECT trace_id, groupUniqArray(delegator) AS coordinators FROM e GROUP BY trace_id) AS c
    ON c.trace_id = a.trace_id
"""


# Every metric is a sum of (numerator, denominator) contributions per (run, scope, subject,
# metric), summed in the engine: a chunk's contributions go to a scratch table, and one
# statement at the end adds them up into ``handoffs_metrics``. ``alt_num``/``alt_den`` carry the
# coordination overhead's fallback (spans), used when a run has no token counts at all.
_CONTRIBUTION_COLUMNS = """run_id String, project String, scope String, subject String, metric String,
    num Float64, den Float64, alt_num Float64, alt_den Float64"""

# A row of ``cells`` counts for its run, for ``agent`` (when named) and for ``pair``: add_all.
_CHUNK_CONTRIBUTIONS = f"""
dl AS ({_DELEGATIONS}),
vf AS ({_VERIFICATIONS}),
ag AS ({_AGENTS}),
cells AS (
    -- each delegation once (a view is computed again wherever it is read): overwrite rate by
    -- the delegator; autonomous completion, and tokens before an intervention, by the delegate
    SELECT run_id, project, m.1 AS agent, concat(delegator, '->', delegate) AS pair, m.2 AS metric,
        m.3 AS num, 1.0 AS den
    FROM dl
    ARRAY JOIN arrayFilter(x -> x.4, [
        (delegator, '{t.OVERWRITE_RATE}', toFloat64(early_overwrite), true),
        (delegate, '{t.AUTONOMOUS_COMPLETION_RATE}', toFloat64(completed AND NOT intervened), true),
        (delegate, '{t.TOKENS_BEFORE_INTERRUPTION}', toFloat64(tokens_before), intervened)]) AS m
    UNION ALL
    SELECT run_id, '', if(rewrite, delegator, delegate), concat(delegator, '->', delegate),
        if(rewrite, '{t.REWRITE_BUG_RATE}', '{t.ORIGINAL_BUG_RATE}'), toFloat64(bad), 1.0 FROM vf
)
SELECT run_id, anyIf(project, project != '') AS project, scope, subject, metric,
    sum(num) AS num, sum(den) AS den, sum(alt_num) AS alt_num, sum(alt_den) AS alt_den
FROM (
    SELECT run_id, project, cell.1 AS scope, cell.2 AS subject, metric, num, den,
        0.0 AS alt_num, 0.0 AS alt_den
    FROM cells
    ARRAY JOIN arrayFilter(x -> x.2 != '', [('{t.SCOPE_RUN}', run_id), ('{t.SCOPE_AGENT}', agent),
                                           ('{t.SCOPE_PAIR}', pair)]) AS cell
    UNION ALL
    SELECT run_id, '', '{t.SCOPE_RUN}', run_id, '{t.COORDINATION_OVERHEAD}',
        toFloat64(sumIf(tokens, coordinator)), toFloat64(sumIf(tokens, NOT coordinator)),
        toFloat64(sum(coord_spans)), toFloat64(sum(work_spans))
    FROM ag GROUP BY run_id
    UNION ALL
    -- each run once, with no metric: its project, and the zero failure rates of the totals
    SELECT rid, anyIf(project, project != ''), '{t.SCOPE_RUN}', rid, '', 0.0, 0.0, 0.0, 0.0
    FROM tr GROUP BY rid
)
GROUP BY run_id, scope, subject, metric
"""

# What a chunk's shape says about its traces, for the contributions read from our tables later:
# the run of each trace, and the agent pair of each delegation span.
_TRACE_RUNS = "SELECT trace_id, rid AS run_id FROM tr"
_SPAN_PAIRS = "SELECT trace_id, span_id, concat(delegator, '->', delegate) AS pair FROM e"

# Contributions from what detection stored, for every trace seen, once all are judged: a count
# per finding (failure rates), and the cascade graph's counts kept with each judged trace
# (error amplification).
_STORED_CONTRIBUTIONS = f"""
SELECT tr.run_id, '', cell.1, cell.2, concat('{t.FAILURE_RATE_PREFIX}', f.code), 1.0, cell.3, 0.0, 0.0
FROM (SELECT trace_id, code, agent, span_id FROM {schema.FINDINGS_TABLE} FINAL
      WHERE trace_id IN (SELECT trace_id FROM {{slice_traces}})) AS f
INNER JOIN {{slice_traces}} AS tr ON tr.trace_id = f.trace_id
LEFT JOIN (SELECT * FROM {{pairs}} WHERE trace_id IN (SELECT trace_id FROM {{slice_traces}})) AS pr
    ON pr.trace_id = f.trace_id AND pr.span_id = f.span_id
ARRAY JOIN arrayFilter(x -> x.2 != '', [('{t.SCOPE_RUN}', tr.run_id, 0.0), ('{t.SCOPE_AGENT}', f.agent, 1.0),
                                       ('{t.SCOPE_PAIR}', pr.pair, 1.0)]) AS cell
UNION ALL
SELECT tr.run_id, '', '{t.SCOPE_RUN}', tr.run_id, '{t.ERROR_AMPLIFICATION}', toFloat64(sum(d.own_errors)),
    toFloat64(sum(d.root_errors)), 0.0, 0.0
FROM (SELECT trace_id, own_errors, root_errors FROM {schema.DETECTED_TABLE} FINAL
      WHERE detector_version = {{{{version:String}}}} AND trace_id IN (SELECT trace_id FROM {{slice_traces}})) AS d
INNER JOIN {{slice_traces}} AS tr ON tr.trace_id = d.trace_id
GROUP BY tr.run_id HAVING sum(d.root_errors) > 0
"""

# The sums: failure rates are counts (per run, or per finding of an agent or pair); the rest a
# ratio, with no row where nothing was counted. Then every mode a run has no finding of, at 0:
# added to the totals, not to every chunk's contributions, where they were half the rows.
_TOTALS = f"""
SELECT p.project AS project, m.run_id AS run_id, m.scope AS scope, m.subject AS subject,
    m.metric AS metric, m.value AS value, m.numerator AS numerator, m.denominator AS denominator
FROM (
    SELECT run_id, scope, subject, metric, sum(num) AS n, sum(den) AS d,
        metric = '{t.COORDINATION_OVERHEAD}' AND n + d = 0 AS by_spans,
        startsWith(metric, '{t.FAILURE_RATE_PREFIX}') AS count_only,
        if(by_spans, sum(alt_num), n) AS numerator,
        multiIf(by_spans, sum(alt_den), count_only AND scope = '{t.SCOPE_RUN}', 1.0, d) AS denominator,
        if(count_only, numerator, numerator / denominator) AS value
    FROM {{contributions}} WHERE metric != '' AND {{slice}}
    GROUP BY run_id, scope, subject, metric
    HAVING count_only OR denominator != 0
) AS m
INNER JOIN (SELECT run_id, anyIf(project, project != '') AS project FROM {{contributions}}
            WHERE metric = '' AND {{slice}} GROUP BY run_id) AS p ON p.run_id = m.run_id
"""

# A run's failure rate of every mode it has no finding of (the marker rows name each run once).
_ZERO_RATES = f"""
SELECT project, run_id, '{t.SCOPE_RUN}', run_id, rate, 0.0, 0.0, 1.0
FROM (SELECT run_id, anyIf(project, project != '') AS project,
          arrayJoin({{{{failure_rates:Array(String)}}}}) AS rate
      FROM {{contributions}} WHERE metric = '' AND {{slice}} GROUP BY run_id)
WHERE (run_id, rate) NOT IN (SELECT run_id, metric FROM {{totals}} WHERE scope = '{t.SCOPE_RUN}')
"""

_METRIC_COLUMNS = "project, run_id, scope, subject, metric, value, numerator, denominator"

# Up to this many runs written at once, their old rows are checked for leftovers before any
# DELETE (``MetricSums.write``); more (a full pass) delete theirs outright.
_FEW_RUNS = 10_000
# Runs totalled at a time: the totals, and the sets and joins that make them, are held in
# memory a slice of this many runs at a time, so a full pass's memory does not follow the store.
RUNS_PER_SLICE = 50_000
# A slice is a range of the run id's hash, which the scratch tables are sorted by: each slice
# reads its own granules, not every contribution again.
_RUN_HASH = "cityHash64(run_id)"
_SLICE = f"{_RUN_HASH} BETWEEN {{lo:UInt64}} AND {{hi:UInt64}}"
# Rows of the runs being written that their new totals no longer have (an agent or pair gone).
_STALE = f"""
SELECT count() FROM {schema.METRICS_TABLE} FINAL
WHERE run_id IN (SELECT DISTINCT run_id FROM {{slice_traces}})
  AND (run_id, scope, subject, metric) NOT IN (SELECT run_id, scope, subject, metric FROM {{totals}})
"""
_RUN_ID = f"SpanAttributes['{c.RUN_ID}']"


def _run_traces(store: Store, run_ids: Sequence[str]) -> list[tuple[str, str]]:
    """Each (run, trace) pair of a run of ``run_ids`` and a trace of it: the traces whose spans
    carry the run id, and a trace that stands for its own run (no run id). Two reads, not one
    with OR: each side prunes by its own index (the run id's bloom filter, the sort key), where
    OR read every granule (0.7 s at 1M spans against 0.03 s).

    The engine reads ``SpanAttributes['...']`` as a subcolumn of the map unless told not to, and
    then no longer matches it with the run id's index (``idx_run_id``), which is written on the
    expression: 40 runs among 10M spans took 0.47 s, reading a third of the table, against
    0.03 s with the index."""
    rows = store.query(
        f"SELECT {_RUN_ID} AS r, TraceId AS t FROM {schema.SPAN_TABLE} WHERE {among(_RUN_ID, 'runs', len(run_ids))} "
        f"UNION DISTINCT SELECT TraceId AS r, TraceId AS t FROM {schema.SPAN_TABLE} "
        f"WHERE {among('TraceId', 'runs', len(run_ids))} SETTINGS optimize_functions_to_subcolumns = 0",
        {"runs": list(run_ids)})
    return sorted((r["r"], r["t"]) for r in rows)


def _out_of_date(store: Store, pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The runs of ``pairs`` (``_run_traces``) whose stored metrics are missing, or older than
    the judgement by this detector set of one of their traces: a trace judged since (new, grown,
    or judged by a new set) or never judged. Both times are the engine's clock at insert."""
    runs, traces = [r for r, _ in pairs], [t for _, t in pairs]
    sql = f"""
SELECT DISTINCT rt.1 AS run_id
FROM (SELECT arrayJoin(arrayZip({{runs:Array(String)}}, {{traces:Array(String)}})) AS rt) AS pairs
LEFT JOIN (SELECT trace_id, max(detected_at) AS judged FROM {schema.DETECTED_TABLE}
           WHERE detector_version = {{version:String}} AND {among('trace_id', 'traces', len(traces))}
           GROUP BY trace_id) AS d ON d.trace_id = rt.2
LEFT JOIN (SELECT run_id, max(computed_at) AS computed FROM {schema.METRICS_TABLE}
           WHERE {among('run_id', 'runs', len(runs))} GROUP BY run_id) AS m ON m.run_id = rt.1
WHERE d.trace_id = '' OR m.run_id = '' OR d.judged >= m.computed"""
    return sorted(r["run_id"] for r in store.query(sql, {"runs": runs, "traces": traces, "version": version()}))


def _scratches(store: Store, traces: Sequence[str], every: bool) -> Iterator[Scratch]:
    """The normalised shape of ``traces``, a chunk at a time (``pipeline.chunks``): every metric
    query of a chunk reads it, so the attribute maps are read once per chunk, not once per query."""
    for _, where, params in chunks(traces, every):
        with Scratch(store, where, params) as scratch:
            yield scratch


def _over(scratch: Scratch, body: str, views: bool = False) -> str:
    """``body`` over a chunk's normalised shape, with ``tr`` (each trace's run) beside it;
    ``views``: the body starts with more views of its own (``name AS (...), ... SELECT``)."""
    body = _RUN_OF + (",\n" if views else "\n") + body
    return "WITH " + scratch.bind(body)


class MetricSums(ScratchTables):
    """Every metric's contributions, gathered a chunk of traces at a time (``add``), then
    totalled into ``handoffs_metrics`` (``write``), in scratch tables of the store.

    ``add`` takes the normalised shape a detection pass already built, so a full pass can
    gather the metrics without reading the traces again (``detect(..., on_shape=sums.add)``).
    The contributions wait on disk (MergeTree), not in memory: a full pass gathers every run's,
    and with them in Memory tables `handoffs detect --full` peaked at 5.2 GB at 10M spans
    (2.3 GB now; BENCHMARKS.md, detection).
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store, "parts", "traces", "pairs", "totals")
        self.parts, self.traces, self.pairs, self.totals = (
            self.name(kind) for kind in ("parts", "traces", "pairs", "totals"))

    def _create(self) -> None:
        by_run = f"ENGINE = MergeTree ORDER BY {_RUN_HASH}"
        self.store.command(f"CREATE TABLE {self.parts} ({_CONTRIBUTION_COLUMNS}) {by_run}")
        self.store.command(f"CREATE TABLE {self.traces} (trace_id String, run_id String) {by_run}")
        self.store.command(f"CREATE TABLE {self.pairs} (trace_id String, span_id String, pair String) "
                           "ENGINE = MergeTree ORDER BY trace_id")

    def add(self, scratch: Scratch) -> None:
        """The contributions of one chunk's traces, from their normalised shape."""
        self.store.command(f"INSERT INTO {self.parts} " + _over(scratch, _CHUNK_CONTRIBUTIONS, views=True))
        self.store.command(f"INSERT INTO {self.traces} " + _over(scratch, _TRACE_RUNS))
        self.store.command(f"INSERT INTO {self.pairs} " + scratch.bind(_SPAN_PAIRS))

    def write(self) -> int:
        """Total the contributions of every trace added (judged by now: failure rates count their
        findings) into the metrics of their runs, in place of the old rows; return how many.

        A slice of about ``RUNS_PER_SLICE`` runs at a time (a range of the run id's hash), so that the
        totals and the sets that build them stay a slice's size whatever the number of runs.
        """
        tables = {"contributions": self.parts, "traces": self.traces, "pairs": self.pairs,
                  "totals": self.totals, "slice": _SLICE,
                  "slice_traces": f"(SELECT trace_id, run_id FROM {self.traces} WHERE {_SLICE})"}
        runs = int(self.store.scalar(f"SELECT uniqExact(run_id) FROM {self.traces}"))
        # Old rows of a key written again are replaced by the insert (the table keeps the newest
        # of a key); the old rows are deleted only when some would be left over (an agent or
        # pair gone since). A DELETE rewrites every part holding the runs, a cost that grows with
        # the table (1.0-1.9 s for one run among 4.1M metric rows), which every gate and
        # incremental detect paid. Finding the leftovers costs by the runs instead (4.1 s for
        # all 93k runs of that table, against 1.5 s to delete them): many runs just delete.
        many = runs > _FEW_RUNS
        if many:
            self.store.command(f"DELETE FROM {schema.METRICS_TABLE} WHERE run_id IN "
                               f"(SELECT DISTINCT run_id FROM {self.traces})")
        slices = max(1, -(-runs // RUNS_PER_SLICE))
        step = 2**64 // slices
        stored = 0
        for part in range(slices):
            where = {"lo": part * step, "hi": 2**64 - 1 if part == slices - 1 else (part + 1) * step - 1}
            self.store.command(f"INSERT INTO {self.parts} " + _STORED_CONTRIBUTIONS.format(**tables),
                               {"version": version()} | where)
            self.store.command(f"CREATE TABLE {self.totals} ENGINE = Memory AS " + _TOTALS.format(**tables),
                               where)
            self.store.command(f"INSERT INTO {self.totals} " + _ZERO_RATES.format(**tables),
                               {"failure_rates": [t.failure_rate_metric(mode.code) for mode in t.MODES]} | where)
            stored += int(self.store.scalar(f"SELECT count() FROM {self.totals}"))
            if not many and int(self.store.scalar(_STALE.format(**tables), where)):
                self.store.command(f"DELETE FROM {schema.METRICS_TABLE} WHERE run_id IN "
                                   f"(SELECT DISTINCT run_id FROM {tables['slice_traces']})", where)
            # One row per key already: the engine's in-block collapse would only cost time (2.5x).
            self.store.command(f"INSERT INTO {schema.METRICS_TABLE} ({_METRIC_COLUMNS}) "
                               f"SELECT {_METRIC_COLUMNS} FROM {self.totals} SETTINGS optimize_on_insert = 0")
            self.store.command(f"DROP TABLE {self.totals}")
        if many:
            # Every row of these runs deleted and written again: merged now, not read through
            # the delete's mask (and FINAL) until the engine's merges get to them.
            self.store.merge_versions(schema.METRICS_TABLE)
        return stored


def compute_metrics(store: Store, run_ids: Sequence[str] | None = None, *, out_of_date: bool = False) -> int:
    """Compute every metric for ``run_ids`` (all runs when None) and store them in place of
    their old rows; return how many rows were stored (``load`` reads them).

    Detection runs first on traces not judged yet, since failure rates count findings.
    ``out_of_date``: only the runs of ``run_ids`` whose metrics are missing or older than the
    judgement of one of their traces; the others' rows are current. The gate compares this
    build's runs with a baseline's whose metrics were stored by earlier builds: computing those
    again cost every gate 0.6-1.0 s at 1M spans.
    """
    if run_ids is None:
        traces = [r["t"] for r in store.query(f"SELECT DISTINCT TraceId AS t FROM {schema.SPAN_TABLE}")]
        detect_pending(store)  # incremental: reads only what arrived since the last pass
    else:
        pairs = _run_traces(store, run_ids)
        detect_pending(store, sorted({t for _, t in pairs}))
        if out_of_date:
            due = set(_out_of_date(store, pairs))
            pairs = [(r, t) for r, t in pairs if r in due]
        traces = sorted({t for _, t in pairs})
        if not traces:
            return 0
    with MetricSums(store) as sums:
        for scratch in _scratches(store, traces, every=run_ids is None):
            sums.add(scratch)
        return sums.write()


def load(store: Store, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The stored metric rows of ``run_ids`` (every run when None)."""
    where, params = "", None
    if run_ids is not None:
        where, params = f"WHERE {among('run_id', 'runs', len(run_ids))}", {"runs": list(run_ids)}
    return store.query(f"SELECT {_METRIC_COLUMNS} FROM {schema.METRICS_TABLE} FINAL {where}", params)
