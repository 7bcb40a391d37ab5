"""``handoffs collect``: serve OTLP/HTTP and store what arrives (see docs/collector.md)."""

from __future__ import annotations

import sys

import click

from handoffs.cli.options import store_option


@click.command(help="""Receive OpenTelemetry spans over OTLP/HTTP and store them.

\b
Serves POST /v1/traces (protobuf or JSON, gzip accepted) and GET /health.
Acknowledged spans are fsynced to a spool first, so they survive a crash or a
store outage. SIGTERM or Ctrl-C stops accepting, flushes, and exits 0.
Listening beyond loopback requires --tokens (or $HANDOFFS_TOKENS).""")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4318, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0 picks a free one).")
@store_option
@click.option("--spool", "spool_dir", default=None, metavar="DIR",
              help="Write-ahead spool directory (default: beside the store).")
@click.option("--tokens", "tokens_file", default=None, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False),
              help="Bearer tokens, one 'project token' pair per line; required off loopback.")
@click.option("--tls-cert", default=None, metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="TLS certificate chain (PEM), to serve HTTPS.")
@click.option("--tls-key", default=None, metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="TLS private key (PEM).")
@click.option("--max-body", default=16, show_default=True, type=click.IntRange(1, 1024), metavar="MIB",
              help="Largest request body, after gzip, in MiB.")
@click.option("--spool-max", default=1024, show_default=True, type=click.IntRange(1), metavar="MIB",
              help="Spool size not yet stored before answering 429.")
def collect(host: str, port: int, store_url: str | None, spool_dir: str | None, tokens_file: str | None,
            tls_cert: str | None, tls_key: str | None, max_body: int, spool_max: int) -> None:
    from handoffs.collector import Collector, load_tokens
    from handoffs.store import open_store

    tokens = load_tokens(tokens_file)
    store = open_store(store_url, wait_for_server=True)  # a server that is down: spool until it is back
    collector = Collector(store, host=host, port=port, spool_dir=spool_dir, tokens=tokens,
                          tls_cert=tls_cert, tls_key=tls_key, max_body_bytes=max_body << 20,
                          spool_max_bytes=spool_max << 20)

    def ready(c: Collector) -> None:
        click.echo(f"handoffs collect: {c.url} -> {store.url.redacted()} (spool {c.spool_dir}); "
                   "Ctrl-C to stop", err=True)

    sys.exit(collector.serve_forever(ready))
