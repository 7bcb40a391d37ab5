"""Every dashboard page rendered by Streamlit's AppTest on a seeded store: what it shows.

AppTest runs the app in this process, so the app opens the test's own database in the
process's chDB directory by URL (``chdb://dir?database=...``), or reaches the same database
through the store's ClickHouse HTTP endpoint (``clickhouse://``): both engines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from dashboard_seed import (
    BAD,
    CASCADE_EVIDENCE,
    CONTEXT_MESSAGE,
    OVERWRITE_EVIDENCE,
    OVERWRITE_REASON,
    PROJECT,
    RUNS,
    seed,
)
from streamlit.testing.v1 import AppTest

from handoffs import conventions as C
from handoffs import taxonomy as T
from handoffs.dashboards import APP_PATH
from handoffs.store import SpanBatch, Store
from handoffs.store.sharing import owned_endpoint
from handoffs.store.url import ENV_STORE

TIMEOUT = 60


def store_url(store: Store, engine: str) -> str:
    if engine == "chdb":
        return f"chdb://{store.url.path}?database={store.url.database}"
    ep = owned_endpoint(store.url.path)
    assert ep is not None
    return (f"clickhouse://default:{ep.password}@{ep.host}:{ep.port}/{store.url.database}"
            "?compress=0")


@pytest.fixture(params=["chdb", "http"])
def app_url(request: pytest.FixtureRequest, store: Store,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A seeded store's URL, set as ``$HANDOFFS_STORE`` for the app, on each engine."""
    seed(store)
    url = store_url(store, request.param)
    monkeypatch.setenv(ENV_STORE, url)
    yield url


def page(name: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT)
    at.run()
    if name:
        for key, value in query.items():
            at.query_params[key] = value
        at.switch_page(name)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def old_runs(store: Store, prefix: str, count: int, first_trace: int = 0) -> None:
    """``count`` bare run spans ten days old, run ids ``{prefix}-0``, ``{prefix}-1``..."""
    batch = SpanBatch()
    start = time.time_ns() - 10 * 86_400 * 10**9
    for i in range(count):
        batch.append(trace_id=f"{i + first_trace:032x}", span_id="0" * 15 + "1", name=f"handoffs.run {prefix}",
                     start_ns=start + i, duration_ns=1, attributes={
                         C.SPAN_TYPE: C.SpanType.RUN.value, C.RUN_ID: f"{prefix}-{i}"})
    store.insert_spans(batch)


