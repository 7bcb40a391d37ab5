"""The write-ahead spool: torn tails cut on open, pending batches replayed with the same token,
segments rolled and deleted, one collector per spool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handoffs.collector import spool
from handoffs.errors import UsageError


def test_records_survive_reopen_and_a_torn_tail_is_cut(tmp_path: Path) -> None:
    sp = spool.Spool(tmp_path)
    ends = [sp.append(spool.pack(f"body {i}".encode(), "proj" if i % 2 else None)) for i in range(3)]
    sp.close()
    segment = next(tmp_path.glob("*.seg"))
    with open(segment, "ab") as fh:  # a crash mid-append: half a record
        fh.write(b"HOS1\xff\x00\x00\x00partial")
    sp = spool.Spool(tmp_path)
    assert sp.end == ends[-1] and segment.stat().st_size == ends[-1]
    records = list(sp.read(0))
    assert [spool.unpack(r.payload) for r in records] == [(b"body 0", None), (b"body 1", "proj"), (b"body 2", None)]
    assert [r.end for r in records] == ends
    sp.close()


def test_a_pending_batch_is_replayed_with_its_token_after_a_crash(tmp_path: Path) -> None:
    sp = spool.Spool(tmp_path)
    for _ in range(4):
        sp.append(spool.pack(b"x" * 100, None))
    middle = list(sp.read(0))[1].end
    pending = sp.begin(0, middle)
    token = pending.token(sp.spool_id)
    sp.close()  # "crash": the insert may or may not have landed
    again = spool.Spool(tmp_path)
    assert again.pending is not None and again.pending.token(again.spool_id) == token
    assert again.committed == 0 and len(list(again.read(0, stop=again.pending.end))) == 2
    again.commit(again.pending.end)
    again.close()
    third = spool.Spool(tmp_path)
    assert third.pending is None and third.committed == middle and third.depth == 2 * (middle // 2)
    third.close()


def test_drained_segments_are_deleted_and_the_spool_bounded(tmp_path: Path) -> None:
    sp = spool.Spool(tmp_path, max_bytes=300_000, segment_bytes=100_000)
    for _ in range(5):
        sp.append(spool.pack(b"y" * 50_000, None))
    assert len(list(tmp_path.glob("*.seg"))) >= 2
    with pytest.raises(spool.SpoolFull):
        for _ in range(5):
            sp.append(spool.pack(b"y" * 50_000, None))
    sp.commit(sp.end)
    assert sp.depth == 0 and len(list(tmp_path.glob("*.seg"))) == 1
    assert next(tmp_path.glob("*.seg")).stat().st_size < 100_000  # only the last, small segment
    sp.append(spool.pack(b"z", None))
    sp.close()


def test_one_collector_per_spool(tmp_path: Path) -> None:
    sp = spool.Spool(tmp_path)
    with pytest.raises(UsageError, match="another collector"):
        spool.Spool(tmp_path)
    sp.close()
    spool.Spool(tmp_path).close()


def test_a_torn_state_slot_falls_back_to_the_other(tmp_path: Path) -> None:
    sp = spool.Spool(tmp_path)
    sp.append(spool.pack(b"a", None))
    first = sp.end
    sp.commit(first)
    sp.append(spool.pack(b"b", None))
    sp.commit(sp.end)
    sp.close()
    state = tmp_path / "state"
    raw = bytearray(state.read_bytes())
    slots = [json.loads(raw[o:o + 508]) for o in (0, 512)]
    newest = 0 if slots[0]["seq"] > slots[1]["seq"] else 512
    assert json.loads(raw[newest:newest + 508])["committed"] > first
    raw[newest + 3] ^= 0xFF  # a crash tore the newest slot
    state.write_bytes(bytes(raw))
    again = spool.Spool(tmp_path)
    assert again.committed == first and again.depth > 0  # the older state: "b" is replayed
    again.close()


def test_two_collectors_on_one_store_get_their_own_default_spools(store, tmp_path: Path) -> None:
    from handoffs.collector import Collector

    first = Collector(store, port=0).start()
    second = Collector(store, port=0).start()
    try:
        assert second.spool_dir == first.spool_dir / "extra-1"
        with pytest.raises(UsageError, match="another collector"):
            Collector(store, port=0, spool_dir=first.spool_dir).start()
    finally:
        second.stop()
        first.stop()
