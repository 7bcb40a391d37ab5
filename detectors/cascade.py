"""Error cascades: how one error spreads through a trace, and where it started.

SQL picks the traces with an error (a span with StatusCode Error, or a failed check) and
returns their spans in the normalised shape; the propagation graph is per-trace work done here.
Nodes are erroneous spans. An edge u -> v says u's error explains v's:

- parent/child: an erroneous child explains its erroneous parent (errors bubble up the stack);
- data flow: a span that consumed (``handoff.input.output_ids``, its own or an ancestor's) an
  erroneous output is explained by the delegation that delivered it;
- delegation order, only when a trace records no data flow at all: an erroneous delegation
  explains the erroneous delegations its delegator started after it had ended (two that ran
  at once cannot have fed each other).

An output is erroneous when a check failed it (or its delegation) and no later check passed
it, when its delegation failed, or when a span under its delegation failed and was not retried
successfully (no later attempt of its retry chain succeeded: attempts name the first one, or
the one before). The root cause is the earliest erroneous node with no erroneous ancestor; the
amplification is the number of own errors (erroneous spans not merely bubbling up from an
erroneous child) per root.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from handoffs import taxonomy
from handoffs.conventions import SpanType, Verdict
from handoffs.store import Store

from .normalise import RETRIED_OK, Scratch, shaped

_BAD_VERDICTS = (Verdict.FAIL.value, Verdict.ERROR.value)
# Plain strings: the graph compares span types millions of times on large chunks.
_DELEGATION = SpanType.DELEGATION.value
_VERIFICATION = SpanType.VERIFICATION.value

_SPANS_BODY = f"""
SELECT x.trace_id AS trace_id, x.span_id AS span_id, x.parent_id AS parent_id,
    toUnixTimestamp64Nano(x.ts) AS ts, toUnixTimestamp64Nano(x.end_ts) AS end_ts, x.agent AS agent, x.step AS step, x.type AS type,
    x.failed AS failed, x.error AS error, x.input_ids AS input_ids, x.check_target AS check_target,
    x.verdict AS verdict, x.delegate AS delegate, x.delegation_id AS delegation_id,
    (x.trace_id, x.span_id) IN {RETRIED_OK} AS retried_ok, o.ids AS output_ids, o.steps AS output_steps
FROM s AS x
LEFT JOIN (SELECT trace_id, span_id, groupArray(output_id) AS ids, groupArray(step) AS steps
           FROM outputs GROUP BY trace_id, span_id) AS o
    ON o.trace_id = x.trace_id AND o.span_id = x.span_id
WHERE x.trace_id IN (
    -- Traces with an error that may stand: a failure no successful attempt names (a cheap
    -- superset: retried_ok above decides for chained attempts), or a failed check no later
    -- check of the same target passed. Transient, recovered errors need no graph.
    SELECT f.trace_id FROM s AS f
    LEFT JOIN (SELECT DISTINCT trace_id, retry_of FROM s WHERE retry_of != '' AND NOT failed) AS r
        ON r.trace_id = f.trace_id AND r.retry_of = f.span_id
    WHERE f.failed AND r.retry_of = ''
    UNION DISTINCT
    SELECT b.trace_id FROM v AS b
    LEFT JOIN (SELECT trace_id, check_target, max(ts) AS last_pass FROM v WHERE verdict = '{Verdict.PASS.value}'
               GROUP BY trace_id, check_target) AS p ON p.trace_id = b.trace_id AND p.check_target = b.check_target
    WHERE b.verdict IN ('{_BAD_VERDICTS[0]}', '{_BAD_VERDICTS[1]}') AND p.last_pass < b.ts)
    -- Leaves that neither failed, nor consumed an output, nor delivered or judged work cannot be
    -- in the graph or lead to it: most tool and model calls. Left out.
    AND (x.failed OR length(x.input_ids) > 0
         OR x.type IN ('{_DELEGATION}', '{_VERIFICATION}') OR x.span_id IN (SELECT parent_id FROM s))
ORDER BY x.trace_id, x.ts
"""


@dataclass(slots=True)
class Node:
    """A span as the cascade graph sees it."""

    span_id: str
    parent_id: str
    ts: int
    end_ts: int
    agent: str
    step: int
    type: str
    failed: bool
    error: str
    input_ids: list[str]
    check_target: str
    verdict: str
    delegate: str
    delegation_id: str
    retried_ok: bool  # failed, and made good by a later attempt of its retry chain
    output_ids: list[str]
    bad_output: str = ""  # why this delegation's output is erroneous, if it is


@dataclass
class Cascade:
    """One root error and the erroneous spans it explains."""

    root: Node
    members: list[Node]
    via_data_flow: bool
    hops: list[str] = field(default_factory=list)  # readable steps of the propagation

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class TraceCascades:
    """The propagation graph's summary for one trace."""

    trace_id: str
    cascades: list[Cascade]
    own_errors: int  # erroneous spans not merely bubbling up from an erroneous child
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def roots(self) -> int:
        return len(self.cascades)

    @property
    def amplification(self) -> float:
        return self.own_errors / self.roots if self.roots else 0.0

    def root_cause(self) -> Node | None:
        """The earliest root error: the (agent, step) where things went wrong."""
        return min((c.root for c in self.cascades), key=lambda n: (n.ts, n.step), default=None)

    def agent_of(self, node: Node) -> str:
        return _agent_of(node, self.nodes)