def text_of(at: AppTest) -> str:
    """Everything the page wrote as text: markdown, captions, metrics, alerts, labels."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "title", "subheader", "info", "success", "warning",
                 "error", "code"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [e.label for e in at.expander]
    parts += [t.label for t in at.tabs]
    return "\n".join(parts)


def test_runs_page_lists_runs_with_status_and_ci_metadata(app_url: str) -> None:
    at = page()
    table = at.dataframe[0].value
    assert set(table["run_id"]) == {r.run_id for r in RUNS}
    status = dict(zip(table["run_id"], table["status"], strict=True))
    assert status == {"run-bad": "❌ failed", "run-ok": "✅ passed", "run-new": "⚠️ warning"}
    row = table.set_index("run_id").loc["run-bad"]
    assert row["commit"] == BAD.commit and row["branch"] == "main"
    assert row["tokens"] == 174 and row["findings"] == 2
    assert row[T.OVERWRITE_RATE] == pytest.approx(0.5)
    assert list(row["trend"]) == [0, 2]  # run-ok then run-bad on main
    text = text_of(at)
    assert "Runs 3" in text and "Failed 1" in text


def test_runs_page_filters_by_branch_and_tag(app_url: str) -> None:
    at = page()
    at.multiselect(key="branches").select("feature/x").run()
    assert list(at.dataframe[0].value["run_id"]) == ["run-new"]
    at.multiselect(key="branches").unselect("feature/x").run()
    at.selectbox(key="tag").select("canary").run()
    assert list(at.dataframe[0].value["run_id"]) == ["run-bad"]


def test_run_detail_shows_failing_check_findings_evidence_and_context(app_url: str) -> None:
    at = page("run_page.py", run=BAD.run_id)
    text = text_of(at)
    assert f"❌ failed · {BAD.run_id}" in text
    checks = at.dataframe[0].value
    assert list(checks["check"]) == ["error_cascades == 0", "overwrite_rate <= 0.2"]  # failing first
    assert checks.iloc[0]["verdict"] == "❌ fail"
    # Two gates judged this run: the latest is shown, the earlier one is a choice away.
    [gate] = [box for box in at.selectbox if box.label.startswith("Gate (2 judged")]
    assert gate.value == "g1" and "gate `g1`" in text and "Checks (2)" in text
    gate.set_value("g0").run()
    assert list(at.dataframe[0].value["verdict"]) == ["✅ pass"] and "old.toml" in text_of(at)
    labels = [e.label for e in at.expander]
    assert labels[0].startswith("❌ error-cascade Error cascade · coder · step 3")
    assert labels[1].startswith("❌ overwrite")
    assert CASCADE_EVIDENCE in text and OVERWRITE_EVIDENCE in text
    # The first finding's context: its span, marked, with the message it carried.
    context = at.expander[0].dataframe[0].value
    marked = context[context["at"] == "▶"]
    assert list(marked["name"]) == ["chat gpt"] and CONTEXT_MESSAGE in marked.iloc[0]["message"]


def test_run_detail_trace_marks_flagged_spans_and_draws_the_handoff_graph(app_url: str) -> None:
    at = page("run_page.py", run=BAD.run_id)
    tree = next(d.value for d in at.dataframe if "span" in d.value.columns)
    flagged = [s for s in tree["span"] if s.endswith("⚑")]
    assert len(flagged) == 2 and any("transfer_to_coder" in s for s in flagged)
    assert tree.iloc[0]["span"].startswith("handoffs.run")  # tree order: root first
    graph = at.get("graphviz_chart")[0].proto.spec
    assert '"planner" -> "coder"' in graph and "overwrite 100%" in graph
    assert "1 cascade root(s)" in graph
    # The supervisor's reason stands next to its decision (it was shown nowhere).
    delegated = tree.set_index("span")["decisions"]
    assert f"overwrote ({OVERWRITE_REASON})" in delegated[next(s for s in flagged if "transfer_to_coder" in s)]


def test_agents_page_names_the_overwriting_supervisor_and_cascading_worker(app_url: str) -> None:
    at = page("agents_page.py")
    frames = [d.value for d in at.dataframe]
    sup = next(f for f in frames if "supervisor" in f.columns)
    assert sup.iloc[0]["supervisor"] == "planner" and sup.iloc[0]["overwrites"] == 1
    cas = next(f for f in frames if "cascades" in f.columns)
    assert cas.iloc[0]["agent"] == "coder" and cas.iloc[0]["max_amplification"] == 2.0
    assert len(at.get("vega_lite_chart")) >= 3


def test_failure_modes_page_heatmap_by_system_and_agent(app_url: str) -> None:
    at = page("modes_page.py")
    spec = at.get("vega_lite_chart")[0].proto
    assert "orangered" in spec.spec
    totals = at.dataframe[0].value
    assert set(totals["mode"]) == {"error-cascade Error cascade",
                                   "overwrite Supervisor overwrote sub-agent output",
                                   "FM-1.3 Step repetition"}
    at.radio[0].set_value("agent").run()
    assert not at.exception


def test_compare_page_two_runs_and_two_commits(app_url: str) -> None:
    at = page("compare_page.py")
    at.radio[0].set_value("two runs").run()
    at.selectbox(key="run_a").select("run-ok").run()
    at.selectbox(key="run_b").select("run-bad").run()
    table = at.dataframe[0].value.set_index("figure")
    assert table.loc["findings", "worse_by"] == 2 and table.loc["findings", "verdict"] == "– too few runs"
    # One run a side is below the gate's minimum: Fisher's test could never find a regression
    # there, so no green verdict either (it showed "no regression" for every pair of runs).
    share = table.loc["runs with error-cascade Error cascade"]
    assert share["worse_by"] == 1.0 and share["verdict"] == "– too few runs"
    assert "gate decides only with at least 5 runs a side" in text_of(at)
    assert "No significant regression" not in text_of(at)
    modes = at.dataframe[1].value
    assert modes.loc["error-cascade Error cascade", "B"] == 1
    assert modes.loc["error-cascade Error cascade", "A"] == 0
    at.radio[0].set_value("two commits").run()
    assert not at.exception
    assert "runs A" in at.dataframe[0].value.columns or "n_a" in at.dataframe[0].value.columns


def test_empty_store_shows_first_run_page(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_STORE, store_url(store, "chdb"))
    at = page()
    text = text_of(at)
    assert "This store has no runs yet" in text
    assert "handoffs demo --store" in text
    assert not at.dataframe


def test_unreachable_store_is_a_message_not_a_stack_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_STORE, "clickhouse://dash:s3cretPW@127.0.0.1:9/nowhere")
    at = page()
    text = text_of(at)
    # The page may be on a shared screen: the URL without its password (it showed it whole).
    assert "Cannot read the store at `clickhouse://dash:PASSWORD@127.0.0.1:9/nowhere`" in text
    assert "s3cretPW" not in text


def test_a_hundred_runs_list_over_both_engines(app_url: str, store: Store) -> None:
    """The runs page passes every listed run's ids as parameters: over HTTP more than 4 KB of
    them travel as form fields, which the store's endpoint must read."""
    old_runs(store, "bulk", 120)
    table = page().dataframe[0].value
    assert len(table) == 100  # the default "latest 100"
    assert set(table["run_id"]) >= {r.run_id for r in RUNS}


