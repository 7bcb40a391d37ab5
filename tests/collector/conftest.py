"""Fixtures for the collector's tests (helpers live in collector_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from handoffs.collector import Collector
from handoffs.store import Store


@pytest.fixture
def collector(store: Store, tmp_path: Path) -> Iterator[Collector]:
    """A collector on a free loopback port in front of a fresh store, flushing quickly."""
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05).start()
    yield c
    c.stop()
