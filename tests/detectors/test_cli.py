"""``handoffs detect`` and ``handoffs attribute`` through the real command line, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handoffs import sdk
from handoffs.cli import main
from handoffs.store import Store


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _url(store: Store, chdb_dir: Path) -> str:
    return f"chdb://{chdb_dir}?database={store.url.database}"


def _failing_run() -> tuple[str, str]:
    """A worker's error consumed by the supervisor's next hand-off, whose worker fails too."""
    with sdk.run("cascade") as run:
        with sdk.agent("sup", role="supervisor") as sup:
            with sup.delegate("a", task="x") as d1:
                with sdk.agent("a") as a:
                    with a.tool("compute", {"x": 1}) as bad:
                        bad.error("wrong unit")
                    out = d1.output("42", tokens=5, unit_complete=True)
                d1.decision("accepted", output=out)
            with sup.delegate("b", task="y", consumes=[out]) as d2:
                with sdk.agent("b") as b:
                    with b.tool("convert", {"v": 42}) as worse:
                        worse.error("nonsense")
                    d2.output("?", tokens=1, unit_complete=True)
        run.terminate("done", success_claimed=True, agent="sup")
    return bad.trace_id, bad.span_id


def test_detect_and_attribute_jsonl(store: Store, traced, chdb_dir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with traced():
        trace_id, root_span = _failing_run()
        with sdk.run("fine") as ok:
            with sdk.agent("solo"):
                pass
            ok.terminate("done", success_claimed=True)
    code, out, err = _run(["detect", "--store", _url(store, chdb_dir), "--format", "jsonl"], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2
    [failed] = [row for row in lines if row["trace_id"] == trace_id]
    assert set(failed) == {"trace_id", "source_id", "findings"}
    cascade = [f for f in failed["findings"] if f["code"] == "error-cascade"]
    assert [(f["agent"], f["span_id"]) for f in cascade] == [("a", root_span)]
    assert set(cascade[0]) == {"code", "name", "agent", "step", "span_id", "confidence", "evidence"}

    code, out, err = _run(["attribute", "--store", _url(store, chdb_dir), "--format", "jsonl"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["trace_id"], r["agent"]) for r in rows] == [(trace_id, "a")]
    assert set(rows[0]) == {"trace_id", "source_id", "agent", "step", "confidence"}


def test_bad_input_is_one_line_and_exit_2(store: Store, chdb_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["detect", "--store", _url(store, chdb_dir), "--trace", "nope"], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "nope" in err
    code, _, err = _run(["detect", "--store", _url(store, chdb_dir), "--format", "xml"], capsys)
    assert code == 2 and "xml" in err
    code, _, err = _run(["attribute", "--store", "ftp://x"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["detect", "attribute"])
def test_judging_a_mistyped_store_path_makes_no_store(command: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # It made an empty store there and reported 0 traces judged, exit 0.
    typo = tmp_path / "stroe"
    code, out, err = _run([command, "--store", f"chdb://{typo}"], capsys)
    assert code == 2 and out == ""
    assert f"no embedded store at {typo}" in err and len(err.strip().splitlines()) == 1
    assert not typo.exists()
    empty = tmp_path / "empty"  # an existing directory that holds no store is no store either
    empty.mkdir()
    code, _, err = _run([command, "--store", f"chdb://{empty}"], capsys)
    assert code == 2 and "no embedded store at" in err and list(empty.iterdir()) == []


def test_a_full_detect_gathers_the_metrics_on_its_way(store: Store, chdb_dir: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``detect --full`` stores the metrics ``compute_metrics`` would, without reading any trace
    again for them: they come from the shape each chunk of the pass built. It prints what it
    judged without reading stored findings back: it judged every trace."""
    from handoffs.demo import simulate
    from handoffs.detectors import metrics, pipeline

    simulate(12, seed=3, inject="overwrite,error-cascade", failure_rate=0.8, store=store)
    monkeypatch.setattr(pipeline, "RANGE_TRACES", 5)  # several chunks

    def read_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("the metrics read the traces again")

    def read_back(*args: object, **kwargs: object) -> None:
        raise AssertionError("a full pass read stored findings back")

    with monkeypatch.context() as patched:
        patched.setattr(metrics, "_scratches", read_again)
        patched.setattr(pipeline, "load", read_back)  # it judged every trace: nothing to add
        code, out, err = _run(["detect", "--store", _url(store, chdb_dir), "--full", "--format", "jsonl"], capsys)
    assert code == 0, err
    full = [json.loads(line) for line in out.splitlines()]
    assert len(full) == 12 and [r["trace_id"] for r in full] == sorted(r["trace_id"] for r in full)
    # The same objects as an incremental run reads back from the store.
    code, out, err = _run(["detect", "--store", _url(store, chdb_dir), "--format", "jsonl"], capsys)
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == full

    def sums() -> list[tuple]:
        return sorted((r["run_id"], r["scope"], r["subject"], r["metric"], r["numerator"], r["denominator"])
                      for r in metrics.load(store))

    gathered = sums()
    assert {r[3] for r in gathered} >= {"overwrite_rate", "error_amplification", "failure_rate:overwrite"}
    assert metrics.compute_metrics(store) == len(gathered)
    assert sums() == gathered


