"""Failure modes: the MAST heatmap (modes by system, agent or run) and each mode's trend."""

from __future__ import annotations

import streamlit as st

from handoffs.dashboards import charts, queries, ui

HEATMAP_COLUMNS = 40  # groups the heatmap shows at most

st.title("Failure modes")
project, since = ui.window()

by = st.radio("Modes by", list(queries.HEATMAP_GROUPS), horizontal=True,
              format_func=lambda g: {"system": "system", "agent": "agent", "run": "run (latest)"}[g])
cells = ui.q("mode_heatmap", project, since, by, HEATMAP_COLUMNS)
if cells.empty:
    ui.empty_state("findings")
    st.stop()
st.altair_chart(charts.mode_heatmap(cells, by, chronological=by == "run"), width="stretch",
                theme="streamlit")
st.caption("A cell is the share of runs that show the mode at least once: runs of that "
           "system, or all runs in the window when grouped by agent; by run it is 100 % or empty. "
           f"Columns: at most {HEATMAP_COLUMNS}, the systems or agents with the most findings, or "
           "the latest runs with findings, oldest to newest. "
           "Rows follow MAST's order (Cemri et al., 2025), then the seeds' delegation modes. "
           f"It covers the window's latest {queries.HEATMAP_RUNS:,} runs at most; the trend below "
           "covers every run.")

st.subheader("Trend per mode")
trend = ui.q("mode_trend", project, since)
codes = charts.mode_order(list(trend["code"]))
picked = st.multiselect("Modes", codes, default=codes[:6], format_func=charts.mode_label)
shown = trend[trend["code"].isin(picked)].assign(mode=lambda d: d["code"].map(charts.mode_label))
if shown.empty:
    st.info("Pick at least one mode.")
else:
    st.altair_chart(charts.trend_lines(shown, "day", "share", "mode", "share of the day's runs"),
                    width="stretch", theme="streamlit")
totals = (trend.groupby("code", as_index=False)[["runs_with_mode"]].sum()
          .assign(mode=lambda d: d["code"].map(charts.mode_label))
          .sort_values("runs_with_mode", ascending=False))
st.dataframe(totals[["mode", "runs_with_mode"]], hide_index=True, width="stretch",
             placeholder=ui.MISSING)
