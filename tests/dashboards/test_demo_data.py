"""The dashboard over real pipeline output: the demo's simulated team, judged by the detectors.

The hand-made seed (dashboard_seed.py) pins exact figures; this checks that what the demo,
the detectors and the metrics really write is what the pages read and show.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from handoffs import taxonomy as T
from handoffs.dashboards import APP_PATH, ui
from handoffs.demo import DemoRun, simulate
from handoffs.detectors.metrics import compute_metrics
from handoffs.store import Store
from handoffs.store.url import ENV_STORE

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[DemoRun]]:
    runs = simulate(10, seed=11, inject="overwrite,error-cascade", failure_rate=0.8, store=store)
    compute_metrics(store)
    monkeypatch.setenv(ENV_STORE, f"chdb://{store.url.path}?database={store.url.database}")
    yield runs


def run_app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    if page:
        for key, value in query.items():
            at.query_params[key] = value
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_runs_page_lists_every_demo_run_with_its_metrics(demo: list[DemoRun], store: Store) -> None:
    table = run_app().dataframe[0].value
    assert set(table["run_id"]) == {r.run_id for r in demo}
    assert (table["tokens"] > 0).all()
    assert table[T.OVERWRITE_RATE].notna().all()  # the detectors' run metrics reached the page
    flagged = {r["run_id"] for r in store.query(
        "SELECT DISTINCT run_id FROM handoffs_findings WHERE confidence >= 0.5")}
    failed = set(table[table["status"] == "❌ failed"]["run_id"])
    assert flagged and flagged <= failed


def test_run_detail_shows_the_detectors_first_finding(demo: list[DemoRun], store: Store) -> None:
    injected = next(r for r in demo if any(i["code"] == T.ERROR_CASCADE for i in r.injected))
    top = store.query("SELECT code, evidence FROM handoffs_findings FINAL WHERE run_id = {r:String} "
                      "ORDER BY confidence >= 0.5 DESC, confidence DESC, step LIMIT 1",
                      {"r": injected.run_id})[0]
    at = run_app("run_page.py", run=injected.run_id)
    assert at.expander[0].label.split(" ")[1] == top["code"]
    # Shown as written: the Markdown source escapes what would format it (ui.literal).
    assert any(ui.literal(top["evidence"]) in str(m.value) for m in at.markdown)
    graph = at.get("graphviz_chart")[0].proto.spec
    assert all(f'"{w}"' in graph for w in injected.workers)
