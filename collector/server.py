"""The OTLP/HTTP trace receiver: validate, spool, acknowledge; a writer thread inserts in batches.

    collector = Collector(open_store("chdb:///tmp/x"), port=0).start()
    ...  # export to f"http://127.0.0.1:{collector.port}/v1/traces"
    collector.stop()  # stops accepting, flushes what it acknowledged

A request is decoded and checked on arrival (so a bad body gets its 4xx and a partly bad one
its partial success), appended to the write-ahead spool and fsynced, then acknowledged. Its
decoded rows go to the writer in memory (up to ``cache_bytes``: a request that would overfill it
waits for room while the store is up; after a restart, or during an outage, the writer decodes
the spooled request again). The writer inserts what has
arrived, from ``batch_rows`` up to ``max_batch_rows`` per statement (bigger when it falls
behind: each INSERT has a fixed cost and makes a part), with a deduplication token, so a replay
after a crash or an outage stores each span once.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa

from handoffs.errors import StoreError, UsageError
from handoffs.store import Store, expired
from handoffs.store.url import StoreURL, default_store_dir

from . import otlp, spool
from .auth import Tokens, is_loopback
from .normalise import normalise_decoded

log = logging.getLogger("handoffs.collector")

TRACES_PATH = "/v1/traces"
HEALTH_PATH = "/health"
# Longest a request is held while the writer catches up (see ``Collector._reserve_room``); the
# OpenTelemetry exporters wait 10 s for an answer.
ROOM_WAIT = 5.0


def default_spool_dir(url: StoreURL) -> Path:
    """Where a store's spool lives unless ``--spool`` says: beside an embedded store's directory."""
    if url.embedded and url.path is not None:
        base = url.path.expanduser().resolve()
        return base.with_name(base.name + ".spool") / url.database
    return default_store_dir().parent / "spool" / f"{url.host}-{url.port}-{url.database}"


class Counters:
    """What the collector did, for /health and the logs. Updated under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.accepted = 0  # spans acknowledged (spooled and fsynced)
        self.stored = 0  # spans inserted into the store
        self.rejected = 0  # spans refused as invalid (partial success)
        self.refused = 0  # spans refused by backpressure (429/503): the client retries them
        self.bad_requests = 0  # whole requests refused (4xx)
        self.truncated = 0  # attribute values cut to the size limit
        self.unreadable = 0  # spooled records the writer could not decode (skipped, logged)
        self.decoded_again = 0  # spooled records the writer read back and decoded (not in memory)
        self.expired = 0  # spans accepted that started before the store's retention: deleted on arrival

    def add(self, **deltas: int) -> None:
        with self.lock:
            for key, value in deltas.items():
                setattr(self, key, getattr(self, key) + value)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {k: v for k, v in vars(self).items() if k != "lock"}


