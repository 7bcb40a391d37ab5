"""Every query the dashboard runs, parameterised, aggregated in ClickHouse, read-only.

Each function takes a ``Store`` and plain parameters and returns a small pandas frame built
from the store's Arrow result: the heavy lifting (grouping, joins, pivots, windows) happens in
ClickHouse, and pandas only ever sees the few hundred rows a page shows. Nothing here
writes. The bench (``bench/dashboard.py``) times these functions page by page.

Run status, as the runs page shows it:

* ``failed`` / ``warning`` / ``passed``: the gate evaluated the run
  (``handoffs_gate_results.run_ids``): the worst verdict of its checks (the gate already
  folds each check's severity into its verdict: ``fail``, ``warn``, ``pass``).
* without a gate result, from findings: ``failed`` when the run span's status is ``Error`` or
  a finding has confidence >= ``BLOCKING_CONFIDENCE``; ``warning`` when it has only findings
  below that; ``passed`` when a detector has seen its trace and found nothing; ``not checked``
  when no detector has seen it yet.

Reads of a ReplacingMergeTree with ``FINAL`` put their conditions on sort-key columns in
``PREWHERE``: under ``FINAL`` the engine does not move them there itself and reads every
column asked for of every granule into the merge, where ``PREWHERE`` reads the filter's columns
first (the Agents page's rankings, 2-2.4x on a 10M-span store whose rows stood in several
versions awaiting merges; BENCHMARKS.md, dashboard). It is exact only on the sort key, which
every version of a row shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pandas as pd

from handoffs import conventions as C
from handoffs import taxonomy as T
from handoffs.gate.judge import query_runs
from handoffs.gate.policy import FAIL, WARN, RunFilter
from handoffs.store import Store
from handoffs.store.schema import (
    DETECTED_TABLE,
    FINDINGS_TABLE,
    GATE_TABLE,
    METRICS_TABLE,
    RUNS_TABLE,
    SPAN_TABLE,
)
from handoffs.store.spans import ERROR_STATUS_CODES, SPAN_FAILED_SQL

BLOCKING_CONFIDENCE: Final = 0.5
# The seed metrics the runs page shows per run, in this order (names from the taxonomy).
SEED_METRICS: Final[tuple[str, ...]] = (
    T.OVERWRITE_RATE,
    T.TOKENS_BEFORE_INTERRUPTION,
    T.AUTONOMOUS_COMPLETION_RATE,
    T.ERROR_AMPLIFICATION,
    T.COORDINATION_OVERHEAD,
)
TREND_RUNS: Final = 10  # runs per branch in the sparkline
MAX_TRACE_SPANS: Final = 3000  # a trace view beyond this is unreadable anyway
# The heatmap reads the window's latest runs only: all 220k runs of a 16M-span store took it
# from 0.12 to 0.45 s (BENCHMARKS.md, dashboard); the page says so when the cap applies.
HEATMAP_RUNS: Final = 5000
AGENT_MODE_ROWS: Final = 20000  # (day, agent, mode) cells; past it the oldest days are left out
HEATMAP_GROUPS: Final[dict[str, tuple[str, str, str]]] = {
    # heatmap grouping -> (group of a finding, group whose run count is the denominator, which
    # groups are shown when there are more than the limit), SQL over the runs CTE ``r``,
    # findings ``f`` and the ``hits`` per group. A closed set: pages offer these keys only.
    "system": ("if(r.system != '', r.system, r.service)", "if(r.system != '', r.system, r.service)",
               "sum(findings)"),
    "agent": ("if(f.agent != '', f.agent, '(no agent)')", "''", "sum(findings)"),  # share of all runs
    # The latest runs, as the page's label says (by findings it showed the noisiest ones).
    "run": ("r.run_id", "r.run_id", "max(latest)"),
}

# Every page filters runs by project ('' = all) and the start of its window (unix seconds).
_RUN_FILTER = """
    ({project:String} = '' OR project = {project:String})
    AND toUnixTimestamp(started_at) >= {since:Int64}"""

# Runs in the window (ReplacingMergeTree: FINAL so a re-sent run span counts once).
RUN_LIST_SQL = f"""
SELECT run_id, project, trace_id, name, if(system != '', system, service) AS system,
       started_at, duration_ns / 1e9 AS duration_s, status AS span_status, commit, branch, tags,
       topology
