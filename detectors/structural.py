"""Structural detectors: one SQL query per failure mode over the normalised shape.

Each ``Detector`` reads the common table expressions of ``handoffs.detectors.normalise``
(spans ``s``, hand-off edges ``e``, ``outputs``, ``decisions``, verifications ``v``, ...) for a
set of traces and returns one row per finding: trace_id, span_id, agent, step, confidence and
evidence a person can read. The work happens in ClickHouse where the spans live; the only
per-trace graph walk (error cascades) is in ``handoffs.detectors.cascade``.

Every detector's docstring-like ``doc`` says its signal, what it needs from a trace, and its
blind spots; ``docs/detectors.md`` is generated from the same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from handoffs import taxonomy as t
from handoffs.conventions import DecisionAction as Act
from handoffs.conventions import DelegationStatus, HandoffMode, SpanType, Verdict
from handoffs.store import Store

from .normalise import RETRIED_OK, Scratch, shaped

# 2: judged traces keep their error amplification counts (stores judged by 1 lack them).
# 3: traces normalised at ingest get their read-time facts (delegation status, source agent)
#    before they are judged; 2 judged them without when every span was typed on arrival.
# 4: fewer false alarms on legitimate patterns (an outside-in sweep): a failed check is passed
#    again by the same check on its fix (not by another check); a transfer is settled once its
#    target took over and ended the run or handed on; limit and spec words are whole words; a
#    second clarification counts; roles are the acting span's; approvals given after the action
#    do not count; parallel failures are not a cascade without data flow. Recovered failures
#    need no compensation: a later attempt of the retry chain succeeded (chained or naming the
#    first), the same task was handed again to the same delegate and completed, a read-only
#    call's action carried on past it; a cancelled span did not fail; a failure lists only the
#    side effects before it and names the delegate of a failed hand-off. Evidence counts the
#    outputs before an overwrite and those used after an ignored one. FM-2.6 needs the
#    delegate's own agent span missing, or another agent delivering. A restart counts after any
#    checkpoint, each step once. Model families read Bedrock-style ids (us.anthropic.claude).
# 5: from the same sweep: an approval on a parent covers one call of the tool; FM-3.1 sees success
#    claimed over a failed hand-off never done again, or over a delegation still running; a
#    `modified` decision counts before a first unit only where the trace records units (the flag
#    defaults to false); coordinating roles match by word stem (orchestrating, planning,
#    dispatcher); a redelivery under one idempotency key is no repetition; a failed hand-off's
#    compensation scope takes in the hand-offs whose outputs it was given. Cascade evidence
#    names each hop once.
VERSION = "5"

ACCEPTED = f"'{Act.ACCEPTED.value}'"
OVERWROTE = f"'{Act.OVERWROTE.value}'"
MODIFIED = f"'{Act.MODIFIED.value}'"
REDERIVED = f"'{Act.REDERIVED.value}'"
PASS = f"'{Verdict.PASS.value}'"
FAIL = f"'{Verdict.FAIL.value}'"
ERROR = f"'{Verdict.ERROR.value}'"
OPEN = f"'{DelegationStatus.OPEN.value}'"
COMPLETED = f"'{DelegationStatus.COMPLETED.value}'"
DELEGATE = f"'{HandoffMode.DELEGATE.value}'"
TRANSFER = f"'{HandoffMode.TRANSFER.value}'"
TOOL = f"'{SpanType.TOOL.value}'"
AGENT = f"'{SpanType.AGENT.value}'"
LLM = f"'{SpanType.LLM.value}'"
RUN = f"'{SpanType.RUN.value}'"
DELEGATION = f"'{SpanType.DELEGATION.value}'"
VERIFICATION = f"'{SpanType.VERIFICATION.value}'"

# Roles that coordinate others; an agent declaring another role and acting like one of these
# is out of its role (FM-1.2). Role names are free text (read in lower case), so these are word
# stems found anywhere in the role: "orchestrating agent", "planning", "dispatcher" and
# "teamlead" coordinate as "orchestrator", "planner" and "lead" do. Each stem is long enough to
# occur in no common worker role ("plann", not "plan" as in "explanation"; "delegator", not
# "delegate", which may name the one delegated to).
COORDINATING_ROLES = ("supervis", "manag", "orchestrat", "coordinat", "plann", "lead", "rout(er|ing)",
                      "triag", "dispatch", "delegator", "direct(or|ing)", "boss")
COORDINATING_ROLE = "(" + "|".join(COORDINATING_ROLES) + ")"

# Whole words, with "_" and "-" as separators too (max_turns): written without backslashes,
# which a ClickHouse string literal would read as escapes.
_WORD = "(^|[^a-z0-9])({})([^a-z0-9]|$)"

# A termination reason saying a limit stopped the run rather than the work being done (FM-1.5):
# "maximised coverage" and "an exhaustive review" are no limits, and a run that ended "within
# budget" did not stop on one. Error class names are read in any case, run together
# (MaxTurnsExceeded, GraphRecursionError, TimeoutError).
LIMIT_REASON = ("(?i)" + _WORD.format("max|maximum|limits?|limited|budget|timed.out|exhaustion|exceeds|too.many")
                + "|exceeded|exhausted|maxturns|maxiter|recursion|toomany|timeout")
WITHIN_LIMIT = "(?i)" + _WORD.format("(within|under|below|inside)[^a-z0-9]+((the|its|our)[^a-z0-9]+)?(budget|limits?)")
# A verification check that judges the task's own requirements (FM-1.1) ("aspect ratio" is none).
SPEC_CHECK = "(?i)" + _WORD.format("specs?|specification|constraints?|requirements?|contracts?|acceptance")
# Below this share of the output checked, a passing verification is called incomplete (FM-3.2).
MIN_COVERAGE = 0.5


# Detectors join views of one chunk of traces on their trace id: a sort-merge join beats
# building a hash table of the right side (about 1.5x on 1M spans); joins with inequality
# conditions fall back to the hash join.
JOIN_SETTINGS = "\nSETTINGS join_algorithm = 'full_sorting_merge,hash'"


@dataclass(frozen=True)
class Detector:
    """One failure mode's structural detector: its code, its query, and what it can see.

    ``present`` is what a chunk of traces must hold for the query to find anything, over the
    counts of ``HOLDINGS`` (``failed_work > 0 AND effects > 0``): a chunk without it is not
    asked, which spares analysing the query, most of a small chunk's cost. It must follow from
    the query (never stricter: a detector whose condition misses a case it flags would miss it
    in a small chunk); empty, the query always runs.
    """

    code: str
    name: str
    signal: str
    needs: str
    blind_spots: str
    sql: str = ""  # empty: judged elsewhere (cascade graph, text models)
    present: str = ""


# What a chunk holds, counted in one read (name: view, count): what ``Detector.present`` reads.
HOLDINGS: dict[str, tuple[str, str]] = {
    "delegations": ("s", f"countIf(type = {DELEGATION})"),
    "failed_delegations": ("s", f"countIf(type = {DELEGATION} AND failed)"),
    "completed": ("s", f"countIf(type = {DELEGATION} AND status = {COMPLETED} AND mode = {DELEGATE} AND NOT failed)"),
    "ambiguous": ("s", f"countIf(type = {DELEGATION} AND ambiguous)"),
    "agents": ("s", f"countIf(type = {AGENT})"),
    "roles": ("s", f"countIf(type = {AGENT} AND role != '' AND agent != '')"),
    "roots": ("s", "countIf(parent_id = '')"),
    "llm_calls": ("s", f"countIf(type = {LLM} AND input_tokens > 0)"),
    "hashed_calls": ("s", f"countIf(type = {TOOL} AND args_hash != '')"),
    "ok_hashed_calls": ("s", f"countIf(type = {TOOL} AND args_hash != '' AND NOT failed)"),
    "effects": ("s", f"countIf(type = {TOOL} AND side_effect AND NOT failed)"),
    "high_stakes": ("s", f"countIf(type = {TOOL} AND high_stakes)"),
    "failed_work": ("s", f"countIf(failed AND type IN ({TOOL}, {AGENT}, {DELEGATION}))"),
    "failed_steps": ("s", f"countIf(failed AND type != {RUN})"),
    "uses": ("s", f"countIf(length(input_ids) > 0 AND type != {VERIFICATION})"),
    "passes": ("s", f"countIf(type = {VERIFICATION} AND verdict = {PASS})"),
    "thin_passes": ("s", f"countIf(type = {VERIFICATION} AND verdict = {PASS} AND coverage < {MIN_COVERAGE})"),
    "fails": ("s", f"countIf(type = {VERIFICATION} AND verdict = {FAIL})"),
    "accepted": ("decisions", f"countIf(action = {ACCEPTED})"),
    "kept": ("decisions", f"countIf(action IN ({ACCEPTED}, {MODIFIED}))"),
    "changed": ("decisions", f"countIf(action IN ({OVERWROTE}, {MODIFIED}))"),
    "rederived": ("decisions", f"countIf(action = {REDERIVED})"),
    "terminated": ("terminations", "count()"),
    "checkpointed": ("checkpoints", "count()"),
}


# One row: every count of ``HOLDINGS``, one aggregate per view.
_HOLDINGS_SQL = "SELECT * FROM " + " CROSS JOIN ".join(
    f"(SELECT {', '.join(f'{count} AS {name}' for name, (v, count) in HOLDINGS.items() if v == view)} "
    f"FROM {view}) AS {view}_holds" for view in dict.fromkeys(view for view, _ in HOLDINGS.values()))


# A rewrite (decision ``d`` on delegation ``x``, whose output stats ``o`` have ``units`` and
# ``first_unit``) made before the delegate completed its first logical unit, as far as the trace
# tells: ``unit_complete`` defaults to false, so with no unit completed an overwrite counts, and a
# modification only in traces whose outputs record units at all. The overwrite detector and the
# ``overwrite_rate`` metric read it alike.
BEFORE_FIRST_UNIT = f"""(d.ts < o.first_unit OR (o.units = 0 AND (d.action = {OVERWROTE}
    OR x.trace_id IN (SELECT trace_id FROM outputs WHERE unit_complete))))"""

# Traces with a control transfer left open: the only ones where its target may have taken over.
_OPEN_TRANSFER_TRACES = f"(SELECT trace_id FROM e WHERE status = {OPEN} AND mode = {TRANSFER})"

# Traces where a check failed: the only ones with a failure to stand (most traces have none).
_FAILED_CHECK_TRACES = f"(SELECT trace_id FROM v WHERE verdict IN ({FAIL}, {ERROR}))"

# Each verification with what its target is a version of: the hand-off that delivered the
# output, and the outputs that hand-off was given to revise (``consumes``).
_VERDICTS = f"""(
    SELECT x.trace_id AS trace_id, x.span_id AS span_id, x.check_name AS check_name, x.ts AS ts,
        x.verdict AS verdict, x.check_target AS target, pr.span_id AS producer, d.input_ids AS revises
    FROM (SELECT * FROM v WHERE trace_id IN {_FAILED_CHECK_TRACES}) AS x
    LEFT JOIN (SELECT * FROM produced WHERE trace_id IN {_FAILED_CHECK_TRACES}) AS pr
        ON pr.trace_id = x.trace_id AND pr.output_id = x.check_target
    LEFT JOIN (SELECT trace_id, span_id, input_ids FROM s
               WHERE type = {DELEGATION} AND trace_id IN {_FAILED_CHECK_TRACES}) AS d
        ON d.trace_id = x.trace_id AND d.span_id = pr.span_id
)"""

# Failed verifications that stand: the same check never passed the work again later, on the same
# target or on a fix of it (another output of the same hand-off, or of a hand-off that took the
# failed output to revise). A pass of another check, or of the same check on other work, does
# not clear a failure.
_STANDING_FAILS = f"""(
    SELECT f.trace_id AS trace_id, f.span_id AS span_id
    FROM {_VERDICTS} AS f
    LEFT JOIN (SELECT * FROM {_VERDICTS} WHERE verdict = {PASS}) AS p
        ON p.trace_id = f.trace_id AND p.check_name = f.check_name
    WHERE f.verdict IN ({FAIL}, {ERROR})
    GROUP BY f.trace_id, f.span_id
    HAVING countIf(p.ts > f.ts AND (p.target = f.target OR (p.producer != '' AND p.producer = f.producer)
                                    OR has(p.revises, f.target))) = 0
)"""

_UNRESOLVED_FAILS = f"""(
    SELECT trace_id, count() AS n, groupArray(check_name) AS checks
    FROM v WHERE (trace_id, span_id) IN {_STANDING_FAILS}
    GROUP BY trace_id
)"""

# Per delegation: outputs delivered, tokens, and when the first logical unit completed.
_OUTPUT_STATS = """(
    SELECT trace_id, span_id, count() AS n_out, sum(tokens) AS tokens,
        countIf(unit_complete) AS units, minIf(ts, unit_complete) AS first_unit,
        groupArray(output_id) AS ids, groupArray((ts, ot.tokens)) AS delivered
    FROM outputs AS ot GROUP BY trace_id, span_id
)"""

# The spans that carry a termination event: joining these, not every span, keeps the join small.
_TERMINATING = """(
    SELECT trace_id, span_id, agent, step FROM s WHERE span_id IN (SELECT span_id FROM terminations)
)"""

# A cancelled span did not fail: the loser of a hedged request, a task a timeout cancelled
# (asyncio.CancelledError, trio.Cancelled: the SDK records the class name first in the status).
CANCELLED = "^([A-Za-z_]+[.])*Cancel(led)?(Error|Exception)?(:|$)"

# Failed hand-offs made good: the same task handed again to the same delegate, which completed it.
_REDELEGATED = f"""(
    SELECT f.trace_id AS trace_id, f.span_id AS span_id
    FROM (SELECT trace_id, span_id, ts, delegator, delegate, task_hash FROM e WHERE failed AND task_hash != '') AS f
    INNER JOIN (SELECT trace_id, ts, delegator, delegate, task_hash FROM e WHERE NOT failed AND status = {COMPLETED}
                AND trace_id IN (SELECT trace_id FROM e WHERE failed)) AS g
        ON g.trace_id = f.trace_id AND g.delegator = f.delegator AND g.delegate = f.delegate
            AND g.task_hash = f.task_hash
    WHERE g.ts > f.ts
)"""

# Traces where something failed, and the parents of failed spans (one level up).
_FAILING_TRACES = "(SELECT trace_id FROM s WHERE failed)"
_PARENTS = "(SELECT trace_id, span_id, parent_id FROM s WHERE span_id IN (SELECT parent_id FROM s WHERE failed))"

# Outputs given to hand-offs that failed: the only ones whose makers' side effects a failure
# can leave behind in another hand-off.
_BUILT_ON = f"(SELECT arrayJoin(input_ids) FROM s WHERE failed AND type = {DELEGATION})"

# Traces with a checkpoint: the only ones that can restart instead of resuming.
_CHECKPOINTED_TRACES = "(SELECT trace_id FROM checkpoints)"

# Model family of each agent in a trace: the leading letters of its model name (gpt, claude...),
# after a provider path (openai/gpt-4o, models/gemini-1.5) and dotted region and provider
# prefixes made of letters only (Bedrock: us.anthropic.claude-3-5..., meta.llama3-1...).
# Only traces where a check failed can show conformity: the rest are not grouped at all.
_FAMILY = f"""(
    SELECT trace_id, agent, any(extract(replaceRegexpOne(lower(model), '^(.*/)?([a-z]+[.])*', ''), '^[a-z]+')) AS family, any(model) AS agent_model
    FROM s WHERE agent != '' AND model != ''
        AND trace_id IN (SELECT trace_id FROM v WHERE verdict = {FAIL})
    GROUP BY trace_id, agent
)"""


DETECTORS: tuple[Detector, ...] = (
    Detector(
        t.OVERWRITE, "overwrite",
        signal="a supervisor decision `overwrote` on a hand-off output, or `modified` before the "
               "sub-agent completed its first logical unit (no output event with unit_complete yet, in "
               "a trace whose outputs record units: unit_complete defaults to false)",
        needs="delegation spans with handoff.output and handoff.decision events",
        blind_spots="a supervisor that silently rewrites without recording a decision; text logs "
                    "(use the text models)",
        present="changed > 0",
        sql=f"""
