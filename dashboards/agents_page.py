"""Agents: who overwrites most, whose errors cascade furthest, and each agent's and pair's
metrics and failure modes over time."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from handoffs import taxonomy as T
from handoffs.dashboards import charts, ui


def ranking(title: str, frame: pd.DataFrame, category: str, value: str, what: str) -> None:
    """A ranked bar chart of agents and its table, or how to get data for it."""
    st.subheader(title)
    if frame.empty:
        ui.empty_state(what)
        return
    st.altair_chart(charts.ranked_bars(frame.fillna({value: 0}), category, value,
                                       value.replace("_", " "), ",.2g"),
                    width="stretch", theme="streamlit")
    labels = {column: column.replace("_", " ") for column in frame.columns}  # not runs_affected
    st.dataframe(frame, hide_index=True, width="stretch", placeholder=ui.MISSING, column_config={
        **labels, "overwrite_rate": st.column_config.NumberColumn("overwrite rate", format="percent")})


st.title("Agents")
project, since = ui.window()

left, right = st.columns(2)
with left:
    ranking("Which supervisor overwrites most", ui.q("supervisor_overwrites", project, since),
            "supervisor", "overwrites", "overwrites")
with right:
    cas = ui.q("cascade_roots", project, since)
    ranking("Whose errors cascade furthest", cas, "agent",
            "max_amplification" if cas["max_amplification"].notna().any() else "cascades",
            "error cascades")
    st.caption("Cascades: error-cascade findings whose root cause is the agent. "
               "Amplification: erroneous spans per root error, from the detectors' metrics.")

st.subheader("Failure modes per agent")
modes = ui.q("agent_modes", project, since)
if modes.empty:
    ui.empty_state("findings")
else:
    per_agent = modes.groupby(["agent", "code"], as_index=False)[["findings", "runs"]].sum()
    st.altair_chart(
        charts.mode_heatmap(per_agent.rename(columns={"agent": "grp", "runs": "runs_with_mode"}),
                            "agent", value="findings", value_format=",.0f"),
        width="stretch", theme="streamlit")
    daily = modes.groupby(["day", "agent"], as_index=False)["findings"].sum()
    st.altair_chart(charts.trend_lines(daily, "day", "findings", "agent", "findings per day", ",.0f"),
                    width="stretch", theme="streamlit")

st.subheader("Metrics over time")
scope_name = st.radio("Per", ["agent", "agent pair"], horizontal=True)
scope = T.SCOPE_AGENT if scope_name == "agent" else T.SCOPE_PAIR
metrics = ui.q("agent_metrics", project, since, scope)
if metrics.empty:
    ui.empty_state(f"{scope_name} metrics")
else:
    names = sorted(metrics["metric"].unique())
    default = names.index(T.OVERWRITE_RATE) if T.OVERWRITE_RATE in names else 0
    metric = st.selectbox("Metric", names, index=default)
    chosen = metrics[metrics["metric"] == metric]
    st.altair_chart(charts.trend_lines(chosen, "day", "value", "subject", f"{metric} (daily mean)",
                                       ",.2f"), width="stretch", theme="streamlit")
    summary = (chosen.assign(total=chosen["value"] * chosen["runs"])
               .groupby("subject", as_index=False)
               .agg(runs=("runs", "sum"), total=("total", "sum"), last=("value", "last")))
    summary = summary.assign(mean=summary["total"] / summary["runs"])[["subject", "runs", "mean", "last"]]
    st.dataframe(summary.sort_values("mean", ascending=False), hide_index=True,
                 width="stretch", placeholder=ui.MISSING)
