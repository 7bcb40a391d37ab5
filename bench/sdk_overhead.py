"""SDK overhead: what a hand-off costs against a bare OpenTelemetry span, and what a burst loses.

1. Cost: a hand-off (a delegation span with one output event and one decision event) against a
   bare ``tracer.start_as_current_span`` under the same processor and exporter, timed in
   interleaved blocks in the same process; the figure is the median of the per-pair ratios.
2. Burst: a producer ending spans as fast as it can into OTLP/HTTP (a real exporter posting to
   a sink process on loopback), through OpenTelemetry's default ``BatchSpanProcessor`` and
   through ours; spans delivered and lost, and peak RSS, each in a fresh process, at 3 burst
   sizes: the queue is bounded, so peak memory should not grow with the burst.

    python bench/sdk_overhead.py                 # both, writes bench/results/sdk_overhead.txt
    python bench/sdk_overhead.py --pairs 41 --block 2000 --burst 200000
    python bench/sdk_overhead.py --before fb2d34d --rounds 4
                       # the cost only, of an earlier revision's SDK and of this one, each
                       # measured in a process of its own, alternating: both ratios per round
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from handoffs import conventions as c
from handoffs import sdk

sys.path.insert(0, str(Path(__file__).parent))
import record  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "sdk_overhead.txt"


class CountingExporter(SpanExporter):
    """Counts spans (and keeps the last) and does nothing else: isolates the cost of making spans."""

    def __init__(self) -> None:
        self.count = 0
        self.last: ReadableSpan | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        self.last = spans[-1]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def measure_cost(pairs: int, block: int) -> dict[str, float]:
    """Median ratios (hand-off / bare span) over ``pairs`` interleaved blocks of ``block`` each.

    Both wall time and the process's CPU time (all its threads, the exporter's included) are
    taken per block; CPU time is the steadier figure on a machine other jobs share. A third
    side records the same attributes and events through OpenTelemetry's API by hand: what the
    information costs without this SDK.
    """
    exporter = CountingExporter()
    provider = sdk.configure("bench", exporter=exporter)
    tracer = provider.get_tracer("bench")
    wall: dict[str, list[float]] = {"bare": [], "handoff": [], "by_hand": []}
    cpu: dict[str, list[float]] = {"bare": [], "handoff": [], "by_hand": []}
    producer: dict[str, list[float]] = {"bare": [], "handoff": [], "by_hand": []}
    with sdk.run("bench") as _run, sdk.agent("supervisor", role="supervisor") as sup:
        with sup.delegate("worker", task="write the schema") as d:
            d.decision("accepted", output=d.output("CREATE TABLE t (id Int64)", tokens=120, unit_complete=True))
        assert sdk.flush() and exporter.last is not None
        sample = exporter.last
        status_key = c.DELEGATION_STATUS
        attrs = {k: v for k, v in sample.attributes.items() if k != status_key}
        events = [(e.name, dict(e.attributes)) for e in sample.events]

        def by_hand() -> None:
            for _ in range(block):
                with tracer.start_as_current_span(sample.name, attributes=attrs) as span:
                    for name, event_attrs in events:
                        span.add_event(name, event_attrs)
                    span.set_attribute(status_key, "completed")

        def bare() -> None:
            for _ in range(block):
                with tracer.start_as_current_span("handoff"):
                    pass

        def handoff() -> None:
            for _ in range(block):
                with sup.delegate("worker", task="write the schema") as d:
                    out = d.output("CREATE TABLE t (id Int64)", tokens=120, unit_complete=True)
                    d.decision("accepted", output=out)

        def timed(name: str, fn: Callable[[], None]) -> None:
            # Each block pays for exporting (and freeing) its own spans: flushed inside the timer.
            # The producer's share alone (before the flush) is kept too.
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            producer[name].append((time.process_time() - c0) / block * 1e6)
            sdk.flush()
            cpu[name].append((time.process_time() - c0) / block * 1e6)
            wall[name].append((time.perf_counter() - w0) / block * 1e6)

        sides = (("bare", bare), ("handoff", handoff), ("by_hand", by_hand))
        for _, fn in sides:
            fn()  # warm up
        for i in range(pairs):
            gc.collect()
            # Alternate the order, so drift and the exporter's rhythm hit every side alike.
            for name, fn in (sides if i % 2 else sides[::-1]):
                timed(name, fn)
    sdk.shutdown()
    wall_ratio = [h / b for h, b in zip(wall["handoff"], wall["bare"], strict=True)]
    cpu_ratio = [h / b for h, b in zip(cpu["handoff"], cpu["bare"], strict=True) if b > 0]
    hand_ratio = [h / b for h, b in zip(cpu["by_hand"], cpu["bare"], strict=True) if b > 0]
    producer_ratio = [h / b for h, b in zip(producer["handoff"], producer["bare"], strict=True) if b > 0]
    return {"wall_ratio": statistics.median(wall_ratio), "cpu_ratio": statistics.median(cpu_ratio),
            "by_hand_ratio": statistics.median(hand_ratio), "producer_ratio": statistics.median(producer_ratio),
            "producer_q": _quartiles(producer_ratio), "by_hand_cpu_us": statistics.median(cpu["by_hand"]),
            "n_attributes": len(attrs) + 1, "n_event_attributes": sum(len(a) for _, a in events),
            "wall_q": _quartiles(wall_ratio), "cpu_q": _quartiles(cpu_ratio),
            "bare_us": statistics.median(wall["bare"]), "handoff_us": statistics.median(wall["handoff"]),
            "bare_cpu_us": statistics.median(cpu["bare"]), "handoff_cpu_us": statistics.median(cpu["handoff"]),
            "spans_counted": exporter.count}


def _quartiles(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.2f}-{q3:.2f}"


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def serve_sink(port_file: str) -> None:
    """An OTLP/HTTP endpoint that accepts and discards (its own process, so it takes no GIL from the producer)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