SELECT x.trace_id AS trace_id, x.span_id AS span_id,
    if(any(d.agent) != '', any(d.agent), any(x.delegator)) AS agent,
    if(min(d.step) >= 0, min(d.step), any(x.step)) AS step,
    max(if(d.action = {OVERWROTE} AND (o.units = 0 OR d.ts < o.first_unit), 1.0,
           if(d.action = {OVERWROTE}, 0.9, 0.7))) AS confidence,
    format('{{}} {{}} the output of {{}} (task {{}}, step {{}}) after {{}} output(s), {{}} tokens, {{}}{{}}',
        if(any(d.agent) != '', any(d.agent), any(x.delegator)), any(d.action), any(x.delegate),
        if(any(x.task) != '', substring(any(x.task), 1, 80), any(x.task_hash)), toString(any(x.step)),
        -- What the supervisor had seen when it decided: the outputs delivered by then.
        toString(arrayCount(x -> x.1 <= min(d.ts), any(o.delivered))),
        toString(arraySum(x -> x.2, arrayFilter(x -> x.1 <= min(d.ts), any(o.delivered)))),
        if(any(o.units) = 0 OR min(d.ts) < any(o.first_unit),
           'before its first logical unit completed', 'after its first logical unit'),
        if(anyIf(d.reason, d.reason != '') != '', concat(': ', anyIf(d.reason, d.reason != '')), '')) AS evidence
