"""The dashboard's charts: Altair specs and the hand-off graph in Graphviz DOT.

Charts leave background, fonts and gridlines to Streamlit's theme (``theme="streamlit"``), so
they read in light and dark mode; the few fixed colours are mid-tones visible on both.
"""

from __future__ import annotations

import json

import altair as alt
import pandas as pd

from handoffs import taxonomy as T

from .ui import STATUS_COLORS

_STATUS_SCALE = alt.Scale(domain=list(STATUS_COLORS), range=list(STATUS_COLORS.values()))
# Streamlit fits a chart's axes and legend inside its height: room for them on top of the rows
# (without it a five-row heatmap drew its rows 9 px high and dropped their labels).
_AXES = 60
_SLANTED = 90  # a heatmap's slanted column labels
# "failed": an error status, or a delegation that says it failed (``queries._FAILED_SQL``).
FLAG_COLORS = {"flagged by a finding": "#e5484d", "failed": "#f5a524", "ok": "#3e63dd"}
ROW = 22  # a waterfall row, in pixels
MAX_NODE_LABEL = 32  # characters of an agent's name drawn in the graph (the tooltip has it all)


def mode_label(code: str) -> str:
    """``FM-3.1 Premature termination``: code and name, for axes and legends."""
    mode = T.BY_CODE.get(code)
    return f"{code} {mode.name}" if mode else code


def mode_order(codes: list[str]) -> list[str]:
    """Codes in the taxonomy's order (MAST first), unknown ones after: the paper's row order."""
    order = {m.code: i for i, m in enumerate(T.MODES)}
    return sorted(set(codes), key=lambda c: (order.get(c, len(order)), c))


def _time_span(times: pd.Series) -> str:
    first, last = pd.Timestamp(times.min()), pd.Timestamp(times.max())
    return f"started {first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S}"


def runs_timeline(runs: pd.DataFrame) -> alt.Chart:
    """Findings per run over time, coloured by status: the build history strip."""
    data = runs[["run_id", "started_at", "status", "findings", "commit", "branch"]].copy()
    data["findings"] = data["findings"].fillna(0)
    return alt.Chart(data).mark_circle(size=140, opacity=0.9).encode(
        # Vega's multi-scale labels (each in its tick's unit: "11:50", ":30", ".250") under a
        # title with the span: a fixed "%m-%d %H:%M" repeated one label at ticks under a minute.
        x=alt.X("started_at:T", title=_time_span(data["started_at"]), axis=alt.Axis(labelAngle=0)),
        y=alt.Y("findings:Q", title="findings", scale=alt.Scale(domainMin=0, nice=True)),
        color=alt.Color("status:N", scale=_STATUS_SCALE, title="status"),
        tooltip=["run_id", "status", "findings", "commit", "branch",
                 alt.Tooltip("started_at:T", format="%Y-%m-%d %H:%M")],
    ).properties(height=180)


def waterfall(spans: pd.DataFrame) -> alt.Chart:
    """The trace as a waterfall: one row per span from its start to its end, tree-indented."""
    data = spans[["label", "offset_ms", "end_ms", "flag", "name", "agent", "status",
                  "duration_ms", "order"]].copy()
    # Rows are keyed by tree order, not by label: spans of the same name (every agent's
    # execute_tool search) would otherwise share one row. The axis shows each row's label.
    labels = json.dumps({str(o): label for o, label in zip(data["order"], data["label"], strict=True)})
    return alt.Chart(data).mark_bar(cornerRadius=2).encode(
        x=alt.X("offset_ms:Q", title="ms since the run started"),
        x2="end_ms:Q",
        y=alt.Y("order:O", sort="ascending", title=None,
                axis=alt.Axis(labelLimit=300, labelExpr=f"{labels}[datum.value]")),
        # The legend above the bars: at its side it took the width a narrow window needs for them.
        color=alt.Color("flag:N", title=None, legend=alt.Legend(orient="top", direction="vertical"),
                        scale=alt.Scale(domain=list(FLAG_COLORS), range=list(FLAG_COLORS.values()))),
        tooltip=["name", "agent", "status", "flag", alt.Tooltip("duration_ms:Q", format=",.1f")],
    # A height per row: a fixed total fitted the legend and axis in first, and a short trace
    # kept a few pixels for its bars (and dropped every other label).
    ).properties(height=alt.Step(ROW))


def mode_heatmap(cells: pd.DataFrame, group_title: str, value: str = "share",
                 value_format: str = ".0%", chronological: bool = False) -> alt.LayerChart:
    """MAST's figure: failure modes (rows) by group (columns); a cell is the share of runs
    with the mode (or another ``value`` column, such as a count of findings). Columns in name
    order, or ``chronological`` (runs: oldest to newest by ``latest_run``)."""
    data = cells.copy()
    data["mode"] = data["code"].map(mode_label)
    rows = [mode_label(c) for c in mode_order(list(data["code"]))]
    top = float(data[value].max()) if len(data) else 1.0
    domain = [0, 1] if value == "share" else [0, max(top, 1.0)]
    base = alt.Chart(data).encode(
        x=alt.X("grp:N", title=group_title, axis=alt.Axis(labelAngle=-30, labelLimit=160),
                sort=alt.EncodingSortField("latest_run", op="max") if chronological else "ascending"),
        y=alt.Y("mode:N", sort=rows, title=None, axis=alt.Axis(labelLimit=300)),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", title=value.replace("_", " "),
                        scale=alt.Scale(scheme="orangered", domain=domain)),
        tooltip=[c for c in ("grp", "mode", "runs_with_mode", "runs_in_group", "findings")
                 if c in data.columns] + [alt.Tooltip(f"{value}:Q", format=value_format)],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text(f"{value}:Q", format=value_format),
        color=alt.condition(f"datum['{value}'] > {domain[1] / 2}", alt.value("white"),
                            alt.value("black")),
    )
    return (rect + text).properties(height=_AXES + _SLANTED + 28 * len(rows))


