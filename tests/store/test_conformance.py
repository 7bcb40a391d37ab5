"""The store's conformance suite: the same behaviour from every engine."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from handoffs.errors import StoreError
from handoffs.store import Event, Link, SpanBatch, Store, among, schema


def _batch(trace_id: str = "a" * 32, n: int = 3) -> SpanBatch:
    batch = SpanBatch()
    start = time.time_ns()
    batch.append(trace_id=trace_id, span_id="0" * 15 + "1", name="handoffs.run demo",
                 start_ns=start, duration_ns=5_000,
                 attributes={"handoff.span.type": "run", "handoff.run.id": "run-1",
                             "handoff.run.tags": '["nightly","x"]', "handoff.run.branch": "main"},
                 resource_attributes={"service.name": "team", "handoffs.project": "p1"},
                 service_name="team", status_code="Ok",
                 events=[Event(start + 10, "handoff.termination", {"handoff.termination.reason": "done"})])
    for i in range(2, n + 1):
        batch.append(trace_id=trace_id, span_id=f"{i:016x}", parent_span_id="0" * 15 + "1",
                     name=f"execute_tool transfer_to_w{i}", start_ns=start + i, duration_ns=100 * i,
                     attributes={"handoff.step": str(i), "gen_ai.agent.name": "sup"},
                     links=[Link("b" * 32, "c" * 16, "", {"k": "v"})])
    return batch


def test_fresh_store_is_at_latest_schema(any_store: Store) -> None:
    assert any_store.schema_version() == max(m.version for m in schema.migrations())
    assert any_store.migrate() == []  # idempotent


def test_spans_round_trip_with_ids_parents_attributes_events(any_store: Store) -> None:
    assert any_store.insert_spans(_batch()) == 3
    rows = any_store.query(
        "SELECT SpanId, ParentSpanId, SpanName, SpanAttributes, Duration, `Events.Name` AS ev, "
        "`Events.Attributes` AS eva, `Links.SpanId` AS ls FROM otel_traces "
        "WHERE TraceId = {t:String} ORDER BY SpanId", {"t": "a" * 32})
    assert [r["SpanId"] for r in rows] == ["0" * 15 + "1", f"{2:016x}", f"{3:016x}"]
    assert rows[1]["ParentSpanId"] == "0" * 15 + "1"
    assert dict(rows[2]["SpanAttributes"])["handoff.step"] == "3"
    assert rows[2]["Duration"] == 300
    assert rows[0]["ev"] == ["handoff.termination"]
    assert dict(rows[0]["eva"][0]) == {"handoff.termination.reason": "done"}
    assert rows[1]["ls"] == ["c" * 16]


def test_run_spans_become_runs(any_store: Store) -> None:
    any_store.insert_spans(_batch())
    runs = any_store.query("SELECT run_id, project, branch, tags, service FROM handoffs_runs FINAL")
    assert runs == [{"run_id": "run-1", "project": "p1", "branch": "main",
                     "tags": ["nightly", "x"], "service": "team"}]


def test_replayed_spans_are_stored_once(any_store: Store) -> None:
    any_store.insert_spans(_batch())
    any_store.insert_spans(_batch())
    assert any_store.scalar("SELECT count() FROM otel_traces FINAL") == 3


def test_a_span_sent_twice_in_one_insert_keeps_its_last_row(any_store: Store) -> None:
    first, second = _batch(n=2).to_arrow(), _batch(n=2).to_arrow()
    renamed = second.set_column(second.schema.get_field_index("SpanName"), "SpanName",
                                pa.array(["run again", "tool again"]))
    # Nothing collapses this insert in the engine (optimize_on_insert is off): the store does.
    assert any_store.insert_spans(pa.concat_tables([first, renamed])) == 2
    rows = any_store.query("SELECT SpanName FROM otel_traces ORDER BY SpanId")
    assert [r["SpanName"] for r in rows] == ["run again", "tool again"]


def test_a_table_of_many_chunks_reaches_the_engine_contiguous(any_store: Store, monkeypatch) -> None:
    """As the collector's writer joins requests: one chunk per column reaches the engine."""
    seen: list[pa.Table] = []
    insert_arrow = any_store.engine.insert_arrow

    def keep(table: str, data: pa.Table, settings: dict | None = None) -> None:
        seen.append(data)
        insert_arrow(table, data, settings=settings)

    monkeypatch.setattr(any_store.engine, "insert_arrow", keep)
    whole = _batch(n=12).to_arrow()
    chunked = pa.concat_tables([whole.slice(i, 3) for i in range(0, 12, 3)])
    assert chunked.column("SpanId").num_chunks == 4
    assert any_store.insert_spans(chunked) == 12
    assert {column.num_chunks for column in seen[0].columns} == {1}
    assert any_store.scalar("SELECT count() FROM otel_traces") == 12


