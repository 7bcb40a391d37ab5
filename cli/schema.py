"""``handoffs schema`` prints the DDL; ``handoffs migrate`` applies it (and changes retention)."""

from __future__ import annotations

import click

from handoffs.store import open_store
from handoffs.store import schema as store_schema

from .options import store_option

CLUSTER_HINT = (
    "On a cluster of more than one shard, give the handoffs user "
    "distributed_product_mode = 'local' (spans are sharded by trace, so joins of spans on "
    "TraceId are shard-local), e.g. ALTER USER handoffs SETTINGS distributed_product_mode = "
    "'local', or add ?distributed_product_mode=local to the store URL. See docs/scaling.md."
)


@click.command()
@click.option("--cluster", default=None, metavar="NAME",
              help="Print the clustered form: ON CLUSTER, replicated tables, spans under a "
              "Distributed table sharded by cityHash64(TraceId).")
@click.option("--cloud", is_flag=True,
              help="With --cluster: SharedReplacingMergeTree and no Distributed layer, for ClickHouse Cloud.")
@click.option("--ttl-days", type=click.IntRange(min=0, max=store_schema.MAX_TTL_DAYS), default=store_schema.DEFAULT_TTL_DAYS,
              show_default=True, help="Span retention in days (0: keep forever).")
def schema(cluster: str | None, cloud: bool, ttl_days: int) -> None:
    """Print the DDL the store applies, one statement per ';'."""
    if cloud and not cluster:
        raise click.UsageError("--cloud only changes the clustered form; add --cluster NAME")
    click.echo(store_schema.ddl(cluster=cluster, cloud=cloud, ttl_days=ttl_days or None), nl=False)


@click.command()
@store_option
@click.option("--cluster", default=None, metavar="NAME",
              help="Apply the clustered form ON CLUSTER NAME (the name under <remote_servers>).")
@click.option("--cloud/--no-cloud", default=None,
              help="With --cluster: force or refuse the ClickHouse Cloud form (default: ask the server).")
@click.option("--ttl-days", type=click.IntRange(min=0, max=store_schema.MAX_TTL_DAYS), default=None,
              help="Set the span retention in days, on a new or an existing store (0: keep "
              f"forever). Default: leave it as it is ({store_schema.DEFAULT_TTL_DAYS} on a new store).")
def migrate(store_url: str | None, cluster: str | None, cloud: bool | None,
            ttl_days: int | None) -> None:
    """Apply the schema migrations the store has not seen yet, and the retention asked for."""
    if cloud is not None and not cluster:
        raise click.UsageError("--cloud/--no-cloud only choose the clustered form; add --cluster NAME")
    store = open_store(store_url, migrate=False)
    try:
        if cluster and cloud is None:
            cloud = store_schema.is_cloud(store.scalar)
        applied = store.migrate(ttl_days=ttl_days, cluster=cluster, cloud=cloud)
        click.echo(f"applied migrations {applied}" if applied else "schema is up to date")
        if cluster:
            click.echo("ClickHouse Cloud: SharedReplacingMergeTree tables" if cloud
                       else "self-managed cluster: replicated tables, Distributed otel_traces")
            if not cloud:
                click.echo(CLUSTER_HINT)
        ttl = store.span_ttl_days(cluster, bool(cloud))
        click.echo(f"span retention: {ttl} days" if ttl else "span retention: none (kept forever)")
    finally:
        store.close()
