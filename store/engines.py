"""The two ways into ClickHouse behind one small interface: chDB in-process, or a server over HTTP.

Both take ClickHouse's own parameter syntax (``{name:Type}``) so every query is parameterised
the same way on both engines; results come back as Arrow tables.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from handoffs.errors import StoreError, StoreUnreachableError

from .url import StoreURL

Params = dict[str, Any]


class Engine(Protocol):
    """What the store needs from a ClickHouse engine."""

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table: ...
    def command(self, sql: str, params: Params | None = None) -> None: ...
    def insert_arrow(self, table: str, data: pa.Table, settings: Params | None = None) -> None: ...
    def close(self) -> None: ...


def _param_text(value: Any, escape: bool = True) -> str:
    """A parameter value in the text form ClickHouse parses for ``{name:Type}``.

    ``escape=False`` for values already in that form (the HTTP endpoint passes them through).
    """
    if not escape:
        return str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_quote(v) for v in value) + "]"
    if isinstance(value, str):
        # Parameters are read in ClickHouse's escaped text form: a raw newline, tab or
        # backslash would end or corrupt the value.
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    return str(value)


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return _param_text(value)


class ChdbEngine:
    """chDB, the ClickHouse engine in this process, persisting to a directory.

    chDB admits one data directory per process and one process per directory; this class
    enforces the first (a second path is a clear error) and ``store.sharing`` handles the second.
    Statements are serialised by a lock: chDB's session is not documented as thread-safe, and
    it releases the GIL while a query runs, so other Python threads keep working meanwhile.
    """

    _session: Any = None
    _path: Path | None = None
    _current_db = "default"
    _class_lock = threading.Lock()
    # One lock for the one session every engine instance in the process shares.
    _session_lock = threading.RLock()

    def __init__(self, path: Path, database: str = "default") -> None:
        from chdb import session as chdb_session

        path = path.resolve()
        with ChdbEngine._class_lock:
            if ChdbEngine._session is None:
                path.mkdir(parents=True, exist_ok=True)
                try:
                    ChdbEngine._session = chdb_session.Session(str(path))
                except Exception as exc:  # chDB raises bare RuntimeErrors here
                    raise StoreError(
                        f"cannot open the embedded store at {path}: {exc}. Another process may "
                        "hold it; run the command again so it connects through that process."
                    ) from exc
                ChdbEngine._path = path
            elif ChdbEngine._path != path:
                raise StoreError(
                    f"this process already opened the embedded store at {ChdbEngine._path}; "
                    f"chDB cannot open a second one ({path}) in the same process"
                )
        self.path = path
        self.database = database
        self.lock = ChdbEngine._session_lock
        if database != "default":
            self._run(f"CREATE DATABASE IF NOT EXISTS `{database}`", None, "CSV", "default")

    def _run(self, sql: str, params: Params | None, fmt: str, database: str | None = None,
             escape: bool = True) -> Any:
        text_params = {k: _param_text(v, escape) for k, v in (params or {}).items()}
        with self.lock:
            try:
                self._use(database or self.database)
                return ChdbEngine._session.query(sql, fmt, params=text_params or None)
            except Exception as exc:
                raise StoreError(f"query failed on the embedded store: {exc}") from exc

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        result = self._run(sql, params, "ArrowStream")
        data = result.bytes()
        if not data:
            return pa.table({})
        return pa.ipc.open_stream(data).read_all()

    def _use(self, database: str) -> None:
        # The session is shared by every caller in the process; each statement names its database.
        if database != ChdbEngine._current_db:
            ChdbEngine._session.query(f"USE `{database}`", "CSV")
            ChdbEngine._current_db = database

    def query_bytes(self, sql: str, params: Params | None, fmt: str,
                    database: str | None = None) -> bytes:
        """Raw output in any ClickHouse format (the HTTP endpoint passes it through)."""
        return bytes(self._run(sql, params, fmt, database, escape=False).bytes())

    def command(self, sql: str, params: Params | None = None) -> None:
        self._run(sql, params, "CSV")

    def insert_arrow(self, table: str, data: pa.Table, settings: Params | None = None) -> None:
        """Insert an Arrow table; ``settings`` (e.g. ``insert_deduplication_token``) apply to it."""
        if data.num_rows == 0:
            return
        cols = ", ".join(f"`{c}`" for c in data.column_names)
        arrow_rows = data  # noqa: F841 - chDB's Python() table function finds it by name
        self._run(f"INSERT INTO {table} ({cols}){_settings_clause(settings)} "
                  "SELECT * FROM Python(arrow_rows)", None, "CSV")

    def insert_bytes(self, insert_sql: str, body: bytes, fmt: str, database: str | None = None) -> None:
        """Stream already-encoded rows (Native, JSONEachRow, ...) into an INSERT statement."""
        with self.lock:
            try:
                self._use(database or self.database)
                inserter = ChdbEngine._session.send_insert(insert_sql, fmt)
                inserter.append(body)
                inserter.finish()
            except Exception as exc:
                raise StoreError(f"insert failed on the embedded store: {exc}") from exc

    def close(self) -> None:
        """Sessions live as long as the process: chDB cannot reopen a directory once closed."""

    @classmethod
    def shutdown(cls) -> None:
        """Close the process's chDB session (at exit, after the endpoint stopped)."""
        with cls._class_lock:
            if cls._session is not None:
                try:
                    cls._session.close()
                finally:
                    cls._session = None
                    cls._current_db = "default"


