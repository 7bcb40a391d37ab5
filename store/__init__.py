"""Where spans, runs, findings and metrics are stored: ClickHouse, embedded (chDB) or a server.

    store = open_store("chdb:///tmp/handoffs")      # or clickhouse://user:pw@host:8123/db
    store.insert_spans(batch.to_arrow())
    rows = store.query("SELECT count() AS n FROM otel_traces WHERE TraceId = {t:String}", {"t": tid})

Every query is parameterised with ClickHouse's ``{name:Type}`` syntax; SQL is never assembled
from user input. Both engines run the same DDL (``handoffs.store.schema``) and the same queries.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from handoffs.errors import StoreError, StoreUnreachableError, UsageError

from . import schema
from .engines import ChdbEngine, DeferredEngine, Engine, HttpEngine, Params, ReadOnlyEngine
from .sharing import open_embedded
from .spans import SPAN_ARROW_SCHEMA, Event, Link, SpanBatch, expired, last_row_per_span
from .url import StoreURL, default_store_url, parse_store_url

__all__ = [
    "Event", "Link", "SPAN_ARROW_SCHEMA", "SpanBatch", "Store", "StoreError", "StoreURL",
    "UsageError", "among", "default_store_url", "open_store", "parse_store_url", "schema",
    "expired",
]


# Past this many values a literal list is read as a set from a subquery (see ``among``).
LONG_LIST = 10_000


def among(column: str, param: str, count: int) -> str:
    """SQL: ``column`` is one of the ``count`` values of the ``Array(String)`` parameter ``param``.

    A short list stays a literal, which the primary key and the bloom filter indexes use. A long
    one becomes a set read from a subquery: against a literal array of more than about 25,000
    values the engine compares every row with every value (2 minutes for 28,000 trace ids on 1M
    spans, 0.25 s as a set). ``column`` and ``param`` are names in our code, never user input.
    """
    if count <= LONG_LIST:
        return f"{column} IN {{{param}:Array(String)}}"
    return f"{column} IN (SELECT arrayJoin({{{param}:Array(String)}}))"


class Store:
    """The span table and our own tables beside it, on one engine."""

    def __init__(self, engine: Engine, url: StoreURL) -> None:
        self.engine = engine
        self.url = url

    @property
    def embedded_owner(self) -> bool:
        """True when this process holds the chDB directory itself (not through its owner)."""
        return isinstance(self.engine, ChdbEngine)

    # --- schema ---------------------------------------------------------------------------
    def migrate(self, ttl_days: int | None = None, cluster: str | None = None,
                cloud: bool | None = None) -> list[int]:
        """Apply the migrations this store has not seen yet; return their versions.

        ``ttl_days``: None keeps the span retention as it is (a new store gets
        ``schema.DEFAULT_TTL_DAYS``); 0 removes it; N sets it to N days, on an existing store
        too. ``cloud`` None asks the server whether it is ClickHouse Cloud (with ``cluster``).
        """
        if cluster and cloud is None:
            cloud = schema.is_cloud(self.scalar)
        cloud = bool(cloud)
        self.engine.command(schema.migrations_table(cluster))
        done = {r["version"] for r in self.query(
            f"SELECT version FROM {schema.MIGRATIONS_TABLE} FINAL")}
        first_ttl = schema.DEFAULT_TTL_DAYS if ttl_days is None else ttl_days
        applied = []
        for m in schema.migrations(cluster=cluster, cloud=cloud, ttl_days=first_ttl):
            if m.version in done:
                continue
            for stmt in m.statements:
                self.engine.command(stmt)
            self.insert(schema.MIGRATIONS_TABLE, pa.table({
                "version": pa.array([m.version], pa.uint32()),
                "description": [m.description],
            }))
            applied.append(m.version)
        if ttl_days is not None and self.span_ttl_days(cluster, cloud) != (ttl_days or None):
            self.engine.command(schema.ttl_statement(ttl_days, cluster, cloud))
        return applied

    def span_ttl_days(self, cluster: str | None = None, cloud: bool = False) -> int | None:
        """The span table's retention in days as the server has it, or None for none."""
        table = schema.spans_table().storage_name(cluster, cloud)
        create = self.scalar(schema.CREATE_QUERY_SQL, {"table": table})
        return schema.ttl_days_of(create or "")

    def schema_version(self) -> int:
        rows = self.query(f"SELECT max(version) AS v FROM {schema.MIGRATIONS_TABLE}")
        return int(rows[0]["v"]) if rows else 0

    # --- reads ----------------------------------------------------------------------------
    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        return self.engine.query_arrow(sql, params)

    def query(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        """Rows as dicts. For large results prefer ``query_arrow``."""
        return self.engine.query_arrow(sql, params).to_pylist()

    def scalar(self, sql: str, params: Params | None = None) -> Any:
        table = self.engine.query_arrow(sql, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def command(self, sql: str, params: Params | None = None) -> None:
        self.engine.command(sql, params)

    # --- writes ---------------------------------------------------------------------------
    def insert(self, table: str, data: pa.Table) -> None:
        self.engine.insert_arrow(table, data)

    def insert_spans(self, spans: pa.Table | SpanBatch, dedup_token: str | None = None) -> int:
        """Insert span rows (an Arrow table in ``SPAN_ARROW_SCHEMA``); return how many.

        A span sent twice in one insert keeps its last row here, as the table's merges would,
        so the engine's own in-block collapse (about 2x the cost of the insert) is turned off.
        An insert retried with the same ``dedup_token`` is stored once. A table of many chunks (the
        collector's writer joins one per request) is made contiguous first: chDB reads many small
        chunks at about 1.5x the CPU per row, and a contiguous table is not copied.
        """
        table = last_row_per_span(spans.to_arrow() if isinstance(spans, SpanBatch) else spans).combine_chunks()
        settings: Params = {"optimize_on_insert": 0}
        if dedup_token:
            settings["insert_deduplication_token"] = dedup_token
        self.engine.insert_arrow(schema.SPAN_TABLE, table, settings=settings)
        return table.num_rows

    def merge_versions(self, *tables: str) -> list[str]:
        """Merge each table's rows down to their latest version now (``OPTIMIZE ... FINAL``);
        return the tables merged.

        For after a pass that wrote every row of a ReplacingMergeTree again (every trace judged
        anew): the engine's background merges may leave the old versions (or deleted rows) in
        place for long (a findings table of 3 parts stayed so for the 107 s watched), and every
        ``FINAL`` read merges them meanwhile: at 16M spans the dashboard's pages took 1.1-2.3x
        as long (``bench/dashboard.py --rejudged``). Tables of other engines (a cluster's
        Distributed tables) are left to the engine's merges.
        """
        engines = {r["name"]: r["engine"] for r in self.query(schema.TABLE_ENGINES_SQL, {"tables": list(tables)})}
        merged = [t for t in tables if engines.get(t, "").endswith("MergeTree")]
        for table in merged:
            self.engine.command(f"OPTIMIZE TABLE `{table}` FINAL")
        return merged

    def close(self) -> None:
        self.engine.close()


def open_store(url: str | None = None, migrate: bool = True, read_only: bool = False,
               wait_for_server: bool = False, create: bool = True) -> Store:
    """Open the store at ``url`` (default: ``$HANDOFFS_STORE`` or the embedded store).

    On the embedded store, the first process owns the chDB directory and serves it to the
    others over ClickHouse's HTTP interface (see ``handoffs.store.sharing``). ``read_only``
    (the dashboard) refuses every write and never migrates; on a server, also give it a
    ClickHouse user with read-only rights. ``wait_for_server`` (the collector): a server that
    does not answer yet is connected to, and migrated, on first use instead of failing here.
    ``create=False`` (commands that judge what is stored): an embedded store must exist already.
    """
    parsed = parse_store_url(url)
    engine: Engine
    if parsed.embedded:
        engine = open_embedded(parsed, read_only=read_only, create=create)
    else:
        try:
            engine = HttpEngine(parsed)
        except StoreUnreachableError:
            if not wait_for_server or read_only:
                raise
            return Store(DeferredEngine(parsed, lambda e: Store(e, parsed).migrate() if migrate else None),
                         parsed)
    if read_only:
        engine, migrate = ReadOnlyEngine(engine), False
    store = Store(engine, parsed)
    if migrate:
        store.migrate()
    return store