FROM {RUNS_TABLE} FINAL
WHERE {_RUN_FILTER}
  AND (empty({{branches:Array(String)}}) OR has({{branches:Array(String)}}, branch))
  AND ({{tag:String}} = '' OR has(tags, {{tag:String}}))
  AND ({{run:String}} = '' OR run_id = {{run:String}})
  AND (empty({{runs:Array(String)}}) OR run_id IN {{runs:Array(String)}})
ORDER BY started_at DESC
LIMIT {{limit:UInt32}}"""

# Findings of given runs: by run id, or by trace id when the detector left the run id empty.
# The runs come in as arrays ({runs}, {traces}, pairwise): a CTE over the runs table would be
# evaluated again at every reference, which dominated this page's time on a large store.
_RUN_FINDINGS_CTE = f"""
rf AS (
    SELECT if(run_id != '', run_id,
              transform(trace_id, {{traces:Array(String)}}, {{runs:Array(String)}}, '')) AS run_id,
           code, confidence, agent
    FROM {FINDINGS_TABLE} FINAL
    WHERE trace_id IN {{traces:Array(String)}} OR run_id IN {{runs:Array(String)}}
)"""

def _frame(store: Store, sql: str, params: dict) -> pd.DataFrame:
    """Run ``sql`` and return its (small, aggregated) result as a DataFrame."""
    return store.query_arrow(sql, params).to_pandas()


def _run_params(project: str, since: int, branches: Sequence[str] = (), tag: str = "",
                run: str = "", limit: int = 500) -> dict:
    return {"project": project, "since": int(since), "branches": list(branches), "tag": tag,
            "run": run, "limit": int(limit)}


# --- store state and filter options ------------------------------------------------------------

def store_state(store: Store) -> dict[str, int]:
    """Row counts that decide between the first-run page and the dashboard (metadata-only)."""
    row = store.query(f"""
        SELECT (SELECT count() FROM {RUNS_TABLE}) AS runs,
               (SELECT count() FROM {SPAN_TABLE}) AS spans,
               (SELECT count() FROM {FINDINGS_TABLE}) AS findings""")[0]
    return {k: int(v) for k, v in row.items()}


def filter_options(store: Store, project: str) -> dict[str, list[str]]:
    """Projects, branches and tags to offer in the sidebar filters."""
    row = store.query(f"""
        SELECT arraySort(groupUniqArray(project)) AS projects,
               arraySort(groupUniqArrayIf(branch, branch != ''
                   AND ({{project:String}} = '' OR project = {{project:String}}))) AS branches,
               arraySort(groupUniqArrayArrayIf(tags,
                   {{project:String}} = '' OR project = {{project:String}})) AS tags
        FROM {RUNS_TABLE}""", {"project": project})[0]
    return {k: list(v) for k, v in row.items()}


# --- runs ------------------------------------------------------------------------------------

_METRIC_COLUMNS = ",\n".join(
    f"maxIfOrNull(value, metric = {{m{i}:String}}) AS `{m}`" for i, m in enumerate(SEED_METRICS))
_METRIC_PARAMS = {f"m{i}": m for i, m in enumerate(SEED_METRICS)}
_METRIC_SELECT = ", ".join(f"m.`{m}` AS `{m}`" for m in SEED_METRICS)

# Per-run figures of given runs, each source read once: findings, gate checks, detection
# state, span totals (spans, tokens, error spans) and the seed metrics.
RUN_STATS_SQL = f"""
WITH {_RUN_FINDINGS_CTE},
fa AS (
    SELECT run_id, count() AS findings, countIf(confidence >= {{blocking:Float64}}) AS blocking,
           arraySort(groupUniqArray(code)) AS codes
    FROM rf GROUP BY run_id
),
g AS (
    -- The latest gate that judged the run decides, as a build re-run turns green in CI: counted
    -- over every gate, one that failed once stayed failed whatever judged it since.
    SELECT run_id, argMax(checks, at) AS gate_checks, argMax(failed, at) AS gate_failed,
           argMax(warned, at) AS gate_warned
    FROM (
        SELECT run_id, gate_id, max(evaluated_at) AS at, count() AS checks,
               countIf(verdict = {{fail:String}}) AS failed, countIf(verdict = {{warn:String}}) AS warned
        FROM {GATE_TABLE} FINAL ARRAY JOIN run_ids AS run_id
        WHERE has({{runs:Array(String)}}, run_id)
        GROUP BY run_id, gate_id
    )
    GROUP BY run_id
),
d AS (SELECT DISTINCT trace_id FROM {DETECTED_TABLE} WHERE trace_id IN {{traces:Array(String)}}),
s AS (
    -- Spans are stored by trace id, so each listed run costs about one granule of the span
    -- table; only the token attributes and the status are read (no events: they cost more).
    SELECT TraceId AS trace_id, count() AS spans,
           sum(toUInt64OrZero(SpanAttributes[{{in_tok:String}}])
               + toUInt64OrZero(SpanAttributes[{{out_tok:String}}])) AS tokens,
           countIf({SPAN_FAILED_SQL}) AS error_spans
    FROM {SPAN_TABLE}
    WHERE TraceId IN {{traces:Array(String)}}
    GROUP BY TraceId
),
m AS (
    SELECT run_id, {_METRIC_COLUMNS}
    FROM {METRICS_TABLE} FINAL
    WHERE scope = {{scope_run:String}} AND run_id IN {{runs:Array(String)}}
    GROUP BY run_id
)
SELECT base.run_id AS run_id,
       coalesce(s.spans, 0) AS spans, coalesce(s.tokens, 0) AS tokens,
       coalesce(s.error_spans, 0) AS error_spans,
       coalesce(fa.findings, 0) AS findings, coalesce(fa.blocking, 0) AS blocking, fa.codes AS codes,
       coalesce(g.gate_checks, 0) AS gate_checks, coalesce(g.gate_failed, 0) AS gate_failed,
       -- NULL where no row joined (join_use_nulls): != '' would be NULL, which pandas reads as
       -- NaN, which is true, and every run never judged showed as passed.
       coalesce(g.gate_warned, 0) AS gate_warned, d.trace_id IS NOT NULL AS detected,
       {_METRIC_SELECT}
