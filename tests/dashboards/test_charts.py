"""The dashboard's chart specs: what each row and axis stands for."""

from __future__ import annotations

import pandas as pd

from handoffs.dashboards import charts


def test_waterfall_gives_every_span_its_own_row() -> None:
    # Four agents' "execute_tool search_docs" shared one row, drawn under the first one's indent.
    spans = pd.DataFrame({
        "label": ["run", "· search", "· search"], "offset_ms": [0.0, 1.0, 5.0], "end_ms": [9.0, 2.0, 6.0],
        "flag": ["ok", "ok", "error status"], "name": ["run", "search", "search"],
        "agent": ["", "a", "b"], "status": ["Ok", "Ok", "Error"], "duration_ms": [9.0, 1.0, 1.0],
        "order": [0, 1, 2]})
    spec = charts.waterfall(spans).to_dict()
    y = spec["encoding"]["y"]
    assert y["field"] == "order" and y["type"] == "ordinal"
    assert all(label in y["axis"]["labelExpr"] for label in ('"1": "\\u00b7 search"', '"2": "\\u00b7 search"'))
    assert spec["height"] >= 3 * 22