FROM decisions AS d
INNER JOIN e AS x ON d.trace_id = x.trace_id AND d.span_id = x.span_id
LEFT JOIN {_OUTPUT_STATS} AS o ON o.trace_id = x.trace_id AND o.span_id = x.span_id
WHERE d.action = {OVERWROTE} OR (d.action = {MODIFIED} AND {BEFORE_FIRST_UNIT})
GROUP BY x.trace_id, x.span_id
"""),
    Detector(
        "re-derivation", "rederivation",
        signal="a supervisor decision `rederived`; or the delegator re-running the very tool call "
               "(same tool, same arguments hash) its delegate already ran successfully",
        needs="decision events; tool spans with gen_ai.tool.name and handoff.tool.args_hash",
        blind_spots="recomputation through a different tool or different arguments",
        present="rederived > 0 OR (hashed_calls >= 2 AND delegations > 0)",
        sql=f"""
SELECT trace_id, span_id, agent, step, confidence, evidence FROM (
    SELECT x.trace_id AS trace_id, x.span_id AS span_id,
        if(d.agent != '', d.agent, x.delegator) AS agent, if(d.step >= 0, d.step, x.step) AS step,
        1.0 AS confidence,
        format('{{}} re-derived the result of {{}} (task {{}}) instead of using it{{}}',
            if(d.agent != '', d.agent, x.delegator), x.delegate,
            if(x.task != '', substring(x.task, 1, 80), x.task_hash),
            if(d.reason != '', concat(': ', d.reason), '')) AS evidence
    FROM decisions AS d INNER JOIN e AS x ON d.trace_id = x.trace_id AND d.span_id = x.span_id
    WHERE d.action = {REDERIVED}
    UNION ALL
    SELECT t2.trace_id, t2.span_id, t2.agent, t2.step, 0.8,
        format('{{}} re-ran {{}} with the same arguments that {{}} already ran successfully at step {{}}',
            t2.agent, t2.tool, t1.agent, toString(t1.step))
    FROM s AS t1
    INNER JOIN s AS t2 ON t1.trace_id = t2.trace_id AND t1.tool = t2.tool AND t1.args_hash = t2.args_hash
    INNER JOIN (SELECT DISTINCT trace_id, delegator, delegate FROM e) AS x
        ON x.trace_id = t1.trace_id AND x.delegate = t1.agent AND x.delegator = t2.agent
    WHERE t1.type = {TOOL} AND t2.type = {TOOL} AND t1.args_hash != '' AND NOT t1.failed
        AND t2.ts >= t1.end_ts AND t1.agent != t2.agent
)
"""),
    Detector(
        t.STEP_REPETITION, "step_repetition",
        signal="the same agent repeating a successful tool call (same tool, same arguments hash) "
               "that is not a retry, nor a redelivery under one idempotency key; or the same task "
               "delegated again to the same agent after its output was accepted (or modified and kept)",
        needs="tool spans with handoff.tool.args_hash and retry markers; delegations with task hashes",
        blind_spots="repetition with varied arguments or reworded tasks; text logs (text models)",
        present="ok_hashed_calls >= 2 OR (kept > 0 AND delegations > 0)",
        sql=f"""
SELECT trace_id, span_id, agent, step, confidence, evidence FROM (
    SELECT trace_id, (calls[2]).2 AS span_id, agent, (calls[2]).3 AS step, 0.95 AS confidence,
        format('{{}} called {{}} {{}} times with the same arguments (first at step {{}}), none a retry',
            agent, tool, toString(length(calls)), toString((calls[1]).3)) AS evidence
    FROM (
        SELECT trace_id, agent, tool, arraySort(groupArray((ts, span_id, step))) AS calls
        FROM s
        WHERE type = {TOOL} AND args_hash != '' AND NOT failed AND retry_of = '' AND retry_attempt <= 1
        GROUP BY trace_id, agent, tool, args_hash
        -- Calls that all carry one idempotency key are one operation delivered again (an
        -- at-least-once queue), which the key makes happen once: no step done twice.
        HAVING count() >= 2 AND NOT (min(idempotency_key) != '' AND min(idempotency_key) = max(idempotency_key))
    )
    UNION ALL
    SELECT y.trace_id, y.span_id, y.delegator, y.step, 0.9,
        format('{{}} delegated task {{}} to {{}} again at step {{}} after accepting its output',
            y.delegator, if(y.task != '', substring(y.task, 1, 80), y.task_hash), y.delegate,
            toString(y.step))
    FROM e AS y
    INNER JOIN (
        SELECT x.trace_id AS trace_id, x.delegator AS delegator, x.delegate AS delegate,
            x.task_hash AS task_hash, min(d.ts) AS accepted_at
        FROM e AS x INNER JOIN decisions AS d ON d.trace_id = x.trace_id AND d.span_id = x.span_id
        WHERE d.action IN ({ACCEPTED}, {MODIFIED}) AND x.task_hash != ''
        GROUP BY x.trace_id, x.delegator, x.delegate, x.task_hash
    ) AS acc ON acc.trace_id = y.trace_id AND acc.delegator = y.delegator
        AND acc.delegate = y.delegate AND acc.task_hash = y.task_hash
    WHERE y.ts > acc.accepted_at
)
"""),
    Detector(
        "FM-1.4", "history_loss",
        signal="within one agent turn, an LLM call's input tokens drop below half of the previous "
               "call's (at least 200 before): the context was truncated or reset",
        needs="LLM spans with gen_ai.usage.input_tokens under one parent",
        blind_spots="deliberate summarisation looks the same; facts re-asked without a token drop",
        present="llm_calls >= 2",
        sql=f"""
SELECT trace_id, (calls[i]).3 AS span_id, agent, (calls[i]).4 AS step, 0.6 AS confidence,
    format('{{}}: input tokens fell from {{}} to {{}} between two calls of one turn',
        agent, toString((calls[i - 1]).2), toString((calls[i]).2)) AS evidence
FROM (
    SELECT trace_id, agent, calls,
        arrayFirstIndex((x, p) -> p >= 200 AND x * 2 < p,
            arrayMap(c -> c.2, calls), arrayPushFront(arrayPopBack(arrayMap(c -> c.2, calls)), 0)) AS i
    FROM (
        SELECT trace_id, parent_id, agent, arraySort(groupArray((ts, input_tokens, span_id, step))) AS calls
        FROM s WHERE type = {LLM} AND input_tokens > 0
        GROUP BY trace_id, parent_id, agent HAVING count() >= 2
    )
) WHERE i > 0
"""),
    Detector(
        "FM-1.5", "termination_unaware",
        signal="termination reason naming a limit (max turns, budget, timeout); or agent, tool, "
               "LLM or delegation spans starting after the run's termination event",
        needs="the handoff.termination event on the run span",
        blind_spots="loops that end by themselves below the limit; runs that never record termination",
        present="terminated > 0",
        sql=f"""