FROM (SELECT arrayJoin(arrayZip({{runs:Array(String)}}, {{traces:Array(String)}})) AS pair,
             pair.1 AS run_id, pair.2 AS trace_id) AS base
LEFT JOIN fa ON fa.run_id = base.run_id
LEFT JOIN g ON g.run_id = base.run_id
LEFT JOIN d ON d.trace_id = base.trace_id
LEFT JOIN s ON s.trace_id = base.trace_id
LEFT JOIN m ON m.run_id = base.run_id
SETTINGS join_use_nulls = 1
"""


def run_status(row: pd.Series) -> tuple[str, str]:
    """(status, where it came from) of one run, as the module docstring defines it."""
    if row["gate_checks"] > 0:
        status = ("failed" if row["gate_failed"] > 0 else
                  "warning" if row["gate_warned"] > 0 else "passed")
        return status, "gate"
    if row["span_status"] in ERROR_STATUS_CODES or row["blocking"] > 0:
        return "failed", "findings"
    if row["findings"] > 0:
        return "warning", "findings"
    return ("passed" if row["detected"] else "not checked"), "findings"


def run_stats(store: Store, run_ids: Sequence[str], trace_ids: Sequence[str]) -> pd.DataFrame:
    """Per-run figures of these runs (trace ids pairwise): the runs page's and compare's numbers."""
    return _frame(store, RUN_STATS_SQL, {
        "runs": list(run_ids), "traces": list(trace_ids), "blocking": BLOCKING_CONFIDENCE,
        "fail": FAIL, "warn": WARN, "in_tok": C.GEN_AI_USAGE_INPUT_TOKENS,
        "out_tok": C.GEN_AI_USAGE_OUTPUT_TOKENS, "scope_run": T.SCOPE_RUN,
    } | _METRIC_PARAMS)


def run_list(store: Store, project: str = "", limit: int = 200, since: int = 0) -> pd.DataFrame:
    """The window's latest runs' ids and CI metadata only (the run picker; no figures)."""
    return _frame(store, RUN_LIST_SQL, _run_params(project, since, limit=limit) | {"runs": []})


def runs(store: Store, project: str = "", since: int = 0, branches: Sequence[str] = (),
         tag: str = "", run: str = "", limit: int = 100, run_ids: Sequence[str] = (),
         trend: bool = True) -> pd.DataFrame:
    """The runs page: one row per run with status, CI metadata, tokens, seed metrics, trend.

    Two statements: the run list (newest first), then every figure of those runs at once.
    ``trend`` is the findings of the last ``TREND_RUNS`` listed runs on the run's branch (left
    out with ``trend=False``: a comparison's samples need none).
    """
    listed = _frame(store, RUN_LIST_SQL, _run_params(project, since, branches, tag, run, limit)
                    | {"runs": list(run_ids)})
    if listed.empty:
        return listed
    stats = run_stats(store, listed["run_id"].tolist(), listed["trace_id"].tolist())
    out = listed.merge(stats, on="run_id", how="left")
    out[["status", "status_from"]] = out.apply(run_status, axis=1, result_type="expand")
    if not trend:
        return out
    oldest_first = out.iloc[::-1]
    out["trend"] = (oldest_first.groupby("branch")["findings"]
                    .transform(lambda f: pd.Series([list(f.iloc[max(0, i - TREND_RUNS + 1):i + 1])
                                                    for i in range(len(f))], index=f.index)))
    return out


# --- run detail ------------------------------------------------------------------------------

def run_checks(store: Store, run_id: str) -> pd.DataFrame:
    """The checks of every gate that covered this run: the latest gate first, and within a
    gate the failing checks first."""
    return _frame(store, f"""
        SELECT check_name, severity, verdict, value, limit_value, baseline, message, policy,
               gate_id, max(evaluated_at) OVER (PARTITION BY gate_id) AS gate_at, evaluated_at
        FROM {GATE_TABLE} FINAL
        WHERE has(run_ids, {{run:String}})
        ORDER BY gate_at DESC, gate_id, verdict = {{fail:String}} DESC, verdict = {{warn:String}} DESC,
            check_name""",
        {"run": run_id, "fail": FAIL, "warn": WARN})


def run_findings(store: Store, run_id: str, trace_id: str) -> pd.DataFrame:
    """The run's findings, blocking (high confidence) first, with their evidence."""
    return _frame(store, f"""
        SELECT code, name, category, agent, step, span_id, trace_id, confidence, evidence,
               detector, detector_version, confidence >= {{blocking:Float64}} AS blocking
        FROM {FINDINGS_TABLE} FINAL
        WHERE run_id = {{run:String}} OR (run_id = '' AND trace_id = {{trace:String}})
        ORDER BY blocking DESC, confidence DESC, step""",
        {"run": run_id, "trace": trace_id, "blocking": BLOCKING_CONFIDENCE})