# URL options the engine reads itself; any other option (e.g. distributed_product_mode=local
# on a cluster) is a ClickHouse setting sent with every query.
_ENGINE_OPTIONS = ("compress", "timeout", "database")


class HttpEngine:
    """A ClickHouse server (or our embedded-store endpoint) through clickhouse-connect."""

    def __init__(self, url: StoreURL, connect_timeout: float = 5.0) -> None:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

        self._error = ClickHouseError
        try:
            self.client = clickhouse_connect.get_client(
                host=url.host,
                port=url.port,
                username=url.username,
                password=url.password,
                database=url.database,
                secure=url.secure,
                compress=url.options.get("compress", "0") not in ("0", "false", "no"),
                connect_timeout=connect_timeout,
                send_receive_timeout=float(url.options.get("timeout", 300)),
                autogenerate_session_id=False,
                settings={k: v for k, v in url.options.items() if k not in _ENGINE_OPTIONS} or None,
            )
        except Exception as exc:
            text = str(exc)
            if "UNKNOWN_DATABASE" in text:  # the server answered: the rest of the URL is right
                raise StoreError(f"ClickHouse at {url.redacted()} has no database {url.database!r}: "
                                 f"create it (CREATE DATABASE `{url.database}`) or name another in the URL"
                                 ) from exc
            if "AUTHENTICATION_FAILED" in text or "Code: 516" in text:
                raise StoreError(f"ClickHouse at {url.redacted()} refused the password of user "
                                 f"{url.username!r}: check the credentials in the URL") from exc
            # OperationalError: no answer at all (refused, unknown host, timed out).
            error = StoreUnreachableError if isinstance(exc, OperationalError) else StoreError
            raise error(
                f"cannot reach ClickHouse at {url.redacted()}: {_first_line(exc)}. "
                "Check the host, port and credentials, and that the server is running."
            ) from exc
        self.url = url

    def _wrap(self, exc: Exception) -> StoreError:
        return StoreError(f"ClickHouse at {self.url.redacted()} failed: {_first_line(exc)}")

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        try:
            return self.client.query_arrow(sql, parameters=params or None, use_strings=True)
        except Exception as exc:
            raise self._wrap(exc) from exc

    def command(self, sql: str, params: Params | None = None) -> None:
        try:
            self.client.command(sql, parameters=params or None)
        except Exception as exc:
            raise self._wrap(exc) from exc

    def insert_arrow(self, table: str, data: pa.Table, settings: Params | None = None) -> None:
        if data.num_rows == 0:
            return
        try:
            self.client.insert_arrow(table, data, settings=settings or None)
        except Exception as exc:
            raise self._wrap(exc) from exc

    def close(self) -> None:
        self.client.close()


