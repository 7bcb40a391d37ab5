"""The dashboard's chart specs: what each row and axis stands for."""

from __future__ import annotations

import pandas as pd

from handoffs.dashboards import charts


def test_waterfall_gives_every_span_its_own_row() -> None:
    # Four agents' "execute_tool search_docs" shared one row, drawn under the first one's indent.
    spans = pd.DataFrame({
        "label": ["run", "· search", "· search"], "offset_ms": [0.0, 1.0, 5.0], "end_ms": [9.0, 2.0, 6.0],
        "flag": ["ok", "ok", "failed"], "name": ["run", "search", "search"],
        "agent": ["", "a", "b"], "status": ["Ok", "Ok", "Error"], "duration_ms": [9.0, 1.0, 1.0],
        "order": [0, 1, 2]})
    spec = charts.waterfall(spans).to_dict()
    y = spec["encoding"]["y"]
    assert y["field"] == "order" and y["type"] == "ordinal"
    assert all(label in y["axis"]["labelExpr"] for label in ('"1": "\\u00b7 search"', '"2": "\\u00b7 search"'))
    # A height per row: a fixed total, legend and axis included, left a short trace's rows a
    # few pixels each and dropped every other label.
    assert spec["height"] == {"step": charts.ROW}


def test_a_long_agent_name_is_cut_in_the_graph_and_whole_in_its_tooltip() -> None:
    long = "supervisor_" + "x" * 180
    edges = pd.DataFrame({"source": [long], "target": ["coder"], "delegations": [1],
                          "overwrites": [0], "overwrite_rate": [0.0], "failures": [0]})
    dot = charts.handoff_graph(edges, {long: 1})
    label = f'"{long[:charts.MAX_NODE_LABEL - 1]}…\\n1 cascade root(s)"'
    assert f'"{long}" [label={label}, tooltip="{long}"' in dot
    assert '"coder" [label="coder", tooltip="coder"]' in dot


def test_an_edge_is_coloured_by_its_failures_as_by_its_overwrites() -> None:
    # A hand-off that failed every time, never overwritten, was drawn green like a healthy one.
    edges = pd.DataFrame({"source": ["sup", "sup", "sup"], "target": ["coder", "tester", "writer"],
                          "delegations": [2, 4, 10], "overwrites": [0, 3, 0],
                          "overwrite_rate": [0.0, 0.75, 0.0], "failures": [2, 0, 3]})
    edge = {line.split(" [")[0].strip(): line for line in charts.handoff_graph(edges, {}).splitlines()
            if " -> " in line}
    assert 'color="#e5484d"' in edge['"sup" -> "coder"'] and "style=dashed" in edge['"sup" -> "coder"']
    assert "2 failed" in edge['"sup" -> "coder"']
    assert 'color="#e5484d"' in edge['"sup" -> "tester"'] and "dashed" not in edge['"sup" -> "tester"']
    assert 'color="#f5a524"' in edge['"sup" -> "writer"'] and "style=dashed" in edge['"sup" -> "writer"']