class CountingOtlp(SpanExporter):
    """The real OTLP/HTTP exporter, counting what it delivered."""

    def __init__(self, endpoint: str) -> None:
        self.inner = sdk.otlp_exporter(endpoint)
        self.delivered = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.delivered += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def burst(which: str, n: int, port: int) -> dict[str, object]:
    """End ``n`` spans as fast as possible through processor ``which``; count what arrived."""
    exporter = CountingOtlp(f"http://127.0.0.1:{port}")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if which == "default":
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTel's defaults: queue 2,048
        tracer = provider.get_tracer("bench")
        for _ in range(n):
            with tracer.start_as_current_span("burst"):
                pass
        provider.shutdown()
        extra = {}
    else:
        # The default's bounds (queue 2,048, batches of 512): same memory, no loss.
        provider = sdk.configure("bench", exporter=exporter, max_queue_size=2048, max_batch_size=512)
        tracer = provider.get_tracer("bench")
        for _ in range(n):
            with tracer.start_as_current_span("burst"):
                pass
        stats = sdk.stats()
        sdk.shutdown()
        extra = {"blocked": stats.blocked, "dropped_counted": stats.dropped, "failed": stats.failed}
    elapsed = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"processor": which, "spans": n, "delivered": exporter.delivered, "lost": n - exporter.delivered,
            "seconds": round(elapsed, 2), "peak_rss_mb": round(rss / 1024, 1),
            "rss_growth_mb": round((rss - rss_before) / 1024, 1), **extra}