# A span failed, as the detectors read it (``detectors/normalise.py``: ``failed``, and a
# delegation's ``status``, lower-cased): its status is Error, or the delegation says it failed
# (the SDK's ``set_status("failed")`` and the collector's normalisation set only that).
_FAILED_SQL = (f"({SPAN_FAILED_SQL} OR lower(SpanAttributes[{{a_status:String}}]) = "
               "{failed:String})")
_FAILED_PARAMS: Final = {"a_status": C.DELEGATION_STATUS, "failed": C.DelegationStatus.FAILED.value}

TRACE_SQL = f"""
SELECT SpanId AS span_id, ParentSpanId AS parent_span_id, SpanName AS name,
       SpanAttributes[{{a_type:String}}] AS span_type,
       if(SpanAttributes[{{a_agent:String}}] != '', SpanAttributes[{{a_agent:String}}],
          SpanAttributes[{{a_source:String}}]) AS agent,
       SpanAttributes[{{a_target:String}}] AS target,
       toInt32OrNull(SpanAttributes[{{a_step:String}}]) AS step,
       toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration AS duration_ns,
       StatusCode AS status, StatusMessage AS status_message, {_FAILED_SQL} AS failed,
       toUInt64OrZero(SpanAttributes[{{in_tok:String}}])
           + toUInt64OrZero(SpanAttributes[{{out_tok:String}}]) AS tokens,
       substring(SpanAttributes[{{a_task:String}}], 1, 400) AS task,
       substring(SpanAttributes[{{a_role:String}}], 1, 40) AS role,
       substring(if(SpanAttributes[{{a_msg:String}}] != '', SpanAttributes[{{a_msg:String}}],
                    arrayStringConcat(arrayFilter(x -> x != '',
                        arrayMap(a -> a[{{a_out:String}}], `Events.Attributes`)), ' | ')),
                 1, 600) AS message,
       arrayStringConcat(arrayFilter(x -> x != '',
           arrayMap(a -> if(a[{{a_action:String}}] != '' AND a[{{a_reason:String}}] != '',
                            concat(a[{{a_action:String}}], ' (', a[{{a_reason:String}}], ')'),
                            a[{{a_action:String}}]), `Events.Attributes`)), ', ') AS decisions
FROM {SPAN_TABLE}
WHERE TraceId = {{trace:String}}
ORDER BY Timestamp, SpanId
LIMIT 1 BY SpanId
LIMIT {{limit:UInt32}}
"""


