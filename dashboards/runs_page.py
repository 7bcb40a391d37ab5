"""Runs, like CI builds: status, when, commit, branch, duration, tokens, seed metrics, trend."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import streamlit as st

from handoffs import taxonomy as T
from handoffs.dashboards import charts, queries, ui

LIMITS = [50, 100, 200, 500]  # the "Show" choices: runs listed, newest first

st.title("Runs")

project, since = ui.window()
options = ui.q("filter_options", project)
ui.from_url("branches", options["branches"], [], multi=True)
ui.from_url("tag", [""] + options["tags"], "")
ui.from_url("limit", LIMITS, 100)
left, mid, right = st.columns([3, 2, 1])
branches = left.multiselect("Branch", options["branches"], key="branches",
                            placeholder="all branches")
tag = mid.selectbox("Tag", [""] + options["tags"], key="tag",
                    format_func=lambda t: t or "any tag")
limit = right.selectbox("Show", LIMITS, key="limit", format_func=lambda n: f"latest {n}")
for key, default in (("branches", []), ("tag", ""), ("limit", 100)):
    ui.to_url(key, default)

runs = ui.q("runs", project=project, since=since, branches=branches, tag=tag, limit=limit)
if runs.empty:
    ui.empty_state("runs match these filters", "Widen the time window or clear the filters; runs "
                   "arrive through `handoffs collect` (or `handoffs demo`, `handoffs import`).")
    st.stop()

failed = int((runs["status"] == "failed").sum())
checked = int((runs["status"] != "not checked").sum())
c1, c2, c3, c4 = st.columns(4)
c1.metric("Runs", len(runs))
c2.metric("Failed", failed)
c3.metric("Pass rate", f"{1 - failed / checked:.0%}" if checked else "–",
          help="Checked runs that did not fail: a warning passes, as it does in the gate (exit 0).")
c4.metric("Mean overwrite rate",
          f"{runs[T.OVERWRITE_RATE].mean():.0%}" if runs[T.OVERWRITE_RATE].notna().any() else "–")

st.altair_chart(charts.runs_timeline(runs), width="stretch", theme="streamlit")

table = runs.assign(
    status=runs["status"].map(ui.status_label),
    # Encoded: a run id holding & # + % or ? opened another run (or none).
    # With the sidebar's filters: the link opens in a new tab, a session of its own.
    link="run?" + runs["run_id"].map(
        lambda run_id: urlencode({"run": run_id, **ui.shared_params()}, quote_via=quote, safe="")),
    tokens=runs["tokens"].fillna(0).astype(int),
    findings=runs["findings"].fillna(0).astype(int),
    trend=runs["trend"].map(list),
)
trend_max = max(1, int(table["findings"].max()))
metric_columns = {
    m: st.column_config.NumberColumn(m.replace("_", " "), format="%.2f") for m in queries.SEED_METRICS
    if table[m].notna().any()
}
st.dataframe(
    table[["status", "run_id", "link", "started_at", "commit", "branch", "tags", "duration_s",
           "tokens", "findings", "trend", *metric_columns]],
    hide_index=True,
    width="stretch",
    placeholder=ui.MISSING,
    column_config={
        "status": st.column_config.TextColumn("status", help="gate verdict, else from findings"),
        "run_id": st.column_config.TextColumn("run"),
        "link": st.column_config.LinkColumn("detail", display_text="open ↗"),
        "started_at": st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm"),
        "duration_s": st.column_config.NumberColumn("duration (s)", format="%.3g"),  # 3 ms is not 0.0
        "tags": st.column_config.ListColumn("tags"),
        "findings": st.column_config.NumberColumn("findings"),
        # One scale for every row: each scaled to its own maximum, a row of 0s and 1s drew
        # the same full bars as a row of 0s and 9s.
        "trend": st.column_config.BarChartColumn(
            "findings, last runs on branch", y_min=0, y_max=trend_max,
            help=f"the last {queries.TREND_RUNS} runs, on one scale: 0 to {trend_max} findings"),
        **metric_columns,
    },
)

pick, go = st.columns([3, 1], vertical_alignment="bottom")
labels = dict(zip(runs["run_id"], table["status"], strict=True))
chosen = pick.selectbox("Open a run", runs["run_id"], format_func=lambda r: f"{r} · {labels[r]}")
go.page_link("run_page.py", label="Open run detail", icon="🔎",
             query_params={"run": chosen, **ui.shared_params()})
st.caption("Status comes from the gate's checks when the gate evaluated a run; otherwise a "
           f"finding with confidence ≥ {queries.BLOCKING_CONFIDENCE} fails it and weaker "
           "findings only warn (docs/dashboard.md).")
