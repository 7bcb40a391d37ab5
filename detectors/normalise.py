"""The one normalised shape every detector reads: spans, events and hand-off edges, as SQL.

Detectors never read raw attribute spellings. ``prelude()`` gives a ``WITH`` clause whose
common table expressions turn the rows of a set of traces (``{traces:Array(String)}``) into
typed columns: ``s`` (one row per span), ``ev`` (one row per span event, arrayJoined), the
typed event views (``outputs``, ``decisions``, ``terminations``, ``checkpoints``, ``resumes``,
``approvals``) and ``e``, the hand-off edges (delegator, delegate, task, mode, the span that
carries it). Spans written by other instrumentations reach this shape through the collector's
normalisation (``handoff.*`` and the GenAI proposal's ``gen_ai.agent.handoff.*`` names), so
one reading serves every source. ``FINAL`` drops duplicate rows of at-least-once delivery.
A ``Scratch`` materialises the views of a chunk of traces once, and ``shaped()`` runs a query
that reads the views over either.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Self

from handoffs import conventions as c
from handoffs.store import Store, schema
from handoffs.store.spans import SPAN_FAILED_SQL

TRACES_PARAM = "{traces:Array(String)}"
# PREWHERE, not WHERE: under FINAL the engine does not move a condition to PREWHERE by itself,
# so it read every column of each granule the key could not rule out (one per part and
# trace: 20 traces among 10M spans read 142 granules of attribute maps, 0.40 s against 0.045 s).
# Filtering before FINAL is exact here: every version of a span shares its TraceId (sort key).
TRACE_FILTER = f"PREWHERE TraceId IN {TRACES_PARAM}"


def _a(key: str) -> str:
    """A span attribute by its conventions name (names are our constants, never user input)."""
    return f"SpanAttributes['{key}']"


def _r(key: str) -> str:
    return f"ResourceAttributes['{key}']"


def _e(key: str) -> str:
    return f"a['{key}']"


def _first(*exprs: str) -> str:
    """The first non-empty string among ``exprs``."""
    out = "''"
    for expr in reversed(exprs):
        out = f"if({expr} != '', {expr}, {out})"
    return out


def _flag(expr: str) -> str:
    return f"lower({expr}) IN ('true', '1', 'yes')"


_TRANSFER_PREFIX = c.delegation_span_name("")

SPANS = f"""s AS (
    SELECT
        TraceId AS trace_id,
        SpanId AS span_id,
        ParentSpanId AS parent_id,
        Timestamp AS ts,
        addNanoseconds(Timestamp, Duration) AS end_ts,
        SpanName AS name,
        multiIf(
            {_a(c.SPAN_TYPE)} != '', {_a(c.SPAN_TYPE)},
            {_a(c.GEN_AI_HANDOFF_TARGET_NAME)} != '' OR startsWith(SpanName, '{_TRANSFER_PREFIX}'),
                '{c.SpanType.DELEGATION.value}',
            {_a(c.GEN_AI_OPERATION_NAME)} = '{c.Operation.INVOKE_AGENT.value}', '{c.SpanType.AGENT.value}',
            {_a(c.GEN_AI_OPERATION_NAME)} = '{c.Operation.EXECUTE_TOOL.value}', '{c.SpanType.TOOL.value}',
            {_a(c.GEN_AI_OPERATION_NAME)} = '{c.Operation.CHAT.value}', '{c.SpanType.LLM.value}',
            '') AS type,
        {_a(c.GEN_AI_AGENT_NAME)} AS agent,
        lower({_a(c.AGENT_ROLE)}) AS role,
        {_first(_a(c.GEN_AI_REQUEST_MODEL), _a(c.GEN_AI_RESPONSE_MODEL))} AS model,
        toInt32OrDefault({_a(c.STEP)}, toInt32(-1)) AS step,
        {SPAN_FAILED_SQL} AS failed,
        {_first("StatusMessage", "arrayElement(Events.Attributes, indexOf(Events.Name, 'exception'))['exception.message']")}
            AS error,
        {_a(c.RUN_ID)} AS run_id,
        {_r(c.RESOURCE_PROJECT)} AS project,
        {_r(c.RESOURCE_SOURCE_ID)} AS source_id,
        {_a(c.GEN_AI_TOOL_NAME)} AS tool,
        {_a(c.TOOL_ARGS_HASH)} AS args_hash,
        {_a(c.TOOL_TARGET)} AS tool_target,
        {_flag(_a(c.TOOL_SIDE_EFFECT))} AS side_effect,
        {_flag(_a(c.TOOL_HIGH_STAKES))} AS high_stakes,
        {_a(c.IDEMPOTENCY_KEY)} AS idempotency_key,
        toInt32OrZero({_a(c.RETRY_ATTEMPT)}) AS retry_attempt,
        {_a(c.RETRY_OF)} AS retry_of,
        {_a(c.VERIFICATION_CHECK)} AS check_name,
        {_a(c.VERIFICATION_TARGET)} AS check_target,
        lower({_a(c.VERIFICATION_VERDICT)}) AS verdict,
        toFloat64OrDefault({_a(c.VERIFICATION_COVERAGE)}, toFloat64(1)) AS coverage,
        {_a(c.COMPENSATION_OF)} AS compensation_of,
        JSONExtract(if({_a(c.INPUT_OUTPUT_IDS)} = '', '[]', {_a(c.INPUT_OUTPUT_IDS)}), 'Array(String)')
            AS input_ids,
        toInt64OrZero({_a(c.GEN_AI_USAGE_INPUT_TOKENS)}) AS input_tokens,
        toInt64OrZero({_a(c.GEN_AI_USAGE_OUTPUT_TOKENS)}) AS output_tokens,
        {_first(_a(c.SOURCE_AGENT), _a(c.GEN_AI_HANDOFF_SOURCE_NAME))} AS delegator,
        {_first(_a(c.TARGET_AGENT), _a(c.GEN_AI_HANDOFF_TARGET_NAME),
                f"if(startsWith(SpanName, '{_TRANSFER_PREFIX}'), substring(SpanName, {len(_TRANSFER_PREFIX) + 1}), '')")}
            AS delegate,
        {_first(_a(c.DELEGATION_ID), "SpanId")} AS delegation_id,
        {_a(c.TASK)} AS task,
        {_flag(_a(c.TASK_AMBIGUOUS))} AS ambiguous,
        {_first(_a(c.TASK_HASH), f"if({_a(c.TASK)} != '', hex(cityHash64({_a(c.TASK)})), '')")} AS task_hash,
        {_first(_a(c.MODE), f"'{c.HandoffMode.DELEGATE.value}'")} AS mode,
        lower({_a(c.DELEGATION_STATUS)}) AS status,
        {_a(c.RESUME_FROM_CHECKPOINT)} AS resumed_from,
        {_a(c.MESSAGE_CONTENT)} AS content,
        {_a(c.MESSAGE_ROLE)} AS message_role,
        {_a(c.SPAN_TYPE)} != '' AND ({_a(c.NORMALISED_FROM)} = '' OR {_a(c.NORMALISED_RESOLVED)} != '')
            AS resolved
    FROM {schema.SPAN_TABLE} FINAL
    {TRACE_FILTER}
)"""

EVENTS = f"""ev AS (
    SELECT
        TraceId AS trace_id,
        SpanId AS span_id,
        Events.Timestamp AS ts,
        Events.Name AS event,
        Events.Attributes AS a
    FROM {schema.SPAN_TABLE} FINAL
    ARRAY JOIN Events
    {TRACE_FILTER}
)"""

OUTPUTS = f"""outputs AS (
    SELECT trace_id, span_id, ts, toInt32OrDefault({_e(c.STEP)}, toInt32(-1)) AS step,
        {_e(c.OUTPUT_ID)} AS output_id,
        {_e(c.OUTPUT_HASH)} AS output_hash,
        toInt64OrZero({_e(c.OUTPUT_TOKENS)}) AS tokens,
        {_flag(_e(c.OUTPUT_UNIT_COMPLETE))} AS unit_complete,
        {_e(c.OUTPUT_CONTENT)} AS content
    FROM ev WHERE event = '{c.EVENT_OUTPUT}'
)"""

DECISIONS = f"""decisions AS (
    SELECT trace_id, span_id, ts, toInt32OrDefault({_e(c.STEP)}, toInt32(-1)) AS step,
        lower({_e(c.DECISION_ACTION)}) AS action,
        {_e(c.DECISION_AGENT)} AS agent,
        {_e(c.DECISION_RESULT_HASH)} AS result_hash,
        {_e(c.DECISION_REASON)} AS reason,
        {_e(c.OUTPUT_ID)} AS output_id
    FROM ev WHERE event = '{c.EVENT_DECISION}'
)"""

TERMINATIONS = f"""terminations AS (
    SELECT trace_id, span_id, ts, toInt32OrDefault({_e(c.STEP)}, toInt32(-1)) AS step,
        lower({_e(c.TERMINATION_REASON)}) AS reason,
        {_flag(_e(c.TERMINATION_SUCCESS_CLAIMED))} AS success_claimed,
        {_e(c.TERMINATION_AGENT)} AS agent
    FROM ev WHERE event = '{c.EVENT_TERMINATION}'
)"""

CHECKPOINTS = f"""checkpoints AS (
    SELECT trace_id, span_id, ts, toInt32OrDefault({_e(c.STEP)}, toInt32(-1)) AS step, {_e(c.CHECKPOINT_ID)} AS checkpoint_id
    FROM ev WHERE event = '{c.EVENT_CHECKPOINT}'
)"""

RESUMES = f"""resumes AS (
    SELECT trace_id, span_id, ts, toInt32OrDefault({_e(c.STEP)}, toInt32(-1)) AS step, {_e(c.CHECKPOINT_ID)} AS checkpoint_id
    FROM ev WHERE event = '{c.EVENT_RESUME}'
)"""

APPROVALS = f"""approvals AS (
    SELECT trace_id, span_id, ts, toInt32OrDefault({_e(c.STEP)}, toInt32(-1)) AS step,
        {_e(c.APPROVAL_ACTION)} AS action,
        {_e(c.APPROVAL_APPROVER)} AS approver,
        lower({_e(c.APPROVAL_DECISION)}) AS decision
    FROM ev WHERE event = '{c.EVENT_APPROVAL}'
)"""

# The hand-off edge: one row per delegation, whatever spelling carried it.
EDGES = f"""e AS (
    SELECT trace_id, span_id, parent_id, delegation_id, delegator, delegate, task, task_hash,
        mode, status, step, ts, end_ts, failed, error, ambiguous, run_id
    FROM s WHERE type = '{c.SpanType.DELEGATION.value}'
)"""

# Which agent wrote each output: the delegate of the delegation that carries its event.
PRODUCED = """produced AS (
    SELECT o.trace_id AS trace_id, o.span_id AS span_id, o.output_id AS output_id, o.ts AS ts,
        o.output_hash AS output_hash, o.unit_complete AS unit_complete, o.tokens AS tokens,
        e.delegator AS delegator, e.delegate AS delegate, e.delegation_id AS delegation_id,
        if(o.step >= 0, o.step, e.step) AS step, e.step AS delegation_step
    FROM outputs AS o INNER JOIN e ON o.trace_id = e.trace_id AND o.span_id = e.span_id
)"""

# Verifications and what they judged (an output id or a delegation id).
VERIFICATIONS = f"""v AS (
    SELECT trace_id, span_id, ts, end_ts, agent, step, check_name, check_target, verdict,
        coverage, failed
    FROM s WHERE type = '{c.SpanType.VERIFICATION.value}'
)"""

_ALL = (SPANS, EVENTS, OUTPUTS, DECISIONS, TERMINATIONS, CHECKPOINTS, RESUMES, APPROVALS, EDGES,
        PRODUCED, VERIFICATIONS)


RANGE_FILTER = "PREWHERE TraceId >= {lo:String} AND TraceId <= {hi:String}"  # as TRACE_FILTER


# Which views each view reads, in definition order.
_DEPENDS = {"s": (), "ev": (), "outputs": ("ev",), "decisions": ("ev",), "terminations": ("ev",),
            "checkpoints": ("ev",), "resumes": ("ev",), "approvals": ("ev",), "e": ("s",),
            "produced": ("outputs", "e"), "v": ("s",)}
_NAMES = tuple(_DEPENDS)


# Where a query reads a view: ``FROM s``, ``JOIN e AS x``. Views are read through FROM and JOIN
# only (not ``IN s``), and SQL keywords are upper case, so text in lower case never matches.
_VIEW_READ = re.compile(rf"\b(FROM|JOIN)\s+({'|'.join(_NAMES)})\b(?:\s+AS\s+(\w+))?")


def _read_by(sql: str) -> set[str]:
    """The views ``sql`` reads itself (``FROM x`` / ``JOIN x``)."""
    return {m[2] for m in _VIEW_READ.finditer(sql)}


def _needed(sql: str) -> set[str]:
    """The views ``sql`` reads, with what they read in turn."""
    wanted = _read_by(sql)
    stack = list(wanted)
    while stack:
        for dep in _DEPENDS[stack.pop()]:
            if dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    return wanted


def prelude(body: str | None = None) -> str:
    """The ``WITH`` clause computing from the span table the views a query ``body`` reads (all
    views when None), for the traces ``{traces:Array(String)}``.

    Only the views the body reads are included: ClickHouse analyses every view of a ``WITH``
    clause, used or not, which costs more than the query itself on a small chunk.
    """
    needed = _needed(body) if body is not None else set(_NAMES)
    return "WITH\n" + ",\n".join(text for name, text in zip(_NAMES, _ALL, strict=True) if name in needed) + "\n"


def shaped(body: str, scratch: Scratch | None = None) -> str:
    """``body``, a query reading the views, ready to run: over ``scratch``'s tables, computed once
    for a chunk (a view of a ``WITH`` clause is computed again wherever a statement reads it,
    the detectors read ``e`` seventeen times, and reading attribute maps is the cost), or else
    after the ``prelude`` computing the views it reads."""
    return scratch.bind(body) if scratch is not None else prelude(body) + body


# (trace_id, span_id) of the failed spans of ``s`` that a later attempt of their retry chain
# made good: the one rule the detectors and the cascade graph share. Each attempt names the
# first one (retry_of, as the SDK documents) or the one before it: the chain's root is found by
# following retry_of (16 hops; an attempt whose chain is longer is read as not recovered).
RETRIED_OK = """(
    SELECT trace_id, arrayJoin(arrayFilter((id, r, t, bad) -> bad AND arrayExists(
            (r2, t2, bad2) -> r2 = r AND NOT bad2 AND t2 > t, roots, tss, bads), ids, roots, tss, bads)) AS span_id
    FROM (
        SELECT trace_id, groupArray(span_id) AS ids, groupArray(ts) AS tss, groupArray(failed) AS bads,
            mapFromArrays(ids, groupArray(retry_of)) AS up,
            arrayMap(x -> arrayFold((acc, i) -> if(up[acc] != '', up[acc], acc), range(16), x), ids) AS roots
        FROM s WHERE retry_of != '' OR span_id IN (SELECT retry_of FROM s WHERE retry_of != '')
        GROUP BY trace_id
    )
)"""

SCRATCH_PREFIX = "handoffs_scratch_"
# A scratch table older than this was left by a process that died without dropping it (SIGKILL,
# a lost machine): no detection pass holds one so long (a day judges some 10 billion spans here).
STALE_SCRATCH_SECONDS = 24 * 3600
_SCRATCH_NAME = re.compile(rf"^{SCRATCH_PREFIX}(\d+)_[0-9a-f]{{12}}_\w+$")


class ScratchTables:
    """Tables in the store's database for one piece of work: named uniquely (``name(kind)``),
    made by ``_create`` on entry, all dropped on exit, or at once if making them fails. Each
    name carries the second it was made, so ``drop_stale_scratch`` can tell a dead process's."""

    def __init__(self, store: Store, *kinds: str) -> None:
        self.store = store
        tag = f"{int(time.time())}_{uuid.uuid4().hex[:12]}"
        self._names = {kind: f"{SCRATCH_PREFIX}{tag}_{kind}" for kind in kinds}

    def name(self, kind: str) -> str:
        return self._names[kind]

    def __enter__(self) -> Self:
        try:
            self._create()
        except BaseException:
            self._drop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop()

    def _create(self) -> None:
        raise NotImplementedError

    def _drop(self) -> None:
        for table in self._names.values():
            self.store.command(f"DROP TABLE IF EXISTS {table}")