def trace_spans(store: Store, trace_id: str, limit: int = MAX_TRACE_SPANS) -> pd.DataFrame:
    """One trace's spans in time order (for the waterfall and a finding's context)."""
    return _frame(store, TRACE_SQL, {
        "trace": trace_id, "limit": int(limit), "a_type": C.SPAN_TYPE,
        "a_agent": C.GEN_AI_AGENT_NAME, "a_source": C.SOURCE_AGENT, "a_target": C.TARGET_AGENT,
        "a_step": C.STEP, "in_tok": C.GEN_AI_USAGE_INPUT_TOKENS,
        "out_tok": C.GEN_AI_USAGE_OUTPUT_TOKENS, "a_task": C.TASK, "a_role": C.MESSAGE_ROLE,
        "a_msg": C.MESSAGE_CONTENT, "a_out": C.OUTPUT_CONTENT, "a_action": C.DECISION_ACTION,
        "a_reason": C.DECISION_REASON,
    } | _FAILED_PARAMS)


HANDOFF_EDGES_SQL = f"""
WITH e AS (
    SELECT SpanAttributes[{{a_source:String}}] AS source, SpanAttributes[{{a_target:String}}] AS target,
           arrayExists((n, a) -> n = {{ev_decision:String}} AND a[{{a_action:String}}] IN {{overwrites:Array(String)}},
                       `Events.Name`, `Events.Attributes`) AS overwritten,
           {_FAILED_SQL} AS failed
    FROM {SPAN_TABLE}
    WHERE TraceId IN {{traces:Array(String)}}
      AND SpanAttributes[{{a_type:String}}] = {{delegation:String}}
    LIMIT 1 BY TraceId, SpanId
),
cascade AS (
    SELECT agent, count() AS cascades
    FROM {FINDINGS_TABLE} FINAL
    WHERE trace_id IN {{traces:Array(String)}} AND code = {{cascade:String}}
    GROUP BY agent
)
SELECT e.source AS source, e.target AS target, count() AS delegations,
       countIf(e.overwritten) AS overwrites, countIf(e.overwritten) / count() AS overwrite_rate,
       countIf(e.failed) AS failures, any(cascade.cascades) AS cascades
FROM e LEFT JOIN cascade ON cascade.agent = e.target
WHERE e.source != '' AND e.target != ''
GROUP BY source, target
ORDER BY delegations DESC
"""


def handoff_edges(store: Store, trace_ids: Sequence[str]) -> pd.DataFrame:
    """Delegations between agents in these traces, with overwrite rate and cascade roots."""
    return _frame(store, HANDOFF_EDGES_SQL, {
        "traces": list(trace_ids), "a_source": C.SOURCE_AGENT, "a_target": C.TARGET_AGENT,
        "ev_decision": C.EVENT_DECISION, "a_action": C.DECISION_ACTION,
        "overwrites": [C.DecisionAction.OVERWROTE.value],
        "a_type": C.SPAN_TYPE, "delegation": C.SpanType.DELEGATION.value,
        "cascade": T.ERROR_CASCADE,
    } | _FAILED_PARAMS)


# --- agents ----------------------------------------------------------------------------------

