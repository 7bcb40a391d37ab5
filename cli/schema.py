"""``handoffs schema`` prints the DDL; ``handoffs migrate`` applies it."""

from __future__ import annotations

import click

from handoffs.store import open_store
from handoffs.store import schema as store_schema

from .options import store_option


@click.command()
@click.option("--cluster", default=None, metavar="NAME",
              help="Print the clustered form: ON CLUSTER, replicated tables under Distributed ones.")
@click.option("--cloud", is_flag=True, help="With --cluster: SharedMergeTree, for ClickHouse Cloud.")
@click.option("--ttl-days", type=int, default=store_schema.DEFAULT_TTL_DAYS, show_default=True,
              help="Span retention in days (0: keep forever).")
def schema(cluster: str | None, cloud: bool, ttl_days: int) -> None:
    """Print the DDL the store applies."""
    click.echo(store_schema.ddl(cluster=cluster, cloud=cloud, ttl_days=ttl_days or None))


@click.command()
@store_option
@click.option("--cluster", default=None, metavar="NAME", help="Apply the clustered form ON CLUSTER NAME.")
@click.option("--ttl-days", type=int, default=store_schema.DEFAULT_TTL_DAYS, show_default=True,
              help="Span retention in days (0: keep forever).")
def migrate(store_url: str | None, cluster: str | None, ttl_days: int) -> None:
    """Apply the schema migrations the store has not seen yet."""
    store = open_store(store_url, migrate=False)
    applied = store.migrate(ttl_days=ttl_days or None, cluster=cluster)
    click.echo(f"applied migrations {applied}" if applied else "schema is up to date")
