"""What a results file in ``bench/results/`` records around a run's figures: when, the exact
command, the machine and its load at the start and at the end (the machine is shared); and the
checkout of an earlier revision that ``--before`` runs compare against."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def header(script: str, argv: list[str] | None, note: str = "") -> list[str]:
    """The first lines of a run's record: date, command, machine and load; ``note`` appended."""
    args = " ".join(sys.argv[1:] if argv is None else argv)
    machine = (f"# {platform.platform()}, {platform.python_version()}, {os.cpu_count()} cores; chDB embedded "
               f"store; load average at start {os.getloadavg()[0]:.1f}")
    return [f"# {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}  python bench/{script} {args}",
            machine + (f"; {note}" if note else "")]


def append(path: Path, lines: list[str]) -> None:
    """Append a run's lines, and the load at its end, to ``path``: earlier runs stay beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write("\n".join([*lines, f"# load average at end {os.getloadavg()[0]:.1f}"]) + "\n\n")


@contextlib.contextmanager
def checkout(rev: str, path: Path) -> Iterator[Path]:
    """A git worktree of revision ``rev`` at ``path``, removed afterwards: run its code with
    ``cwd=path`` (the ``handoffs`` package finds its sibling folders there)."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(path), rev],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)
