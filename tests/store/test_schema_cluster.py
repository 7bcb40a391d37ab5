"""The clustered DDL applied for real: Distributed tables over a cluster the engine knows.

chDB has no Keeper, so ``ON CLUSTER`` and Replicated engines cannot run here; the test applies
the clustered statements with those two parts removed (the "non-replicated parts": the same
local tables with plain ReplacingMergeTree, the Distributed span table, the runs view on the
local table) on a chDB started with a ``remote_servers`` configuration, in a subprocess because
a chDB process has one data directory. Then it writes spans through the Distributed table and
runs the queries the runs view, the detectors and the dashboard run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from handoffs.store import Store

CLUSTER_XML = """<clickhouse>
  <tcp_port>9000</tcp_port>
  <remote_servers>
    <handoffs_one>
      <shard><replica><host>localhost</host><port>9000</port></replica></shard>
    </handoffs_one>
    <handoffs_two>
      <shard><replica><host>localhost</host><port>9000</port></replica></shard>
      <shard><replica><host>127.0.0.1</host><port>9000</port></replica></shard>
    </handoffs_two>
  </remote_servers>
</clickhouse>
"""

SCRIPT = r'''
import json, re, sys, time
from pathlib import Path
from chdb import session
from handoffs import conventions as c
from handoffs.store import SpanBatch, Store, schema
from handoffs.store.engines import ChdbEngine
from handoffs.store.url import StoreURL

path, config = Path(sys.argv[1]).resolve(), sys.argv[2]
path.mkdir(parents=True, exist_ok=True)
# The engine opens its directory with the cluster configuration; Store code runs unchanged.
ChdbEngine._session = session.Session(f"{path}?config-file={config}")
ChdbEngine._path = path
store = Store(ChdbEngine(path), StoreURL("chdb", path=path))


def without_keeper(stmt):
    stmt = re.sub(r" ON CLUSTER '[^']*'", "", stmt)
    return re.sub(r"ReplicatedReplacingMergeTree\('[^']*', '[^']*'(?:, (\w+))?\)",
                  lambda m: f"ReplacingMergeTree({m.group(1) or ''})", stmt)


out = {}
for stmt in schema.statements(cluster="handoffs_one", ttl_days=30):
    store.command(without_keeper(stmt))
out["engines"] = {r["name"]: r["engine"] for r in store.query(
    "SELECT name, engine FROM system.tables WHERE database = currentDatabase()")}
out["columns"] = {t: [[r["name"], r["type"]] for r in store.query(
    "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String}"
    " ORDER BY position", {"t": t})] for t in ("otel_traces", "otel_traces_local", "handoffs_runs")}
out["ttl_days"] = store.span_ttl_days(cluster="handoffs_one")

batch = SpanBatch()
start = time.time_ns()
traces = [f"{i:032x}" for i in range(1, 7)]
for n, trace in enumerate(traces):
    root = f"{n:04x}000000000001"
    batch.append(trace_id=trace, span_id=root, name="handoffs.run team", start_ns=start + n,
                 duration_ns=9_000, service_name="team", status_code="Ok",
                 resource_attributes={c.RESOURCE_PROJECT: "p"},
                 attributes={c.SPAN_TYPE: c.SpanType.RUN.value, c.RUN_ID: f"run-{n}"})
    for k in range(2, 6):
        batch.append(trace_id=trace, span_id=f"{n:04x}{k:012x}", parent_span_id=root,
                     name="invoke_agent worker", start_ns=start + n + k, duration_ns=100,
                     attributes={c.SPAN_TYPE: c.SpanType.AGENT.value,
                                 c.GEN_AI_AGENT_NAME: f"w{k}", c.STEP: str(k)})
store.insert_spans(batch)
store.command("SYSTEM FLUSH DISTRIBUTED otel_traces")
out["spans"] = store.scalar("SELECT count() FROM otel_traces")
out["local_spans"] = store.scalar("SELECT count() FROM otel_traces_local")
out["runs"] = [r["run_id"] for r in store.query(
    "SELECT run_id FROM handoffs_runs FINAL ORDER BY run_id")]
out["one_trace"] = store.scalar(
    "SELECT count() FROM otel_traces WHERE TraceId = {t:String}", {"t": traces[2]})
out["per_trace"] = store.query(
    "SELECT TraceId, count() AS n, max(Duration) AS d FROM otel_traces GROUP BY TraceId "
    "ORDER BY TraceId LIMIT 2")
out["runs_in_spans"] = store.scalar(
    "SELECT count() FROM otel_traces WHERE TraceId IN (SELECT trace_id FROM handoffs_runs FINAL)")

# The self-join of spans to their parents, as detectors run it, through Distributed tables.
JOIN = ("SELECT count() FROM otel_traces AS s INNER JOIN otel_traces AS p "
        "ON s.TraceId = p.TraceId AND s.ParentSpanId = p.SpanId")
out["parent_join"] = store.scalar(JOIN)

try:
    from handoffs.detectors.normalise import prelude
except ImportError:
    out["detector_spans"] = None
else:
    out["detector_spans"] = store.scalar(prelude() + "SELECT count() FROM s", {"traces": traces})

try:
    from handoffs.dashboards import queries
except ImportError:
    out["dashboard"] = None
else:
    out["dashboard"] = {
        "runs": len(queries.runs(store, project="p")),
        "trace_spans": len(queries.trace_spans(store, traces[0])),
    }

# More than one shard: a join of two Distributed tables needs distributed_product_mode.
store.command("CREATE TABLE otel_traces_two AS otel_traces_local ENGINE = "
              "Distributed('handoffs_two', currentDatabase(), otel_traces_local, "
              + schema.SHARDING_KEY + ")")
two = JOIN.replace("otel_traces ", "otel_traces_two ")
try:
    store.scalar(two)
    out["two_shards_deny"] = "ran"
except Exception as exc:
    out["two_shards_deny"] = "DISTRIBUTED_IN_JOIN_SUBQUERY_DENIED" in str(exc)
out["two_shards_local"] = store.scalar(two + " SETTINGS distributed_product_mode = 'local'")
print(json.dumps(out, default=str))
'''


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("cluster")
    config = base / "cluster.xml"
    config.write_text(CLUSTER_XML)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(base / "store"), str(config)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_spans_sit_under_a_distributed_table_and_runs_are_local(cluster_run: dict) -> None:
    engines = cluster_run["engines"]
    assert engines["otel_traces"] == "Distributed"
    assert engines["otel_traces_local"] == "ReplacingMergeTree"
    assert engines["handoffs_runs"] == "ReplacingMergeTree"
    assert engines["handoffs_runs_mv"] == "MaterializedView"
    assert "handoffs_runs_local" not in engines
    assert cluster_run["ttl_days"] == 30


def test_distributed_table_has_the_single_node_columns(cluster_run: dict, store: Store) -> None:
    single = {t: [[r["name"], r["type"]] for r in store.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = {t:String} ORDER BY position", {"t": t})]
        for t in ("otel_traces", "handoffs_runs")}
    assert cluster_run["columns"]["otel_traces"] == single["otel_traces"]
    assert cluster_run["columns"]["otel_traces_local"] == single["otel_traces"]
    assert cluster_run["columns"]["handoffs_runs"] == single["handoffs_runs"]


def test_spans_written_through_the_distributed_table_are_read_back(cluster_run: dict) -> None:
    assert cluster_run["spans"] == 30
    assert cluster_run["local_spans"] == 30
    assert cluster_run["one_trace"] == 5
    assert cluster_run["per_trace"][0]["n"] == 5 and cluster_run["per_trace"][0]["d"] == 9000
    assert cluster_run["parent_join"] == 24


def test_runs_view_fires_on_the_local_table(cluster_run: dict) -> None:
    assert cluster_run["runs"] == [f"run-{n}" for n in range(6)]
    assert cluster_run["runs_in_spans"] == 30


def test_detector_and_dashboard_queries_run_on_the_cluster(cluster_run: dict) -> None:
    if cluster_run["detector_spans"] is None and cluster_run["dashboard"] is None:
        pytest.skip("neither the detectors' nor the dashboard's queries exist yet")
    if cluster_run["detector_spans"] is not None:
        assert cluster_run["detector_spans"] == 30
    if cluster_run["dashboard"] is not None:
        assert cluster_run["dashboard"] == {"runs": 6, "trace_spans": 5}


def test_more_shards_need_the_product_mode_setting(cluster_run: dict) -> None:
    # Why docs/scaling.md asks for distributed_product_mode = 'local': ClickHouse refuses the
    # join by default, and 'local' is right because spans are sharded by TraceId. (Both shards
    # here are this process, so each reads the whole local table: twice the single-shard count.)
    assert cluster_run["two_shards_deny"] is True
    assert cluster_run["two_shards_local"] == 2 * cluster_run["parent_join"]
