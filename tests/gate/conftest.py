"""Fixtures of the gate tests: a seeder writing runs, metrics and findings into a fresh store."""

from __future__ import annotations

import pytest
from gate_seed import Seeder

from handoffs.store import Store


@pytest.fixture
def seed(store: Store) -> Seeder:
    return Seeder(store)
