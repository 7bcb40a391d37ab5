"""Options shared by several commands, declared once."""

from __future__ import annotations

import click

from handoffs.store.url import ENV_STORE

store_option = click.option(
    "--store",
    "store_url",
    envvar=ENV_STORE,
    default=None,
    metavar="URL",
    help="chdb:///dir (embedded, the default) or clickhouse://user:pw@host:8123/db. "
    "Also $HANDOFFS_STORE.",
)