def test_an_insert_retried_with_its_token_is_stored_once(any_store: Store) -> None:
    any_store.insert_spans(_batch(), dedup_token="batch-1")
    any_store.insert_spans(_batch(), dedup_token="batch-1")
    assert any_store.scalar("SELECT count() FROM otel_traces") == 3


def test_among_matches_the_values_of_a_list_of_any_length(any_store: Store) -> None:
    any_store.insert_spans(_batch())
    many = [f"{i:032x}" for i in range(30_000)] + ["a" * 32]  # past the literal array's cliff
    for ids, expected in ((["a" * 32], 3), (many, 3), (many[:5], 0)):
        assert any_store.scalar(f"SELECT count() FROM otel_traces WHERE {among('TraceId', 'ids', len(ids))}",
                                {"ids": ids}) == expected


def test_parameters_are_bound_not_spliced(any_store: Store) -> None:
    any_store.insert_spans(_batch())
    hostile = "x' OR 1=1 --"
    assert any_store.scalar("SELECT count() FROM otel_traces WHERE TraceId = {t:String}",
                            {"t": hostile}) == 0
    assert any_store.query("SELECT {a:Array(String)} AS a", {"a": ["q'uote", "b"]}) == [
        {"a": ["q'uote", "b"]}]


def test_an_insert_from_a_select_reads_its_parameters(any_store: Store) -> None:
    """``INSERT ... SELECT`` with ``{name:Type}`` parameters, as a ClickHouse server takes it."""
    any_store.command("CREATE TABLE copied (v String, n UInt32) ENGINE = Memory")
    any_store.command("INSERT INTO copied SELECT arrayJoin({vs:Array(String)}), {n:UInt32}",
                      {"vs": ["a", "b'c"], "n": 7})
    assert sorted((r["v"], r["n"]) for r in any_store.query("SELECT v, n FROM copied")) == [("a", 7), ("b'c", 7)]


def test_bad_sql_is_a_store_error(any_store: Store) -> None:
    with pytest.raises(StoreError, match="UNKNOWN_FUNCTION|Unknown function|does not exist"):
        any_store.query("SELECT no_such_function()")


def _parts(store: Store, table: str) -> tuple[int, int]:
    """(active parts, rows they hold, deleted rows included)."""
    row = store.query("SELECT count() AS parts, sum(rows) AS rows FROM system.parts WHERE active "
                      "AND database = currentDatabase() AND table = {t:String}", {"t": table})[0]
    return int(row["parts"]), int(row["rows"] or 0)


def test_merge_versions_leaves_the_latest_row_of_each_key_in_one_part(any_store: Store) -> None:
    def metric(value: float) -> pa.Table:
        return pa.table({"project": ["p"], "run_id": ["r1"], "scope": ["run"], "subject": ["r1"],
                         "metric": ["overwrite_rate"], "value": [value], "numerator": [value],
                         "denominator": [1.0]})

    any_store.insert(schema.METRICS_TABLE, metric(0.5))
    time.sleep(0.01)  # a later version (computed_at has milliseconds)
    any_store.insert(schema.METRICS_TABLE, metric(0.25))
    any_store.insert(schema.METRICS_TABLE, metric(0.25).set_column(1, "run_id", pa.array(["r2"])))
    any_store.command(f"DELETE FROM {schema.METRICS_TABLE} WHERE run_id = 'r2'")
    assert _parts(any_store, schema.METRICS_TABLE)[1] == 3  # two versions of r1, r2 masked

    merged = any_store.merge_versions(schema.METRICS_TABLE, schema.RUNS_VIEW, "no_such_table")
    assert merged == [schema.METRICS_TABLE]  # a view, and a table that does not exist, are skipped
    assert _parts(any_store, schema.METRICS_TABLE) == (1, 1)
    assert any_store.query(f"SELECT run_id, value FROM {schema.METRICS_TABLE}") == [{"run_id": "r1", "value": 0.25}]
