"""The DDL the store applies, as numbered migrations, in single-node and clustered forms.

The span table is column-compatible with the OpenTelemetry Collector's ClickHouse exporter
(``otel_traces``), so rows that exporter writes are read by our detectors and dashboards
unchanged. Its sort key differs from the exporter's: we read whole traces back, so rows are
ordered by trace id. ReplacingMergeTree keyed on (TraceId, SpanId) makes storage exactly once
under at-least-once delivery; reads that must not see pre-merge duplicates use ``LIMIT 1 BY``.

On a cluster (``cluster=NAME``) the span table is sharded: ``otel_traces_local`` on every
shard (ReplicatedReplacingMergeTree) under a Distributed ``otel_traces`` sharded by
``cityHash64(TraceId)``, so every span of a trace sits on one shard and per-trace work (joins of
spans to their parents, per-trace aggregation) runs shard-locally. Our own tables are small
beside it (a run row per ~50 spans, a few findings per trace), so they are not sharded but
replicated to every node under their own names: queries that join them to spans stay local on
each shard, and every query the detectors and dashboard run works unchanged. On ClickHouse
Cloud (``cloud=True``) storage is shared and there are no shards: every table is a
SharedReplacingMergeTree under its own name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handoffs import conventions as conv
from handoffs.errors import UsageError

SPAN_TABLE = "otel_traces"
RUNS_TABLE = "handoffs_runs"
FINDINGS_TABLE = "handoffs_findings"
METRICS_TABLE = "handoffs_metrics"
DETECTED_TABLE = "handoffs_detected_traces"
GATE_TABLE = "handoffs_gate_results"
WATERMARK_TABLE = "handoffs_detection_watermark"
MIGRATIONS_TABLE = "handoffs_schema_migrations"
RUNS_VIEW = "handoffs_runs_mv"
LOCAL_SUFFIX = "_local"

DEFAULT_TTL_DAYS = 90
# DateTime ends in 2106: a span's start plus a longer retention wraps to the past, and the TTL
# deletes every span at once (seen with 36,500 days). 0 keeps spans forever.
MAX_TTL_DAYS = 20_000
SHARDING_KEY = "cityHash64(TraceId)"

# Cluster names are identifiers or a macro such as {cluster}; anything else is refused rather
# than quoted, because the name is written into DDL.
_CLUSTER_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_\-]*|\{[A-Za-z_][A-Za-z0-9_]*\})$")

# The TTL expression as ClickHouse prints it back in SHOW CREATE TABLE / system.tables.
_TTL_DAYS = re.compile(r"\bTTL toDateTime\(Timestamp\) \+ toIntervalDay\((\d+)\)")


def check_cluster_name(cluster: str | None) -> str | None:
    """Return ``cluster`` if it can be written into DDL, else raise UsageError."""
    if cluster is None or _CLUSTER_NAME.match(cluster):
        return cluster
    raise UsageError(
        f"cluster name {cluster!r} is not a plain identifier or a macro like {{cluster}}; "
        "use the name under <remote_servers> in the server's configuration"
    )


def _on_cluster(cluster: str | None) -> str:
    return f" ON CLUSTER '{cluster}'" if cluster else ""


@dataclass(frozen=True)
class Table:
    """One table: its name, its columns, and the engine clause for each deployment.

    ``sharded`` tables become a local table per shard under a Distributed table on a cluster;
    the others are replicated to every node of the cluster under their own name.
    """

    name: str
    columns: str
    order_by: str
    partition_by: str | None = None
    version_column: str | None = None  # ReplacingMergeTree's version
    ttl: str | None = None
    indexes: str = ""
    sharded: bool = False

    def storage_name(self, cluster: str | None = None, cloud: bool = False) -> str:
        """The table rows are physically written to (the local table of a sharded one)."""
        return self.name + LOCAL_SUFFIX if cluster and self.sharded and not cloud else self.name

    def engine(self, cluster: str | None = None, cloud: bool = False) -> str:
        """The MergeTree engine clause for this deployment."""
        version = self.version_column or ""
        if cluster is None:
            return f"ReplacingMergeTree({version})" if version else "ReplacingMergeTree"
        if cloud:
            return f"SharedReplacingMergeTree({version})" if version else "SharedReplacingMergeTree"
        if self.sharded:
            # One replica set per shard.
            path, replica = "/clickhouse/tables/{shard}/{database}/{table}", "{replica}"
        else:
            # One replica set spanning every node: each node holds the whole table. The replica
            # name must be unique cluster-wide, hence shard and replica macros together.
            path, replica = "/clickhouse/tables/all/{database}/{table}", "{shard}-{replica}"
        args = f"'{path}', '{replica}'" + (f", {version}" if version else "")
        return f"ReplicatedReplacingMergeTree({args})"

    def create(self, cluster: str | None = None, cloud: bool = False) -> list[str]:
        """CREATE statements: the table itself, or its local table and a Distributed one."""
        cluster = check_cluster_name(cluster)
        on_cluster = _on_cluster(cluster)
        local = self.storage_name(cluster, cloud)
        body = "    " + self.columns.strip()
        if self.indexes:
            body += ",\n    " + self.indexes.strip()
        clauses = [f"ENGINE = {self.engine(cluster, cloud)}"]
        if self.partition_by:
            clauses.append(f"PARTITION BY {self.partition_by}")
        clauses.append(f"ORDER BY {self.order_by}")
        if self.ttl:
            clauses.append(f"TTL {self.ttl}")
        clauses.append("SETTINGS index_granularity = 8192")
        stmts = [
            f"CREATE TABLE IF NOT EXISTS {local}{on_cluster}\n(\n{body}\n)\n" + "\n".join(clauses)
        ]
        if local != self.name:
            stmts.append(
                f"CREATE TABLE IF NOT EXISTS {self.name}{on_cluster} AS {local}\n"
                f"ENGINE = Distributed('{cluster}', currentDatabase(), {local}, {SHARDING_KEY})"
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

# Indexes on every attribute value. ClickHouse 25+ rewrites ``SpanAttributes['k']`` into the
# map's subcolumn ``SpanAttributes.key_k`` (optimize_functions_to_subcolumns), after which an
# index on the subscript expression is no longer matched; a bloom filter over mapValues() serves
# ``attributes['k'] = v`` and ``IN`` lookups (a run id, a source id) either way, at about
# 2 B/span (bench/storage.py measures both).
SPAN_VALUE_INDEXES = (
    "idx_attr_values mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
    "idx_resource_values mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
)

SPAN_INDEXES = f"""
    INDEX idx_run_id SpanAttributes['{conv.RUN_ID}'] TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_source_id ResourceAttributes['{conv.RESOURCE_SOURCE_ID}'] TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_project ResourceAttributes['{conv.RESOURCE_PROJECT}'] TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_ts Timestamp TYPE minmax GRANULARITY 1,
