"""Run detail: its checks and findings (failing first, with evidence and context), the trace
as a waterfall with flagged spans marked, and the hand-off graph."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from handoffs import taxonomy as T
from handoffs.dashboards import charts, queries, ui
from handoffs.gate.policy import FAIL, PASS, WARN

CONTEXT_STEPS = 2  # a finding's context: spans this many steps before and after it
MAX_FINDINGS = 50
MAX_WATERFALL = 300


def tree_order(spans: pd.DataFrame) -> pd.DataFrame:
    """Spans in depth-first order with their depth (one trace, at most a few thousand rows)."""
    ids = set(spans["span_id"])
    children: dict[str, list[int]] = {}
    for i, parent in enumerate(spans["parent_span_id"]):
        children.setdefault(parent if parent in ids else "", []).append(i)
    order: list[tuple[int, int]] = []
    stack = [(i, 0) for i in reversed(children.get("", []))]
    while stack:
        i, depth = stack.pop()
        order.append((i, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(spans.at[i, "span_id"], [])))
    rows = spans.iloc[[i for i, _ in order]].copy()
    rows["depth"] = [d for _, d in order]
    rows["order"] = range(len(rows))
    return rows


def finding_context(spans: pd.DataFrame, finding: pd.Series) -> pd.DataFrame:
    """The flagged span, its parent, and the spans a few steps around it, in time order."""
    span = spans[spans["span_id"] == finding["span_id"]]
    near = spans["span_id"].isin(set(span["span_id"]) | set(span["parent_span_id"]))
    if finding["step"] is not None and not pd.isna(finding["step"]):
        step = int(finding["step"])
        near |= spans["step"].between(step - CONTEXT_STEPS, step + CONTEXT_STEPS)
    ctx = spans[near].sort_values("start_ns")
    return ctx.assign(at=ctx["span_id"].eq(finding["span_id"]).map({True: "▶", False: ""}))[
        ["at", "step", "agent", "name", "status", "message", "decisions", "task"]]


st.title("Run detail")
project, since = ui.window()
recent = ui.q("run_list", project, 200, since)
wanted = st.query_params.get("run", "")
if wanted and wanted not in set(recent["run_id"]):
    # A link (from CI, from another page) opens its run whatever the window, never another
    # project's: a dashboard pinned to one project must not show the others by URL.
    linked = ui.q("runs", project, run=wanted, limit=1, trend=False)
    if not linked.empty:
        st.caption(f"Run {ui.code(wanted)} is opened by its link: it is not among the {len(recent)} latest runs "
                   "of the sidebar's time window that the picker lists.")
    recent = pd.concat([linked, recent], ignore_index=True)
if recent.empty:
    ui.empty_state("runs", ui.WINDOW_HINT)
    st.stop()
ids = list(recent["run_id"])
if wanted and wanted not in ids:
    st.warning(f"No run {ui.code(wanted)} in this {'project' if project else 'store'}; showing the latest run instead.")
run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0)
if not wanted or wanted in ids or run_id != ids[0]:
    # An unknown id keeps its URL until another run is picked: rewritten to the fallback, a
    # reload or a shared link showed that run with no warning.
    st.query_params["run"] = run_id
run = ui.q("runs", project, run=run_id, limit=1, trend=False).iloc[0]

st.subheader(f"{ui.status_label(run['status'])} · {ui.literal(run_id)}")
st.caption(f"status from {run['status_from']} · project {ui.literal(run['project'] or '–')} · system "
           f"{ui.literal(run['system'] or '–')} · topology {ui.literal(run['topology'] or '–')} · "
           f"trace {ui.code(run['trace_id'])}")
# When, commit and branch as text, which wraps; tiles only for figures: a tile cuts its value
# short ("2026-1…", "aaaaa…") as soon as the window is narrower than the widest screens.
st.markdown(f"**When** {pd.Timestamp(run['started_at']):%Y-%m-%d %H:%M:%S} · **Commit** "
            f"{ui.code(run['commit'] or '–')} · **Branch** {ui.code(run['branch'] or '–')}")
cols = st.columns(3)
cols[0].metric("Duration", ui.fmt_duration(run["duration_s"]))
cols[1].metric("Tokens", f"{int(run['tokens'] or 0):,}")
cols[2].metric("Overwrite rate", "–" if pd.isna(run[T.OVERWRITE_RATE])
               else f"{run[T.OVERWRITE_RATE]:.0%}")

checks = ui.q("run_checks", run_id)
gates = list(dict.fromkeys(checks["gate_id"]))  # the latest first
findings = ui.q("run_findings", run_id, run["trace_id"])
spans = ui.q("trace_spans", run["trace_id"])
# The tab counts the checks of the gate it shows: the one picked inside it, else the latest
# (it counted the latest whichever was picked).
gate_key = f"gate:{run_id}"
shown_gate = st.session_state.get(gate_key) if st.session_state.get(gate_key) in gates else (
    gates[0] if gates else None)
checks_tab, trace_tab, graph_tab = st.tabs([
    f"Checks ({int((checks['gate_id'] == shown_gate).sum())}) and findings ({len(findings)})",
    f"Trace ({len(spans)} spans)", "Hand-off graph"])

with checks_tab:
    if gates:
        # Every gate that covered the run judged it whole: one gate's checks at a time.
        per_gate = checks.groupby("gate_id")[["gate_at", "policy"]].first()
        gate_at, policy = per_gate["gate_at"], per_gate["policy"]
        gate = gates[0] if len(gates) == 1 else st.selectbox(
            f"Gate ({len(gates)} judged this run, the latest first)", gates, key=gate_key,
            format_func=lambda g: f"{pd.Timestamp(gate_at[g]):%Y-%m-%d %H:%M} · {policy[g]} · {g}")
        st.markdown(f"**Gate checks** · {ui.literal(policy[gate])} · {pd.Timestamp(gate_at[gate]):%Y-%m-%d %H:%M} · "
                    f"gate `{gate}`")
        shown = checks[checks["gate_id"] == gate]
        icons = {FAIL: "❌ ", WARN: "⚠️ ", PASS: "✅ "}
        st.dataframe(shown.assign(verdict=shown["verdict"].map(lambda v: icons.get(v, "") + v))
                     .drop(columns=["gate_id", "gate_at", "evaluated_at", "policy"])
                     .rename(columns={"check_name": "check", "limit_value": "limit"}),
                     hide_index=True, width="stretch", placeholder=ui.MISSING, column_config={
                         # Figures to 4 significant digits (p-sized values read 1.68e-06, not .00000168).
                         name: st.column_config.NumberColumn(name, format="%.4g")
                         for name in ("value", "limit", "baseline")})
    if findings.empty:
        st.success("No findings: the detectors flagged nothing in this run."
                   if run["status"] != "not checked" else
                   "Not checked yet: run `handoffs detect` to judge this run.")
    else:
        st.markdown(f"**Findings** (confidence ≥ {queries.BLOCKING_CONFIDENCE} blocks; click one "
                    "to see its span and the messages around it)")
        for i, f in findings.head(MAX_FINDINGS).iterrows():
            icon = "❌" if f["blocking"] else "⚠️"
            step = "" if pd.isna(f["step"]) else f" · step {int(f['step'])}"
            with st.expander(f"{icon} {f['code']} {f['name']} · {ui.literal(f['agent'] or 'no agent')}{step} · "
                             f"confidence {f['confidence']:.0%}", expanded=i == 0):
                st.markdown(f"**Evidence:** {ui.literal(f['evidence'])}")
                st.caption(f"{f['category']} · span {ui.code(f['span_id'])} · detector {f['detector']} "
                           f"{f['detector_version']}")
                ctx = finding_context(spans, f)
                if ctx.empty:
                    st.caption("The flagged span is not among this trace's stored spans.")
                else:
                    st.dataframe(ctx, hide_index=True, width="stretch", placeholder=ui.MISSING)
        if len(findings) > MAX_FINDINGS:
            st.caption(f"{len(findings) - MAX_FINDINGS} more findings not shown.")

with trace_tab:
    if spans.empty:
        st.info("No spans of this trace are stored (the run span may have arrived alone).")
    else:
        tree = tree_order(spans)
        t0 = int(tree["start_ns"].min())
        flagged = set(findings["span_id"])
        tree = tree.assign(
            offset_ms=(tree["start_ns"] - t0) / 1e6,
            end_ms=(tree["start_ns"] + tree["duration_ns"].astype("int64") - t0) / 1e6,
            duration_ms=tree["duration_ns"].astype("int64") / 1e6,
            flag=["flagged by a finding" if s in flagged else "failed" if failed else "ok"
                  for s, failed in zip(tree["span_id"], tree["failed"], strict=True)],
            label=["· " * d + n + ("  ⚑" if s in flagged else "")
                   for d, n, s in zip(tree["depth"], tree["name"], tree["span_id"], strict=True)],
        )
        if len(tree) > MAX_WATERFALL:
            st.caption(f"Waterfall of the first {MAX_WATERFALL} of {len(tree)} spans.")
        st.altair_chart(charts.waterfall(tree.head(MAX_WATERFALL)), width="stretch",
                        theme="streamlit")
        st.dataframe(tree[["label", "agent", "span_type", "step", "flag", "status", "duration_ms",
                           "tokens", "decisions", "message"]].rename(columns={"label": "span",
                                                                              "flag": "state"}),
                     hide_index=True, width="stretch", placeholder=ui.MISSING)

with graph_tab:
    edges = ui.q("handoff_edges", [run["trace_id"]])
    roots = findings[findings["code"] == T.ERROR_CASCADE]["agent"].value_counts().to_dict()
    if edges.empty:
        st.info("No delegation spans in this run, so no hand-off graph.")
    else:
        st.graphviz_chart(charts.handoff_graph(edges, roots), width="stretch")
        st.caption("Edges: delegations, coloured by the worse of overwrite rate and failure rate "
                   "(green < 20 % ≤ amber < 50 % ≤ red), dashed where a delegation failed. "
                   "Red agents: roots of error cascades.")
        st.dataframe(edges, hide_index=True, width="stretch", placeholder=ui.MISSING)
