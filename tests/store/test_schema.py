"""The DDL the store applies: every form parses in the real engine, retention can change later."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from handoffs import conventions as conv
from handoffs.cli.schema import schema as schema_command
from handoffs.errors import UsageError
from handoffs.store import SpanBatch, Store, schema

FORMS = [
    pytest.param(None, False, schema.DEFAULT_TTL_DAYS, id="single"),
    pytest.param(None, False, None, id="single-no-ttl"),
    pytest.param("handoffs", False, 30, id="cluster"),
    pytest.param("{cluster}", False, 7, id="cluster-macro"),
    pytest.param("handoffs", True, 30, id="cloud"),
]


@pytest.mark.parametrize(("cluster", "cloud", "ttl"), FORMS)
def test_every_statement_parses_in_the_engine(store: Store, cluster: str | None, cloud: bool,
                                              ttl: int | None) -> None:
    stmts = schema.statements(cluster=cluster, cloud=cloud, ttl_days=ttl)
    assert len(stmts) >= 8
    for stmt in stmts:
        formatted = store.scalar("SELECT formatQuery({q:String})", {"q": stmt})
        assert formatted, stmt
        assert ("ON CLUSTER" in formatted) == bool(cluster), formatted


def test_a_broken_statement_is_refused_by_the_parser(store: Store) -> None:
    # The parse check above can fail: the engine rejects what is not ClickHouse SQL.
    with pytest.raises(Exception, match="(?i)syntax"):
        store.scalar("SELECT formatQuery({q:String})", {"q": "CREATE TABLE x ENGINE = ("})


@pytest.mark.parametrize(("cluster", "cloud", "ttl"), FORMS)
def test_printed_script_is_the_statements_in_order(cluster: str | None, cloud: bool,
                                                   ttl: int | None) -> None:
    script = schema.ddl(cluster=cluster, cloud=cloud, ttl_days=ttl)
    chunks = [c.strip() for c in script.split(";\n") if c.strip()]
    without_comments = ["\n".join(line for line in c.splitlines() if not line.startswith("--"))
                        for c in chunks]
    assert without_comments == schema.statements(cluster=cluster, cloud=cloud, ttl_days=ttl)


def test_clustered_form_shards_spans_by_trace_and_replicates_the_rest() -> None:
    stmts = schema.statements(cluster="prod")
    text = "\n".join(stmts)
    assert "CREATE TABLE IF NOT EXISTS otel_traces_local ON CLUSTER 'prod'" in text
    assert ("ENGINE = Distributed('prod', currentDatabase(), otel_traces_local, "
            "cityHash64(TraceId))") in text
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}'" in text
    # Our own tables keep their names, one replica set across all nodes, no Distributed layer.
    assert "CREATE TABLE IF NOT EXISTS handoffs_runs ON CLUSTER 'prod'" in text
    assert "handoffs_runs_local" not in text
    view = next(s for s in stmts if "MATERIALIZED VIEW" in s)
    assert "TO handoffs_runs AS" in view and "FROM otel_traces_local" in view
    ttl = next(s for s in stmts if "MODIFY TTL" in s)
    assert ttl.startswith("ALTER TABLE otel_traces_local ON CLUSTER 'prod'")


def test_cloud_form_uses_shared_engines_without_distributed() -> None:
    text = "\n".join(schema.statements(cluster="default", cloud=True))
    assert "SharedReplacingMergeTree" in text
    assert "Distributed" not in text and "_local" not in text
    assert "Replicated" not in text


@pytest.mark.parametrize("name", ["a b", "x; DROP TABLE t", "c'", "", "{bad macro}"])
def test_unsafe_cluster_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="cluster name"):
        schema.statements(cluster=name)


def test_chdb_is_not_cloud(store: Store) -> None:
    # Only the negative answer can be checked here: there is no ClickHouse Cloud to ask.
    assert schema.is_cloud(store.scalar) is False


def _span(batch: SpanBatch, trace: str, start_ns: int) -> None:
    batch.append(trace_id=trace, span_id="1" * 16, name="invoke_agent w", start_ns=start_ns,
                 duration_ns=1_000)


def test_retention_defaults_then_changes_on_an_existing_store(store: Store) -> None:
    assert store.span_ttl_days() == schema.DEFAULT_TTL_DAYS
    assert store.migrate() == []
    assert store.span_ttl_days() == schema.DEFAULT_TTL_DAYS
    store.migrate(ttl_days=30)
    assert store.span_ttl_days() == 30
    store.migrate()  # no value: leave it as it is
    assert store.span_ttl_days() == 30
    store.migrate(ttl_days=0)
    assert store.span_ttl_days() is None
    store.migrate(ttl_days=7)
    assert store.span_ttl_days() == 7


def test_a_retention_past_the_end_of_datetime_is_refused_and_deletes_nothing(store: Store) -> None:
    batch = SpanBatch()
    batch.append(trace_id="ab" * 16, span_id="cd" * 8, name="kept", start_ns=time.time_ns(), duration_ns=1000)
    store.insert_spans(batch)
    # A hundred years from now is past 2106: the TTL would wrap to the past and delete every span.
    with pytest.raises(UsageError, match="out of range: 1 to 20000 days, or 0"):
        store.migrate(ttl_days=36_500)
    store.command("OPTIMIZE TABLE otel_traces FINAL")
    assert store.scalar("SELECT count() FROM otel_traces") == 1
    assert store.span_ttl_days() == schema.DEFAULT_TTL_DAYS
    store.migrate(ttl_days=schema.MAX_TTL_DAYS)
    store.command("OPTIMIZE TABLE otel_traces FINAL")
    assert store.scalar("SELECT count() FROM otel_traces") == 1


def test_detected_traces_made_before_amplification_gain_its_columns(store: Store) -> None:
    """Migration 8 on a table of judged traces written before it: columns added, rows kept."""
    table = schema.DETECTED_TABLE
    store.command(f"ALTER TABLE {table} DROP COLUMN own_errors, DROP COLUMN root_errors")
    store.command(f"INSERT INTO {table} (project, trace_id, detector_version, span_count) "
                  "VALUES ('p', 't1', 'structural-1', 12)")
    for statement in schema.amplification_statements():
        store.command(statement)
    assert store.query(f"SELECT trace_id, span_count, own_errors, root_errors FROM {table}") == [
        {"trace_id": "t1", "span_count": 12, "own_errors": 0, "root_errors": 0}]
    for statement in schema.amplification_statements():  # idempotent, as every migration
        store.command(statement)


def test_expired_spans_are_deleted_and_recent_ones_kept(store: Store) -> None:
    store.migrate(ttl_days=10)
    now = time.time_ns()
    day = 86_400 * 10**9
    batch = SpanBatch()
    _span(batch, "a" * 32, now - 40 * day)
    _span(batch, "b" * 32, now - 2 * day)
    store.insert_spans(batch)
    store.command("OPTIMIZE TABLE otel_traces FINAL")
    assert [r["TraceId"] for r in store.query("SELECT TraceId FROM otel_traces")] == ["b" * 32]


@pytest.mark.parametrize("rewrite", [1, 0])
def test_run_lookup_reads_only_the_granules_holding_the_run(store: Store, rewrite: int) -> None:
    # Whether or not the server rewrites map subscripts to subcolumns, a run id lookup is pruned
    # by the attribute-value index instead of scanning every granule.
    batch = SpanBatch()
    now = time.time_ns()
    for i in range(30_000):
        batch.append(trace_id=f"{i // 50:032x}", span_id=f"{i:016x}", name="invoke_agent w",
                     start_ns=now + i, duration_ns=10, attributes={conv.RUN_ID: f"run-{i // 50}"})
    store.insert_spans(batch)
    store.command("OPTIMIZE TABLE otel_traces FINAL")
    plan = "\n".join(r["explain"] for r in store.query(
        f"EXPLAIN indexes = 1 SELECT count() FROM otel_traces WHERE SpanAttributes['{conv.RUN_ID}'] "
        f"= {{r:String}} SETTINGS optimize_functions_to_subcolumns = {rewrite}", {"r": "run-300"}))
    read = int(re.findall(r"\| Granules: (\d+)", plan)[0])  # after every index
    total = int(re.findall(r"Granules: \d+/(\d+)", plan)[0])
    assert total >= 3 and read == 1, plan
    assert store.scalar(f"SELECT count() FROM otel_traces WHERE SpanAttributes['{conv.RUN_ID}'] = "
                        "{r:String}", {"r": "run-300"}) == 50


def test_schema_command_prints_clustered_ddl() -> None:
    result = CliRunner().invoke(schema_command, ["--cluster", "prod", "--ttl-days", "14"])
    assert result.exit_code == 0, result.output
    assert "ON CLUSTER 'prod'" in result.output
    assert "toIntervalDay(14)" in result.output
    refused = CliRunner().invoke(schema_command, ["--cloud"])
    assert refused.exit_code == 2 and "--cluster" in refused.output


def _handoffs(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from handoffs.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_migrate_command_changes_retention_and_keeps_it(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'store'}"
    first = _handoffs("migrate", "--store", url, "--ttl-days", "21")
    assert first.returncode == 0, first.stderr
    assert f"applied migrations {[m.version for m in schema.migrations()]}" in first.stdout
    assert "span retention: 21 days" in first.stdout
    again = _handoffs("migrate", "--store", url)
    assert again.returncode == 0, again.stderr
    assert "schema is up to date" in again.stdout and "span retention: 21 days" in again.stdout
    bad = _handoffs("migrate", "--store", url, "--cluster", "x;y")
    assert bad.returncode == 2 and "cluster name" in bad.stderr
    cloud_alone = _handoffs("migrate", "--store", url, "--cloud")  # as `handoffs schema --cloud` refuses it
    assert cloud_alone.returncode == 2 and "add --cluster NAME" in cloud_alone.stderr