def _agent_of(node: Node, nodes: dict[str, Node]) -> str:
    """The agent a span belongs to: its own, else the nearest ancestor's."""
    seen = 0
    current: Node | None = node
    while current is not None and seen < 256:
        if current.bad_output and current.delegate:
            return current.delegate
        if current.agent:
            return current.agent
        current = nodes.get(current.parent_id)
        seen += 1
    return ""


def _analyse_nodes(trace_id: str, nodes: dict[str, Node]) -> TraceCascades:
    children: dict[str, list[Node]] = defaultdict(list)
    for n in nodes.values():
        children[n.parent_id].append(n)
    failed = {sid for sid, n in nodes.items() if n.failed and not n.retried_ok}

    # Which delegation delivered each output, and which checks judged each target.
    producer: dict[str, Node] = {}
    for n in nodes.values():
        if n.type == _DELEGATION:
            for oid in n.output_ids:
                producer[oid] = n
    last_verdict: dict[str, tuple[int, str]] = {}
    checks = [n for n in nodes.values() if n.type == _VERIFICATION and n.check_target and n.verdict]
    for n in sorted(checks, key=lambda n: n.ts):
        last_verdict[n.check_target] = (n.ts, n.verdict)

    def subtree_failed(root: Node) -> Node | None:
        stack = list(children[root.span_id])
        while stack:
            n = stack.pop()
            if n.span_id in failed:
                return n
            stack.extend(children[n.span_id])
        return None

    explained_by: dict[str, str] = {}  # delegation -> the failed span under it that explains it
    checked_bad: set[str] = set()
    for d in nodes.values():
        if d.type != _DELEGATION:
            continue
        targets = [d.delegation_id, d.span_id, *d.output_ids]
        verdicts = [last_verdict[t] for t in targets if t in last_verdict]
        inner = subtree_failed(d)
        if inner is not None:
            explained_by[d.span_id] = inner.span_id
        if verdicts and max(verdicts)[1] in _BAD_VERDICTS:
            d.bad_output = "a check failed its output"
            checked_bad.add(d.span_id)
        elif d.span_id in failed:
            d.bad_output = "its delegation failed"
        elif d.output_ids and inner is not None:
            d.bad_output = f"{inner.agent or inner.type} failed under it"
    erroneous = failed | {sid for sid, n in nodes.items() if n.bad_output}

    # Inputs a span works on: its own and its ancestors'.
    def inherited_inputs(n: Node) -> set[str]:
        ids: set[str] = set()
        current: Node | None = n
        depth = 0
        while current is not None and depth < 256:
            ids.update(current.input_ids)
            current = nodes.get(current.parent_id)
            depth += 1
        return ids

    def ancestors(n: Node) -> set[str]:
        out: set[str] = set()
        current = nodes.get(n.parent_id)
        while current is not None and current.span_id not in out:
            out.add(current.span_id)
            current = nodes.get(current.parent_id)
        return out

    edges: dict[str, set[str]] = defaultdict(set)  # cause -> effects
    flow_edges: set[tuple[str, str]] = set()
    has_flow = any(n.input_ids for n in nodes.values())
    for sid in erroneous:
        n = nodes[sid]
        if n.parent_id in erroneous:
            edges[sid].add(n.parent_id)
        if sid in explained_by:
            edges[explained_by[sid]].add(sid)
        if n.type == _VERIFICATION:
            continue  # a check consuming an output judges it; it is not harmed by it
        up = ancestors(n)
        for oid in inherited_inputs(n):
            d = producer.get(oid)
            # A delegation's own work (spans under it) and its ancestors are not its consumers.
            if d is not None and d.span_id in erroneous and d.span_id != sid and d.span_id not in up:
                edges[d.span_id].add(sid)
                flow_edges.add((d.span_id, sid))
    if not has_flow:
        delegations = sorted((n for n in nodes.values() if n.type == _DELEGATION),
                             key=lambda n: n.ts)
        for i, d in enumerate(delegations):
            if d.span_id not in erroneous:
                continue
            for later in delegations[i + 1:]:
                if (later.agent == d.agent and later.span_id in erroneous and later.span_id != d.span_id
                        and later.ts >= d.end_ts):
                    edges[d.span_id].add(later.span_id)
                    flow_edges.add((d.span_id, later.span_id))

    caused = {v for vs in edges.values() for v in vs}
    roots = sorted((nodes[s] for s in erroneous if s not in caused), key=lambda n: (n.ts, n.step))
    if not roots and erroneous:  # a cycle: the earliest error stands for it
        roots = [min((nodes[s] for s in erroneous), key=lambda n: (n.ts, n.step))]

    cascades = []
    for root in roots:
        members, via_flow = [root], False
        # One hop per source and consuming agent: a hand-off and the agent's turn under it both
        # consume the output (and both err), but the error crossed once. The hop names the
        # first consuming span that carries an error message, else the first.
        hop_to: dict[tuple[str, str], Node] = {}
        seen, queue = {root.span_id}, deque([root.span_id])
        while queue:
            u = queue.popleft()
            for w in sorted(edges.get(u, ()), key=lambda s: nodes[s].ts):
                if w in seen:
                    continue
                seen.add(w)
                queue.append(w)
                members.append(nodes[w])
                if (u, w) in flow_edges:
                    via_flow = True
                    key = (u, _agent_of(nodes[w], nodes))
                    if key not in hop_to or (nodes[w].error and not hop_to[key].error):
                        hop_to[key] = nodes[w]
        hops = [f"{_agent_of(nodes[u], nodes)} (step {nodes[u].step}) -> {agent} (step {w.step}"
                f"{', ' + w.error[:80] if w.error else ''})" for (u, agent), w in hop_to.items()]
        cascades.append(Cascade(root, members, via_flow, hops))
    # Own errors: failures not bubbling up from an erroneous child, and outputs a check failed
    # although nothing under their delegation failed. Containment alone adds none.
    own = sum(1 for s in failed if not any(ch.span_id in erroneous for ch in children[s])) \
        + sum(1 for s in checked_bad if s not in explained_by and s not in failed)
    return TraceCascades(trace_id, cascades, own, nodes)


