"""One embedded store, many processes: the owner opens chDB and serves it, the rest connect.

The first process to open a data directory takes an exclusive ``flock`` on ``.handoffs.lock``
inside it, opens chDB, and serves ClickHouse's HTTP interface on a loopback port, recorded in
``.handoffs-endpoint.json`` (mode 0600, with a random password). Any other process finds the
lock held, reads that file, and connects with clickhouse-connect. The lock dies with its
process, so a crashed owner never blocks the next one.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from handoffs.errors import StoreError

from .endpoint import ClickHouseEndpoint
from .engines import ChdbEngine, HttpEngine
from .schema import SPAN_TABLE
from .url import StoreURL

LOCK_FILE = ".handoffs.lock"
ENDPOINT_FILE = ".handoffs-endpoint.json"


@dataclass
class Ownership:
    """What the owning process holds: the lock file and the endpoint it serves."""

    lock: IO[str]
    endpoint: ClickHouseEndpoint
    info_path: Path

    def release(self) -> None:
        self.endpoint.stop()
        try:
            self.info_path.unlink()
        except FileNotFoundError:
            pass
        self.lock.close()


_owned: dict[Path, tuple[ChdbEngine, Ownership]] = {}


@atexit.register
def _release_all() -> None:
    """Stop serving before the interpreter exits: chDB crashes at shutdown under a live server."""
    for _engine, ownership in _owned.values():
        ownership.release()
    _owned.clear()
    ChdbEngine.shutdown()


def open_embedded(url: StoreURL, wait: float = 10.0, read_only: bool = False,
                  create: bool = True) -> ChdbEngine | HttpEngine:
    """Open the embedded store at ``url.path``: own it, or connect to its owner (with the
    owner's read-only password when ``read_only``, so the owner refuses its writes too).
    ``create=False`` (and ``read_only``) refuse a directory that holds no store yet."""
    assert url.path is not None
    path = _resolved(url.path)
    if read_only or not create:
        # Only commands that fill a store make one: a mistyped path would show, or judge, an empty one.
        check_store(path, url.database)
    if path in _owned:
        owned = _owned[path][0]
        # The one session serves every database in the directory; honour ?database= too.
        return owned if url.database == owned.database else ChdbEngine(path, url.database)
    deadline = time.monotonic() + wait
    while True:
        lock = _lock_file(path)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            info = _read_endpoint(path)
            if info is not None:
                try:
                    password = info.get("readonly_password", "") if read_only else info["password"]
                    return HttpEngine(StoreURL("clickhouse", host=info["host"], port=info["port"],
                                               password=password, database=url.database,
                                               options={"compress": "0"}))
                except StoreError:
                    pass  # the owner is going away; try again to take the lock
            if time.monotonic() > deadline:
                raise StoreError(
                    f"the embedded store at {path} is held by another process that does not "
                    f"serve it (pid in {path / LOCK_FILE}); stop that process or wait for it"
                ) from None
            time.sleep(0.1)
            continue
        break
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    engine = ChdbEngine(path, url.database)
    endpoint = ClickHouseEndpoint(engine, password=secrets.token_urlsafe(24),
                                  readonly_password=secrets.token_urlsafe(24)).start()
    info_path = path / ENDPOINT_FILE
    tmp = info_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": os.getpid(), "host": endpoint.host, "port": endpoint.port,
                   "password": endpoint.password,
                   "readonly_password": endpoint.readonly_password}, fh)
    os.replace(tmp, info_path)
    _owned[path] = (engine, Ownership(lock, endpoint, info_path))
    return engine


# chDB makes this directory when it first opens a store; an empty or foreign directory lacks it.
_STORE_MARK = "metadata"


def check_store(path: Path, database: str = "default") -> None:
    """Raise the one StoreError for a directory that holds no embedded store, or none with
    ``database`` (``?database=``), without opening it: for commands that need one to exist."""
    path = _resolved(path)
    metadata = path / _STORE_MARK
    try:
        has_store = metadata.is_dir()
        # The engine always has "default"; another database has its metadata entry once made.
        has_database = has_store and (database == "default" or (metadata / database).exists())
        # Every command that fills a store makes the span table first: a directory without it
        # (an empty "metadata" folder, a chDB directory of another program) holds no store of ours.
        has_spans = has_database and (metadata / database / f"{SPAN_TABLE}.sql").exists()
    except OSError as exc:  # a directory this user may not read
        raise StoreError(f"cannot read the embedded store at {path}: {exc.strerror or exc}") from exc
    fill = "`handoffs collect`, `handoffs demo` or `handoffs import`"
    if not has_store:
        raise StoreError(f"no embedded store at {path}: check --store, or make one with {fill}")
    if not has_database:
        raise StoreError(f"the embedded store at {path} has no database {database!r}: check ?database= in "
                         f"--store, or fill it with {fill}")
    if not has_spans:
        raise StoreError(f"no handoffs store at {path} (database {database!r} has no {SPAN_TABLE} table): "
                         f"check --store, or fill it with {fill}")


def _resolved(path: Path) -> Path:
    """``path`` made absolute, or one StoreError when this user may not look inside it."""
    try:
        return path.expanduser().resolve()
    except OSError as exc:
        raise StoreError(f"cannot use {path} as the embedded store: {exc.strerror or exc}; "
                         "pick another directory with --store chdb:///path") from exc


def _lock_file(path: Path) -> IO[str]:
    """The store directory's lock file, opened (and the directory made) or one clear StoreError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        return open(path / LOCK_FILE, "a+")
    except OSError as exc:
        raise StoreError(f"cannot use {path} as the embedded store: {exc.strerror or exc}; "
                         "pick another directory with --store chdb:///path") from exc


def _read_endpoint(path: Path) -> dict | None:
    try:
        info = json.loads((path / ENDPOINT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return info if {"host", "port", "password"} <= info.keys() else None


def owned_endpoint(path: Path) -> ClickHouseEndpoint | None:
    """The endpoint this process serves for ``path``, if it owns it (tests and diagnostics)."""
    entry = _owned.get(path.expanduser().resolve())
    return entry[1].endpoint if entry else None