def run_bursts(n: int) -> list[dict[str, object]]:
    port_file = Path(f"/tmp/handoffs-bench-sink-{os.getpid()}")
    port_file.unlink(missing_ok=True)
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port_file)])
    try:
        for _ in range(100):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.05)
        port = int(port_file.read_text())
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        results = []
        for which in ("default", "ours"):
            out = subprocess.run([sys.executable, __file__, "--burst-child", which, "--burst", str(n),
                                  "--port", str(port)], capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        return results
    finally:
        sink.terminate()
        sink.wait()
        port_file.unlink(missing_ok=True)


# The cost measured in a process of its own, by this file's ``measure_cost``, of the SDK of the
# checkout the process runs in (its working directory).
_COST_CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("sdk_overhead", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
print(json.dumps(bench.measure_cost(int(sys.argv[2]), int(sys.argv[3]))))
"""


def compare_before(rev: str, rounds: int, pairs: int, block: int) -> list[str]:
    """The cost of revision ``rev``'s SDK and of this checkout's, alternating in fresh processes."""
    import tempfile

    results: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
    with tempfile.TemporaryDirectory(prefix="handoffs-bench-before-") as tmp, \
            record.checkout(rev, Path(tmp) / "checkout") as before:
        sides = (("before", before), ("now", record.REPO))
        for i in range(rounds):
            for label, checkout in (sides if i % 2 == 0 else sides[::-1]):
                out = subprocess.run([sys.executable, "-c", _COST_CHILD, __file__, str(pairs), str(block)],
                                     cwd=checkout, check=True, capture_output=True, text=True).stdout
                results[label].append(json.loads(out.strip().splitlines()[-1]))
    lines = [f"hand-off vs bare OTel span, {rev} against this checkout, {rounds} rounds alternating in fresh "
             f"processes, each {pairs} interleaved pairs of {block}:"]
    for key, what in (("cpu_ratio", "CPU time"), ("producer_ratio", "the producer's share")):
        b = [r[key] for r in results["before"]]
        n = [r[key] for r in results["now"]]
        lines.append(f"  ratio, {what}: {rev} {statistics.median(b):.2f}x, now {statistics.median(n):.2f}x "
                     f"(per round: {rev} {', '.join(f'{x:.2f}' for x in b)}; now {', '.join(f'{x:.2f}' for x in n)})")
    us = {label: {key: statistics.median(r[key] for r in rs) for key in ("bare_cpu_us", "handoff_cpu_us")}
          for label, rs in results.items()}
    lines.append(f"  CPU per span, medians (they move with the machine between processes; the ratios are the "
                 f"comparison): bare {us['before']['bare_cpu_us']:.1f} / {us['now']['bare_cpu_us']:.1f} us, "
                 f"hand-off {us['before']['handoff_cpu_us']:.1f} / {us['now']['handoff_cpu_us']:.1f} us ({rev} / now)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=101, help="interleaved timing blocks per side")
    parser.add_argument("--block", type=int, default=300, help="hand-offs (or bare spans) per block")
    parser.add_argument("--burst", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="spans in the burst test, one burst per size")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    parser.add_argument("--before", metavar="REV", help="compare the cost with revision REV's SDK (no bursts)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per side with --before")
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    parser.add_argument("--burst-child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        serve_sink(args.sink)
        return
    if args.burst_child:
        print(json.dumps(burst(args.burst_child, args.burst[0], args.port)))
        return

    command = "python bench/sdk_overhead.py " + " ".join(sys.argv[1:])
    lines = [f"# SDK overhead, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"# command: {command.strip()}",
             f"# machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}",
             ""]
    if args.before:
        lines += compare_before(args.before, args.rounds, args.pairs, args.block)
        print("\n".join(lines))
        if not args.no_write:
            record.append(RESULTS, lines)
        return
    cost = measure_cost(args.pairs, args.block)
    lines += [
        f"hand-off (delegation + output + decision) vs bare OTel span, same processor, "
        f"{args.pairs} interleaved pairs of {args.block}, each block timed with its flush:",
        f"  bare span        {cost['bare_us']:.1f} us wall, {cost['bare_cpu_us']:.1f} us CPU (medians per block)",
        f"  hand-off         {cost['handoff_us']:.1f} us wall, {cost['handoff_cpu_us']:.1f} us CPU",
        f"  ratio, CPU time  {cost['cpu_ratio']:.2f}x median of pairs (quartiles {cost['cpu_q']}); target <= 1.25x",
        f"  ratio, wall time {cost['wall_ratio']:.2f}x median of pairs (quartiles {cost['wall_q']})",
        f"  ratio, CPU time without the flush (the producer's share) {cost['producer_ratio']:.2f}x "
        f"(quartiles {cost['producer_q']})",
        f"  for scale: the same {cost['n_attributes']} attributes and 2 events ({cost['n_event_attributes']} "
        f"attributes) through OTel's API by hand cost {cost['by_hand_cpu_us']:.1f} us CPU, "
        f"{cost['by_hand_ratio']:.2f}x a bare span",
        "",
        f"bursts of {', '.join(f'{n:,}' for n in args.burst)} spans, OTLP/HTTP protobuf to a sink on loopback, "
        "fresh process each, both with a queue of 2,048 and batches of 512:",
    ]
    for n in args.burst:
        for r in run_bursts(n):
            extra = (f", producer blocked {r['blocked']}x, counted drops {r['dropped_counted']}"
                     if r["processor"] == "ours" else "")
            lines.append(f"  {n:>9,} {r['processor']:<8} delivered {r['delivered']:>9,} lost {r['lost']:>9,} "
                         f"({r['lost'] / n:4.0%}) in {r['seconds']:6.2f} s, peak RSS {r['peak_rss_mb']} MB{extra}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if not args.no_write:
        record.append(RESULTS, lines)  # earlier runs stay in the file beside this one


if __name__ == "__main__":
    main()