SELECT trace_id, span_id, agent, step, confidence, evidence FROM (
    SELECT m.trace_id AS trace_id, m.span_id AS span_id, m.agent AS agent,
        if(m.step >= 0, m.step, r.step) AS step, 0.85 AS confidence,
        format('the run stopped on a limit ({{}}), not on the work being done', m.reason) AS evidence
    FROM terminations AS m LEFT JOIN {_TERMINATING} AS r ON r.trace_id = m.trace_id AND r.span_id = m.span_id
    WHERE match(m.reason, '{LIMIT_REASON}') AND NOT match(m.reason, '{WITHIN_LIMIT}')
    UNION ALL
    SELECT x.trace_id, argMin(x.span_id, x.ts), argMin(x.agent, x.ts), argMin(x.step, x.ts), 0.8,
        format('{{}} span(s) started after the termination event, first by {{}} at step {{}}',
            toString(count()), argMin(x.agent, x.ts), toString(argMin(x.step, x.ts)))
    FROM s AS x
    INNER JOIN (SELECT trace_id, min(ts) AS ts FROM terminations GROUP BY trace_id) AS m
        ON m.trace_id = x.trace_id
    WHERE x.ts > m.ts AND x.type IN ({AGENT}, {TOOL}, {LLM}, {DELEGATION})
    GROUP BY x.trace_id
)
"""),
    Detector(
        "FM-2.1", "conversation_reset",
        signal="a second root span (no parent) starting after the trace's first root: the "
               "conversation began again inside the same run",
        needs="parent links intact within the trace",
        blind_spots="a restart written to a new trace; text logs (text models)",
        present="roots >= 2",
        sql=f"""
SELECT x.trace_id AS trace_id, x.span_id AS span_id, x.agent AS agent, x.step AS step,
    0.6 AS confidence,
    format('a new root span {{}} ({{}}) started at step {{}} after the run had begun', x.name,
        if(x.agent != '', x.agent, x.type), toString(x.step)) AS evidence
FROM s AS x
INNER JOIN (SELECT trace_id, min(ts) AS first FROM s WHERE parent_id = '' GROUP BY trace_id) AS r
    ON r.trace_id = x.trace_id
WHERE x.parent_id = '' AND x.ts > r.first AND x.type != {RUN}
"""),
    Detector(
        "FM-2.2", "no_clarification",
        signal="a delegation whose task is marked ambiguous (handoff.task.ambiguous) and whose "
               "delegate delivered output without first handing a question back to the delegator",
        needs="the ambiguity marker on delegation spans",
        blind_spots="ambiguity nobody marked; text logs (text models read assumptions stated "
                    "without a question)",
        present="ambiguous > 0",
        sql="""
SELECT x.trace_id AS trace_id, x.span_id AS span_id, x.delegate AS agent, x.step AS step,
    0.8 AS confidence,
    format('{} answered ambiguous task {} from {} without asking for clarification',
        x.delegate, if(x.task != '', substring(x.task, 1, 80), x.task_hash), x.delegator) AS evidence
FROM e AS x
INNER JOIN (SELECT trace_id, span_id, min(ts) AS first_out FROM outputs GROUP BY trace_id, span_id) AS o
    ON o.trace_id = x.trace_id AND o.span_id = x.span_id
LEFT JOIN (SELECT trace_id, delegator, delegate, groupArray(ts) AS asked FROM e GROUP BY trace_id, delegator, delegate) AS q
    ON q.trace_id = x.trace_id AND q.delegator = x.delegate AND q.delegate = x.delegator
WHERE x.ambiguous AND NOT arrayExists(t -> t > x.ts AND t < o.first_out, q.asked)
"""),
    Detector(
        "FM-2.3", "task_derailment",
        signal="text only: topic drift between the delegated task and later messages",
        needs="message content (imported logs or opted-in capture)",
        blind_spots="structure alone cannot tell what an output is about",
    ),
    Detector(
        "FM-2.4", "information_withholding",
        signal="a delegation that completed (status completed, caller waiting) with no output "
               "handed back to the delegator",
        needs="delegation status and handoff.output events",
        blind_spots="an output that omits part of what the worker found (needs content)",
        present="completed > 0",
        sql=f"""
SELECT x.trace_id AS trace_id, x.span_id AS span_id, x.delegate AS agent, x.step AS step,
    0.6 AS confidence,
    format('{{}} completed task {{}} for {{}} but handed back no output', x.delegate,
        if(x.task != '', substring(x.task, 1, 80), x.task_hash), x.delegator) AS evidence
FROM e AS x
LEFT JOIN (SELECT DISTINCT trace_id, span_id, 1 AS has FROM outputs) AS o
    ON o.trace_id = x.trace_id AND o.span_id = x.span_id
WHERE x.status = {COMPLETED} AND x.mode = {DELEGATE} AND o.has = 0 AND NOT x.failed
"""),
    Detector(
        "FM-2.5", "ignored_input",
        signal="an output the delegator accepted but nobody consumed (a check reading it does "
               "not count), while the delegator consumed other outputs afterwards "
               "(handoff.input.output_ids)",
        needs="data flow: handoff.input.output_ids on the spans that use outputs",
        blind_spots="systems that do not record data flow; use the text models on logs",
        present="kept > 0 AND uses > 0",
        sql=f"""
SELECT p.trace_id AS trace_id, p.span_id AS span_id, p.delegator AS agent, p.delegation_step AS step,
    0.6 AS confidence,
    format('{{}} accepted output {{}} of {{}} but never used it; it later used {{}} other output(s)',
        p.delegator, p.output_id, p.delegate,
        toString(length(arrayDistinct(arrayFlatten(arrayMap(x -> x.2, arrayFilter(x -> x.1 > d.ts, later.uses)))))))
        AS evidence
FROM produced AS p
INNER JOIN decisions AS d ON d.trace_id = p.trace_id AND d.span_id = p.span_id
    AND (d.output_id = p.output_id OR d.output_id = '')
INNER JOIN (
    SELECT trace_id, agent, max(ts) AS last_use, groupArray((ts, input_ids)) AS uses
    FROM s WHERE length(input_ids) > 0 AND type != {VERIFICATION} GROUP BY trace_id, agent
) AS later ON later.trace_id = p.trace_id AND later.agent = p.delegator
LEFT JOIN (SELECT trace_id, groupUniqArrayArray(input_ids) AS all_used FROM s
           WHERE type != {VERIFICATION} GROUP BY trace_id) AS u
    ON u.trace_id = p.trace_id
WHERE d.action IN ({ACCEPTED}, {MODIFIED}) AND p.output_id != '' AND later.last_use > d.ts
    AND NOT has(u.all_used, p.output_id)
"""),
    Detector(
        "FM-2.6", "reasoning_action_mismatch",
        signal="a hand-off naming one delegate while a different agent runs the delegated work "
               "(an agent span under the delegation span that is not the delegate's: flagged when "
               "the delegate's own span is missing there, or the other agent delivered an output)",
        needs="the delegate's agent span nested under the delegation span",
        blind_spots="plan-versus-action inside one agent's reasoning (text models)",
        present="delegations > 0 AND agents > 0",
        sql=f"""
SELECT x.trace_id AS trace_id, x.span_id AS span_id, x.delegator AS agent, x.step AS step,
    0.7 AS confidence,
    format('{{}} handed task {{}} to {{}} but {{}} did the work', x.delegator,
        if(x.task != '', substring(x.task, 1, 80), x.task_hash), x.delegate,
        arrayStringConcat(groupUniqArray(ch.agent), ', ')) AS evidence
FROM e AS x
INNER JOIN s AS ch ON ch.trace_id = x.trace_id AND ch.parent_id = x.span_id
LEFT JOIN (SELECT trace_id, span_id, groupArray(ts) AS out_ts FROM outputs GROUP BY trace_id, span_id) AS o
    ON o.trace_id = x.trace_id AND o.span_id = x.span_id
