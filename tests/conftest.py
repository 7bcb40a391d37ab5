"""Fixtures every test layer shares: a fresh store per test, on each engine.

chDB admits one data directory per process, so the whole test process shares one directory
and each test gets a database of its own in it. ``store`` is the embedded engine;
``any_store`` runs a test on both engines (chDB in-process, and clickhouse-connect against the
same engine behind our ClickHouse HTTP endpoint), plus a real server when
``HANDOFFS_TEST_CLICKHOUSE_URL`` is set.
"""

from __future__ import annotations

import os
import socket
import socketserver
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from handoffs.store import Store, open_store
from handoffs.store.engines import ChdbEngine, HttpEngine
from handoffs.store.sharing import open_embedded, owned_endpoint
from handoffs.store.url import StoreURL, parse_store_url

ENV_SERVER = "HANDOFFS_TEST_CLICKHOUSE_URL"


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chdb-store")
    open_embedded(StoreURL("chdb", path=path))
    return path


@pytest.fixture
def accepted_nodelay(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """TCP_NODELAY of each connection an HTTP server of ours accepts during the test.

    The collector and the store's endpoint both serve through ``socketserver``'s stream
    handler, whose ``setup`` is where the option is set.
    """
    seen: list[int] = []
    original = socketserver.StreamRequestHandler.setup

    def setup(self: socketserver.StreamRequestHandler) -> None:
        original(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(socketserver.StreamRequestHandler, "setup", setup)
    return seen


def _fresh_database() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def _embedded_store(chdb_dir: Path, database: str) -> Store:
    url = StoreURL("chdb", path=chdb_dir, database=database)
    store = Store(ChdbEngine(chdb_dir, database), url)
    store.migrate()
    return store


def _endpoint_store(chdb_dir: Path, database: str) -> Store:
    _embedded_store(chdb_dir, database)  # the database must exist before a client picks it
    ep = owned_endpoint(chdb_dir)
    assert ep is not None
    url = StoreURL("clickhouse", host=ep.host, port=ep.port, password=ep.password,
                   database=database, options={"compress": "0"})
    store = Store(HttpEngine(url), url)
    store.migrate()
    return store


@pytest.fixture
def store(chdb_dir: Path) -> Iterator[Store]:
    """A migrated, empty embedded store (its own database in the process's chDB directory)."""
    database = _fresh_database()
    yield _embedded_store(chdb_dir, database)
    ChdbEngine(chdb_dir).command(f"DROP DATABASE IF EXISTS `{database}`")


def _engine_params() -> list[str]:
    return ["chdb", "http"] + (["server"] if os.environ.get(ENV_SERVER) else [])


@pytest.fixture(params=_engine_params())
def any_store(request: pytest.FixtureRequest, chdb_dir: Path) -> Iterator[Store]:
    """The same empty store through each engine: the conformance suite runs on all of them."""
    database = _fresh_database()
    if request.param == "chdb":
        yield _embedded_store(chdb_dir, database)
    elif request.param == "http":
        yield _endpoint_store(chdb_dir, database)
    else:
        base = parse_store_url(os.environ[ENV_SERVER])
        admin = open_store(os.environ[ENV_SERVER], migrate=False)
        admin.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        url = StoreURL(base.scheme, host=base.host, port=base.port, username=base.username,
                       password=base.password, database=database, options=base.options)
        server_store = Store(HttpEngine(url), url)
        server_store.migrate()
        yield server_store
        admin.command(f"DROP DATABASE IF EXISTS `{database}`")
        return
    ChdbEngine(chdb_dir).command(f"DROP DATABASE IF EXISTS `{database}`")
