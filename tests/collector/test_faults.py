"""Faults that count: spans sent, acknowledged, stored, duplicated. Acknowledged spans lost: 0;
duplicates: 0. The store goes down (a real socket cut), the collector is killed with SIGKILL
and restarted, the spool's disk fills up, an SDK process exits with spans in its buffer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from collector_helpers import Outage, get_json, post, request, span_counts, span_ids, wait_for

from handoffs.collector import Collector
from handoffs.errors import StoreUnreachableError
from handoffs.store import Store, open_store, schema
from handoffs.store.engines import ChdbEngine, HttpEngine
from handoffs.store.sharing import owned_endpoint
from handoffs.store.url import StoreURL

PER_REQUEST = 50


def store_url(store: Store, port: int | None = None) -> StoreURL:
    """A clickhouse:// URL for the test's database, through the endpoint (or a proxy's port)."""
    assert store.url.path is not None
    ep = owned_endpoint(store.url.path)
    assert ep is not None
    return StoreURL("clickhouse", host="127.0.0.1", port=port or ep.port, password=ep.password,
                    database=store.url.database, options={"compress": "0"})


def through(store: Store, outage: Outage) -> Store:
    url = store_url(store, outage.port)
    return Store(HttpEngine(url), url)


def stored_ids(store: Store) -> set[str]:
    return {r["SpanId"] for r in store.query("SELECT DISTINCT SpanId FROM otel_traces")}


def ids_of(run: int, start: int, count: int) -> set[str]:
    return {span_ids(run, i)[1].hex() for i in range(start, start + count)}


def test_store_outage_spools_then_replays_everything_once(store: Store, tmp_path: Path) -> None:
    ep = owned_endpoint(store.url.path)  # type: ignore[arg-type]
    assert ep is not None
    outage = Outage(ep.host, ep.port)
    c = Collector(through(store, outage), port=0, spool_dir=tmp_path / "spool", flush_interval=0.05,
                  batch_rows=120).start()
    acked: set[str] = set()
    try:
        for i in range(30):
            if i == 8:
                outage.cut()
            if i == 22:
                assert wait_for(lambda: not c.health()["store_reachable"])  # the writer's next try fails
                assert c.health()["spool_bytes"] > 0
                outage.restore()
            reply = post(c.port, request(10, i * PER_REQUEST, PER_REQUEST).SerializeToString())
            if reply.status == 200:
                acked |= ids_of(10, i * PER_REQUEST, PER_REQUEST)
        assert len(acked) == 30 * PER_REQUEST
        assert wait_for(lambda: c.health()["stored"] >= len(acked))
    finally:
        c.stop()
        outage.cut()
    rows, distinct = span_counts(store)
    print(f"store outage: sent {30 * PER_REQUEST}, acknowledged {len(acked)}, stored {distinct}, "
          f"duplicates {rows - distinct}")
    assert acked <= stored_ids(store)
    assert rows == distinct == len(acked)


def test_a_collector_started_during_an_outage_spools_then_migrates_and_stores(store: Store, tmp_path: Path) -> None:
    ep = owned_endpoint(store.url.path)  # type: ignore[arg-type]
    assert ep is not None
    database = f"{store.url.database}_late"  # empty: the collector must migrate it once it answers
    ChdbEngine(store.url.path).command(f"CREATE DATABASE `{database}`")  # type: ignore[arg-type]
    outage = Outage(ep.host, ep.port)
    outage.cut()
    url = f"clickhouse://default:{ep.password}@127.0.0.1:{outage.port}/{database}?compress=0"
    with pytest.raises(StoreUnreachableError):
        open_store(url)  # every other command: one clear error
    late = open_store(url, wait_for_server=True)
    c = Collector(late, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05).start()
    try:
        assert wait_for(lambda: c.health()["status"] == "store_unreachable")
        assert post(c.port, request(12, 0, PER_REQUEST).SerializeToString()).status == 200
        outage.restore()
        assert post(c.port, request(12, PER_REQUEST, PER_REQUEST).SerializeToString()).status == 200
        assert wait_for(lambda: c.health()["stored"] >= 2 * PER_REQUEST)
        assert c.health()["status"] == "ok"
    finally:
        c.stop()
        outage.cut()
    stored = Store(ChdbEngine(store.url.path, database), store.url)  # type: ignore[arg-type]
    assert stored.schema_version() == max(m.version for m in schema.migrations())
    assert stored_ids(stored) == ids_of(12, 0, 2 * PER_REQUEST)


def test_stopping_while_the_store_is_down_keeps_the_spool_and_says_so_in_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    down = open_store("clickhouse://default@127.0.0.1:1/default", wait_for_server=True)
    c = Collector(down, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05).start()
    assert post(c.port, request(13, 0, PER_REQUEST).SerializeToString()).status == 200
    assert not c.stop(flush_timeout=3)  # not drained: the spool keeps the spans for the next start
    [stopped] = [r for r in caplog.records if "writer stopped" in r.getMessage()]
    assert "store unreachable" in stopped.getMessage() and stopped.exc_info is None
    assert any((tmp_path / "spool").iterdir())


