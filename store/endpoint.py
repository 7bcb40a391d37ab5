"""A ClickHouse HTTP interface served by the process that owns an embedded chDB store.

chDB admits one process per data directory. The owner serves the subset of ClickHouse's HTTP
interface that clickhouse-connect speaks, on loopback with a per-store password, so other
processes (``detect``, ``gate``, ``dashboard`` beside a running ``collect``) reach the same
data through the very engine they would use against a ClickHouse server. Tests use it to run
the store's conformance suite through the real clickhouse-connect client.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from handoffs.errors import StoreError

from .engines import ChdbEngine, _settings_clause, is_read

log = logging.getLogger(__name__)

_FORMAT_AT_END = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\b", re.IGNORECASE)
_EXCEPTION_CODE = re.compile(r"Code:\s*(\d+)")
# Settings clickhouse-connect sends that only matter to a real server's HTTP layer.
_TRANSPORT_KEYS = {"query", "database", "user", "password", "session_id", "session_timeout",
                   "compress", "decompress", "query_id", "default_format", "wait_end_of_query",
                   "send_progress_in_http_headers", "http_headers_progress_interval_ms",
                   "enable_http_compression", "session_check", "quota_key"}
# Settings an INSERT carries through: the collector's replays deduplicate by token, and
# ``Store.insert_spans`` collapses repeated spans itself, so the engine's collapse is turned off.
_INSERT_SETTINGS = ("insert_deduplication_token", "optimize_on_insert")


class ClickHouseEndpoint:
    """Serve ``engine`` over ClickHouse's HTTP interface on ``host:port`` (0 picks a free port)."""

    def __init__(self, engine: ChdbEngine, password: str, host: str = "127.0.0.1",
                 port: int = 0, username: str = "default", readonly_password: str | None = None) -> None:
        self.engine = engine
        self.username = username
        self.password = password
        self.readonly_password = readonly_password
        handler = type("Handler", (_Handler,), {"endpoint": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, name="handoffs-ch-endpoint",
                                        daemon=True)

    def start(self) -> ClickHouseEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def authorise(self, user: str, password: str) -> str | None:
        """The role a credential grants: ``rw``, ``ro`` (read-only), or None."""
        if user != self.username:
            return None
        if hmac.compare_digest(password.encode(), self.password.encode()):
            return "rw"
        if self.readonly_password and hmac.compare_digest(password.encode(),
                                                          self.readonly_password.encode()):
            return "ro"
        return None


class _Handler(BaseHTTPRequestHandler):
    endpoint: ClickHouseEndpoint
    protocol_version = "HTTP/1.1"
    # A response is two writes (headers, then body). With Nagle's algorithm on, the body waits
    # for the client to acknowledge the headers, which it delays by up to 40 ms: 44 ms a query
    # instead of 1-2 ms on loopback.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        log.debug("endpoint: " + format, *args)

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _credentials(self, qs: dict[str, str]) -> tuple[str, str]:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            return user, password
        return (self.headers.get("X-ClickHouse-User") or qs.get("user", "default"),
                self.headers.get("X-ClickHouse-Key") or qs.get("password", ""))

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        if url.path in ("/ping", "/"):
            if not url.query:
                return self._send(200, b"Ok.\n")
        qs = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        role = self.endpoint.authorise(*self._credentials(qs))
        if role is None:
            return self._error(401, 516, "Authentication failed: password is incorrect")
        if self.headers.get("Content-Encoding"):
            return self._error(400, 36, "compressed requests are not supported by this endpoint; "
                               "connect with compress=0")
        if self.headers.get_content_type() == "multipart/form-data":
            # clickhouse-connect sends the query and its parameters as form fields once the
            # parameters outgrow a URL (over 4 KB), as a ClickHouse server accepts them.
            qs.update(_form_fields(self.headers.get("Content-Type", ""), body))
            body = b""
        query = qs.get("query")
        data = b""
        if query is None:
            query, data = body.decode("utf-8", "replace"), b""
        else:
            data = body
        params = {k[6:]: v for k, v in qs.items() if k.startswith("param_")}
        database = self.headers.get("X-ClickHouse-Database") or qs.get("database") or "default"
        try:
            if _INSERT.match(query):
                if role != "rw":
                    return self._error(403, 164, "read-only credentials cannot insert")
                settings = {k: qs[k] for k in _INSERT_SETTINGS if k in qs}
                self._insert(query, data, database, settings, params)
                return self._send(200, b"")
            if role != "rw" and not is_read(query):
                return self._error(403, 164, "read-only credentials can only read")
            fmt = "TabSeparated"
            match = _FORMAT_AT_END.search(query)
            if match:
                fmt = match.group(1)
                query = query[: match.start()]
            out = self.endpoint.engine.query_bytes(query, params, fmt, database)
            self._send(200, out, {"X-ClickHouse-Format": fmt})
        except StoreError as exc:
            text = str(exc).removeprefix("query failed on the embedded store: ")
            text = text.removeprefix("insert failed on the embedded store: ")
            code = _EXCEPTION_CODE.search(text)
            self._error(500, int(code.group(1)) if code else 1000, text)

    def _insert(self, query: str, data: bytes, database: str, settings: dict[str, str],
                params: dict[str, str]) -> None:
        match = _FORMAT_AT_END.search(query)
        if match:
            fmt, sql = match.group(1), query[: match.start()]
            self.endpoint.engine.insert_bytes(sql + _settings_clause(settings), data, fmt, database)
        else:  # INSERT ... VALUES / SELECT carries its own rows, and may read query parameters
            self.endpoint.engine.query_bytes(query + (" " + data.decode() if data else ""), params or None,
                                             "CSV", database)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-ClickHouse-Summary", '{"read_rows":"0","written_rows":"0"}')
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: int, message: str) -> None:
        body = f"Code: {code}. DB::Exception: {message}\n".encode()
        self._send(status, body, {"X-ClickHouse-Exception-Code": str(code)})


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a multipart/form-data body, by name."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload.decode("utf-8")
    return fields