def trend_lines(data: pd.DataFrame, x: str, y: str, series: str, y_title: str,
                y_format: str = ".0%") -> alt.Chart:
    """One line per series over time (failure modes or agents)."""
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X(f"{x}:T", title=None),
        y=alt.Y(f"{y}:Q", title=y_title, axis=alt.Axis(
            format=y_format, tickMinStep=1 if y_format.endswith(".0f") else alt.Undefined)),
        color=alt.Color(f"{series}:N", title=None),
        tooltip=[series, alt.Tooltip(f"{x}:T"), alt.Tooltip(f"{y}:Q", format=y_format)],
    ).properties(height=260)


def ranked_bars(data: pd.DataFrame, category: str, value: str, title: str,
                value_format: str = ",.2f") -> alt.Chart:
    """A horizontal bar per agent, largest first (who overwrites most, whose errors cascade)."""
    # An explicit bar size: under Streamlit's theme, horizontal bars otherwise shrink to a line.
    return alt.Chart(data).mark_bar(color="#e5484d", size=18).encode(
        x=alt.X(f"{value}:Q", title=title),
        y=alt.Y(f"{category}:N", sort="-x", title=None),
        tooltip=list(data.columns),
    ).properties(height=_AXES + 30 * len(data))


def side_by_side(data: pd.DataFrame) -> alt.Chart:
    """Findings per mode for two sides of a comparison, grouped bars."""
    data = data.copy()
    data["mode"] = data["code"].map(mode_label)
    return alt.Chart(data).mark_bar(size=12).encode(
        y=alt.Y("mode:N", title=None, sort=[mode_label(c) for c in mode_order(list(data["code"]))],
                axis=alt.Axis(labelLimit=260)),
        yOffset="side:N",
        x=alt.X("findings:Q", title="findings"),
        color=alt.Color("side:N", title=None,
                        scale=alt.Scale(domain=["A", "B"], range=["#3e63dd", "#e5484d"])),
        tooltip=["side", "mode", "findings", "runs_with_mode"],
    ).properties(height=_AXES + 40 * data["code"].nunique())


def _rate_color(rate: float) -> str:
    """Green below 20 % (of overwrites, or failures), amber to 50 %, red above (the seeds report
    65-81 % overwrites)."""
    if rate >= 0.5:
        return "#e5484d"
    if rate >= 0.2:
        return "#f5a524"
    return "#30a46c"


def _quote(*lines: str) -> str:
    """A DOT string literal; several lines are joined with DOT's centred line break."""
    escaped = (str(t).replace("\\", "\\\\").replace('"', '\\"') for t in lines)
    return '"' + "\\n".join(escaped) + '"'


def handoff_graph(edges: pd.DataFrame, cascade_roots: dict[str, int]) -> str:
    """Agents as nodes, delegations as edges, in DOT.

    An edge is labelled with its delegations, overwrite rate and failures and coloured by the
    worse of its overwrite rate and its failure rate (failed / delegations), dashed when any
    delegation on it failed; an agent whose errors started a cascade is drawn red with the count.
    """
    lines = [
        "digraph handoffs {",
        '  bgcolor="transparent"; rankdir=LR; pad=0.2;',
        '  node [shape=box, style="rounded,filled", fillcolor="#3e63dd", fontcolor="white", '
        'color="#3e63dd", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10, fontcolor="#8b8d98"];',
    ]
    agents = sorted(set(edges["source"]) | set(edges["target"]) | set(cascade_roots))
    for agent in agents:
        n = cascade_roots.get(agent, 0)
        # A long name made a node wider than the chart, and every label shrank to fit it.
        name = agent if len(agent) <= MAX_NODE_LABEL else agent[:MAX_NODE_LABEL - 1] + "…"
        attrs = f"label={_quote(name, *([f'{n} cascade root(s)'] if n else []))}, tooltip={_quote(agent)}"
        if n:
            attrs += ', fillcolor="#e5484d", color="#e5484d"'
        lines.append(f"  {_quote(agent)} [{attrs}];")
    for e in edges.itertuples(index=False):
        rate, failed, delegations = float(e.overwrite_rate), int(e.failures), int(e.delegations)
        label = f"{delegations}× · overwrite {rate:.0%}"
        if failed:
            label += f" · {failed} failed"
        width = 1 + min(4, delegations // 5)
        # A hand-off that fails every time was drawn green when nobody overwrote it.
        color = _rate_color(max(rate, failed / delegations if delegations else 0.0))
        lines.append(f"  {_quote(e.source)} -> {_quote(e.target)} [label={_quote(label)}, "
                     f'color="{color}", penwidth={width}{", style=dashed" if failed else ""}];')
    lines.append("}")
    return "\n".join(lines)