def test_full_spool_answers_429_and_a_long_outage_503_with_retry_after(store: Store, tmp_path: Path) -> None:
    ep = owned_endpoint(store.url.path)  # type: ignore[arg-type]
    assert ep is not None
    outage = Outage(ep.host, ep.port)
    http_store = through(store, outage)
    outage.cut()
    small = Collector(http_store, port=0, spool_dir=tmp_path / "a", spool_max_bytes=20_000,
                      flush_interval=0.05).start()
    try:
        statuses = [post(small.port, request(11, i * 20, 20).SerializeToString()) for i in range(30)]
        full = [r for r in statuses if r.status == 429]
        assert full and full[0].headers["retry-after"] == "2"
        assert "spool holds" in full[0].body.decode("utf-8", "replace")
        assert get_json(small.port)["refused"] == 20 * len(full)
        # The writer learns of the outage when its first insert fails (the client retries first).
        assert wait_for(lambda: not get_json(small.port)["store_reachable"])
    finally:
        small.stop(flush_timeout=1)
    impatient = Collector(http_store, port=0, spool_dir=tmp_path / "b", store_outage_limit=0.3,
                          flush_interval=0.05).start()
    try:
        assert post(impatient.port, request(12, 0, 10).SerializeToString()).status == 200
        assert wait_for(lambda: impatient.health()["store_down_seconds"] > 0.5)
        reply = post(impatient.port, request(12, 10, 10).SerializeToString())
        assert reply.status == 503 and reply.headers["retry-after"] == "2"
        outage.restore()
        assert wait_for(lambda: impatient.health()["store_reachable"])
        assert post(impatient.port, request(12, 20, 10).SerializeToString()).status == 200
        assert wait_for(lambda: impatient.health()["stored"] >= 20)
    finally:
        impatient.stop()
        outage.cut()
    assert ids_of(12, 0, 10) | ids_of(12, 20, 10) <= stored_ids(store)


def _start_cli(store: Store, spool: Path) -> tuple[subprocess.Popen, int]:
    url = store_url(store)
    cmd = [sys.executable, "-c", "import sys; from handoffs.cli import main; main(sys.argv[1:])",
           "collect", "--port", "0", "--spool", str(spool),
           "--store", f"clickhouse://default:{url.password}@127.0.0.1:{url.port}/{url.database}?compress=0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/v1/traces", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, int(found.group(1))
    raise AssertionError(f"the collector did not start (exit {proc.wait()})")


def test_sigkill_mid_ingest_then_restart_loses_nothing_acknowledged(store: Store, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    acked: set[str] = set()
    state = {"port": 0, "sent": 0, "failed": 0, "stop": False}

    def client() -> None:  # sends without pause, across kills and restarts
        i = 0
        while not state["stop"]:
            start = i * PER_REQUEST
            i += 1
            state["sent"] += PER_REQUEST
            try:
                if post(state["port"], request(13, start, PER_REQUEST).SerializeToString()).status == 200:
                    acked.update(ids_of(13, start, PER_REQUEST))
                    continue
            except OSError:
                pass
            state["failed"] += PER_REQUEST
            time.sleep(0.01)

    sender = threading.Thread(target=client, daemon=True)
    for round_ in range(3):
        proc, state["port"] = _start_cli(store, spool)
        if round_ == 0:
            sender.start()
        before = len(acked)
        assert wait_for(lambda before=before: len(acked) > before + 10 * PER_REQUEST)
        if round_ < 2:
            proc.send_signal(signal.SIGKILL)  # requests, spool appends and inserts in flight
            proc.wait()
        else:
            state["stop"] = True
            sender.join()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
    rows, distinct = span_counts(store)
    lost = acked - stored_ids(store)
    print(f"kill -9 x2: sent {state['sent']}, acknowledged {len(acked)}, not acknowledged "
          f"{state['failed']}, stored {distinct}, duplicates {rows - distinct}, "
          f"acknowledged but lost {len(lost)}")
    assert state["failed"] > 0  # the kills did land mid-stream
    assert not lost and rows == distinct


def test_full_disk_under_the_spool_refuses_with_503_and_recovers(store: Store, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    ep = owned_endpoint(store.url.path)  # type: ignore[arg-type]
    assert ep is not None
    outage = Outage(ep.host, ep.port)
    try:
        http_store = through(store, outage)
        outage.cut()  # the store is down, so the spool only grows
        c = Collector(http_store, port=0, spool_dir=small / "spool", flush_interval=0.05).start()
        acked: set[str] = set()
        refused = 0
        try:
            for i in range(80):
                reply = post(c.port, request(14, i * PER_REQUEST, PER_REQUEST).SerializeToString())
                if reply.status == 200:
                    acked |= ids_of(14, i * PER_REQUEST, PER_REQUEST)
                else:
                    assert reply.status == 503 and "cannot write the spool" in reply.body.decode("utf-8", "replace")
                    refused += 1
            assert refused > 0 and acked
            assert get_json(c.port)["refused"] == refused * PER_REQUEST
            outage.restore()
            assert wait_for(lambda: c.health()["stored"] >= len(acked))
            # Drained, the spool gives its space back and takes spans again.
            reply = post(c.port, request(14, 10_000, PER_REQUEST).SerializeToString())
            assert reply.status == 200
            acked |= ids_of(14, 10_000, PER_REQUEST)
        finally:
            c.stop()
        rows, distinct = span_counts(store)
        print(f"disk full: acknowledged {len(acked)}, refused {refused * PER_REQUEST}, stored {distinct}, "
              f"duplicates {rows - distinct}")
        assert acked <= stored_ids(store) and rows == distinct
    finally:
        outage.cut()
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


def test_sdk_process_exiting_with_buffered_spans_delivers_them(store: Store, collector: Collector,
                                                                tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(f"""
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        # A long delay: nothing leaves before exit, everything is in the buffer.
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint="{collector.url}"), schedule_delay_millis=600_000,
            max_queue_size=10_000, max_export_batch_size=500))
        trace.set_tracer_provider(provider)
        tracer = trace.get_tracer("agent")
        for i in range(1500):
            with tracer.start_as_current_span(f"step {{i}}"):
                pass
        print("exiting with spans buffered")
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OTEL_BSP_EXPORT_TIMEOUT": "60000"})
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: collector.health()["stored"] >= 1500)
    assert span_counts(store) == (1500, 1500)