""" + ",\n".join(f"    INDEX {index}" for index in SPAN_VALUE_INDEXES)


def ttl_expression(ttl_days: int) -> str:
    """The span table's TTL: rows older than ``ttl_days`` days (by span start) are deleted."""
    if not 0 < int(ttl_days) <= MAX_TTL_DAYS:
        raise UsageError(f"a span retention of {ttl_days} days is out of range: 1 to {MAX_TTL_DAYS} "
                         "days, or 0 to keep spans forever")
    return f"toDateTime(Timestamp) + toIntervalDay({int(ttl_days)})"


def spans_table(ttl_days: int | None = DEFAULT_TTL_DAYS) -> Table:
    """The span table, with a TTL of ``ttl_days`` (None or 0: keep forever)."""
    return Table(
        name=SPAN_TABLE,
        columns=SPAN_COLUMNS,
        indexes=SPAN_INDEXES,
        partition_by="toYYYYMM(Timestamp)",
        order_by="(TraceId, SpanId)",
        ttl=ttl_expression(ttl_days) if ttl_days else None,
        sharded=True,
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

# What detection counted in a judged trace's error cascade graph: the metrics' error
# amplification (own / root errors) reads them instead of building the graph again.
AMPLIFICATION_COLUMNS = ("own_errors UInt32 DEFAULT 0", "root_errors UInt32 DEFAULT 0")

DETECTED = Table(
    name=DETECTED_TABLE,
    columns=f"""
    project LowCardinality(String),
    trace_id String,
    detector_version LowCardinality(String),
    span_count UInt64,
    {AMPLIFICATION_COLUMNS[0]},
    {AMPLIFICATION_COLUMNS[1]},
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

OWN_TABLES = (RUNS, FINDINGS, METRICS, DETECTED, GATE_RESULTS)

# Where full detection got to in the span table: per partition, the highest insert block then,
# so incremental detection reads only parts written since (detectors/findings.py).
WATERMARK = Table(
    name=WATERMARK_TABLE,
    columns="""
    detector_version String,
    partition_id String,
    max_block UInt64,
    marked_at DateTime64(3) DEFAULT now64(3)""",
    order_by="(detector_version, partition_id)",
    version_column="marked_at",
)

# Bookkeeping per node: each node records what it applied; every statement is idempotent, so a
# node that missed a record re-applies harmlessly.
MIGRATIONS = f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}
(
    version UInt32,
    description String,
    applied_at DateTime64(3) DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version"""


def migrations_table(cluster: str | None = None) -> str:
    """CREATE statement of the table that records which migrations were applied."""
    on_cluster = _on_cluster(check_cluster_name(cluster))
    return MIGRATIONS.replace(MIGRATIONS_TABLE, MIGRATIONS_TABLE + on_cluster, 1)


@dataclass(frozen=True)
class Migration:
    """One numbered step of the schema; its statements are idempotent."""

    version: int
    description: str
    statements: tuple[str, ...]


def migrations(cluster: str | None = None, cloud: bool = False,
               ttl_days: int | None = DEFAULT_TTL_DAYS) -> list[Migration]:
    """All migrations in order. Each is idempotent (IF NOT EXISTS), so re-applying is safe.

    ``ttl_days`` is the retention a new store starts with; changing it on an existing store is
    ``ttl_statement``'s job (``Store.migrate(ttl_days=...)``), since migrations run once.
    """
    cluster = check_cluster_name(cluster)
    ttl = (ttl_statement(ttl_days, cluster, cloud),) if ttl_days else ()
    return [
        Migration(
            1,
            "span table (OTel exporter columns), runs, findings, metrics, detection state, gate results",
            tuple(
                s
                for table in (spans_table(None), *OWN_TABLES)
                for s in table.create(cluster, cloud)
            ),
        ),
        Migration(2, f"span retention: {f'TTL {ttl_days} days' if ttl_days else 'none'}", ttl),
        Migration(3, "runs filled from run spans as they arrive, whoever writes them",
                  (runs_view(cluster, cloud),)),
        Migration(4, "span inserts deduplicated by token (the collector's replays store once)",
                  (dedup_statement(cluster, cloud),) if cluster is None else ()),
        Migration(5, "attribute lookups pruned by a bloom filter over attribute values",
                  value_index_statements(cluster, cloud)),
        Migration(6, "detection watermark: incremental detection reads only new parts",
                  tuple(WATERMARK.create(cluster, cloud))),
        Migration(7, "gate reads pruned: runs newest first by commit and by branch (projections), "
                  "runs by tag and trace, findings by run id, gate results by commit (bloom filters)",
                  gate_read_statements(cluster, cloud)),
        Migration(8, "error amplification counted once, by detection, and kept with each judged trace",
                  amplification_statements(cluster, cloud)),
    ]


# The gate (gate/judge.py) reads the newest runs of a commit or a branch, the findings of those
# runs, and the gate results of a few commits. The runs table is keyed by run id (random), so
# without these every gate read the whole table: narrow projections ordered by commit and by
# branch, each newest last, let it read in reverse order and stop after the runs it needs (no
# project in their keys: the gate's project is often "any", which would break that order); bloom
# filters find a pytest session's runs (by tag, then trace), findings by run id and the gate
# results of given commits without a scan.
# ReplacingMergeTree accepts projections only when told how merges treat them ('rebuild').
RUNS_PROJECTION_COLUMNS = ("project, run_id, trace_id, commit, branch, test_id, build_url, "
                           "started_at, tags, updated_at")
RUNS_BY_COMMIT = "runs_by_commit"
RUNS_BY_BRANCH = "runs_by_branch"
RUNS_PROJECTIONS = (
    (RUNS_BY_COMMIT, "commit, started_at"),
    (RUNS_BY_BRANCH, "branch, started_at"),
)
GATE_READ_INDEXES = (
    (RUNS_TABLE, "idx_tags tags TYPE bloom_filter(0.01) GRANULARITY 1"),
    (RUNS_TABLE, "idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 1"),
    (FINDINGS_TABLE, "idx_run_id run_id TYPE bloom_filter(0.01) GRANULARITY 1"),
    (GATE_TABLE, "idx_commit commit TYPE bloom_filter(0.01) GRANULARITY 1"),
)


def gate_read_statements(cluster: str | None = None, cloud: bool = False) -> tuple[str, ...]:
    """ALTERs adding the gate's projections and indexes, then building them for existing parts."""
    on_cluster = _on_cluster(check_cluster_name(cluster))
    runs = RUNS.storage_name(cluster, cloud)
    out = [f"ALTER TABLE {runs}{on_cluster} MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'"]
    for name, order in RUNS_PROJECTIONS:
        out.append(f"ALTER TABLE {runs}{on_cluster} ADD PROJECTION IF NOT EXISTS {name} "
                   f"(SELECT {RUNS_PROJECTION_COLUMNS} ORDER BY ({order}))")
        out.append(f"ALTER TABLE {runs}{on_cluster} MATERIALIZE PROJECTION {name}")
    for table, index in GATE_READ_INDEXES:
        out.append(f"ALTER TABLE {table}{on_cluster} ADD INDEX IF NOT EXISTS {index}")
        out.append(f"ALTER TABLE {table}{on_cluster} MATERIALIZE INDEX {index.split()[0]}")
    return tuple(out)


def value_index_statements(cluster: str | None = None, cloud: bool = False) -> tuple[str, ...]:
    """ALTERs adding the attribute-value indexes to a span table created before them.

    Parts written before are indexed as merges rewrite them; new inserts are indexed at once.
    """
    table = spans_table().storage_name(check_cluster_name(cluster), cloud)
    on_cluster = _on_cluster(cluster)
    return tuple(f"ALTER TABLE {table}{on_cluster} ADD INDEX IF NOT EXISTS {index}"
                 for index in SPAN_VALUE_INDEXES)


def amplification_statements(cluster: str | None = None, cloud: bool = False) -> tuple[str, ...]:
    """ALTER adding the amplification counts to a detected-traces table created before them."""
    table = DETECTED.storage_name(check_cluster_name(cluster), cloud)
    columns = ", ".join(f"ADD COLUMN IF NOT EXISTS {col}" for col in AMPLIFICATION_COLUMNS)
    return (f"ALTER TABLE {table}{_on_cluster(cluster)} {columns}",)


# A replayed batch carries the token of its first attempt; the last N tokens per table are
# remembered. Replicated and Shared engines deduplicate by default; plain MergeTree needs this.
DEDUP_WINDOW = 10_000


def dedup_statement(cluster: str | None = None, cloud: bool = False) -> str:
    """ALTER that makes a single-node span table drop an insert whose token it has seen."""
    table = spans_table().storage_name(check_cluster_name(cluster), cloud)
    return f"ALTER TABLE {table} MODIFY SETTING non_replicated_deduplication_window = {DEDUP_WINDOW}"


def ttl_statement(ttl_days: int | None, cluster: str | None = None, cloud: bool = False) -> str:
    """ALTER that sets the span table's retention to ``ttl_days`` (None or 0: remove it)."""
    table = spans_table().storage_name(check_cluster_name(cluster), cloud)
    on_cluster = _on_cluster(cluster)
    if ttl_days:
        return f"ALTER TABLE {table}{on_cluster} MODIFY TTL {ttl_expression(ttl_days)}"
    return f"ALTER TABLE {table}{on_cluster} REMOVE TTL"


# The engine of each of some tables in the store's database (ReplacingMergeTree, Distributed...).
TABLE_ENGINES_SQL = (
    "SELECT name, engine FROM system.tables "
    "WHERE database = currentDatabase() AND name IN {tables:Array(String)}"
)

# The CREATE statement of a table as the server holds it; ``ttl_days_of`` reads the TTL from it.
CREATE_QUERY_SQL = (
    "SELECT create_table_query FROM system.tables "
    "WHERE database = currentDatabase() AND name = {table:String}"
)


def ttl_days_of(create_table_query: str) -> int | None:
    """The span TTL in days written in a CREATE statement, or None when it has none."""
    found = _TTL_DAYS.search(create_table_query)
    if found:
        return int(found.group(1))
    return None


# ClickHouse Cloud registers the SharedMergeTree family and runs with cloud_mode on; a
# self-managed server has neither. Only the negative answer is tested here (no Cloud access).
CLOUD_PROBE_SQL = (
    "SELECT (SELECT count() FROM system.table_engines WHERE name = 'SharedReplacingMergeTree')"
    " + (SELECT count() FROM system.settings WHERE name = 'cloud_mode' AND value NOT IN ('0', ''))"
    " AS cloud"
)


def is_cloud(scalar: Callable[[str], Any]) -> bool:
    """True when the server behind ``scalar`` (a function running one SQL query) is Cloud."""
    return bool(scalar(CLOUD_PROBE_SQL))


def runs_view(cluster: str | None = None, cloud: bool = False) -> str:
    """A materialised view: each run span inserted into the span table becomes a run row.

    It fires on every insert into the span table, ours or the OpenTelemetry Collector's. On a
    cluster it watches each shard's local span table (a Distributed table only forwards rows),
    and writes to the runs table, which every node replicates.
    """
    on_cluster = _on_cluster(check_cluster_name(cluster))
    target = RUNS.storage_name(cluster, cloud)
    source = spans_table().storage_name(cluster, cloud)
    span, res = "SpanAttributes", "ResourceAttributes"
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {RUNS_VIEW}{on_cluster} TO {target} AS
SELECT
    {span}['{conv.RUN_ID}'] AS run_id,
    {res}['{conv.RESOURCE_PROJECT}'] AS project,
    TraceId AS trace_id,
    {res}['{conv.RESOURCE_SOURCE_ID}'] AS source_id,
    {span}['{conv.RUN_NAME}'] AS name,
    {res}['{conv.RESOURCE_SYSTEM}'] AS system,
    ServiceName AS service,
    Timestamp AS started_at,
    Duration AS duration_ns,
    StatusCode AS status,
    {span}['{conv.RUN_COMMIT}'] AS commit,
    {span}['{conv.RUN_BRANCH}'] AS branch,
    {span}['{conv.RUN_BUILD_ID}'] AS build_id,
    {span}['{conv.RUN_BUILD_URL}'] AS build_url,
    {span}['{conv.RUN_TEST_ID}'] AS test_id,
    JSONExtract(if({span}['{conv.RUN_TAGS}'] = '', '[]', {span}['{conv.RUN_TAGS}']),
                'Array(String)') AS tags,
    {span}['{conv.RUN_TOPOLOGY}'] AS topology,
    {span} AS attributes,
    now64(3) AS updated_at
FROM {source}
WHERE {span}['{conv.SPAN_TYPE}'] = '{conv.SpanType.RUN.value}' AND {span}['{conv.RUN_ID}'] != ''"""


def statements(cluster: str | None = None, cloud: bool = False,
               ttl_days: int | None = DEFAULT_TTL_DAYS) -> list[str]:
    """Every statement ``ddl`` prints, in order, without comments (for tools and tests)."""
    out = [migrations_table(cluster)]
    for m in migrations(cluster, cloud, ttl_days):
        out.extend(m.statements)
    return out


def ddl(cluster: str | None = None, cloud: bool = False,
        ttl_days: int | None = DEFAULT_TTL_DAYS) -> str:
    """The whole DDL as one SQL script, as ``handoffs schema`` prints it.

    Each migration's comment line is attached to its first statement, so a client that splits
    the script on ``;`` gets exactly the statements of ``statements()``.
    """
    parts = [migrations_table(cluster)]
    pending = ""
    for m in migrations(cluster, cloud, ttl_days):
        pending += f"-- migration {m.version}: {m.description}\n"
        for stmt in m.statements:
            parts.append(pending + stmt)
            pending = ""
    return ";\n\n".join(parts) + ";\n"