WHERE ch.type = {AGENT} AND ch.agent != '' AND x.delegate != '' AND ch.agent != x.delegate
GROUP BY x.trace_id, x.span_id, x.delegator, x.step, x.task, x.task_hash, x.delegate
-- Another agent beside the delegate's own span (a reviewer) is no mismatch unless it delivered
-- an output of the hand-off (one delivered while its span ran).
HAVING (x.trace_id, x.span_id, x.delegate) NOT IN (SELECT trace_id, parent_id, agent FROM s WHERE type = {AGENT})
    OR countIf(arrayExists(t -> t >= ch.ts AND t <= ch.end_ts, o.out_ts)) > 0
"""),
    Detector(
        t.PREMATURE_TERMINATION, "premature_termination",
        signal="the run terminated with delegations still open (a control transfer until its target "
               "took over and then ended the run or handed control on), or claimed success while a verification had failed and the same check "
               "never passed the work again (the same target, or its fix: another output of the same "
               "hand-off, or of a hand-off given the failed output to revise), while a hand-off had "
               "failed and its delegator never had the task done again (by the same delegate or "
               "another), or while a delegation the terminating agent handed out was still running",
        blind_spots="objectives nobody delegated or verified; a fix delivered without consumes= naming "
                    "the failed output; a failed hand-off made good by a different task; a termination "
                    "that names no agent does not see delegations still running; text logs (text models)",
        needs="the handoff.termination event; delegation status; verification spans",
        present="terminated > 0",
        sql=f"""
SELECT m.trace_id AS trace_id, m.span_id AS span_id,
    if(m.agent != '', m.agent, r.agent) AS agent,
    multiIf(m.step >= 0, m.step, last.step >= 0, last.step, r.step) AS step,
    -- A control transfer never returns and gets no decision: it is settled once its target took
    -- over and then ended the run itself or handed control on; until then it is open.
    arrayFilter(x -> NOT (x.2 AND (x.3 OR x.1 = if(m.agent != '', m.agent, r.agent))), o.open) AS still_open,
    -- Success claimed over a hand-off that failed before the claim, or over one the terminating
    -- agent handed out and was still running (in another thread); one it is working in itself
    -- (it is the delegate) ends with it.
    arrayFilter(h -> m.success_claimed AND h.2 <= m.ts
                    AND NOT arrayExists(g -> g.1 = h.3 AND g.2 = h.4 AND g.3 > h.5, o.done), o.failed) AS failed_under,
    arrayFilter(h -> m.success_claimed AND h.3 > m.ts AND h.2 = if(m.agent != '', m.agent, r.agent)
                    AND h.1 != h.2, rn.running) AS running,
    -- A hand-off left open is the surest sign; a failed or unfinished one may have been made
    -- good by work the trace does not tie to it (a reworded task).
    if(length(still_open) > 0, 0.95, if(m.success_claimed AND f.n > 0, 0.9, 0.8)) AS confidence,
    concat('terminated (', if(m.reason != '', m.reason, 'no reason'), ')',
        if(length(still_open) > 0, format(' with {{}} delegation(s) still open (to {{}})',
            toString(length(still_open)), arrayStringConcat(arrayDistinct(arrayMap(x -> x.1, still_open)), ', ')), ''),
        if(length(running) > 0, format(' while {{}} delegation(s) were still running (to {{}})',
            toString(length(running)), arrayStringConcat(arrayDistinct(arrayMap(h -> h.1, running)), ', ')), ''),
        if(m.success_claimed AND f.n > 0, format(' claiming success over {{}} failed check(s): {{}}',
            toString(f.n), arrayStringConcat(f.checks, ', ')), ''),
        if(length(failed_under) > 0, format(' claiming success over {{}} failed hand-off(s) (to {{}})',
            toString(length(failed_under)), arrayStringConcat(arrayDistinct(arrayMap(h -> h.1, failed_under)), ', ')),
           '')) AS evidence
FROM terminations AS m
LEFT JOIN {_TERMINATING} AS r ON r.trace_id = m.trace_id AND r.span_id = m.span_id
-- Hand-offs left open; and, in traces where one failed, the failed ones (not cancelled) and
-- those completed, to tell whether a failed task was done again.
LEFT JOIN (SELECT x.trace_id AS trace_id,
               groupArrayIf((x.delegate, x.mode = {TRANSFER} AND took.last_turn >= x.ts, onward.last > x.ts),
                            x.status = {OPEN}) AS open,
               groupArrayIf((x.delegate, x.end_ts, x.delegator, x.task_hash, x.ts),
                            x.failed AND NOT match(x.error, '{CANCELLED}')) AS failed,
               groupArrayIf((x.delegator, x.task_hash, x.ts),
                            NOT x.failed AND x.status = {COMPLETED} AND x.task_hash != '') AS done
           FROM (SELECT * FROM e WHERE status = {OPEN} OR trace_id IN (SELECT trace_id FROM e WHERE failed)) AS x
           LEFT JOIN (SELECT trace_id, agent, max(ts) AS last_turn FROM s
                      WHERE type = {AGENT} AND trace_id IN {_OPEN_TRANSFER_TRACES}
                      GROUP BY trace_id, agent) AS took ON took.trace_id = x.trace_id AND took.agent = x.delegate
           LEFT JOIN (SELECT trace_id, delegator, max(ts) AS last FROM e
                      WHERE trace_id IN {_OPEN_TRANSFER_TRACES} GROUP BY trace_id, delegator) AS onward
               ON onward.trace_id = x.trace_id AND onward.delegator = x.delegate
           GROUP BY x.trace_id) AS o ON o.trace_id = m.trace_id
LEFT JOIN {_UNRESOLVED_FAILS} AS f ON f.trace_id = m.trace_id
LEFT JOIN (SELECT x.trace_id AS trace_id, max(x.step) AS step FROM s AS x
           INNER JOIN (SELECT trace_id, min(ts) AS ts FROM terminations GROUP BY trace_id) AS mt
               ON mt.trace_id = x.trace_id
           WHERE x.ts <= mt.ts AND x.type != {RUN} GROUP BY x.trace_id) AS last ON last.trace_id = m.trace_id
-- Delegations (not transfers) that had started when the run first claimed success and were still
-- running then.
LEFT JOIN (SELECT x.trace_id AS trace_id, groupArray((x.delegate, x.delegator, x.end_ts)) AS running
           FROM (SELECT trace_id, delegate, delegator, ts, end_ts FROM e
                 WHERE mode = {DELEGATE} AND status != {OPEN}) AS x
           INNER JOIN (SELECT trace_id, min(ts) AS ts FROM terminations WHERE success_claimed
                       GROUP BY trace_id) AS mt ON mt.trace_id = x.trace_id
           WHERE x.ts <= mt.ts AND x.end_ts > mt.ts GROUP BY x.trace_id) AS rn ON rn.trace_id = m.trace_id
WHERE length(still_open) > 0 OR (m.success_claimed AND f.n > 0) OR length(failed_under) > 0 OR length(running) > 0
"""),
    Detector(
        t.MISSING_VERIFICATION, "missing_verification",
        signal="a hand-off output accepted with no verification of it (by output id or delegation "
               "id) before the acceptance; or a passing verification that checked under half of "
               "the output (handoff.verification.coverage)",
        needs="decision events; verification spans naming their target",
        blind_spots="checks that are not recorded as verification spans",
        present="accepted > 0 OR thin_passes > 0",
        sql=f"""
