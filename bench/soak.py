"""Soak: sustained OTLP/HTTP ingest into ``handoffs collect`` for a fixed time (loopback only),
reporting throughput over time, the collector's memory (current and peak) and, at the end,
spans acknowledged vs stored vs duplicated.

Clients post protobuf requests of 512 spans on keep-alive connections as fast as the collector
takes them (or at ``--rate``), retrying on 429/503 as the OTLP spec asks. Each request is a
template encoded once by the OpenTelemetry SDK, with a fresh 8-byte trace-id prefix patched in,
so every span is new and the client costs little CPU (the SDK's encoder would otherwise be the
bottleneck on 2 cores; ``bench/ingest.py`` measures that path).

    python bench/soak.py                          # 5 minutes; writes bench/results/soak.txt
    python bench/soak.py --duration 30 --no-write
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

sys.path.insert(0, str(Path(__file__).parent))
from ingest import cpu_seconds, peak_rss_mb, start_collector  # noqa: E402

from handoffs import conventions as conv  # noqa: E402
from handoffs.collector import otlp  # noqa: E402
from handoffs.store import open_store, schema  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SPANS_PER_REQUEST = 512
MARKER = 0x5EED5EED5EED5EED  # the trace-id prefix in the template, replaced per request


def template() -> bytes:
    """One request of 512 spans whose trace ids all start with MARKER."""
    resource = Resource.create({conv.SERVICE_NAME: "soak", conv.RESOURCE_PROJECT: "soak"})
    scope = InstrumentationScope("handoffs.soak", "1.0")
    start = time.time_ns()
    spans = []
    for i in range(SPANS_PER_REQUEST):
        trace_id = MARKER << 64 | (i // 16 + 1)
        ctx = SpanContext(trace_id, i + 1, False, TraceFlags(1))
        parent = None if i % 16 == 0 else SpanContext(trace_id, i - i % 16 + 1, False, TraceFlags(1))
        spans.append(ReadableSpan(
            name="execute_tool transfer_to_worker", context=ctx, parent=parent, resource=resource,
            attributes={conv.SPAN_TYPE: "delegation", conv.STEP: i % 16, conv.TARGET_AGENT: "worker",
                        conv.TASK: "write the tests for the users endpoint",
                        conv.GEN_AI_USAGE_OUTPUT_TOKENS: 300},
            events=[Event(conv.EVENT_OUTPUT, {conv.OUTPUT_ID: f"o{i}", conv.OUTPUT_TOKENS: 55},
                          timestamp=start + 500)],
            instrumentation_scope=scope, start_time=start + i, end_time=start + i + 900))
    body = encode_spans(spans).SerializeToString()
    assert body.count(struct.pack(">Q", MARKER)) == SPANS_PER_REQUEST
    return body


class Clients:
    """Threads posting fresh requests until told to stop; counts what was acknowledged."""

    def __init__(self, port: int, body: bytes, count: int, rate: float) -> None:
        self.port, self.body, self.rate = port, body, rate
        self.acked = 0
        self.refused = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.serial = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _next(self) -> bytes:
        with self.lock:
            self.serial += 1
            serial = self.serial
        return self.body.replace(struct.pack(">Q", MARKER), struct.pack(">Q", serial))

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        per_thread = self.rate / len(self.threads) if self.rate else 0
        began = time.monotonic()
        sent = 0
        while not self.stop.is_set():
            if per_thread and sent / per_thread > time.monotonic() - began:
                time.sleep(0.005)
                continue
            body = self._next()
            while not self.stop.is_set():
                conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": otlp.PROTOBUF})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    with self.lock:
                        self.acked += SPANS_PER_REQUEST
                    sent += SPANS_PER_REQUEST
                    break
                with self.lock:
                    self.refused += SPANS_PER_REQUEST
                time.sleep(float(resp.getheader("Retry-After") or 1))
        conn.close()


def health(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/health")
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300, help="seconds of sustained ingest")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0, help="spans/s in total; 0: as fast as accepted")
    parser.add_argument("--every", type=float, default=15, help="seconds between progress lines")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    out: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    say(f"# soak, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    say(f"command: python bench/soak.py {' '.join(sys.argv[1:])}".rstrip())
    say(f"machine: {os.cpu_count()} cores, {platform.platform()}, python {platform.python_version()}, "
        f"decoder: {'compiled' if otlp.accelerated() else 'python'}; load average at start "
        f"{os.getloadavg()[0]:.1f}")
    say(f"{args.clients} keep-alive clients, {SPANS_PER_REQUEST} spans a request, "
        f"{'as fast as accepted' if not args.rate else f'{args.rate:,.0f} spans/s'}, for {args.duration:.0f} s")
    work = Path(tempfile.mkdtemp(prefix="handoffs-bench-soak-"))
    proc, port, store_url = start_collector(work)
    try:
        clients = Clients(port, template(), args.clients, args.rate)
        cpu0 = cpu_seconds(proc.pid)
        start = time.monotonic()
        clients.start()
        say(f"{'t (s)':>6} {'acked/s':>9} {'stored/s':>9} {'spool MiB':>9} {'RSS MiB':>8} {'load':>5}")
        last_t, last_acked, last_stored = 0.0, 0, 0
        while (now := time.monotonic() - start) < args.duration:
            time.sleep(min(args.every, args.duration - now))
            t = time.monotonic() - start
            h = health(port)
            say(f"{t:6.0f} {(clients.acked - last_acked) / (t - last_t):9,.0f} "
                f"{(h['stored'] - last_stored) / (t - last_t):9,.0f} {h['spool_bytes'] / 2**20:9.1f} "
                f"{rss_mb(proc.pid):8.0f} {os.getloadavg()[0]:5.1f}")
            last_t, last_acked, last_stored = t, clients.acked, h["stored"]
        clients.stop.set()
        for thread in clients.threads:
            thread.join(timeout=120)
        sending = time.monotonic() - start
        acked = clients.acked
        reader = open_store(store_url)
        deadline = time.monotonic() + 600
        while reader.scalar(f"SELECT count() FROM {schema.SPAN_TABLE}") < acked and time.monotonic() < deadline:
            time.sleep(0.2)
        drained = time.monotonic() - start
        # Ingest's peak and CPU: the check below runs in the collector's process too.
        peak, cpu = peak_rss_mb(proc.pid), cpu_seconds(proc.pid) - cpu0
        row = reader.query(f"SELECT count() AS n, uniqExact(TraceId, SpanId) AS u FROM {schema.SPAN_TABLE}")[0]
        reader.close()
        check_peak = peak_rss_mb(proc.pid)
        final = health(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=300)
        shutil.rmtree(work, ignore_errors=True)
    say()
    say(f"sent for {sending:.0f} s: {acked:,} spans acknowledged ({acked / sending:,.0f} spans/s sustained); "
        f"{clients.refused:,} refused with 429/503 and retried")
    say(f"stored {int(row['u']):,} distinct spans ({int(row['n']) - int(row['u'])} duplicates), all queryable "
        f"{drained - sending:.1f} s after the last acknowledgement; acknowledged but lost: "
        f"{max(0, acked - int(row['u']))}")
    say(f"collector: peak memory {peak:.0f} MiB while ingesting ({check_peak:.0f} MiB after the duplicate check, "
        f"a uniqExact over every span), CPU {cpu / max(acked, 1) * 1e6:.1f} us/span, "
        f"bad requests {final['bad_requests']}, SIGTERM exit {code}; load average at end {os.getloadavg()[0]:.1f}")
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        with (RESULTS / "soak.txt").open("a") as fh:  # appended: earlier runs stay for comparison
            fh.write("\n".join(out) + "\n\n")
        print(f"appended to {RESULTS / 'soak.txt'}")


if __name__ == "__main__":
    main()
