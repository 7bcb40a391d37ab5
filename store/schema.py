"""The DDL the store applies, as numbered migrations, in single-node and clustered forms.

The span table is column-compatible with the OpenTelemetry Collector's ClickHouse exporter
(``otel_traces``), so rows that exporter writes are read by our detectors and dashboards
unchanged. Its sort key differs from the exporter's: we read whole traces back, so rows are
ordered by trace id. ReplacingMergeTree keyed on (TraceId, SpanId) makes storage exactly once
under at-least-once delivery; reads that must not see pre-merge duplicates use ``LIMIT 1 BY``.
"""

from __future__ import annotations

from dataclasses import dataclass

SPAN_TABLE = "otel_traces"
RUNS_TABLE = "handoffs_runs"
FINDINGS_TABLE = "handoffs_findings"
METRICS_TABLE = "handoffs_metrics"
DETECTED_TABLE = "handoffs_detected_traces"
GATE_TABLE = "handoffs_gate_results"
MIGRATIONS_TABLE = "handoffs_schema_migrations"

DEFAULT_TTL_DAYS = 90


@dataclass(frozen=True)
class Table:
    """One table: its name, its columns, and the engine clause for each deployment."""

    name: str
    columns: str
    order_by: str
    partition_by: str | None = None
    version_column: str | None = None  # ReplacingMergeTree's version
    ttl: str | None = None
    indexes: str = ""

    def create(self, cluster: str | None = None, cloud: bool = False) -> list[str]:
        """CREATE statements: the table itself, or its local table and a Distributed one."""
        on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
        version = f"({self.version_column})" if self.version_column else ""
        if cluster is None:
            engine = f"ReplacingMergeTree{version}"
        elif cloud:
            engine = f"SharedReplacingMergeTree{version}"
        else:
            path = f"'/clickhouse/tables/{{shard}}/{{database}}/{self.name}_local', '{{replica}}'"
            engine = f"ReplicatedReplacingMergeTree({path}{', ' + self.version_column if self.version_column else ''})"
        local = f"{self.name}_local" if cluster else self.name
        body = self.columns.strip()
        if self.indexes:
            body += ",\n" + self.indexes.strip()
        clauses = [f"ENGINE = {engine}"]
        if self.partition_by:
            clauses.append(f"PARTITION BY {self.partition_by}")
        clauses.append(f"ORDER BY {self.order_by}")
        if self.ttl:
            clauses.append(f"TTL {self.ttl}")
        clauses.append("SETTINGS index_granularity = 8192")
        stmts = [
            f"CREATE TABLE IF NOT EXISTS {local}{on_cluster}\n(\n{body}\n)\n" + "\n".join(clauses)
        ]
        if cluster:
            stmts.append(
                f"CREATE TABLE IF NOT EXISTS {self.name}{on_cluster} AS {local}\n"
                f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, cityHash64(TraceId))"
                if "TraceId" in self.columns
                else f"CREATE TABLE IF NOT EXISTS {self.name}{on_cluster} AS {local}\n"
                f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, cityHash64(run_id))"
            )
        return stmts


SPAN_COLUMNS = """
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1))"""

SPAN_INDEXES = """
    INDEX idx_run_id SpanAttributes['handoff.run.id'] TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_source_id ResourceAttributes['handoffs.source_id'] TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_project ResourceAttributes['handoffs.project'] TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_ts Timestamp TYPE minmax GRANULARITY 1"""


def spans_table(ttl_days: int | None = DEFAULT_TTL_DAYS) -> Table:
    return Table(
        name=SPAN_TABLE,
        columns=SPAN_COLUMNS,
        indexes=SPAN_INDEXES,
        partition_by="toYYYYMM(Timestamp)",
        order_by="(TraceId, SpanId)",
        ttl=f"toDateTime(Timestamp) + toIntervalDay({int(ttl_days)})" if ttl_days else None,
    )


RUNS = Table(
    name=RUNS_TABLE,
    columns="""
    run_id String,
    project LowCardinality(String),
    trace_id String,
    source_id String,
    name String,
    system LowCardinality(String),
    service LowCardinality(String),
    started_at DateTime64(9),
    duration_ns UInt64,
    status LowCardinality(String),
    commit String,
    branch LowCardinality(String),
    build_id String,
    build_url String,
    test_id String,
    tags Array(String),
    topology LowCardinality(String),
    attributes Map(LowCardinality(String), String),
    updated_at DateTime64(3) DEFAULT now64(3)""",
    order_by="(project, run_id)",
    version_column="updated_at",
)

FINDINGS = Table(
    name=FINDINGS_TABLE,
    columns="""
    project LowCardinality(String),
    run_id String,
    trace_id String,
    source_id String,
    code LowCardinality(String),
    name LowCardinality(String),
    category LowCardinality(String),
    agent String,
    step Int32,
    span_id String,
    confidence Float64,
    evidence String,
    detector LowCardinality(String),
    detector_version LowCardinality(String),
    detected_at DateTime64(3) DEFAULT now64(3)""",
    order_by="(project, trace_id, code, span_id, agent, step)",
    version_column="detected_at",
)