SELECT trace_id, span_id, agent, step, confidence, evidence FROM (
    SELECT x.trace_id AS trace_id, x.span_id AS span_id,
        if(any(d.agent) != '', any(d.agent), x.delegator) AS agent,
        if(min(d.step) >= 0, min(d.step), x.step) AS step, 0.8 AS confidence,
        format('{{}} accepted the output of {{}} (task {{}}) without any verification',
            if(any(d.agent) != '', any(d.agent), x.delegator), x.delegate,
            if(x.task != '', substring(x.task, 1, 80), x.task_hash)) AS evidence
    FROM e AS x
    INNER JOIN decisions AS d ON d.trace_id = x.trace_id AND d.span_id = x.span_id
    LEFT JOIN {_OUTPUT_STATS} AS o ON o.trace_id = x.trace_id AND o.span_id = x.span_id
    LEFT JOIN (SELECT trace_id, groupArray((check_target, ts)) AS checks FROM v GROUP BY trace_id) AS vt
        ON vt.trace_id = x.trace_id
    WHERE d.action = {ACCEPTED}
        AND NOT arrayExists(k -> k.2 < d.ts AND (k.1 = x.delegation_id OR k.1 = x.span_id OR has(o.ids, k.1)),
                            vt.checks)
    GROUP BY x.trace_id, x.span_id, x.delegator, x.delegate, x.step, x.task, x.task_hash
    UNION ALL
    SELECT trace_id, span_id, agent, step, 0.7,
        format('{{}} passed check {{}} on {{}} after checking {{}}% of it', agent, check_name,
            check_target, toString(round(coverage * 100)))
    FROM v WHERE verdict = {PASS} AND coverage < {MIN_COVERAGE}
)
"""),
    Detector(
        "FM-3.3", "incorrect_verification",
        signal="a verification passed a target that a later verification failed, or whose "
               "delegation ended in error",
        needs="verification spans with verdicts and targets",
        blind_spots="a wrong pass nobody checked again",
        present="passes > 0 AND (fails > 0 OR failed_delegations > 0)",
        sql=f"""
SELECT trace_id, span_id, agent, step, confidence, evidence FROM (
    SELECT ok.trace_id AS trace_id, ok.span_id AS span_id, ok.agent AS agent, ok.step AS step,
        0.9 AS confidence,
        format('check {{}} by {{}} passed {{}}, then check {{}} failed it at step {{}}',
            ok.check_name, ok.agent, ok.check_target, any(bad.check_name), toString(min(bad.step))) AS evidence
    FROM v AS ok INNER JOIN v AS bad ON ok.trace_id = bad.trace_id AND ok.check_target = bad.check_target
    WHERE ok.verdict = {PASS} AND bad.verdict = {FAIL} AND bad.ts > ok.ts AND ok.check_target != ''
    GROUP BY ok.trace_id, ok.span_id, ok.agent, ok.step, ok.check_name, ok.check_target
    UNION ALL
    SELECT ok.trace_id, ok.span_id, ok.agent, ok.step, 0.8,
        format('check {{}} by {{}} passed the work of {{}}, whose delegation failed: {{}}',
            ok.check_name, ok.agent, x.delegate, substring(x.error, 1, 120))
    FROM v AS ok
    INNER JOIN e AS x ON x.trace_id = ok.trace_id
        AND (ok.check_target = x.delegation_id OR ok.check_target = x.span_id)
    WHERE ok.verdict = {PASS} AND x.failed
)
"""),
    Detector(
        "FM-1.1", "task_spec_violation",
        signal="a verification of the task's declared requirements (a check whose name says "
               "spec, constraint, requirement, contract or acceptance, as whole words) failed and "
               "the same check never passed the work again (the target, or its fix: see FM-3.1)",
        needs="verification spans whose check names say what they check",
        blind_spots="requirements nobody checks; check names in other words; text logs (text models)",
        present="fails > 0",
        sql=f"""
SELECT f.trace_id AS trace_id, f.span_id AS span_id,
    if(p.delegate != '', p.delegate, if(x.delegate != '', x.delegate, f.agent)) AS agent,
    if(p.step >= 0 AND p.delegate != '', p.step, f.step) AS step, 0.8 AS confidence,
    format('check {{}} failed on {{}}: the output breaks the task''s stated requirements',
        f.check_name, if(p.delegate != '', p.delegate, if(x.delegate != '', x.delegate, f.check_target))) AS evidence
FROM (SELECT * FROM v WHERE verdict = {FAIL} AND match(check_name, '{SPEC_CHECK}')) AS f
LEFT JOIN produced AS p ON p.trace_id = f.trace_id AND p.output_id = f.check_target
LEFT JOIN e AS x ON x.trace_id = f.trace_id AND x.delegation_id = f.check_target
WHERE (f.trace_id, f.span_id) IN {_STANDING_FAILS}
"""),
    Detector(
        "FM-1.2", "role_violation",
        signal="an agent whose declared role (handoff.agent.role) is not a coordinating one "
               "(supervisor, manager, orchestrator, coordinator, planner, lead, router, triage, "
               "dispatcher, delegator, director, boss, in any inflection: orchestrating, planning) "
               "delegating work or deciding on another agent's output; handing a question back "
               "to the agent that delegated to it is not counted",
        needs="handoff.agent.role on agent spans",
        blind_spots="agents without a declared role; a supervisor doing a worker's job itself "
                    "(see re-derivation and overwrite)",
        present="delegations > 0 AND roles > 0",
        sql=f"""
SELECT x.trace_id AS trace_id, argMin(x.span_id, x.ts) AS span_id, x.agent AS agent,
    argMin(x.step, x.ts) AS step, 0.7 AS confidence,
    format('{{}} (role {{}}) {{}} times took a coordinator''s action: {{}}', x.agent, any(x.role),
        toString(count()), arrayStringConcat(groupUniqArray(x.what), ', ')) AS evidence
FROM (
    -- The role is the acting agent span's (the delegation's parent): one name may work in one
    -- role and lead in another within a trace; else the first role the name declared in it.
    SELECT a.trace_id AS trace_id, a.span_id AS span_id, a.ts AS ts, a.step AS step, a.agent AS agent,
        a.other AS other, a.what AS what,
        if(arrayExists(t -> t.1 = a.parent_id, r.roles), arrayFirst(t -> t.1 = a.parent_id, r.roles).2,
           r.roles[1].2) AS role
    FROM (
        SELECT trace_id, span_id, parent_id, ts, step, delegator AS agent, delegate AS other,
            'delegated work' AS what
        FROM e
        UNION ALL
        SELECT d.trace_id, d.span_id, if(d.agent = y.delegator, y.parent_id, ''), d.ts, y.step, d.agent,
            y.delegate, concat(d.action, ' an output')
        FROM decisions AS d INNER JOIN e AS y ON y.trace_id = d.trace_id AND y.span_id = d.span_id
        WHERE d.agent != ''
    ) AS a
    INNER JOIN (SELECT trace_id, agent, groupArray((span_id, role)) AS roles FROM s
                WHERE role != '' AND agent != '' AND type = {AGENT}
                GROUP BY trace_id, agent) AS r ON r.trace_id = a.trace_id AND r.agent = a.agent
) AS x
LEFT JOIN (SELECT trace_id, delegator, delegate, min(ts) AS first FROM e GROUP BY trace_id, delegator, delegate)
    AS back ON back.trace_id = x.trace_id AND back.delegator = x.other AND back.delegate = x.agent
WHERE x.role != '' AND NOT match(x.role, '{COORDINATING_ROLE}')
    AND NOT (back.delegator != '' AND back.first < x.ts)
GROUP BY x.trace_id, x.agent
"""),
    Detector(
        "duplicate-side-effect", "duplicate_side_effect",
        signal="two successful calls of one side-effecting tool on the same target (or the same "
               "arguments hash) without a shared idempotency key",
        needs="tool spans with handoff.tool.side_effect, handoff.tool.target or args_hash, "
              "handoff.idempotency_key",
        blind_spots="side effects not marked as such; a target the tool does not name",
        present="effects >= 2",
        sql=f"""
SELECT trace_id, (calls[2]).2 AS span_id, (calls[2]).4 AS agent, (calls[2]).3 AS step,
    if(arrayCount(c -> c.5 = '', calls) > 0, 0.95, 0.85) AS confidence,
    format('{{}} ran {{}} times on {{}} and succeeded each time, {{}}', tool, toString(length(calls)),
        key, if(arrayCount(c -> c.5 = '', calls) > 0, 'without an idempotency key',
            'with different idempotency keys')) AS evidence