def agent_metrics(store: Store, project: str, since: int, scope: str) -> pd.DataFrame:
    """Agent- or pair-scoped metrics per day (scope: taxonomy SCOPE_AGENT/PAIR): the mean of
    the day's per-run values, the runs behind it and the summed numerator and denominator.

    Per day, not per run: a window of months holds hundreds of thousands of run values, more
    than a chart can show, and a cap on rows would cut off the newest days.
    """
    return _frame(store, f"""
        WITH r AS (SELECT run_id, started_at FROM {RUNS_TABLE} FINAL WHERE {_RUN_FILTER})
        SELECT toDate(r.started_at) AS day, m.subject AS subject, m.metric AS metric,
               avg(m.value) AS value, count() AS runs, sum(m.numerator) AS numerator,
               sum(m.denominator) AS denominator
        FROM {METRICS_TABLE} AS m FINAL
        INNER JOIN r ON r.run_id = m.run_id
        PREWHERE m.scope = {{scope:String}}
        GROUP BY day, subject, metric
        ORDER BY day, subject, metric""", {"project": project, "since": int(since), "scope": scope})


_OVERWRITES_SELECT = """
    SELECT supervisor, toFloat64(overwrites) AS overwrites, toFloat64(delegations) AS delegations,
           if(delegations > 0, overwrites / delegations, NULL) AS overwrite_rate,
           {source:String} AS source"""

# Pair-scoped overwrite counts summed per source agent.
_OVERWRITES_BY_PAIRS_SQL = f"""
WITH r AS (SELECT run_id FROM {RUNS_TABLE} FINAL WHERE {_RUN_FILTER})
{_OVERWRITES_SELECT}
FROM (
    SELECT splitByString('->', subject)[1] AS supervisor,
           sum(numerator) AS overwrites, sum(denominator) AS delegations
    FROM {METRICS_TABLE} FINAL
    PREWHERE scope = {{pair:String}} AND metric = {{metric:String}}
    WHERE run_id IN (SELECT run_id FROM r)
    GROUP BY supervisor
)
ORDER BY overwrites DESC
LIMIT 50"""

# Overwrite findings by agent: when the detectors stored no pair metrics.
_OVERWRITES_BY_FINDINGS_SQL = f"""
WITH r AS (SELECT run_id, trace_id FROM {RUNS_TABLE} FINAL WHERE {_RUN_FILTER})
{_OVERWRITES_SELECT}
FROM (
    SELECT agent AS supervisor, count() AS overwrites, 0 AS delegations
    FROM {FINDINGS_TABLE} FINAL
    PREWHERE code = {{code:String}} AND agent != ''
    WHERE run_id IN (SELECT run_id FROM r) OR trace_id IN (SELECT trace_id FROM r)
    GROUP BY agent
)
ORDER BY overwrites DESC
LIMIT 50"""


def supervisor_overwrites(store: Store, project: str, since: int) -> pd.DataFrame:
    """Which supervisor overwrites most: pair-scoped overwrite counts summed per source agent.

    Falls back to overwrite findings by agent when the detectors stored no pair metrics. Two
    queries, not one: a fallback inside the statement was computed on every load (and the pair
    sums twice), a third of the Agents page on a large store (BENCHMARKS.md, dashboard).
    """
    params = {"project": project, "since": int(since), "pair": T.SCOPE_PAIR,
              "metric": T.OVERWRITE_RATE, "code": T.OVERWRITE}
    by_pairs = _frame(store, _OVERWRITES_BY_PAIRS_SQL, {**params, "source": "metrics"})
    if not by_pairs.empty:
        return by_pairs
    return _frame(store, _OVERWRITES_BY_FINDINGS_SQL, {**params, "source": "findings"})


