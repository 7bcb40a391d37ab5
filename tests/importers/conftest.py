"""Fixtures of the importers' tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from handoffs.cli import main
from handoffs.store import Store


@pytest.fixture
def run_import(store: Store) -> Callable[..., int]:
    """``handoffs import FORMAT PATH...`` into the test's store, returning its exit code."""

    def run(fmt: str, *paths: Path) -> int:
        try:
            main(["import", fmt, *map(str, paths), "--store",
                  f"chdb://{store.url.path}?database={store.url.database}"])
        except SystemExit as exit_:
            return int(exit_.code or 0)
        return 0

    return run