def drop_stale_scratch(store: Store, now: float | None = None) -> list[str]:
    """Drop the scratch tables of processes that died holding them; return their names.

    A pass that is stopped (Ctrl-C, SIGTERM) drops its own; one that is killed cannot, and its
    tables (Memory ones, and the metrics' MergeTree ones with their data) would stay for good.
    """
    cutoff = (time.time() if now is None else now) - STALE_SCRATCH_SECONDS
    names = store.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                        "AND startsWith(name, {prefix:String})", {"prefix": SCRATCH_PREFIX})
    stale = [r["name"] for r in names
             if (m := _SCRATCH_NAME.match(r["name"])) and int(m.group(1)) < cutoff]
    for table in stale:
        store.command(f"DROP TABLE IF EXISTS `{table}`")
    return stale


class Scratch(ScratchTables):
    """The normalised shape of some traces, materialised once for many queries.

    One Memory table per view (``s``, ``ev``, ``e``, ``outputs``...), each computed once from the
    span table or the views before it, so every detector reads narrow typed columns instead of
    re-reading attribute maps. ``filter`` is ``TRACE_FILTER`` (params ``traces``) or
    ``RANGE_FILTER`` (params ``lo``, ``hi``: a range of the span table's sort key, read through
    its primary index).
    """

    def __init__(self, store: Store, filter: str, params: dict[str, Any]) -> None:
        super().__init__(store, *_NAMES)
        self.filter = filter
        self.params = params
        self.spans = self.name("s")

    def bind(self, sql: str) -> str:
        """``sql`` reading this scratch's tables where it names a view: ``FROM s`` becomes
        ``FROM <its table> AS s``. A table read in place, not through a view of a ``WITH``
        clause (``s AS (SELECT * FROM <table>)``), which ClickHouse analyses again at every
        use: that cost a chunk's detector statement 1.19x its time, and most of it on a
        small chunk, where analysing the statement is most of the work."""
        return _VIEW_READ.sub(lambda m: f"{m[1]} {self.name(m[2])} AS {m[3] or m[2]}", sql)

    def _create(self) -> None:
        # Definition order: every view's inputs are materialised before it.
        for name, text in zip(_NAMES, _ALL, strict=True):
            reads_spans = TRACE_FILTER in text
            self.store.command(f"CREATE TABLE {self.name(name)} ENGINE = Memory AS "
                               f"WITH {self.bind(text.replace(TRACE_FILTER, self.filter))} SELECT * FROM {name}",
                               self.params if reads_spans else None)

    def rebuild(self) -> None:
        """Read the traces again (after their stored spans were rewritten)."""
        self._drop()
        self.__enter__()

    def facts(self) -> dict[str, dict[str, Any]]:
        """Per trace: run, source and project, message spans, and spans ``resolve_traces`` has
        yet to complete (no SDK typed them, or ingest normalised them and their trace's
        read-time facts are not added yet)."""
        sql = f"""
            SELECT trace_id, anyIf(run_id, run_id != '') AS run_id,
                anyIf(source_id, source_id != '') AS source_id, anyIf(project, project != '') AS project,
                countIf(type = '{c.SpanType.MESSAGE.value}') AS messages, countIf(NOT resolved) AS unresolved
            FROM {self.spans} GROUP BY trace_id"""
        return {r["trace_id"]: r for r in self.store.query(sql)}