def cascade_roots(store: Store, project: str, since: int) -> pd.DataFrame:
    """Which worker's errors cascade furthest: error-cascade findings by root agent, with the
    agent-scoped error amplification (erroneous spans per root error) where it was computed,
    NULL where it was not (a 0 there ranked every agent by a column of zeros)."""
    return _frame(store, f"""
        WITH r AS (SELECT run_id, trace_id FROM {RUNS_TABLE} FINAL WHERE {_RUN_FILTER}),
        c AS (
            SELECT agent, count() AS cascades, uniqExact(trace_id) AS traces,
                   max(confidence) AS max_confidence
            FROM {FINDINGS_TABLE} FINAL
            PREWHERE code = {{code:String}} AND agent != ''
            WHERE run_id IN (SELECT run_id FROM r) OR trace_id IN (SELECT trace_id FROM r)
            GROUP BY agent
        ),
        a AS (
            SELECT subject AS agent, avg(value) AS amplification, max(value) AS max_amplification
            FROM {METRICS_TABLE} FINAL
            PREWHERE scope = {{agent_scope:String}} AND metric = {{metric:String}}
            WHERE run_id IN (SELECT run_id FROM r)
            GROUP BY subject
        )
        SELECT if(c.agent != '', c.agent, a.agent) AS agent, c.cascades AS cascades,
               c.traces AS runs_affected, a.amplification AS mean_amplification,
               a.max_amplification AS max_amplification
        FROM c FULL OUTER JOIN a ON a.agent = c.agent
        ORDER BY max_amplification DESC NULLS LAST, cascades DESC
        LIMIT 50
        SETTINGS join_use_nulls = 1""", {"project": project, "since": int(since), "code": T.ERROR_CASCADE,
                      "agent_scope": T.SCOPE_AGENT, "metric": T.ERROR_AMPLIFICATION})


def agent_modes(store: Store, project: str, since: int) -> pd.DataFrame:
    """Failure modes per agent and day: how many findings, in how many runs (newest days first)."""
    return _frame(store, f"""
        WITH r AS (SELECT run_id, trace_id, started_at FROM {RUNS_TABLE} FINAL WHERE {_RUN_FILTER})
        SELECT toDate(r.started_at) AS day, if(f.agent != '', f.agent, '(no agent)') AS agent,
               f.code AS code, count() AS findings, uniqExact(r.run_id) AS runs
        FROM {FINDINGS_TABLE} AS f FINAL
        INNER JOIN r ON (f.run_id = r.run_id OR (f.run_id = '' AND f.trace_id = r.trace_id))
        GROUP BY day, agent, code
        ORDER BY day DESC, agent, code
        LIMIT {{rows:UInt32}}""", {"project": project, "since": int(since), "rows": AGENT_MODE_ROWS})


# --- failure modes ---------------------------------------------------------------------------

def mode_heatmap(store: Store, project: str, since: int, by: str, limit: int = 40) -> pd.DataFrame:
    """Share of runs in each group that show each mode (MAST's figure): group x code, over the
    window's latest ``HEATMAP_RUNS`` runs (``runs_in_group`` says how many a group had).

    At most ``limit`` groups: the systems or agents with the most findings, or the latest runs
    with findings (``latest_run``: when a group's latest run started)."""
    if by not in HEATMAP_GROUPS:
        raise ValueError(f"heatmap grouping must be one of {sorted(HEATMAP_GROUPS)}, not {by!r}")
    group, size_group, top_by = HEATMAP_GROUPS[by]
    return _frame(store, f"""
        WITH r AS (
            SELECT run_id, trace_id, system, service, started_at
            FROM {RUNS_TABLE} FINAL WHERE {_RUN_FILTER}
            ORDER BY started_at DESC LIMIT {{limit_runs:UInt32}}
        ),
        hits AS (
            SELECT {group} AS grp, {size_group} AS size_key, f.code AS code,
                   uniqExact(r.run_id) AS runs_with_mode, count() AS findings,
                   max(r.started_at) AS latest
            FROM {FINDINGS_TABLE} AS f FINAL
            INNER JOIN r ON (f.run_id = r.run_id OR (f.run_id = '' AND f.trace_id = r.trace_id))
            GROUP BY grp, size_key, code
        ),
        sizes AS (SELECT {size_group} AS size_key, count() AS runs_in_group FROM r GROUP BY size_key),
        top AS (SELECT grp FROM hits GROUP BY grp ORDER BY {top_by} DESC LIMIT {{limit:UInt32}})
        SELECT hits.grp AS grp, hits.code AS code, hits.runs_with_mode AS runs_with_mode,
               hits.findings AS findings, sizes.runs_in_group AS runs_in_group,
               hits.runs_with_mode / sizes.runs_in_group AS share, hits.latest AS latest_run
        FROM hits INNER JOIN sizes ON sizes.size_key = hits.size_key
        WHERE hits.grp IN (SELECT grp FROM top)
        ORDER BY grp, code""",
        {"project": project, "since": int(since), "limit": int(limit), "limit_runs": HEATMAP_RUNS})