def test_an_incremental_detect_recomputes_the_metrics_of_new_runs_only(
        store: Store, chdb_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """One new run on top: its metrics are stored, and no other run's are computed again."""
    from handoffs.demo import simulate
    from handoffs.detectors import metrics

    first = simulate(4, seed=3, inject="overwrite", failure_rate=1.0, store=store)
    code, _, err = _run(["detect", "--store", _url(store, chdb_dir), "--format", "jsonl"], capsys)
    assert code == 0, err
    before = {r["run_id"] for r in metrics.load(store)}
    assert before == {r.run_id for r in first}

    [new] = simulate(1, seed=4, store=store)
    computed: list[list[str]] = []
    compute = metrics.compute_metrics

    def spy(store_: Store, run_ids: list[str] | None = None, **kwargs: bool) -> int:
        computed.append(list(run_ids or []) if run_ids is not None else ["<every run>"])
        return compute(store_, run_ids, **kwargs)

    monkeypatch.setattr(metrics, "compute_metrics", spy)
    code, out, err = _run(["detect", "--store", _url(store, chdb_dir), "--format", "jsonl"], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 5  # every trace is reported, judged now or before
    assert computed == [[new.run_id]]
    assert {r["run_id"] for r in metrics.load(store)} == before | {new.run_id}


def test_detect_new_reports_only_the_traces_judged_now(
        store: Store, chdb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from handoffs.demo import simulate

    url = _url(store, chdb_dir)
    simulate(4, seed=3, store=store)
    code, out, err = _run(["detect", "--store", url, "--format", "jsonl", "--new"], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 4  # a first run judges every trace

    [new] = simulate(1, seed=4, inject="overwrite", failure_rate=1.0, store=store)
    code, out, err = _run(["detect", "--store", url, "--format", "jsonl", "--new"], capsys)
    assert code == 0, err
    [line] = [json.loads(row) for row in out.splitlines()]
    assert line["trace_id"] == new.trace_id
    assert "overwrite" in {f["code"] for f in line["findings"]}

    code, out, err = _run(["detect", "--store", url, "--format", "jsonl", "--new"], capsys)
    assert (code, out) == (0, "")  # nothing new since
    code, out, err = _run(["detect", "--store", url, "--format", "jsonl"], capsys)
    rows = {row["trace_id"]: row for row in map(json.loads, out.splitlines())}
    assert len(rows) == 5 and rows[new.trace_id] == line  # the same result, read back

    code, _, err = _run(["detect", "--store", url, "--new", "--trace", new.trace_id], capsys)
    assert code == 2 and "--new" in err


def test_a_long_table_shows_its_first_findings_and_counts_the_rest(
        store: Store, chdb_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from handoffs.cli import detect as detect_cli
    from handoffs.demo import simulate

    url = _url(store, chdb_dir)
    simulate(6, seed=5, inject="overwrite", failure_rate=1.0, store=store)
    code, out, err = _run(["detect", "--store", url, "--format", "jsonl"], capsys)
    assert code == 0, err
    total = sum(len(json.loads(row)["findings"]) for row in out.splitlines())
    assert total > 2
    monkeypatch.setattr(detect_cli, "TABLE_ROWS", 2)
    code, out, err = _run(["detect", "--store", url], capsys)
    assert code == 0, err
    assert "6 trace(s)" in out and f"the first 2 of {total:,} findings" in out
    assert "--format jsonl lists every one" in out
