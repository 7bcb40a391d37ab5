"""``handoffs dashboard``: serve the Streamlit dashboard on 127.0.0.1 over a store.

Streamlit runs in its own process (``python -m streamlit run``), headless, with usage
statistics off and the file watcher off; the store URL reaches the app as ``$HANDOFFS_STORE``.
On the embedded store the dashboard reads through whichever process owns the directory, or
owns it itself (``handoffs.store.sharing``).
"""

from __future__ import annotations

import os
import socket
import sys

import click

from handoffs.dashboards import APP_PATH, ENV_PROJECT
from handoffs.errors import UsageError
from handoffs.store.sharing import check_store
from handoffs.store.url import ENV_STORE, default_store_url, parse_store_url

from .options import store_option

DEFAULT_PORT = 8501


def streamlit_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``streamlit run`` command line the dashboard is served with."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "viewer",
    ]


def _check_port_free(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As Streamlit's server binds: a port left in TIME_WAIT by the last dashboard is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port") from exc


@click.command()
@store_option
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port on 127.0.0.1 to serve the dashboard on.")
@click.option("--project", default="", metavar="NAME",
              help="Show this project only (its users cannot switch to another team's traces).")
def dashboard(store_url: str | None, port: int, project: str) -> None:
    """Start the Streamlit dashboard on 127.0.0.1 (Ctrl-C stops it)."""
    url = store_url or default_store_url()
    parsed = parse_store_url(url)  # a malformed URL is a one-line usage error here, not in the browser
    if parsed.embedded and parsed.path is not None:
        # A mistyped path would serve an error page from a process that looks healthy.
        check_store(parsed.path, parsed.database)
    _check_port_free(port)  # Streamlit would print its own error after our banner and exit 1
    env = dict(os.environ, **{ENV_STORE: url, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
                              ENV_PROJECT: project})
    click.echo(f"handoffs dashboard: http://127.0.0.1:{port}  (store {parsed.redacted()})",
               err=True)
    command = streamlit_command(port)
    try:
        # Replace this process, so Ctrl-C and SIGTERM reach Streamlit directly.
        os.execve(command[0], command, env)
    except OSError as exc:
        raise UsageError(f"cannot start Streamlit ({exc}); is it installed? pip install streamlit") from exc
