"""Traces for detector tests, written by the real SDK into the test's own store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from handoffs import sdk
from handoffs.store import Store


@pytest.fixture
def traced(store: Store) -> Callable[[], object]:
    """``with traced(): ...`` sends the SDK's spans to ``store`` and flushes them on exit."""

    @contextmanager
    def scope() -> Iterator[None]:
        sdk.configure(service_name="detector-tests", store=store, project="tests")
        try:
            yield
        finally:
            sdk.flush()
            sdk.shutdown()

    return scope
