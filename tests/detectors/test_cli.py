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
