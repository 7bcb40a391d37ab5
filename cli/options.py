"""Options shared by several commands, declared once."""

from __future__ import annotations

import click

from handoffs.store.url import ENV_STORE


def _given(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # An empty --store (an unset variable in a script) would silently mean the default store.
    if value == "" and ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.COMMANDLINE:
        raise click.BadParameter("is empty; give a store URL, or leave --store out for the default store")
    return value or None


store_option = click.option(
    "--store",
    "store_url",
    envvar=ENV_STORE,
    default=None,
    callback=_given,
    metavar="URL",
    help="chdb:///dir (embedded, the default) or clickhouse://user:pw@host:8123/db. "
    "Also $HANDOFFS_STORE.",
)
