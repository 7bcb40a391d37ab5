"""Round trips to handoffs' own HTTP servers, with and without Nagle's algorithm on their sockets.

Two servers answer on loopback:

- the store's ClickHouse endpoint, which a second process on an embedded store queries through
  clickhouse-connect (the dashboard, ``detect`` or ``gate`` beside a running ``collect``);
- the collector: OTLP/JSON and OTLP/protobuf requests (the OpenTelemetry SDK's exporter keeps
  its connection open, as ``requests.Session`` does here) and its health check.

Each is started twice in one process: as it is, and with Nagle's algorithm left on, as before
c2ec93a (a reply is two writes, headers then body, and the body waited for the client's delayed
acknowledgement). Rounds alternate between the two; each figure is the median over rounds of
the median request time in a round, and the ratio is the median of per-round ratios. In-process
chDB is the floor for the queries. A protobuf reply without partial success has an empty body:
one write, so Nagle cannot delay it (the control).

    python bench/round_trip.py                  # writes bench/results/round_trip.txt
    python bench/round_trip.py --rounds 3 --requests 20 --no-write
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import record
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from handoffs.collector import Collector
from handoffs.store import Store, open_store
from handoffs.store.endpoint import ClickHouseEndpoint
from handoffs.store.engines import ChdbEngine, HttpEngine
from handoffs.store.url import StoreURL

RESULTS = Path(__file__).parent / "results" / "round_trip.txt"
SPANS_PER_REQUEST = 10
QUERIES = {
    "SELECT 1": "SELECT 1",
    "1,000 rows": "SELECT number, toString(number) AS s FROM numbers(1000)",
}


def _protobuf_request(start: int) -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(start, start + SPANS_PER_REQUEST):
        spans.append(Span(trace_id=i.to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"), name="step",
                          start_time_unix_nano=1_700_000_000_000_000_000 + i,
                          end_time_unix_nano=1_700_000_000_100_000_000 + i))
    return request.SerializeToString()


def _json_request(start: int) -> bytes:
    spans = [{"traceId": i.to_bytes(16, "big").hex(), "spanId": (i + 1).to_bytes(8, "big").hex(), "name": "step",
              "startTimeUnixNano": str(1_700_000_000_000_000_000 + i),
              "endTimeUnixNano": str(1_700_000_000_100_000_000 + i)} for i in range(start, start + SPANS_PER_REQUEST)]
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()


def _median_ms(work: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        work(i)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


class Pair:
    """Two servers of one kind, as they are (``now``) and with Nagle's algorithm on (``nagle``)."""

    def __init__(self, now: Callable[[int], object], nagle: Callable[[int], object]) -> None:
        self.work = {"now": now, "nagle": nagle}
        self.ms: dict[str, list[float]] = {"now": [], "nagle": []}

    def round(self, n: int) -> None:
        for variant, work in self.work.items():
            self.ms[variant].append(_median_ms(work, n))

    def line(self, label: str) -> str:
        now, nagle = (statistics.median(self.ms[v]) for v in ("now", "nagle"))
        ratio = statistics.median(b / a for a, b in zip(self.ms["now"], self.ms["nagle"], strict=True))
        return f"  {label:<34} now {now:7.2f} ms   Nagle on {nagle:7.2f} ms   {ratio:5.1f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds")
    parser.add_argument("--requests", type=int, default=50, help="requests per case, variant and round")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    args = parser.parse_args(argv)
    out = record.header("round_trip.py", argv)
    out.append(f"# per case: median over {args.rounds} alternating rounds of the median of {args.requests} "
               "requests; ratio: median of per-round ratios (Nagle on / now)")
    for line in out:
        print(line, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="handoffs-bench-round-trip-"))
    engine = ChdbEngine(workdir / "store")
    endpoints = {v: ClickHouseEndpoint(engine, "bench").start() for v in ("now", "nagle")}
    endpoints["nagle"].server.RequestHandlerClass.disable_nagle_algorithm = False  # type: ignore[attr-defined]
    clients = {v: Store(HttpEngine(url), url) for v, url in (
        (v, StoreURL("clickhouse", host=ep.host, port=ep.port, password="bench", options={"compress": "0"}))
        for v, ep in endpoints.items())}

    store = open_store(f"chdb://{workdir / 'store'}")
    collectors = {v: Collector(store, port=0, spool_dir=workdir / f"spool-{v}").start() for v in ("now", "nagle")}
    collectors["nagle"]._server.RequestHandlerClass.disable_nagle_algorithm = False  # type: ignore[union-attr]
    sessions = {v: requests.Session() for v in collectors}
    posted = iter(range(0, 10**12, SPANS_PER_REQUEST))

    def otlp(variant: str, content_type: str, encode: Callable[[int], bytes]) -> Callable[[int], object]:
        url = f"http://127.0.0.1:{collectors[variant].port}/v1/traces"

        def post(_: int) -> None:
            reply = sessions[variant].post(url, data=encode(next(posted)), headers={"Content-Type": content_type})
            reply.raise_for_status()
        return post

    def health(variant: str) -> Callable[[int], object]:
        url = f"http://127.0.0.1:{collectors[variant].port}/health"
        return lambda _: sessions[variant].get(url).raise_for_status()

    cases: dict[str, Pair] = {}
    floors: dict[str, list[float]] = {}
    for label, sql in QUERIES.items():
        cases[f"endpoint query, {label}"] = Pair(*(lambda _, c=clients[v], q=sql: c.query_arrow(q)
                                                    for v in ("now", "nagle")))
        floors[label] = []
    cases["collector OTLP/JSON, 10 spans"] = Pair(*(otlp(v, "application/json", _json_request)
                                                  for v in ("now", "nagle")))
    cases["collector health"] = Pair(*(health(v) for v in ("now", "nagle")))
    cases["collector OTLP/protobuf (control)"] = Pair(*(otlp(v, "application/x-protobuf", _protobuf_request)
                                                      for v in ("now", "nagle")))
    try:
        for case in cases.values():  # warm up: connections, the engine's first queries
            case.round(3)
            for ms in case.ms.values():
                ms.clear()
        for _ in range(args.rounds):
            for label, sql in QUERIES.items():
                floors[label].append(_median_ms(lambda _, q=sql: engine.query_arrow(q), args.requests))
            for case in cases.values():
                case.round(args.requests)
    finally:
        for collector in collectors.values():
            collector.stop()
        for ep in endpoints.values():
            ep.stop()

    lines = [case.line(label) for label, case in cases.items()]
    lines += [f"  {'in-process chDB, ' + label:<34} {statistics.median(ms):7.2f} ms (the floor)"
              for label, ms in floors.items()]
    for line in lines:
        print(line, flush=True)
    if not args.no_write:
        record.append(RESULTS, out + lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
