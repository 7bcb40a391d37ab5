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

from handoffs.errors import StoreError, UsageError

from . import schema
from .engines import ChdbEngine, Engine, HttpEngine, Params
from .sharing import open_embedded
from .spans import SPAN_ARROW_SCHEMA, Event, Link, SpanBatch
from .url import StoreURL, default_store_url, parse_store_url

__all__ = [
    "Event", "Link", "SPAN_ARROW_SCHEMA", "SpanBatch", "Store", "StoreError", "StoreURL",
    "UsageError", "default_store_url", "open_store", "parse_store_url", "schema",
]


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
    def migrate(self, ttl_days: int | None = schema.DEFAULT_TTL_DAYS,
                cluster: str | None = None) -> list[int]:
        """Apply the migrations this store has not seen yet; return their versions."""
        on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
        self.engine.command(
            schema.MIGRATIONS.replace(schema.MIGRATIONS_TABLE, schema.MIGRATIONS_TABLE + on_cluster, 1)
        )
        done = {r["version"] for r in self.query(
            f"SELECT version FROM {schema.MIGRATIONS_TABLE} FINAL")}
        applied = []
        for m in schema.migrations(cluster=cluster, ttl_days=ttl_days):
            if m.version in done:
                continue
            for stmt in m.statements:
                self.engine.command(stmt)
            self.insert(schema.MIGRATIONS_TABLE, pa.table({
                "version": pa.array([m.version], pa.uint32()),
                "description": [m.description],
            }))
            applied.append(m.version)
        return applied

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

    def insert_spans(self, spans: pa.Table | SpanBatch) -> int:
        """Insert span rows (an Arrow table in ``SPAN_ARROW_SCHEMA``); return how many."""
        table = spans.to_arrow() if isinstance(spans, SpanBatch) else spans
        self.engine.insert_arrow(schema.SPAN_TABLE, table)
        return table.num_rows

    def close(self) -> None:
        self.engine.close()


def open_store(url: str | None = None, migrate: bool = True) -> Store:
    """Open the store at ``url`` (default: ``$HANDOFFS_STORE`` or the embedded store).

    On the embedded store, the first process owns the chDB directory and serves it to the
    others over ClickHouse's HTTP interface (see ``handoffs.store.sharing``).
    """
    parsed = parse_store_url(url)
    engine: Engine = open_embedded(parsed) if parsed.embedded else HttpEngine(parsed)
    store = Store(engine, parsed)
    if migrate:
        store.migrate()
    return store