class Collector:
    """An OTLP/HTTP receiver in front of a store, with a durable spool between them.

    ``start()`` serves on background threads and returns self with ``.port`` set (``port=0``
    picks a free one); ``stop()`` stops accepting, inserts what was acknowledged and returns;
    ``serve_forever()`` does both around SIGTERM/SIGINT, for the CLI. Tokens are required when
    ``host`` is not a loopback address.
    """

    def __init__(
        self,
        store: Store,
        host: str = "127.0.0.1",
        port: int = 4318,
        *,
        spool_dir: str | Path | None = None,
        tokens: Tokens | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        # An INSERT has a fixed cost (planning, the runs view, a new part): under a flood,
        # batches of 50k rows or half a second's worth, not 10k or 0.2 s, cost less CPU per span
        # (BENCHMARKS.md, "Ingest, fifth session"). When requests pause, a batch goes sooner
        # (``_due``), so the end of a flood or a trickle is queryable as soon as before.
        batch_rows: int = 50_000,
        max_batch_rows: int = 100_000,
        cache_bytes: int = 128 << 20,
        flush_interval: float = 0.5,
        max_body_bytes: int = 16 << 20,
        spool_max_bytes: int = 1 << 30,
        store_outage_limit: float = 300.0,
        max_inflight: int = 32,
        limits: otlp.Limits = otlp.DEFAULT_LIMITS,
        retry_after: int = 2,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.tokens = tokens or Tokens()
        if not is_loopback(host) and not self.tokens:
            raise UsageError(f"refusing to listen on {host} without ingest tokens: anyone on the "
                             "network could write spans. Pass --tokens FILE (or $HANDOFFS_TOKENS), "
                             "or listen on 127.0.0.1")
        if (tls_cert is None) != (tls_key is None):
            raise UsageError("TLS needs both --tls-cert and --tls-key")
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self._spool_given = spool_dir is not None
        self.spool_dir = Path(spool_dir) if spool_dir else default_spool_dir(store.url)
        self.batch_rows = batch_rows
        self.max_batch_rows = max(batch_rows, max_batch_rows)
        self.cache_bytes = cache_bytes
        # Decoded rows of spooled records, by record start, for the writer: the request thread
        # already decoded them, so the writer need not read and decode them again.
        self._decoded: dict[int, tuple[int, otlp.Decoded, int]] = {}  # start: (end, rows, bytes)
        self._decoded_bytes = 0
        self._decoded_lock = threading.Condition()  # notified when the writer takes rows
        self.flush_interval = flush_interval
        self.max_body_bytes = max_body_bytes
        self.spool_max_bytes = spool_max_bytes
        self.store_outage_limit = store_outage_limit
        self.limits = limits
        self.retry_after = retry_after
        self.counters = Counters()
        self.max_inflight = max_inflight
        self._inflight = 0
        self._idle = threading.Condition()
        self._stopping = threading.Event()
        self._writer_done = threading.Event()
        self._wake = threading.Condition()
        self._unflushed = 0  # spans acknowledged since the last insert (wakes the writer early)
        self._last_arrival = 0.0  # monotonic time of the last request accepted
        self._store_down_since: float | None = None
        self._retention_days: int | None = None  # the span table's, read when the writer pings
        self._expired_warned = float("-inf")
        self._store_error = ""
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.spool: spool.Spool | None = None
        self.started_at = 0.0

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Collector:
        """Open the spool (replaying what it holds), bind, and serve on background threads."""
        self.spool = self._open_spool()
        handler = type("Handler", (_Handler,), {"collector": self})
        try:
            self._server = _Server((self.host, self.port), handler)
        except OSError as exc:
            self.spool.close()
            raise UsageError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; "
                             "pick another --port") from exc
        if self.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
            except (OSError, ssl.SSLError) as exc:
                self._server.server_close()
                self._server = None  # never served: stop() must not wait for its loop
                self.spool.close()
                raise UsageError(f"cannot load the TLS certificate/key: {exc}") from exc
            # The handshake runs in the connection's own thread, not in the accept loop.
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        self.started_at = time.time()
        if self.spool.depth:
            log.info("replaying %d spooled bytes into the store", self.spool.depth)
        self._threads = [
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                             name="handoffs-collector-http", daemon=True),
            threading.Thread(target=self._writer, name="handoffs-collector-writer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("collector listening on %s://%s:%d%s, spool %s", "https" if self.tls_cert else "http",
                 self.host, self.port, TRACES_PATH, self.spool_dir)
        return self

    def _open_spool(self) -> spool.Spool:
        """The spool; beside a busy default one (another collector on this store, e.g. the demo
        while ``handoffs collect`` runs), the first free ``extra-N`` one, so each has its own and
        a restarted collector finds what it left."""
        candidates = [self.spool_dir]
        if not self._spool_given:
            candidates += [self.spool_dir / f"extra-{i}" for i in range(1, 9)]
        for directory in candidates:
            try:
                opened = spool.Spool(directory, max_bytes=self.spool_max_bytes)
            except spool.SpoolBusy:
                if directory == candidates[-1]:
                    raise
                continue
            self.spool_dir = directory
            return opened
        raise AssertionError("unreachable")

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.host}:{self.port}{TRACES_PATH}"

    def stop(self, flush_timeout: float = 60.0) -> bool:
        """Stop accepting, wait for requests in flight, insert what was acknowledged.

        Returns True when the spool drained; otherwise (the store is down) what is left stays in
        the spool and is inserted at the next start.
        """
        if self._server is None:
            return True
        self._stopping.set()
        with self._decoded_lock:
            self._decoded_lock.notify_all()  # held requests are spooled and answered
        self._server.shutdown()
        self._server.server_close()
        with self._idle:  # every request in flight finishes (and is spooled) first
            self._idle.wait_for(lambda: self._inflight == 0, timeout=flush_timeout)
        with self._wake:
            self._wake.notify_all()
        drained = self._writer_done.wait(flush_timeout)
        assert self.spool is not None
        left = self.spool.depth
        if left:
            log.warning("stopped with %d bytes still spooled in %s; they are inserted at the next start",
                        left, self.spool_dir)
        self.spool.close()
        self._server = None
        return drained and not left

    def serve_forever(self, ready: Callable[[Collector], None] | None = None) -> int:
        """Serve until SIGTERM or SIGINT, then stop cleanly; return the exit code (0).

        ``ready`` is called once listening (the CLI prints the address).
        """
        done = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s: stop accepting, flush, exit", signal.Signals(signum).name)
            done.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            if ready is not None:
                ready(self)
            while not done.wait(1.0):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()
        return 0

    # --- state -----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Counters, spool depth, store reachability: what GET /health returns."""
        down = self._store_down_since
        return {
            "status": "ok" if down is None else "store_unreachable",
            **self.counters.snapshot(),
            "spool_bytes": self.spool.depth if self.spool else 0,
            "spool_dir": str(self.spool_dir),
            "store": self.store.url.redacted(),
            "store_reachable": down is None,
            "store_down_seconds": round(time.monotonic() - down, 1) if down is not None else 0,
            "store_error": self._store_error,
            "decoder": "compiled" if otlp.accelerated() else "python",
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }

    def refusal(self) -> str | None:
        """Why new data must wait (429/503), or None to accept it."""
        down = self._store_down_since
        if down is not None and time.monotonic() - down > self.store_outage_limit:
            return "the store has been unreachable for too long"
        return None

    # --- ingest (request threads) ----------------------------------------------------------------
    def accept(self, body: bytes, project: str | None, decoded: otlp.Decoded) -> None:
        """Spool a validated protobuf body durably. Raises SpoolFull or OSError."""
        assert self.spool is not None
        size = decoded.table.get_total_buffer_size()  # 3 us; nbytes, 56 us, follows every offset
        reserved = self._reserve_room(size)
        handed = False

        def hand_over(start: int, end: int) -> None:  # under the spool's lock: before the writer sees it
            nonlocal handed
            with self._decoded_lock:
                self._decoded[start] = (end, decoded, size)
            handed = True

        try:
            self.spool.append(spool.pack(body, project), on_written=hand_over if reserved else None)
        finally:
            if reserved and not handed:  # not spooled: give the room back
                with self._decoded_lock:
                    self._decoded_bytes -= size
                    self._decoded_lock.notify_all()
        self.counters.add(accepted=decoded.accepted, rejected=decoded.rejected,
                          truncated=decoded.truncated)
        with self._wake:
            self._unflushed += decoded.accepted
            self._last_arrival = time.monotonic()
            if self._unflushed >= self.batch_rows:
                self._wake.notify()

    def drop_expired(self, decoded: otlp.Decoded, counted: bool = True) -> otlp.Decoded:
        """The request without the spans the store's retention would delete on arrival: they are
        rejected in the partial success, counted, and warned about once a minute, instead of
        acknowledged and then gone. A spooled request read back (``counted=False``) was counted
        when it arrived: its spans are only left out again."""
        days = self._retention_days
        if days is None or not decoded.accepted:
            return decoded
        kept = decoded.without(expired(decoded.table, days), f"started more than {days} days ago, "
                               "before the store's retention, which would delete them on arrival")
        count = kept.left_out - decoded.left_out
        if count and counted:
            self.counters.add(expired=count)
            if time.monotonic() - self._expired_warned > 60:
                self._expired_warned = time.monotonic()
                log.warning("rejected %d span(s) that started more than %d days ago, before the store's "
                            "retention (`handoffs migrate --ttl-days 0` keeps spans forever)", count, days)
        return kept

    def _reserve_room(self, size: int) -> bool:
        """Reserve ``size`` bytes of the memory the writer reads rows from, holding the request
        while ``cache_bytes`` are taken and the store is taking rows (at most ``ROOM_WAIT`` s).
        False: no room, the writer will read the record back from the spool and decode it again.

        A writer behind by more than the cache decodes every record twice, which slows it further:
        under a flood the stored rate fell to about 53k spans/s while requests were acknowledged at
        90k. Held requests slow the clients to what the store takes instead. A store outage is what
        the spool is for: no hold then."""
        def room() -> bool:
            return self._decoded_bytes == 0 or self._decoded_bytes + size <= self.cache_bytes

        with self._decoded_lock:
            if not room():
                with self._wake:  # nothing takes _decoded_lock while holding _wake
                    self._wake.notify()  # insert what is waiting now, not at the next interval
                self._decoded_lock.wait_for(
                    lambda: room() or self._store_down_since is not None or self._stopping.is_set(),
                    timeout=ROOM_WAIT)
                if not room():
                    return False
            self._decoded_bytes += size
            return True

    # --- the writer thread -----------------------------------------------------------------------
    def _writer(self) -> None:
        assert self.spool is not None
        sp = self.spool
        try:
            self._ping()  # /health tells from the start whether the store answers
            if sp.pending is not None:  # a batch whose insert may or may not have landed
                self._insert_batch(sp.pending.start, sp.pending.end, replay=True)
            first_seen: float | None = None
            last_ping = time.monotonic()
            while True:
                stopping = self._stopping.is_set()
                if sp.synced <= sp.committed:
                    if stopping:
                        return
                    first_seen = None
                    with self._wake:
                        self._wake.wait(self.flush_interval)
                    if time.monotonic() - last_ping > 5.0:
                        last_ping = time.monotonic()
                        self._ping()
                    continue
                now = time.monotonic()
                first_seen = first_seen or now
                wait = 0.0 if stopping or self._unflushed >= self.batch_rows else self._due(now - first_seen, now)
                if wait > 0:
                    with self._wake:
                        self._wake.wait(wait)
                    continue
                self._insert_batch(sp.committed, None, replay=False)
                first_seen = None
        except StoreError as exc:  # stopping while the store is down: expected, no traceback
            log.error("the collector's writer stopped with the store unreachable (%s); spooled spans "
                      "stay on disk for the next start", exc)
        except Exception:  # the writer must never die silently: the spool keeps the data
            log.exception("the collector's writer stopped; spooled spans stay on disk for the next start")
        finally:
            self._writer_done.set()

    def _due(self, waited: float, now: float) -> float:
        """Seconds until a batch that is not full is inserted (0: now). At the latest after
        ``flush_interval``; sooner, after 0.4 of it, once no request came for 0.1 of it: a flood
        fills big batches, a pause or a trickle (at most 1 / (0.4 flush_interval) inserts a
        second) does not wait for them."""
        settle, quiet = 0.4 * self.flush_interval, 0.1 * self.flush_interval
        if waited >= self.flush_interval:
            return 0.0
        if waited < settle:
            return settle - waited
        quiet_for = now - self._last_arrival
        return 0.0 if quiet_for >= quiet else min(self.flush_interval - waited, quiet - quiet_for)

    def _insert_batch(self, start: int, stop: int | None, replay: bool) -> None:
        """Insert the records from ``start`` (up to ``stop``, or about ``max_batch_rows`` spans)
        with one deduplication token, retrying until the store takes them, then commit them."""
        assert self.spool is not None
        tables, spans, end = [], 0, start
        limit = stop if stop is not None else self.spool.synced
        while end < limit and (stop is not None or spans < self.max_batch_rows):
            end, table = self._records_at(end, limit)
            if table is not None:
                tables.append(table)
                spans += table.num_rows
        if stop is not None:
            end = stop
        pending = self._spool_io(lambda: self.spool.begin(start, end))
        table = pa.concat_tables(tables) if tables else None  # one chunk per request; the store joins them
        delay = 0.2
        while table is not None and table.num_rows:
            try:
                self.store.insert_spans(table, dedup_token=pending.token(self.spool.spool_id))
                break
            except StoreError as exc:
                self._store_failed(exc)
                if self._stopping.is_set() and delay >= 1.6:
                    raise  # stopping with the store down: the spool keeps the batch for next time
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._store_ok()
        # Retried, never skipped: the batch is in the store, so only this commit may follow.
        self._spool_io(lambda: self.spool.commit(end))
        with self._wake:
            self._unflushed = max(0, self._unflushed - spans)
        self.counters.add(stored=spans)
        if replay:
            log.info("replayed %d spooled spans into the store", spans)

    def _records_at(self, start: int, limit: int) -> tuple[int, pa.Table | None]:
        """The rows of the spooled record at ``start`` and where the next one starts: handed
        over by the request thread, or read back from the spool and decoded (a replay, or
        more than ``cache_bytes`` waiting). None for a record that no longer decodes."""
        with self._decoded_lock:
            cached = self._decoded.pop(start, None)
            if cached is not None:
                self._decoded_bytes -= cached[2]
                self._decoded_lock.notify_all()
        if cached is not None:
            end, rows, _ = cached
            # Other instrumentations' spans are normalised here, in the writer, not before the
            # request is acknowledged.
            return end, normalise_decoded(rows)
        assert self.spool is not None
        record = next(self.spool.read(start, max_bytes=1, stop=limit))
        self.counters.add(decoded_again=1)
        body, project = spool.unpack(record.payload)
        try:
            decoded = otlp.decode_protobuf(body, project, self.limits)
        except otlp.DecodeFailure as exc:
            log.error("skipping unreadable spooled record at %d: %s", record.start, exc)
            self.counters.add(unreadable=1)
            return record.end, None
        return record.end, normalise_decoded(self.drop_expired(decoded, counted=False))

    def _spool_io(self, action: Callable[[], Any]) -> Any:
        """Run a spool state write, retrying while the disk refuses (full, read-only)."""
        while True:
            try:
                return action()
            except OSError as exc:
                log.error("cannot write the spool state in %s: %s; retrying", self.spool_dir, exc)
                if self._stopping.is_set():
                    raise
                time.sleep(1.0)

    def _ping(self) -> None:
        try:
            # Reading the retention is the ping: one query, and `migrate` may have changed it.
            self._retention_days = self.store.span_ttl_days()
        except StoreError as exc:
            self._store_failed(exc)
        else:
            self._store_ok()

    def _store_failed(self, exc: Exception) -> None:
        if self._store_down_since is None:
            self._store_down_since = time.monotonic()
            log.warning("store unreachable, spooling until it is back: %s", exc)
            with self._decoded_lock:
                self._decoded_lock.notify_all()  # held requests go to the spool
        self._store_error = str(exc)[:300]

    def _store_ok(self) -> None:
        if self._store_down_since is not None:
            log.info("store reachable again after %.1fs", time.monotonic() - self._store_down_since)
        self._store_down_since = None
        self._store_error = ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line for a connection the client broke (a TLS handshake it refused, plain HTTP
        to a TLS port, a reset), not socketserver's traceback on stderr for each."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (BlockingIOError, TimeoutError, ssl.SSLWantReadError)):
            # The receive timeout: an idle keep-alive connection (every exporter has them) or a
            # client stalled mid-request.
            log.info("closed the connection from %s: nothing received for %g s", client_address[0],
                     _Handler.read_timeout)
        elif isinstance(exc, (ssl.SSLError, ConnectionError)):
            log.warning("connection from %s failed: %s", client_address[0], exc)
        else:  # a fault of ours: keep the traceback
            log.error("error serving %s", client_address[0], exc_info=exc)


