"""Compare two runs or two commits side by side, with the gate's verdict on each difference
(``verdict.py``: the gate's own Welch and Fisher tests, at its default significance)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from handoffs import taxonomy as T
from handoffs.dashboards import charts, ui
from handoffs.dashboards.verdict import ALPHA, MIN_RUNS, compare_figure, compare_share

# Figures compared, with the direction that is harmful (True: higher is worse).
FIGURES: dict[str, bool] = {
    "findings": True,
    "blocking": True,
    T.OVERWRITE_RATE: True,
    T.AUTONOMOUS_COMPLETION_RATE: False,
    T.ERROR_AMPLIFICATION: True,
    T.COORDINATION_OVERHEAD: True,
    "error_spans": True,
    "tokens": True,
}
VERDICT_ICONS = {"regression": "🔴 regression", "no regression": "🟢 no regression",
                 "too few runs": "– too few runs"}

st.title("Compare")
project, since = ui.window()
mode = st.radio("Compare", ["two commits", "two runs"], horizontal=True)

if mode == "two runs":
    runs = ui.q("run_list", project, 500, since)
    if len(runs) < 2:
        ui.empty_state("pair of runs", ui.WINDOW_HINT)
        st.stop()
    ids = list(runs["run_id"])
    a_col, b_col = st.columns(2)
    a = a_col.selectbox("A (baseline)", ids, index=1, key="run_a")
    b = b_col.selectbox("B (candidate)", ids, index=0, key="run_b")
    side_a, side_b = [a], [b]
else:
    commits = ui.q("commits", project, since)
    if len(commits) < 2:
        ui.empty_state("pair of commits", "Widen the time window, or compare two runs: a run has a "
                       "commit when it ran in CI (GitHub Actions, GitLab CI, Jenkins) or with "
                       "`HANDOFFS_COMMIT` set.")
        st.stop()
    labels = {c: f"{c[:10]} · {br} · {n} run(s)"
              for c, br, n in zip(commits["commit"], commits["branch"], commits["runs"], strict=True)}
    a_col, b_col = st.columns(2)
    a = a_col.selectbox("A (baseline)", list(labels), index=1, format_func=labels.get, key="commit_a")
    b = b_col.selectbox("B (candidate)", list(labels), index=0, format_func=labels.get, key="commit_b")
    side_a, side_b = ui.q("runs_of_commit", project, a), ui.q("runs_of_commit", project, b)

sa, sb, ma, mb = ui.q("compare_sides", side_a, side_b)
if sa.empty or sb.empty:
    ui.empty_state("runs on one of the two sides", ui.WINDOW_HINT)
    st.stop()
hits_a = dict(zip(ma["code"], ma["runs_with_mode"], strict=True))
hits_b = dict(zip(mb["code"], mb["runs_with_mode"], strict=True))
diffs = [compare_figure(name, sa[name].astype(float).tolist(), sb[name].astype(float).tolist(),
                        higher_is_worse=worse)
         for name, worse in FIGURES.items() if sa[name].notna().any() or sb[name].notna().any()]
diffs += [compare_share(f"runs with {charts.mode_label(code)}", hits_a.get(code, 0), len(sa),
                        hits_b.get(code, 0), len(sb))
          for code in charts.mode_order([*hits_a, *hits_b])]
table = pd.DataFrame([d.__dict__ for d in diffs])
regressed = table[table["verdict"] == "regression"]["figure"].tolist()
if regressed:
    st.error(f"B (candidate) regressed against A (baseline) on {', '.join(regressed)} "
             f"(significant at {ALPHA:g}, the gate's test).")
elif (table["verdict"] == "too few runs").all():
    st.info(f"A (baseline) has {len(sa)} run(s), B (candidate) {len(sb)}: differences are shown, "
            "but the gate decides only "
            f"with at least {MIN_RUNS} runs a side (its default `min_runs`): compare two commits "
            "with that many runs each.")
elif (table["verdict"] == "too few runs").any():
    st.success(f"No significant regression of B (candidate) against A (baseline) at {ALPHA:g} "
               "(the gate's test) where "
               f"there were {MIN_RUNS} runs a side to judge; the rest is shown without a verdict.")
else:
    st.success(f"No significant regression of B (candidate) against A (baseline) at {ALPHA:g} "
               "(the gate's test).")
table["verdict"] = table["verdict"].map(VERDICT_ICONS)
st.dataframe(table, hide_index=True, width="stretch", placeholder=ui.MISSING, column_config={
    "a": st.column_config.NumberColumn("A (baseline)", format="%.3f"),
    "b": st.column_config.NumberColumn("B (candidate)", format="%.3f"),
    "worse_by": st.column_config.NumberColumn(
        "B worse than A by", format="%+.3f",
        help="> 0: the candidate is worse than the baseline, in the figure's units"),
    "low": st.column_config.NumberColumn("interval low", format="%+.3f"),
    "high": st.column_config.NumberColumn("interval high", format="%+.3f"),
    "p_value": st.column_config.NumberColumn("p", format="%.3g"),
    "n_a": "runs A", "n_b": "runs B"})
st.caption("Per-run means compared with Welch's test, shares of runs with a failure mode with "
           "Fisher's exact test, both one-sided for B (candidate) worse than A (baseline): the "
           "gate's own comparisons "
           "(handoffs.gate.stats).")

st.subheader("Failure modes, side by side")
both = pd.concat([ma.assign(side="A"), mb.assign(side="B")], ignore_index=True)
if both.empty:
    st.success("Neither side has findings.")
else:
    st.altair_chart(charts.side_by_side(both), width="stretch", theme="streamlit")
    wide = (both.pivot_table(index="code", columns="side", values="findings", fill_value=0)
            .reindex(columns=["A", "B"], fill_value=0))
    st.caption("A: the baseline; B: the candidate.")
    st.dataframe(wide.rename(index=charts.mode_label), width="stretch", placeholder=ui.MISSING)

with st.expander("Per-run figures"):
    st.dataframe(pd.concat([sa.assign(side="A"), sb.assign(side="B")], ignore_index=True),
                 hide_index=True, width="stretch", placeholder=ui.MISSING)
