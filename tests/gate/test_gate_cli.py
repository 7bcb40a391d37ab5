"""``handoffs gate`` end to end: exit codes, the table, JUnit parsed back, JSON, the GitHub
job summary, and bad input (policy, store) as one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from gate_seed import PROJECT, Seeder

from handoffs import taxonomy as tx
from handoffs.cli import main
from handoffs.store import Store
from handoffs.store.sharing import owned_endpoint

POLICY = f"""
[gate]
name = "cli"
project = "{PROJECT}"
detect = false

[runs]
branch = "feature"

[baseline]
branch = "main"
green = false

[[check]]
name = "overwrites"
metric = "overwrite_rate"
max = 0.2

[[check]]
name = "premature termination"
failure_mode = "FM-3.1"
max_count = 0

[[check]]
name = "error amplification"
metric = "error_amplification"
max_regression = 0.1
"""


def endpoint_url(store: Store, chdb_dir: Path) -> str:
    """The test store through the owner's HTTP endpoint, as another process would reach it."""
    ep = owned_endpoint(chdb_dir)
    assert ep is not None
    return f"clickhouse://default:{ep.password}@{ep.host}:{ep.port}/{store.url.database}?compress=0"


def seed_runs(seed: Seeder, bad: bool) -> str:
    for i in range(6):
        seed.run(f"main-{i}", commit="a" * 40, branch="main",
                 metrics={tx.OVERWRITE_RATE: 0.1, tx.ERROR_AMPLIFICATION: 4.0 + 0.1 * (i % 3)})
    trace = ""
    for i in range(6):
        broken = bad and i == 0
        trace = seed.run(f"feat-{i}", commit="b" * 40, branch="feature",
                         metrics={tx.OVERWRITE_RATE: 0.9 if broken else 0.1,
                                  tx.ERROR_AMPLIFICATION: 4.0 + 0.1 * (i % 3)},
                         findings=[{"code": "FM-3.1", "agent": "supervisor", "span_id": "abcdef0123456789",
                                    "evidence": "ended with open delegations"}] if broken else ()) or trace
        if broken:
            bad_trace = trace
    return bad_trace if bad else trace


def gate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["gate", *argv])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "handoffs.toml"
    path.write_text(POLICY)
    return path