# HTTP status -> google.rpc.Code: INVALID_ARGUMENT 3, UNAUTHENTICATED 16, UNAVAILABLE 14, ...
_RPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 408: 4, 411: 3, 413: 8, 414: 3, 415: 3, 429: 8, 431: 3,
              501: 12, 503: 14, 505: 12}
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _BodyRefused(Exception):
    """A request body we do not read: its HTTP status and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _HeadReader:
    """The connection's reader while headers are parsed, noting a line cut short: at the receive
    timeout (or end of stream) the buffered reader returns what it has, and http.server takes it
    for the head's end."""

    def __init__(self, rfile: Any) -> None:
        self._rfile = rfile
        self.cut = False

    def readline(self, limit: int = -1) -> bytes:
        line = self._rfile.readline(limit)
        if not line.endswith(b"\n") and (limit < 0 or len(line) < limit):
            self.cut = True
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rfile, name)


class _Handler(BaseHTTPRequestHandler):
    collector: Collector
    protocol_version = "HTTP/1.1"
    # A request line that is not HTTP still gets a status line and headers (HTTP/0.9 would not).
    default_request_version = "HTTP/1.0"
    server_version = "handoffs-collector"
    # A client that stalls mid-request (or keeps an idle connection) gives its thread back after
    # this many seconds, and cannot hold up a shutdown for longer. Set as the kernel's receive
    # timeout: Python's own socket timeout polls before every read, 3% of the collector's CPU.
    read_timeout = 30.0
    _head_only = False  # answering a HEAD: headers only

    def setup(self) -> None:
        super().setup()
        seconds = int(self.read_timeout)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                   struct.pack("ll", seconds, int((self.read_timeout - seconds) * 1e6)))
    # A reply is two writes (headers, then body): with Nagle's algorithm on, the body waits for
    # the client's delayed acknowledgement of the headers, 40 ms a request on loopback.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: " + format, *args)

    @property
    def route(self) -> str:
        """The request's path without its query string."""
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        path = self.route
        if path == TRACES_PATH:
            return self._not_allowed()  # which drains the body
        # A body on a GET is read and dropped (or the connection closed): parsed as the next
        # request it would smuggle one past whatever proxy forwarded this one.
        self._drain()
        if path == HEALTH_PATH:
            body = json.dumps(self.collector.health()).encode()
            return self._send(200, body, "application/json")
        self._fail(404, f"no such endpoint: GET {self.path}; POST spans to {TRACES_PATH}", otlp.JSON)

    def do_HEAD(self) -> None:
        """``HEAD /health``, as load balancers probe: the GET's status and headers, no body."""
        self._head_only = True
        try:
            self.do_GET()
        finally:
            self._head_only = False  # the connection's next request may be a GET

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: a body over the limit, or framed so it cannot be read, is
        refused before the client sends it, not after."""
        if self.command == "POST":
            try:
                self._declared_length()
            except _BodyRefused as exc:
                self.close_connection = True
                self._fail(exc.status, str(exc), self._reply_type)
                return False
        return super().handle_expect_100()

    def _not_allowed(self) -> None:
        """405 for a method the path does not take (PUT, DELETE, PATCH; GET on the traces path)."""
        self._drain()
        allowed = "GET" if self.route == HEALTH_PATH else "POST"
        self._fail(405, f"{self.command} is not accepted here: {allowed} {self.route}",
                   otlp.JSON, headers={"Allow": allowed})

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    @property
    def _content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    @property
    def _reply_type(self) -> str:
        """Answers go in the request's encoding (protobuf unless it sent JSON)."""
        return otlp.JSON if self._content_type == otlp.JSON else otlp.PROTOBUF

    def do_POST(self) -> None:
        c = self.collector
        content_type, reply_type = self._content_type, self._reply_type
        if self.route != TRACES_PATH:
            self._drain()
            return self._fail(404, f"no such endpoint: POST {self.path}; spans go to {TRACES_PATH}", reply_type)
        if c._stopping.is_set():
            self.close_connection = True
            return self._fail(503, "the collector is shutting down; retry", reply_type, retry=True)
        project = None
        if c.tokens:
            project = c.tokens.project_for(self.headers.get("Authorization"))
            if project is None:
                self._drain()
                return self._fail(401, "missing or unknown bearer token: send Authorization: "
                                  "Bearer <token> with a token from the collector's tokens file",
                                  reply_type, headers={"WWW-Authenticate": "Bearer"})
        if content_type not in (otlp.PROTOBUF, otlp.JSON):
            self._drain()
            return self._fail(415, f"unsupported Content-Type {content_type or '(none)'!r}: send "
                              f"{otlp.PROTOBUF} or {otlp.JSON}", reply_type)
        try:
            length = self._declared_length()
        except _BodyRefused as exc:
            self.close_connection = True  # the body is not read: this connection is spent
            return self._fail(exc.status, str(exc), reply_type)
        with c._idle:  # checked under the lock stop() waits on: no request slips past a stop
            busy = c._inflight >= c.max_inflight or c._stopping.is_set()
            if not busy:
                c._inflight += 1
        if busy:
            self._drain()
            return self._fail(503, "too many requests in flight; retry", reply_type, retry=True)
        try:
            try:
                body = self._read_body(length)
            except _BodyRefused as exc:
                self.close_connection = True
                return self._fail(exc.status, str(exc), reply_type)
            self._ingest(body, content_type, reply_type, project)
        finally:
            with c._idle:
                c._inflight -= 1
                c._idle.notify_all()

    def _ingest(self, body: bytes, content_type: str, reply_type: str, project: str | None) -> None:
        c = self.collector
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = otlp.gunzip(body, c.max_body_bytes)
            elif encoding != "identity":
                return self._fail(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none",
                                  reply_type)
            if content_type == otlp.JSON:
                body = otlp.json_to_protobuf(body)
            decoded = c.drop_expired(otlp.decode_protobuf(body, project, c.limits))
        except otlp.BodyTooLarge as exc:
            return self._fail(413, str(exc), reply_type)
        except otlp.DecodeFailure as exc:
            return self._fail(400, str(exc), reply_type)
        if decoded.accepted:
            why = c.refusal()
            try:
                if why is None:
                    c.accept(body, project, decoded)
            except spool.SpoolFull as exc:
                why = f"{exc}; the store is not keeping up"
                status = 429
            except OSError as exc:
                why = f"cannot write the spool ({exc.strerror or exc})"
                status = 503
                log.error("spool write failed, refusing %d spans: %s", decoded.accepted, exc)
            else:
                status = 503
            if why is not None:
                c.counters.add(refused=decoded.accepted + decoded.rejected)
                log.warning("refused %d spans (%d): %s", decoded.accepted, status, why)
                return self._fail(status, f"{why}; retry later", reply_type, retry=True)
        else:
            c.counters.add(rejected=decoded.rejected)
        c.counters.add(requests=1)
        if decoded.rejected:
            log.info("partial success: %s", decoded.error_message())
        self._send(200, otlp.response_body(decoded, reply_type), reply_type)

    # --- responses -------------------------------------------------------------------------------
    def _declared_length(self) -> int | None:
        """The body's length from Content-Length, or None for a chunked body (read with
        ``_read_chunked``); ``_BodyRefused`` for framing we cannot read or a body over the limit."""
        codings = self.headers.get_all("Transfer-Encoding")
        coding = ", ".join(codings) if codings else None  # two headers are one list (RFC 9110 5.3)
        if coding is not None:
            # Transfer-Encoding wins over Content-Length (RFC 9112 6.3); chunked must be last.
            if [t.strip().lower() for t in coding.split(",")] != ["chunked"]:
                raise _BodyRefused(501, f"unsupported Transfer-Encoding {coding!r}: send the body "
                                        "chunked or with a Content-Length (compress with Content-Encoding)")
            if "Content-Length" in self.headers:
                self.close_connection = True  # both framings: never read another request after it
            return None
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or ()}
        if len(lengths) > 1:
            raise _BodyRefused(400, f"Content-Length headers disagree: {', '.join(sorted(lengths))}")
        text = lengths.pop() if lengths else ""
        if not (text.isascii() and text.isdigit()):  # not "²", which str.isdigit() takes
            raise _BodyRefused(411, "a Content-Length header (or Transfer-Encoding: chunked) is required")
        length = int(text)
        if length > self.collector.max_body_bytes:
            raise _BodyRefused(413, f"the body is {length} bytes, over the {self.collector.max_body_bytes}"
                                    "-byte limit; send smaller batches")
        return length

    def _read_body(self, length: int | None) -> bytes:
        """The body ``_declared_length`` announced: ``length`` bytes, or chunked when None;
        ``_BodyRefused`` (408) when the client stalls before the end."""
        if length is None:
            return self._read_chunked()
        body = self.rfile.read(length) or b""  # None: the receive timeout, before the first byte
        if len(body) < length:
            raise _BodyRefused(408, f"the body stopped after {len(body)} of {length} bytes "
                                    f"(nothing for {self.read_timeout:g} s)")
        return body

    def _read_chunked(self) -> bytes:
        """A chunked body (RFC 9112 7.1), at most the collector's body limit; trailers dropped."""
        limit, parts, size = self.collector.max_body_bytes, [], 0
        while True:
            line = self._chunk_line(size)
            digits = line.split(b";", 1)[0].strip()
            # Hex digits only (RFC 9112 7.1): int() would also take "-1", "+16", "0x16" and "1_6".
            if not _HEX.fullmatch(digits):
                raise _BodyRefused(400, f"a malformed chunk size line {line[:40]!r}")
            n = int(digits, 16)
            if n == 0:
                break
            size += n
            if size > limit:
                raise _BodyRefused(413, f"the chunked body passed the {limit}-byte limit; send smaller batches")
            data = self.rfile.read(n) or b""  # None: the receive timeout, before any byte
            parts.append(data)
            if len(data) < n:
                raise self._stalled(size - n + len(data))
            if self._chunk_line(size).strip():
                raise _BodyRefused(400, "a chunk longer than its size line says")
        while self._chunk_line(size).strip():  # trailer fields, up to the empty line
            pass
        return b"".join(parts)

    def _chunk_line(self, received: int) -> bytes:
        try:
            line = self.rfile.readline(1 << 12)
        except (BlockingIOError, TimeoutError):  # the receive timeout
            line = b""
        if not line.endswith(b"\n"):
            raise self._stalled(received) if len(line) < 1 << 12 else _BodyRefused(400, "a chunk line over 4 KiB")
        return line

    def _stalled(self, received: int) -> _BodyRefused:
        return _BodyRefused(408, f"the chunked body stopped after {received} bytes "
                                 f"(nothing for {self.read_timeout:g} s)")

    def _drain(self, length: int | None = None) -> None:
        """Read and drop a body we refuse, so the connection can carry the next request."""
        if length is None:
            try:
                length = self._declared_length()
            except _BodyRefused:
                length = None
            if length is None:  # chunked, or framing we cannot read: the connection is spent
                self.close_connection = True
                return
        if length > self.collector.max_body_bytes:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    def _fail(self, status: int, message: str, reply_type: str, retry: bool = False,
              headers: dict[str, str] | None = None) -> None:
        if not retry:
            self.collector.counters.add(bad_requests=1)
        extra = dict(headers or {})
        if retry:
            extra["Retry-After"] = str(self.collector.retry_after)
        self._send(status, otlp.status_body(message, _RPC_CODES.get(status, 2), reply_type), reply_type, extra)

    def parse_request(self) -> bool:
        """http.server's parsing, with a head cut short (the client stalled for ``read_timeout``,
        or half-closed the connection mid-head) answered 408 for what it is: read as a whole head,
        it was refused as a bad request line or for a missing Content-Type."""
        self.command, self.request_version = None, self.default_request_version  # for the reply
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        stopped = (f"the request's head stopped before its end (nothing more came for {self.read_timeout:g} s, "
                   "or the client closed its side)")
        if not self.raw_requestline.endswith(b"\n"):
            self.send_error(408, stopped)
            return False
        real = self.rfile
        self.rfile = head = _HeadReader(real)
        try:
            parsed = super().parse_request()
        finally:
            self.rfile = real
        if parsed and head.cut:
            self.send_error(408, stopped)
            return False
        return parsed

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server refuses itself (a malformed request line or header, a header too
        long, an unknown method): an OTLP Status in JSON like every other answer, not its HTML."""
        text = message or self.responses.get(code, ("refused",))[0]
        log.info("refused a request from %s: %d %s", self.client_address[0], code, text)
        self.close_connection = True
        self.collector.counters.add(bad_requests=1)
        self._send(code, otlp.status_body(text, _RPC_CODES.get(code, 2), otlp.JSON), otlp.JSON)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not self._head_only:
            self.wfile.write(body)


__all__ = ["Collector", "Counters", "HEALTH_PATH", "TRACES_PATH", "default_spool_dir"]