class DeferredEngine:
    """A ClickHouse server that did not answer when it was opened. Each call first tries to
    connect and run ``on_connect`` (the migrations), failing with that attempt's StoreError
    until it succeeds; then calls go straight to the server. For the collector, which spools
    what it accepts while the store is down, so a restart during an outage still accepts spans.
    """

    def __init__(self, url: StoreURL, on_connect: Callable[[Engine], None]) -> None:
        self.url = url
        self._on_connect = on_connect
        self._inner: Engine | None = None
        self._lock = threading.Lock()

    def _engine(self) -> Engine:
        with self._lock:
            if self._inner is None:
                engine = HttpEngine(self.url)
                try:
                    self._on_connect(engine)
                except BaseException:
                    engine.close()
                    raise
                self._inner = engine
            return self._inner

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        return self._engine().query_arrow(sql, params)

    def command(self, sql: str, params: Params | None = None) -> None:
        self._engine().command(sql, params)

    def insert_arrow(self, table: str, data: pa.Table, settings: Params | None = None) -> None:
        self._engine().insert_arrow(table, data, settings)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_SETTING_VALUE = re.compile(r"^[A-Za-z0-9_.:\-]*$")


def _settings_clause(settings: Params | None) -> str:
    """`` SETTINGS k = 'v'`` for insert settings; names and values are checked, never user SQL."""
    if not settings:
        return ""
    parts = []
    for key, value in settings.items():
        text = _param_text(value)
        if not _SETTING_NAME.match(key) or not _SETTING_VALUE.match(text):
            raise StoreError(f"insert setting {key!r} has a name or value this store does not accept")
        parts.append(f"{key} = '{text}'")
    return " SETTINGS " + ", ".join(parts)


# A statement that only reads, after any leading comments and parentheses.
_READ = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b",
                   re.IGNORECASE | re.DOTALL)


def is_read(sql: str) -> bool:
    """True for statements that only read (SELECT, WITH ..., SHOW, DESCRIBE, EXISTS, EXPLAIN)."""
    return bool(_READ.match(sql))


class ReadOnlyEngine:
    """Another engine, reads only: the dashboard's role. Writes fail before reaching ClickHouse.

    On the embedded store a read-only client also connects with the owner's read-only
    password, so the owner's endpoint refuses its writes too (``store.sharing``).
    """

    def __init__(self, inner: Engine) -> None:
        self.inner = inner

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        if not is_read(sql):
            raise StoreError("this store was opened read-only; it runs SELECT statements only")
        return self.inner.query_arrow(sql, params)

    def command(self, sql: str, params: Params | None = None) -> None:
        raise StoreError("this store was opened read-only; it cannot run commands")

    def insert_arrow(self, table: str, data: pa.Table, settings: Params | None = None) -> None:
        raise StoreError(f"this store was opened read-only; it cannot insert into {table}")

    def close(self) -> None:
        self.inner.close()


# The operating system's reason inside an HTTP client's error chain: "[Errno 111] Connection refused".
_OS_REASON = re.compile(r"\[Errno -?\d+\] ([^\"')\]]+)")


def _first_line(exc: BaseException) -> str:
    """What went wrong, in one line: the operating system's reason when the client's message
    wraps one (clickhouse-connect wraps urllib3's wrapping of it), else the message's first line."""
    text = str(exc).strip() or type(exc).__name__
    reason = _OS_REASON.search(text)
    if reason:
        return reason.group(1).strip().rstrip(".")
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:300].rsplit(" ", 1)[0] + " ..."


def quiet_client_logs() -> None:
    """Silence the HTTP client's own warnings (each retry, each driver exception): the
    ``StoreError`` raised for the same failure says it once and says what to do. For entry
    points (the CLI unless --verbose, the dashboard), not for libraries."""
    # urllib3's pool, not "urllib3": clickhouse-connect sets that one to WARNING on import.
    for name in ("urllib3.connectionpool", "clickhouse_connect"):
        logging.getLogger(name).setLevel(logging.ERROR)