FROM (
    SELECT trace_id, tool, if(tool_target != '', tool_target, args_hash) AS key,
        arraySort(groupArray((ts, span_id, step, agent, idempotency_key))) AS calls
    FROM s
    WHERE type = {TOOL} AND side_effect AND NOT failed AND (tool_target != '' OR args_hash != '')
    GROUP BY trace_id, tool, key
    HAVING count() >= 2 AND (countIf(idempotency_key = '') > 0 OR uniqExact(idempotency_key) > 1)
)
"""),
    Detector(
        "missing-compensation", "missing_compensation",
        signal="a failure that broke off an action (a failed side-effecting step, a failed agent or "
               "hand-off, or a failed read-only call its action did not carry on past) after "
               "successful side effects in that action (same parent and before it, its children, "
               "the same agent one level up, or for a failed hand-off the earlier hand-offs whose "
               "outputs it was given) that no compensation span undid; a failure is recovered, "
               "and needs none, when a later attempt of its retry chain succeeded or the same task was "
               "handed again to the same delegate and completed; a cancelled span did not fail",
        needs="side-effect markers on tool spans; compensation spans with handoff.compensation.of; "
              "retry_of on retries",
        blind_spots="side effects not marked; rollbacks recorded as ordinary tool calls; a fallback "
                    "for a failed side-effecting step or hand-off (another tool, another delegate)",
        present="failed_work > 0 AND effects > 0",
        sql=f"""
SELECT trace_id, argMin(span_id, k) AS span_id, argMin(agent, k) AS agent, argMin(step, k) AS step,
    0.9 AS confidence, argMin(evidence, k) AS evidence
FROM (
    SELECT f.trace_id AS trace_id, f.span_id AS span_id, (any(f.end_ts), any(f.ts)) AS k, any(f.step) AS step,
        if(any(f.type) = {DELEGATION} AND any(f.delegate) != '', any(f.delegate), any(f.agent)) AS agent,
        format('{{}} failed{{}} at step {{}} ({{}}) after {{}} side effect(s) nobody undid: {{}}',
            if(any(f.type) = {DELEGATION} AND any(f.delegate) != '', any(f.delegate), if(any(f.agent) != '', any(f.agent), any(f.name))),
            if(any(f.type) = {DELEGATION} AND any(f.delegate) != '',
               concat(' task ', if(any(f.task) != '', substring(any(f.task), 1, 80), any(f.task_hash)), ' for ', any(f.delegator)), ''),
            toString(any(f.step)), substring(any(f.error), 1, 120), toString(uniqExact(se.span_id)),
            arrayStringConcat(arrayMap(x -> x.2, arraySort(groupUniqArray((se.ts, concat(se.tool, '@', toString(se.step)))))),
                              ', ')) AS evidence
    FROM (
        SELECT f.trace_id AS trace_id, f.span_id AS span_id, f.parent_id AS parent_id, p.parent_id AS grand_id,
            f.ts AS ts, f.end_ts AS end_ts, f.step AS step, f.type AS type, f.agent AS agent, f.name AS name,
            f.error AS error, f.delegator AS delegator, f.delegate AS delegate, f.task AS task, f.task_hash AS task_hash,
            up.handoffs AS builds_on
        -- The failed spans first: the joins below then run over them, not every span.
        FROM (SELECT * FROM s WHERE failed AND type IN ({TOOL}, {AGENT}, {DELEGATION})
              AND NOT match(error, '{CANCELLED}')) AS f
        LEFT JOIN {_PARENTS} AS p ON p.trace_id = f.trace_id AND p.span_id = f.parent_id
        -- A failed hand-off that was given the outputs of earlier hand-offs is the next step of
        -- their action (a VM provisioned by one worker, configured by another): their side
        -- effects are in its scope.
        LEFT JOIN (SELECT fd.trace_id AS trace_id, fd.span_id AS span_id, groupUniqArray(pr.span_id) AS handoffs
                   FROM (SELECT trace_id, span_id, arrayJoin(input_ids) AS output_id FROM s
                         WHERE failed AND type = {DELEGATION}) AS fd
                   INNER JOIN (SELECT trace_id, span_id, output_id FROM produced WHERE output_id IN {_BUILT_ON}) AS pr
                       ON pr.trace_id = fd.trace_id AND pr.output_id = fd.output_id
                   GROUP BY fd.trace_id, fd.span_id) AS up ON up.trace_id = f.trace_id AND up.span_id = f.span_id
        -- A read-only call that failed changed nothing: if its action carried on past it (a
        -- fallback, the next step), it was handled.
        LEFT JOIN (SELECT trace_id, parent_id, max(ts) AS last FROM s
                   WHERE NOT failed AND type IN ({TOOL}, {AGENT}, {DELEGATION})
                       AND parent_id IN (SELECT parent_id FROM s WHERE failed AND type = {TOOL} AND NOT side_effect)
                   GROUP BY trace_id, parent_id) AS later
            ON later.trace_id = f.trace_id AND later.parent_id = f.parent_id
        LEFT JOIN (SELECT trace_id, groupArray(span_id) AS ids FROM {_REDELEGATED} GROUP BY trace_id) AS rd
            ON rd.trace_id = f.trace_id
        WHERE NOT (f.type = {TOOL} AND NOT f.side_effect AND later.last >= f.end_ts)
            AND (f.trace_id, f.span_id) NOT IN {RETRIED_OK}
            -- The hand-off was done again and completed: it, and what failed in it, are recovered.
            AND NOT hasAny(rd.ids, [f.span_id, f.parent_id, p.parent_id])
    ) AS f
    INNER JOIN (
        SELECT se.trace_id AS trace_id, se.span_id AS span_id, se.parent_id AS parent_id, p.parent_id AS grand_id,
            se.ts AS ts, se.agent AS agent, se.tool AS tool, se.step AS step
        FROM (SELECT * FROM s WHERE type = {TOOL} AND side_effect AND NOT failed
              AND trace_id IN {_FAILING_TRACES}) AS se
        LEFT JOIN (SELECT DISTINCT trace_id, compensation_of FROM s WHERE compensation_of != '') AS comp
            ON comp.trace_id = se.trace_id AND comp.compensation_of = se.span_id
        -- One level up only where a failure's grandparent is (the same agent's other turns
        -- there), or a hand-off a failed one built on (the delegate's turn in it).
        LEFT JOIN (SELECT trace_id, span_id, parent_id FROM s WHERE type = {AGENT}
                       AND (parent_id IN (SELECT parent_id FROM {_PARENTS})
                            OR parent_id IN (SELECT span_id FROM produced WHERE output_id IN {_BUILT_ON}))) AS p
            ON p.trace_id = se.trace_id AND p.span_id = se.parent_id
        WHERE comp.compensation_of = ''
    ) AS se ON se.trace_id = f.trace_id
    WHERE se.span_id != f.span_id
        AND ((se.parent_id = f.parent_id AND se.ts < f.ts) OR se.parent_id = f.span_id
             OR (se.agent = f.agent AND f.agent != '' AND se.grand_id = f.grand_id AND f.grand_id != ''
                 AND se.ts < f.ts)
             OR (hasAny(f.builds_on, [se.parent_id, se.grand_id]) AND se.ts < f.ts))
    GROUP BY f.trace_id, f.span_id
)
GROUP BY trace_id
"""),
    Detector(
        "restart-instead-of-resume", "restart_instead_of_resume",
        signal="after a checkpoint and a failure (not retried successfully), work completed before "
               "that checkpoint (same delegated task, or same tool call) is done again with no resume "
               "event in between; any checkpoint of the run counts, and each step done again once",
        needs="handoff.checkpoint events; handoff.resume events or handoff.resume.checkpoint_id",
        blind_spots="a restart written to a new trace or run",
        present="checkpointed > 0 AND failed_steps > 0",
        sql=f"""
SELECT trace_id, argMin(redo, at) AS span_id, argMin(who, at) AS agent, argMin(redo_step, at) AS step,
    0.9 AS confidence,
    format('after a failure at step {{}}, {{}} step(s) finished before checkpoint {{}} were done again (first: {{}} at step {{}}) instead of resuming from it',
        toString(argMin(why.2, at)), toString(count()), argMin(why.1, at), argMin(what, at),
        toString(argMin(redo_step, at))) AS evidence