def test_passing_gate_exits_0_with_a_table(store: Store, seed: Seeder, chdb_dir: Path, policy_file: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    seed_runs(seed, bad=False)
    code, out, _ = gate(["--policy", str(policy_file), "--store", endpoint_url(store, chdb_dir)], capsys)
    assert code == 0, out
    for words in ("overwrites", "premature termination", "error amplification", "PASS", "gate PASS",
                  "6 runs (branch feature)"):
        assert words in out


def test_failing_gate_exits_1_and_every_report_points_at_the_evidence(
        store: Store, seed: Seeder, chdb_dir: Path, policy_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bad_trace = seed_runs(seed, bad=True)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = tmp_path / "reports" / "gate.xml"
    code, out, _ = gate(["--policy", str(policy_file), "--store", endpoint_url(store, chdb_dir),
                         "--junit", str(junit)], capsys)
    assert code == 1
    assert "FAIL premature termination" in out and "span abcdef0123456789" in out and bad_trace in out

    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "2"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"overwrites", "premature termination", "error amplification"}
    failure = cases["premature termination"].find("failure")
    assert failure is not None and bad_trace in failure.text and "feat-0" in failure.text
    assert "abcdef0123456789" in failure.text
    assert cases["error amplification"].find("failure") is None

    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, never overwritten
    assert "handoffs gate: FAIL" in text and "| overwrites |" in text and bad_trace in text


def test_json_format_is_machine_readable(store: Store, seed: Seeder, chdb_dir: Path, policy_file: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    seed_runs(seed, bad=True)
    code, out, _ = gate(["--policy", str(policy_file), "--store", endpoint_url(store, chdb_dir),
                         "--format", "json"], capsys)
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "fail" and doc["exit_code"] == 1
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["premature termination"]["evidence"][0]["span_id"] == "abcdef0123456789"
    amp = checks["error amplification"]["comparison"]
    assert amp["test"] == "welch-t" and not amp["significant"] and len(amp["interval"]) == 2
    assert sorted(doc["runs"]) == [f"feat-{i}" for i in range(6)]
    assert len(doc["baseline_runs"]) == 6


def test_report_files_that_cannot_be_written_are_exit_2_not_a_regression(
        store: Store, seed: Seeder, chdb_dir: Path, policy_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Exit 1 tells CI the agents regressed; an unwritable report path is the job's own mistake.
    seed_runs(seed, bad=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    code, out, err = gate(["--policy", str(policy_file), "--store", endpoint_url(store, chdb_dir),
                           "--junit", str(tmp_path)], capsys)
    # Refused before judging: no table, and no gate result recorded for a run CI will redo.
    assert code == 2 and out == ""
    assert store.scalar("SELECT count() FROM handoffs_gate_results") == 0
    assert err.strip() == (f"handoffs: error: cannot write the JUnit report to {tmp_path}: Is a directory; "
                           "give --junit a file path you can write")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "missing" / "summary.md"))
    code, _, err = gate(["--policy", str(policy_file), "--store", endpoint_url(store, chdb_dir)], capsys)
    assert code == 2 and "cannot append the job summary to $GITHUB_STEP_SUMMARY" in err
    assert len(err.strip().splitlines()) == 1


def test_a_malformed_policy_is_exit_2_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "handoffs.toml"
    bad.write_text(POLICY.replace("max = 0.2", "max = 0.2\nthreshold = 3"))
    code, out, err = gate(["--policy", str(bad), "--store", "clickhouse://127.0.0.1:1/none"], capsys)
    line = POLICY.splitlines().index("max = 0.2") + 2
    assert code == 2 and out == ""
    assert err.strip() == (f"handoffs: error: {bad}:{line}: unknown key 'threshold' in [check]; expected one of "
                           "direction, failure_mode, max, max_count, max_increase, max_rate, max_regression, "
                           "metric, min, min_confidence, name, scope, severity, stat, subject")


def test_an_unreachable_store_is_exit_2(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gate(["--policy", str(policy_file), "--store", "clickhouse://127.0.0.1:1/none"], capsys)
    assert code == 2 and "cannot reach ClickHouse" in err and len(err.strip().splitlines()) == 1


def test_a_mistyped_store_path_is_exit_2_and_makes_no_store(policy_file: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "stroe"
    code, out, err = gate(["--policy", str(policy_file), "--store", f"chdb://{typo}"], capsys)
    assert code == 2 and f"no embedded store at {typo}" in err and not typo.exists()


def test_another_process_gates_the_embedded_store_through_its_owner(
        store: Store, seed: Seeder, chdb_dir: Path, policy_file: Path, tmp_path: Path) -> None:
    seed_runs(seed, bad=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY", "HANDOFFS_STORE")}
    proc = subprocess.run(
        [sys.executable, "-c", "from handoffs.cli import main; main()", "gate", "--policy", str(policy_file),
         "--store", f"chdb://{chdb_dir}?database={store.url.database}", "--junit", str(tmp_path / "j.xml")],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "gate FAIL" in proc.stdout
    assert ET.parse(tmp_path / "j.xml").getroot().find("testsuite").get("failures") == "2"
    recorded = store.scalar("SELECT count() FROM handoffs_gate_results WHERE verdict = 'fail'")
    assert recorded == 2


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_reader_that_stops_early_does_not_change_the_verdict(store: Store, seed: Seeder, chdb_dir: Path,
                                                               policy_file: Path, tmp_path: Path, fmt: str) -> None:
    # `handoffs gate | head -1` exited 1 ("a check failed") on a passing gate, under pipefail.
    seed_runs(seed, bad=False)
    junit = tmp_path / "gate.xml"
    proc = subprocess.Popen([sys.executable, "-c", "from handoffs.cli import main; main()", "gate", "--policy",
                             str(policy_file), "--store", endpoint_url(store, chdb_dir), "--format", fmt,
                             "--junit", str(junit), "--no-record"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the gate prints anything: judging takes longer
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and ET.parse(junit).getroot().tag == "testsuites"  # the reports still written