METRICS = Table(
    name=METRICS_TABLE,
    columns="""
    project LowCardinality(String),
    run_id String,
    scope LowCardinality(String),
    subject String,
    metric LowCardinality(String),
    value Float64,
    numerator Float64,
    denominator Float64,
    computed_at DateTime64(3) DEFAULT now64(3)""",
    order_by="(project, run_id, scope, subject, metric)",
    version_column="computed_at",
)

DETECTED = Table(
    name=DETECTED_TABLE,
    columns="""
    project LowCardinality(String),
    trace_id String,
    detector_version LowCardinality(String),
    span_count UInt64,
    detected_at DateTime64(3) DEFAULT now64(3)""",
    order_by="(project, trace_id, detector_version)",
    version_column="detected_at",
)

GATE_RESULTS = Table(
    name=GATE_TABLE,
    columns="""
    project LowCardinality(String),
    gate_id String,
    policy String,
    check_name String,
    severity LowCardinality(String),
    verdict LowCardinality(String),
    value Nullable(Float64),
    limit_value Nullable(Float64),
    baseline Nullable(Float64),
    run_ids Array(String),
    commit String,
    branch LowCardinality(String),
    message String,
    evaluated_at DateTime64(3) DEFAULT now64(3)""",
    order_by="(project, gate_id, check_name)",
    version_column="evaluated_at",
)

MIGRATIONS = f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}
(
    version UInt32,
    description String,
    applied_at DateTime64(3) DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version"""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def migrations(cluster: str | None = None, cloud: bool = False,
               ttl_days: int | None = DEFAULT_TTL_DAYS) -> list[Migration]:
    """All migrations in order. Each is idempotent (IF NOT EXISTS), so re-applying is safe."""
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    span_local = f"{SPAN_TABLE}_local" if cluster else SPAN_TABLE
    ttl = (
        f"ALTER TABLE {span_local}{on_cluster} MODIFY TTL toDateTime(Timestamp) + toIntervalDay({int(ttl_days)})"
        if ttl_days
        else f"ALTER TABLE {span_local}{on_cluster} REMOVE TTL"
    )
    return [
        Migration(
            1,
            "span table (OTel exporter columns), runs, findings, metrics, detection state, gate results",
            tuple(
                s
                for table in (spans_table(None), RUNS, FINDINGS, METRICS, DETECTED, GATE_RESULTS)
                for s in table.create(cluster, cloud)
            ),
        ),
        Migration(2, f"span retention: TTL {ttl_days or 'none'} days", (ttl,)),
        Migration(3, "runs filled from run spans as they arrive, whoever writes them",
                  (runs_view(cluster),)),
    ]


def runs_view(cluster: str | None = None) -> str:
    """A materialised view: each run span inserted into the span table becomes a run row.

    It fires on every insert into the span table, ours or the OpenTelemetry Collector's.
    """
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    target = f"{RUNS_TABLE}_local" if cluster else RUNS_TABLE
    source = f"{SPAN_TABLE}_local" if cluster else SPAN_TABLE
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS handoffs_runs_mv{on_cluster} TO {target} AS
SELECT
    SpanAttributes['handoff.run.id'] AS run_id,
    ResourceAttributes['handoffs.project'] AS project,
    TraceId AS trace_id,
    ResourceAttributes['handoffs.source_id'] AS source_id,
    SpanAttributes['handoff.run.name'] AS name,
    ResourceAttributes['handoffs.system'] AS system,
    ServiceName AS service,
    Timestamp AS started_at,
    Duration AS duration_ns,
    StatusCode AS status,
    SpanAttributes['handoff.run.commit'] AS commit,
    SpanAttributes['handoff.run.branch'] AS branch,
    SpanAttributes['handoff.run.build_id'] AS build_id,
    SpanAttributes['handoff.run.build_url'] AS build_url,
    SpanAttributes['handoff.run.test_id'] AS test_id,
    JSONExtract(if(SpanAttributes['handoff.run.tags'] = '', '[]', SpanAttributes['handoff.run.tags']),
                'Array(String)') AS tags,
    SpanAttributes['handoff.run.topology'] AS topology,
    SpanAttributes AS attributes,
    now64(3) AS updated_at
FROM {source}
WHERE SpanAttributes['handoff.span.type'] = 'run' AND SpanAttributes['handoff.run.id'] != ''"""


def ddl(cluster: str | None = None, cloud: bool = False,
        ttl_days: int | None = DEFAULT_TTL_DAYS) -> str:
    """The whole DDL as one SQL script, as ``handoffs schema`` prints it."""
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    parts = [MIGRATIONS.replace(MIGRATIONS_TABLE, MIGRATIONS_TABLE + on_cluster, 1)]
    for m in migrations(cluster, cloud, ttl_days):
        parts.append(f"-- migration {m.version}: {m.description}")
        parts.extend(m.statements)
    return ";\n\n".join(parts) + ";\n"
