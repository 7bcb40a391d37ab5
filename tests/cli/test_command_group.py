"""The ``handoffs`` group: every command it lists loads, and ``--help`` shows them all."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from handoffs.cli import COMMANDS, cli, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_listed_command_loads(name: str) -> None:
    module, _, attr = COMMANDS[name].partition(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command)
    assert command.help or command.short_help


def test_help_lists_every_command() -> None:
    # --help loads every command to show its summary: one missing module broke it for all.
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)


def test_an_unknown_command_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["benchmark"])
    assert exit_.value.code == 2
    assert "No such command 'benchmark'" in capsys.readouterr().err


def test_an_unreachable_store_is_one_line_on_stderr() -> None:
    # The HTTP client logs a warning per retry and per failure; the error line says it all.
    done = subprocess.run([sys.executable, "-c", "from handoffs.cli import main; main()", "migrate",
                           "--store", "clickhouse://u:p@127.0.0.1:1/db"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["handoffs: error: cannot reach ClickHouse at clickhouse://u@127.0.0.1:1/db: "
                                        "Connection refused. Check the host, port and credentials, and that "
                                        "the server is running."]


def test_an_empty_store_option_is_refused_not_read_as_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    # `--store "$STORE"` with the variable unset would otherwise judge ~/.handoffs without a word.
    with pytest.raises(SystemExit) as exit_:
        main(["detect", "--store", ""])
    assert exit_.value.code == 2
    assert "Invalid value for '--store': is empty" in capsys.readouterr().err


def test_nan_is_not_a_failure_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--failure-rate", "nan"])
    assert exit_.value.code == 2
    assert "Invalid value for '--failure-rate': nan is not a number between 0 and 1" in capsys.readouterr().err