FROM (
    -- One row per step done again: the latest checkpoint it was done before, and the first
    -- failure after that checkpoint.
    SELECT y.trace_id AS trace_id, y.span_id AS redo, any(y.ts) AS at, any(y.agent) AS who,
        any(y.step) AS redo_step, any(y.what) AS what,
        argMax((cp.checkpoint_id, fl.step), (cp.ts, -toUnixTimestamp64Nano(fl.ts))) AS why
    FROM (
        SELECT trace_id, span_id, ts, end_ts, step, failed,
            if(type = {DELEGATION}, delegator, agent) AS agent,
            if(type = {DELEGATION}, concat('task ', task_hash, ' to ', delegate), concat(tool, ' ', args_hash)) AS what
        FROM s
        WHERE ((type = {DELEGATION} AND task_hash != '') OR (type = {TOOL} AND args_hash != ''))
            AND trace_id IN {_CHECKPOINTED_TRACES}
    ) AS y
    INNER JOIN (SELECT trace_id, ts, checkpoint_id FROM checkpoints) AS cp ON cp.trace_id = y.trace_id
    INNER JOIN (SELECT f.trace_id AS trace_id, f.ts AS ts, f.step AS step FROM s AS f
                WHERE f.failed AND f.type != {RUN} AND f.trace_id IN {_CHECKPOINTED_TRACES}
                    AND (f.trace_id, f.span_id) NOT IN {RETRIED_OK}) AS fl
        ON fl.trace_id = y.trace_id
    INNER JOIN (
        SELECT trace_id, span_id, end_ts,
            if(type = {DELEGATION}, concat('task ', task_hash, ' to ', delegate), concat(tool, ' ', args_hash)) AS what
        FROM s WHERE NOT failed AND ((type = {DELEGATION} AND task_hash != '') OR (type = {TOOL} AND args_hash != ''))
            AND trace_id IN {_CHECKPOINTED_TRACES}
    ) AS done ON done.trace_id = y.trace_id AND done.what = y.what
    LEFT JOIN (
        SELECT trace_id, ts FROM resumes
        UNION ALL SELECT trace_id, ts FROM s WHERE resumed_from != ''
    ) AS rs ON rs.trace_id = y.trace_id AND rs.ts >= fl.ts AND rs.ts <= y.ts
    WHERE fl.ts > cp.ts AND done.end_ts <= cp.ts AND y.ts > fl.ts AND rs.trace_id = ''
    GROUP BY y.trace_id, y.span_id
)
GROUP BY trace_id
"""),
    Detector(
        "unapproved-high-stakes-action", "unapproved_high_stakes",
        signal="a tool span marked high-stakes that ran with no `approved` approval event on it "
               "(or on its parent naming it, given before the action started and used by no call of "
               "that tool in between: one approval, one action), or despite a `denied` one",
        needs="handoff.tool.high_stakes on tool spans; handoff.approval events",
        blind_spots="high-stakes tools nobody marked",
        present="high_stakes > 0",
        sql=f"""
SELECT x.trace_id AS trace_id, x.span_id AS span_id, x.agent AS agent, x.step AS step,
    if(countIf(ap.decision = 'denied') > 0, 1.0, 0.95) AS confidence,
    format('{{}} ran high-stakes {{}}{{}} {{}}', x.agent, if(x.tool != '', x.tool, x.name),
        if(x.tool_target != '', concat(' on ', x.tool_target), ''),
        if(countIf(ap.decision = 'denied') > 0, 'although a human denied it', 'without a human approval')) AS evidence
-- An approval on the parent is given for one action: the first call of the tool after it, so it
-- must come after the call of the same tool there before this one (``before``).
FROM (SELECT trace_id, span_id, parent_id, ts, agent, step, tool, name, tool_target,
          lagInFrame(ts, 1, toDateTime64(0, 9)) OVER (PARTITION BY trace_id, parent_id, tool, name ORDER BY ts
              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS before
      FROM s WHERE high_stakes AND type = {TOOL}) AS x
LEFT JOIN approvals AS ap ON ap.trace_id = x.trace_id
    AND (ap.span_id = x.span_id OR (ap.span_id = x.parent_id AND (ap.action = x.tool OR ap.action = x.name)))
GROUP BY x.trace_id, x.span_id, x.agent, x.step, x.tool, x.name, x.tool_target
HAVING countIf(ap.decision = 'approved' AND (ap.span_id = x.span_id OR (ap.ts <= x.ts AND ap.ts > x.before))) = 0
"""),
    Detector(
        "conformity", "conformity",
        signal="an agent accepted an output that a verification later failed, and the accepting "
               "agent runs the same model family as the output's author",
        needs="decision events; verifications after acceptance; gen_ai.request.model on agent spans",
        blind_spots="acceptance of a flaw nobody checks later; agents whose model is not recorded",
        present="accepted > 0 AND fails > 0",
        sql=f"""
SELECT x.trace_id AS trace_id, x.span_id AS span_id, any(acc.agent) AS agent,
    if(min(acc.step) >= 0, min(acc.step), x.step) AS step, 0.8 AS confidence,
    format('{{}} ({{}}) accepted the output of {{}} ({{}}, same model family) that check {{}} later failed',
        any(acc.agent), any(fa.agent_model), x.delegate, any(fb.agent_model), any(bad.check_name)) AS evidence
FROM e AS x
INNER JOIN (SELECT trace_id, span_id, ts, step, agent, output_id FROM decisions
            WHERE action = {ACCEPTED}) AS acc ON acc.trace_id = x.trace_id AND acc.span_id = x.span_id
LEFT JOIN {_OUTPUT_STATS} AS o ON o.trace_id = x.trace_id AND o.span_id = x.span_id
INNER JOIN v AS bad ON bad.trace_id = x.trace_id
    AND (bad.check_target = x.delegation_id OR bad.check_target = x.span_id OR has(o.ids, bad.check_target))
INNER JOIN {_FAMILY} AS fa ON fa.trace_id = x.trace_id AND fa.agent = if(acc.agent != '', acc.agent, x.delegator)
INNER JOIN {_FAMILY} AS fb ON fb.trace_id = x.trace_id AND fb.agent = x.delegate
WHERE bad.verdict = {FAIL} AND bad.ts > acc.ts AND fa.family = fb.family AND fa.family != ''
GROUP BY x.trace_id, x.span_id, x.step, x.delegate
"""),
    Detector(
        t.ERROR_CASCADE, "error_cascade",
        signal="an erroneous output (its producer failed, or a check failed it) consumed "
               "downstream without a passing check, and the consumer erring in turn; points at "
               "the root error (earliest error with no erroneous ancestor)",
        needs="StatusCode Error or exception events; data flow through handoff.input.output_ids",
        blind_spots="errors that are wrong answers nobody checked (no error status, no failed check)",
    ),
)

BY_CODE: dict[str, Detector] = {d.code: d for d in DETECTORS}

SQL_DETECTORS: tuple[Detector, ...] = tuple(d for d in DETECTORS if d.sql)


def possible(store: Store, scratch: Scratch) -> tuple[Detector, ...]:
    """The SQL detectors whose ``present`` condition the chunk in ``scratch`` meets."""
    conditions = ", ".join(f"{d.present or 'true'} AS c{i}" for i, d in enumerate(SQL_DETECTORS))
    [row] = store.query(f"SELECT {conditions} FROM ({shaped(_HOLDINGS_SQL, scratch)})")
    return tuple(d for i, d in enumerate(SQL_DETECTORS) if row[f"c{i}"])


def statement(scratch: Scratch | None = None, detectors: Sequence[Detector] = SQL_DETECTORS) -> str:
    """The rows of ``detectors`` (code, trace_id, span_id, agent, step, confidence, evidence)
    over ``{traces:Array(String)}``, or over a materialised scratch, in one statement.

    ClickHouse runs the branches of a UNION ALL side by side on every core, where twenty
    statements run one after the other, each mostly on one core (1.2-1.35x on a chunk of 645k
    spans, same rows)."""
    body = "\nUNION ALL\n".join(
        f"SELECT '{d.code}' AS code, trace_id, span_id, agent, step, confidence, evidence FROM ({d.sql})"
        for d in detectors)
    return shaped(body, scratch) + JOIN_SETTINGS


def reference() -> str:
    """The per-mode reference table of ``docs/detectors.md`` (``python -m handoffs.detectors``)."""
    rows = ["| code | mode | signal | needs from a trace | blind spots |", "|---|---|---|---|---|"]
    for d in sorted(DETECTORS, key=lambda d: (d.code[:2] != "FM", d.code)):
        name = t.BY_CODE[d.code].name
        rows.append(f"| {d.code} | {name} | {d.signal} | {d.needs} | {d.blind_spots} |")
    return "\n".join(rows) + "\n"