def mode_trend(store: Store, project: str, since: int) -> pd.DataFrame:
    """Per day and mode: share of that day's runs that show the mode."""
    return _frame(store, f"""
        WITH r AS (SELECT run_id, trace_id, started_at FROM {RUNS_TABLE} FINAL WHERE {_RUN_FILTER}),
        per_day AS (SELECT toDate(started_at) AS day, count() AS runs FROM r GROUP BY day),
        hits AS (
            SELECT toDate(r.started_at) AS day, f.code AS code, uniqExact(r.run_id) AS runs_with_mode
            FROM {FINDINGS_TABLE} AS f FINAL
            INNER JOIN r ON (f.run_id = r.run_id OR (f.run_id = '' AND f.trace_id = r.trace_id))
            GROUP BY day, code
        )
        SELECT hits.day AS day, hits.code AS code, hits.runs_with_mode AS runs_with_mode,
               per_day.runs AS runs, hits.runs_with_mode / per_day.runs AS share
        FROM hits INNER JOIN per_day ON per_day.day = hits.day
        ORDER BY day, code""", {"project": project, "since": int(since)})


# --- compare ---------------------------------------------------------------------------------

def commits(store: Store, project: str, since: int) -> pd.DataFrame:
    """Commits with runs in the window, newest first, with their run count."""
    return _frame(store, f"""
        SELECT commit, any(branch) AS branch, count() AS runs, max(started_at) AS last_run
        FROM {RUNS_TABLE} FINAL
        WHERE {_RUN_FILTER} AND commit != ''
        GROUP BY commit ORDER BY last_run DESC LIMIT 200""",
        {"project": project, "since": int(since)})


def runs_of_commit(store: Store, project: str, commit: str, limit: int = 200) -> list[str]:
    """Run ids of one commit (newest first), chosen as the gate chooses them: the pytest
    plugin's runs in which no agent worked are left out (their zeros dilute the rates, and
    counted here they gave the page verdicts the gate refuses as "too few runs")."""
    return [r.run_id for r in query_runs(store, RunFilter(commit=commit, max_runs=limit), project)]


# Findings per failure mode on each side of a comparison: a run on both sides counts on both.
_SIDE_MODES_SQL = f"""
WITH {_RUN_FINDINGS_CTE}
SELECT side, code, count() AS findings, uniqExact(run_id) AS runs_with_mode
FROM rf
ARRAY JOIN arrayFilter(x -> x != '', [if(has({{runs_a:Array(String)}}, run_id), 'A', ''),
                                      if(has({{runs_b:Array(String)}}, run_id), 'B', '')]) AS side
GROUP BY side, code ORDER BY side, code"""


def compare_sides(store: Store, side_a: Sequence[str], side_b: Sequence[str]
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Both sides of a comparison: per-run figures (the units the gate's tests compare) and
    findings per failure mode, as (runs A, runs B, modes A, modes B).

    Both sides are read together, three statements in all: over a remote store each statement
    costs a round trip, which was most of the compare page's time.
    """
    empty = pd.DataFrame()
    if not side_a or not side_b:
        return empty, empty, empty, empty
    listed = list(dict.fromkeys([*side_a, *side_b]))
    both = runs(store, run_ids=listed, limit=len(listed), trend=False)
    if both.empty:
        return empty, empty, empty, empty
    sa, sb = (both[both["run_id"].isin(side)].reset_index(drop=True) for side in (side_a, side_b))
    modes = _frame(store, _SIDE_MODES_SQL, {
        "runs": both["run_id"].tolist(), "traces": both["trace_id"].tolist(),
        "runs_a": sa["run_id"].tolist(), "runs_b": sb["run_id"].tolist()})
    ma, mb = (modes[modes["side"] == side].drop(columns="side").reset_index(drop=True) for side in "AB")
    return sa, sb, ma, mb
