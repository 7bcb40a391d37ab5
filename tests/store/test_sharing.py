"""Several processes on one embedded store: the owner serves it, the others connect."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from handoffs.errors import StoreError
from handoffs.store import open_store
from handoffs.store.sharing import owned_endpoint

OWNER = textwrap.dedent("""
    import sys, time
    from handoffs.store import open_store, SpanBatch
    store = open_store(sys.argv[1])
    batch = SpanBatch()
    batch.append(trace_id="t" * 32, span_id="s" * 16, name="owner-span", start_ns=time.time_ns(), duration_ns=1)
    store.insert_spans(batch)
    print(type(store.engine).__name__, flush=True)
    sys.stdin.readline()   # hold the store until the test says so
""")

CLIENT = textwrap.dedent("""
    import sys, time
    from handoffs.store import open_store, SpanBatch
    store = open_store(sys.argv[1])
    batch = SpanBatch()
    batch.append(trace_id="u" * 32, span_id="v" * 16, name="client-span", start_ns=time.time_ns(), duration_ns=1)
    store.insert_spans(batch)
    names = [r["SpanName"] for r in store.query("SELECT SpanName FROM otel_traces FINAL ORDER BY SpanName")]
    print(type(store.engine).__name__, ",".join(names), flush=True)
""")


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_second_process_reads_and_writes_through_the_owner(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'store'}"
    owner = _python(OWNER, url)
    assert owner.stdout.readline().strip() == "ChdbEngine"
    try:
        client = _python(CLIENT, url)
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert out.strip() == "HttpEngine client-span,owner-span"
    finally:
        owner.communicate("\n", timeout=60)
    assert owner.returncode == 0
    # The owner is gone: the next process takes the directory itself and sees everything.
    again = _python(CLIENT, url)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert out.strip() == "ChdbEngine client-span,owner-span"


def test_unreachable_server_is_one_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot reach ClickHouse at clickhouse://default@127.0.0.1:1/default") as info:
        open_store("clickhouse://127.0.0.1:1/default")
    # The operating system's reason, not the client's 300-character wrapping of it cut mid-word.
    assert ": Connection refused. Check the host" in str(info.value)


def test_a_server_that_answers_and_refuses_says_what_is_wrong(chdb_dir: Path, store) -> None:
    ep = owned_endpoint(chdb_dir)
    assert ep is not None
    with pytest.raises(StoreError, match="has no database 'nosuchdb': create it"):
        open_store(f"clickhouse://default:{ep.password}@{ep.host}:{ep.port}/nosuchdb?compress=0")
    with pytest.raises(StoreError, match="refused the password of user 'default': check the credentials"):
        open_store(f"clickhouse://default:wrong@{ep.host}:{ep.port}/{store.url.database}?compress=0")


def test_a_reader_never_makes_a_store(tmp_path: Path) -> None:
    # The dashboard opens read-only: a mistyped path must not become an empty store.
    with pytest.raises(StoreError, match="no embedded store at"):
        open_store(f"chdb://{tmp_path / 'typo'}", read_only=True)
    assert not (tmp_path / "typo").exists()


def test_create_false_opens_only_an_existing_store(tmp_path: Path, chdb_dir: Path, store) -> None:
    with pytest.raises(StoreError, match="no embedded store at"):
        open_store(f"chdb://{tmp_path / 'typo'}", create=False)
    assert not (tmp_path / "typo").exists()
    # A mistyped ?database= made a new, empty database in the store and judged it.
    with pytest.raises(StoreError, match=f"the embedded store at {chdb_dir} has no database 'typo2'"):
        open_store(f"chdb://{chdb_dir}?database=typo2", create=False)
    assert "typo2" not in {r["name"] for r in store.query("SELECT name FROM system.databases")}
    assert open_store(f"chdb://{chdb_dir}?database={store.url.database}", create=False).scalar("SELECT 1") == 1


def test_a_directory_without_our_span_table_is_no_store(tmp_path: Path) -> None:
    # An empty "metadata" folder passed the check: detect then made tables there and judged 0 traces.
    (tmp_path / "other" / "metadata").mkdir(parents=True)
    with pytest.raises(StoreError, match=r"no handoffs store at .*other \(database 'default' has no otel_traces table\)"):
        open_store(f"chdb://{tmp_path / 'other'}", create=False)
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["metadata"]


def test_a_store_this_user_may_not_read_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc/1/root in a container, or another user's 0700 directory: a PermissionError traceback.
    def denied(self: Path, strict: bool = False) -> Path:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "resolve", denied)
    for create in (True, False):
        with pytest.raises(StoreError, match="cannot use .* as the embedded store: Permission denied"):
            open_store(f"chdb://{tmp_path / 'private'}", create=create)


def test_a_directory_that_cannot_be_a_store_is_one_clear_error(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    for path in (a_file, a_file / "below"):
        with pytest.raises(StoreError, match=f"cannot use {path} as the embedded store: .*pick another"):
            open_store(f"chdb://{path}")


def test_a_read_only_store_refuses_writes_and_still_reads(store) -> None:
    from handoffs.store import SpanBatch, Store
    from handoffs.store.engines import ReadOnlyEngine

    reader = Store(ReadOnlyEngine(store.engine), store.url)
    assert reader.scalar("-- a comment first\nSELECT count() FROM otel_traces") == 0
    batch = SpanBatch()
    batch.append(trace_id="r" * 32, span_id="o" * 16, name="x", start_ns=1, duration_ns=1)
    for write in (lambda: reader.insert_spans(batch), lambda: reader.command("TRUNCATE TABLE otel_traces"),
                  lambda: reader.query("ALTER TABLE otel_traces DELETE WHERE 1")):
        with pytest.raises(StoreError, match="read-only"):
            write()


READ_ONLY_CLIENT = textwrap.dedent("""
    import sys, time
    from handoffs.errors import StoreError
    from handoffs.store import open_store, SpanBatch
    store = open_store(sys.argv[1], read_only=True)
    batch = SpanBatch()
    batch.append(trace_id="u" * 32, span_id="v" * 16, name="client-span", start_ns=time.time_ns(), duration_ns=1)
    try:   # past the in-process guard, straight at the owner's endpoint
        store.engine.inner.insert_arrow("otel_traces", batch.to_arrow())
        print("inserted")
    except StoreError as exc:
        print("refused" if "read-only" in str(exc) else f"other: {exc}")
    print(store.scalar("SELECT count() FROM otel_traces"), flush=True)
""")


def test_the_owner_refuses_writes_from_a_read_only_client(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'store'}"
    owner = _python(OWNER, url)
    assert owner.stdout.readline().strip() == "ChdbEngine"
    try:
        client = _python(READ_ONLY_CLIENT, url)
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert out.split() == ["refused", "1"]
    finally:
        owner.communicate("\n", timeout=60)