def test_a_dashboard_pinned_to_a_project_shows_no_other_team(app_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from handoffs.dashboards import ENV_PROJECT

    monkeypatch.setenv(ENV_PROJECT, "another-team")
    at = page()
    shown = {r.run_id for r in RUNS} & set(text_of(at).split())
    tables = [set(df.value.get("run_id", [])) for df in at.dataframe]
    assert not shown and not any(t & {r.run_id for r in RUNS} for t in tables)
    assert "project" not in {s.key for s in at.selectbox}  # no switching to another project
    monkeypatch.setenv(ENV_PROJECT, PROJECT)
    at = page()
    assert set(at.dataframe[0].value["run_id"]) == {r.run_id for r in RUNS}
    assert f"Project: `{PROJECT}`" in text_of(at)


def test_a_pinned_dashboard_opens_no_other_projects_run_by_url(app_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from handoffs.dashboards import ENV_PROJECT

    # Run ids are easy to guess: /run?run=ID showed another project's whole run.
    monkeypatch.setenv(ENV_PROJECT, "another-team")
    at = page("run_page.py", run="run-bad")
    assert "run-bad" not in {sb.value for sb in at.selectbox}
    assert not at.dataframe and not at.tabs
    monkeypatch.setenv(ENV_PROJECT, PROJECT)
    at = page("run_page.py", run="run-bad")
    assert at.selectbox[0].value == "run-bad"



def test_a_link_opens_its_run_outside_the_window_and_the_picker_follows_the_window(
        app_url: str, store: Store) -> None:
    old_runs(store, "old", 2, first_trace=7)
    at = page()
    at.selectbox(key="window").select("last 24 hours").run()
    at.query_params["run"] = "old-0"
    at.switch_page("run_page.py").run()
    assert not at.exception
    picker = next(box for box in at.selectbox if box.label == "Run")
    assert picker.value == "old-0" and "old-1" not in picker.options  # the window's runs, and the linked one
    assert "is opened by its link" in text_of(at)


def test_text_from_traces_is_shown_as_written_not_as_markdown(app_url: str, store: Store) -> None:
    import pyarrow as pa

    from handoffs.store import schema

    # A finding's evidence quotes what agents wrote: read as Markdown it rendered an image that
    # called a URL (a beacon), links, LaTeX and colours.
    evidence = "reason: ![pix](http://127.0.0.1:9/t.png) $x$ and :red[red] **bold** <b>x</b>"
    mode = T.BY_CODE[T.STEP_REPETITION]
    store.insert(schema.FINDINGS_TABLE, pa.table({
        "project": [PROJECT], "run_id": [BAD.run_id], "trace_id": [BAD.trace_id], "code": [mode.code],
        "name": [mode.name], "category": [mode.category], "agent": ["**boss**"],
        "step": pa.array([9], pa.int32()), "span_id": ["0" * 16], "confidence": [0.95],
        "evidence": [evidence], "detector": ["seed"], "detector_version": ["0"]}))
    at = page("run_page.py", run=BAD.run_id)
    shown = [m.value for m in at.markdown if "Evidence" in m.value and "pix" in m.value]
    assert shown == [r"**Evidence:** reason\: \!\[pix\](http\://127.0.0.1\:9/t.png) \$x\$ and \:red\[red\] "
                     r"\*\*bold\*\* \<b\>x\</b\>"]
    assert any(e.label.startswith(r"❌ FM-1.3 Step repetition · \*\*boss\*\*") for e in at.expander)


def test_a_store_that_fails_after_the_first_query_is_a_message_not_a_traceback(
        app_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from handoffs.dashboards import queries
    from handoffs.errors import StoreError

    # Deleted while the dashboard ran: its state still answered (from part metadata), then the
    # sidebar's query raised outside the page's error handling, and every page was a traceback.
    def gone(*args: object, **kwargs: object) -> None:
        raise StoreError("query failed on the embedded store: FILE_DOESNT_EXIST")

    monkeypatch.setattr(queries, "filter_options", gone)
    at = page()
    assert not at.exception
    assert any("The store could not answer this page: query failed" in str(e.value) for e in at.error)


def test_a_runs_link_encodes_its_id(app_url: str, store: Store) -> None:
    # "run?run=" + id: an id holding ? & # + or % opened another run, or none.
    old_runs(store, "a/<b>?x=1&y=#0+%", 1, first_trace=500)
    table = page().dataframe[0].value.set_index("run_id")
    assert table.loc["a/<b>?x=1&y=#0+%-0", "link"] == "run?run=a%2F%3Cb%3E%3Fx%3D1%26y%3D%230%2B%25-0"


def test_an_unknown_run_id_keeps_its_url_while_the_latest_run_is_shown(app_url: str) -> None:
    # The URL was rewritten to the fallback run: a reload or a shared link showed it, unwarned.
    at = page("run_page.py", run="does-not-exist")
    assert any("No run `does-not-exist`" in str(w.value) for w in at.warning)
    assert at.query_params["run"] == "does-not-exist"


def test_missing_values_are_a_dash_and_the_sparklines_share_one_scale(app_url: str) -> None:
    import json

    at = page()
    runs = at.dataframe[0].proto
    assert runs.placeholder == "—"  # Streamlit wrote "None" in every empty cell
    trend = json.loads(runs.columns)["trend"]
    # Each row scaled to its own maximum: a row of 0s and 1s drew the bars of a row of 0s and 9s.
    assert (trend["type_config"]["y_min"], trend["type_config"]["y_max"]) == (0, 2)
    at = page("run_page.py", run=BAD.run_id)
    assert at.dataframe and all(d.proto.placeholder == "—" for d in at.dataframe)


def test_the_checks_tab_counts_the_checks_of_the_gate_it_shows(app_url: str) -> None:
    at = page("run_page.py", run=BAD.run_id)
    assert at.tabs[0].label.startswith("Checks (2)")
    next(box for box in at.selectbox if box.label.startswith("Gate (")).set_value("g0").run()
    assert at.tabs[0].label.startswith("Checks (1)")  # it still counted the latest gate's two


def test_a_delegation_failed_by_its_status_attribute_is_drawn_failed(app_url: str, store: Store) -> None:
    batch = SpanBatch()
    ok = RUNS[0]
    batch.append(trace_id=ok.trace_id, span_id=f"{ok.trace_id[:4]}{99:012x}", name=C.delegation_span_name("tester"),
                 parent_span_id=f"{ok.trace_id[:4]}{2:012x}", start_ns=time.time_ns(), duration_ns=1,
                 status_code="Ok", attributes={
                     C.SPAN_TYPE: C.SpanType.DELEGATION.value, C.SOURCE_AGENT: "planner",
                     C.TARGET_AGENT: "tester", C.DELEGATION_STATUS: C.DelegationStatus.FAILED.value})
    store.insert_spans(batch)
    at = page("run_page.py", run=ok.run_id)
    tree = next(d.value for d in at.dataframe if "span" in d.value.columns)
    state = dict(zip(tree["span"].str.split().str[-1], tree["state"], strict=True))
    assert state["transfer_to_tester"] == "failed"  # it was "ok"
    assert state["transfer_to_coder"] == "ok"
    assert '"planner" -> "tester" [label="1× · overwrite 0% · 1 failed"' in at.get("graphviz_chart")[0].proto.spec


def test_the_filters_are_kept_in_the_url(app_url: str) -> None:
    at = page()
    at.selectbox(key="window").select("last 7 days").run()
    at.selectbox(key="tag").select("canary").run()
    assert at.query_params["window"] == "last 7 days" and at.query_params["tag"] == "canary"
    assert at.dataframe[0].value.loc[0, "link"] == (
        f"run?run={BAD.run_id}&window=last%207%20days")  # a new tab keeps the window too
    # A reload or a shared link: a new session, the filters from the URL.
    fresh = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT)
    fresh.query_params.update({"window": "last 7 days", "tag": "canary", "branches": "main"})
    fresh.run()
    assert fresh.selectbox(key="window").value == "last 7 days"
    assert fresh.multiselect(key="branches").value == ["main"]
    assert list(fresh.dataframe[0].value["run_id"]) == [BAD.run_id]
    at.selectbox(key="window").select("all time").run()
    assert "window" not in at.query_params  # the default stays out of links


def test_a_project_without_runs_says_so_and_names_the_projects_with_runs(
        app_url: str, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from handoffs.dashboards import ENV_PROJECT

    # Pinned: every page advised widening the time window, which could not help.
    monkeypatch.setenv(ENV_PROJECT, "nosuch")
    for name in (None, "run_page.py"):
        at = page(name)
        assert [e.value for e in at.error] == [
            f"Project `nosuch` has no runs in this store. Projects with runs: `{PROJECT}`. This dashboard "
            "is pinned to it (`handoffs dashboard --project`): start it with one of those, or without "
            "`--project`."]
        assert not at.dataframe and "Widen the time window" not in text_of(at)
    # From a link: said once, then every project is shown.
    monkeypatch.delenv(ENV_PROJECT)
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT)
    at.query_params["project"] = "nosuch"
    at.run()
    assert any("Project `nosuch` has no runs in this store" in str(w.value) for w in at.warning)
    assert set(at.dataframe[0].value["run_id"]) == {r.run_id for r in RUNS}


def test_the_compare_page_names_the_baseline_and_the_candidate(app_url: str) -> None:
    at = page("compare_page.py")
    at.radio[0].set_value("two runs").run()
    text = text_of(at)
    assert "A (baseline) has 1 run(s), B (candidate) 1" in text
    labels = {c["label"] for c in __import__("json").loads(at.dataframe[0].proto.columns).values()
              if "label" in c}
    assert {"A (baseline)", "B (candidate)", "B worse than A by"} <= labels
