"""The ``handoffs`` command line: one module per command, loaded only when it is called.

The contract (DESIGN.md): bad input gets one clear line on stderr and exit code 2; nothing
already stored is lost. ``--store`` defaults to ``$HANDOFFS_STORE`` or the embedded store.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading

import click

from handoffs import __version__
from handoffs.errors import HandoffsError

# command name -> "module:attribute"; each module owns its command and nothing else.
COMMANDS: dict[str, str] = {
    "demo": "handoffs.cli.demo:demo",
    "collect": "handoffs.cli.collect:collect",
    "import": "handoffs.cli.importing:import_",
    "detect": "handoffs.cli.detect:detect",
    "attribute": "handoffs.cli.detect:attribute",
    "gate": "handoffs.cli.gate:gate",
    "dashboard": "handoffs.cli.dashboard:dashboard",
    "schema": "handoffs.cli.schema:schema",
    "migrate": "handoffs.cli.schema:migrate",
}

HELP = """Is delegation working? Trace agent hand-offs, detect failures, gate CI on them.

\b
Typical use:
  handoffs demo                         simulated team, end to end, on the embedded store
  handoffs collect                      receive OTLP/HTTP on 127.0.0.1:4318
  handoffs detect --format jsonl        findings per trace
  handoffs gate --policy handoffs.toml  exit 1 when delegation quality regressed
  handoffs dashboard                    the Streamlit dashboard
"""


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_LazyGroup, help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="handoffs")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, for diagnosis.")
def cli(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        from handoffs.store.engines import quiet_client_logs  # here: --help needs no pyarrow

        quiet_client_logs()


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a CI job cancelled, ``timeout``, ``kill``) unwinds like Ctrl-C: what a command
    holds is released on the way out (a detection pass drops its scratch tables)."""
    click.echo("terminated", err=True)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: HandoffsError becomes one line on stderr."""
    on_main = threading.current_thread() is threading.main_thread()  # only it may take signals
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main else None
    try:
        # Without standalone mode click returns the code of ctx.exit(n) instead of exiting.
        code = cli.main(args=argv, prog_name="handoffs", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except HandoffsError as exc:
        click.echo(f"handoffs: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)
    if isinstance(code, int):
        sys.exit(code)