def nodes_table(store: Store, trace_ids: Sequence[str] | None, scratch: Scratch | None = None) -> pa.Table:
    """The spans that can be in a cascade graph, of every trace in ``trace_ids`` (or in
    ``scratch``) that has an error standing, ordered by trace and start."""
    sql = shaped(_SPANS_BODY, scratch)
    params = {"traces": list(trace_ids)} if trace_ids is not None and scratch is None else None
    return store.query_arrow(sql, params)


def analyse_table(table: pa.Table) -> dict[str, TraceCascades]:
    """The cascade graph of every trace in a ``nodes_table``."""
    # Nodes straight from the Arrow columns (positional, no per-row dicts): building them was
    # most of the graph's cost on large chunks.
    fields = [f for f in Node.__dataclass_fields__ if f != "bad_output"]
    cols = [table.column(f).to_pylist() for f in fields]
    by_trace: dict[str, dict[str, Node]] = defaultdict(dict)
    for tid, values in zip(table.column("trace_id").to_pylist(), zip(*cols, strict=True), strict=True):
        node = Node(*values)
        node.input_ids = node.input_ids or []
        node.output_ids = node.output_ids or []
        by_trace[tid][node.span_id] = node
    return {tid: _analyse_nodes(tid, nodes) for tid, nodes in by_trace.items()}


def analyse_traces(store: Store, trace_ids: Sequence[str]) -> dict[str, TraceCascades]:
    """The cascade graph of every trace in ``trace_ids`` that has an error (attribution's read:
    detection builds its graphs from the nodes of its own scratch, ``nodes_table``)."""
    if not trace_ids:
        return {}
    return analyse_table(nodes_table(store, trace_ids))


# Per trace: (own errors, root errors), the two counts of error amplification. Detection stores
# them with each judged trace, so the metrics never build the graph again.
Amplification = dict[str, tuple[int, int]]


def table_results(table: pa.Table) -> tuple[list[dict[str, Any]], Amplification]:
    """Error-cascade findings and amplification of every trace in a ``nodes_table``: plain
    Python on plain data, so the detection pipeline can run it in a worker process beside the
    engine's queries."""
    results = analyse_table(table)
    return ([row for result in results.values() for row in findings_rows(result)],
            {tid: (result.own_errors, result.roots) for tid, result in results.items()})


def findings_rows(result: TraceCascades) -> list[dict[str, Any]]:
    """Error-cascade findings: each root whose error crossed at least one hand-off."""
    nodes = result.nodes
    out = []
    for c in result.cascades:
        if not c.via_data_flow:
            continue
        root = c.root
        agent = _agent_of(root, nodes) or root.delegate
        cause = root.error[:120] if root.error else root.bad_output or "error"
        out.append({
            "code": taxonomy.ERROR_CASCADE, "trace_id": result.trace_id, "span_id": root.span_id,
            "agent": agent, "step": root.step, "confidence": 0.9,
            "evidence": (f"error at {agent or root.type} step {root.step} ({cause}) spread to "
                         f"{c.size - 1} erroneous span(s): " + "; ".join(c.hops[:5])
                         + f"; amplification {result.amplification:.1f}x"),
        })
    return out
