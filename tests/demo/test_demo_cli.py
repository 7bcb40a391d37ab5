"""``handoffs demo`` end to end in its own process: SDK -> OTLP on loopback -> collector -> store -> report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = """
import json, sys
from handoffs.store import open_store
store = open_store(sys.argv[1])
rows = store.query("SELECT run_id, attributes['handoff.demo.injected'] AS injected FROM handoffs_runs FINAL")
spans = store.scalar("SELECT count() FROM otel_traces")
findings = store.scalar("SELECT count() FROM handoffs_findings")
metrics = store.scalar("SELECT count() FROM handoffs_metrics WHERE metric = 'overwrite_rate'")
print(json.dumps({"runs": len(rows), "injected": sum(len(json.loads(r["injected"])) for r in rows),
                  "spans": spans, "findings": findings, "metrics": metrics}))
"""


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HANDOFFS_HOME": str(home), "COLUMNS": "160"}
    env.pop("HANDOFFS_STORE", None)
    return subprocess.run([sys.executable, "-c", "from handoffs.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_demo_goes_through_the_collector_and_reports_against_ground_truth(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'store'}"
    out = _run(["demo", "--runs", "8", "--seed", "2", "--failure-rate", "1", "--store", url], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "collector: http://127.0.0.1:" in out.stdout
    assert "8 of 8 run traces are in the store" in out.stdout
    assert "Findings vs injected" in out.stdout
    check = subprocess.run([sys.executable, "-c", CHECK, url], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "HANDOFFS_HOME": str(tmp_path)})
    assert check.returncode == 0, check.stderr
    stored = json.loads(check.stdout)
    assert stored["runs"] == 8 and stored["injected"] >= 8 and stored["spans"] > 8 * 10
    assert stored["findings"] > 0 and stored["metrics"] >= 8
    assert (tmp_path / "store.spool").exists()  # the spans came through the collector's spool


def test_a_bad_inject_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = _run(["demo", "--inject", "overwrites", "--store", f"chdb://{tmp_path / 'store'}"], tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown failure kind 'overwrites'" in out.stderr
