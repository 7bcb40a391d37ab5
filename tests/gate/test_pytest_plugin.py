"""The pytest plugin, in real pytest subprocesses: off by default; when on, each test's agent
run is traced with its test id and commit, detectors run, the policy decides the exit code;
with xdist only the controller judges."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

AGENT_TESTS = '''
import os
import pytest
from handoffs import sdk


def team(overwrite):
    with sdk.agent("supervisor", role="supervisor") as sup:
        with sup.delegate("writer", task="write the report") as d:
            with sdk.agent("writer", role="worker"):
                out = d.output("draft", tokens=40, unit_complete=not overwrite)
            d.decision("overwrote" if overwrite else "accepted", output=out)


@pytest.mark.parametrize("i", range(3))
def test_team(i):
    team(overwrite=os.environ.get("TEAM_OVERWRITES") == "1" and i == 1)


def test_no_agents_here():
    assert 1 + 1 == 2
'''

POLICY = '''
[gate]
name = "plugin"

[[check]]
name = "overwrites"
metric = "overwrite_rate"
max = 0.2

[[check]]
name = "overwrite findings"
failure_mode = "overwrite"
max_count = 0
'''


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for var in ("HANDOFFS_PYTEST", "HANDOFFS_STORE", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL",
                "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HANDOFFS_HOME", str(pytester.path / "default-home"))
    monkeypatch.setenv("HANDOFFS_COMMIT", "c0ffee" * 6 + "c0ff")
    monkeypatch.setenv("HANDOFFS_BRANCH", "feature/plugin")
    pytester.makepyfile(test_agents=AGENT_TESTS)
    pytester.makefile(".toml", handoffs=POLICY)
    return pytester


def stored_runs(store_dir: Path) -> list[dict]:
    """Read the runs back in another process: chDB opens one directory per process."""
    code = ("import json, sys; from handoffs.store import open_store; s = open_store(sys.argv[1]); "
            "print(json.dumps(s.query('SELECT run_id, test_id, commit, branch, tags FROM handoffs_runs FINAL')))")
    out = subprocess.run([sys.executable, "-c", code, f"chdb://{store_dir}"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_off_unless_enabled(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert "handoffs gate" not in result.stdout.str()
    assert not (project.path / "default-home").exists()  # nothing opened, nothing written


def test_a_failing_policy_fails_a_green_session_and_says_where(project: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_OVERWRITES", "1")
    store = project.path / "store"
    junit = project.path / "gate.xml"
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--handoffs", "--handoffs-store",
                                          f"chdb://{store}", "--handoffs-junit", str(junit))
    result.assert_outcomes(passed=4)  # every test passed ...
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # ... and the gate failed the session
    out = result.stdout.str()
    assert "3 runs of this session" in out  # the test without agents is not a run to judge
    assert "FAIL overwrite findings" in out and "handoffs gate FAILED" in out
    case = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}["overwrite findings"]
    failure = case.find("failure")
    assert failure is not None and "test test_agents.py::test_team[1]" in failure.text
    assert "agent supervisor" in failure.text and "span " in failure.text

    runs = {r["test_id"]: r for r in stored_runs(store)}
    assert set(runs) == {"test_agents.py::test_team[0]", "test_agents.py::test_team[1]",
                         "test_agents.py::test_team[2]", "test_agents.py::test_no_agents_here"}
    team = runs["test_agents.py::test_team[1]"]
    assert team["commit"] == "c0ffee" * 6 + "c0ff" and team["branch"] == "feature/plugin"
    assert "pytest" in team["tags"] and any(t.startswith("pytest-session:") for t in team["tags"])


def test_a_passing_policy_keeps_the_exit_code(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--handoffs", "--handoffs-store",
                                          f"chdb://{project.path / 'store'}")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*handoffs gate*", "*gate PASS: 2 checks, 0 failed*"])


@pytest.mark.slow
def test_with_xdist_workers_trace_and_only_the_controller_judges(project: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_OVERWRITES", "1")
    monkeypatch.setenv("HANDOFFS_PYTEST", "1")  # the environment switch works too
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--handoffs-store",
                                          f"chdb://{project.path / 'store'}")
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert out.count("handoffs gate: policy plugin") == 1
    assert "3 runs of this session" in out and "test_agents.py::test_team[1]" in out


def test_a_malformed_policy_stops_the_session_before_tests_run(project: pytest.Pytester) -> None:
    # makefile strips the leading blank line: [gate] is line 1, the bad key line 8
    project.makefile(".toml", handoffs=POLICY.replace('max = 0.2', 'max = 0.2\nmax_ratio = 1'))
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--handoffs", "--handoffs-store",
                                          f"chdb://{project.path / 'store'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*handoffs.toml:8: unknown key 'max_ratio'*"])


def test_an_option_value_pytest_reads_as_a_path_still_gates_and_says_why(project: pytest.Pytester) -> None:
    # pytest picks its root dir before plugins add their options: `--handoffs-junit FILE` with an
    # existing FILE moved the root dir above the project, handoffs.toml was not found there, and
    # the session passed ungated, leaving the old JUnit file in place.
    junit = project.path.parent / f"{project.path.name}-reports" / "gate.xml"
    junit.parent.mkdir()
    junit.write_text("<old/>")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "test_agents.py", "--handoffs",
                                          "--handoffs-store", f"chdb://{project.path / 'store'}",
                                          "--handoffs-junit", str(junit))
    out = result.stdout.str()
    assert "gate PASS: 2 checks" in out
    assert "pytest also read the value of --handoffs-junit as a test path" in out
    assert "write --handoffs-junit=VALUE" in out
    assert ET.parse(junit).getroot().tag == "testsuites"


def test_without_a_policy_the_session_says_it_is_not_gated(project: pytest.Pytester) -> None:
    (project.path / "handoffs.toml").unlink()
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--handoffs", "--handoffs-store",
                                          f"chdb://{project.path / 'store'}")
    assert result.ret == pytest.ExitCode.OK
    assert "runs traced, not gated: no policy" in result.stdout.str()


def test_an_ini_policy_is_found_from_a_subdirectory(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # The ini setting was read against the working directory: `cd tests && pytest` lost it.
    (project.path / "handoffs.toml").rename(project.path / "gate-policy.toml")
    project.makeini("[pytest]\nhandoffs_policy = gate-policy.toml\n")
    sub = project.mkdir("sub")
    (project.path / "test_agents.py").rename(sub / "test_agents.py")
    monkeypatch.chdir(sub)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--handoffs", "--handoffs-store",
                                          f"chdb://{project.path / 'store'}")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    assert "handoffs gate: policy plugin" in result.stdout.str()


def test_the_gate_fails_a_session_without_tests_and_refuses_a_report_path_in_plugin_terms(
        project: pytest.Pytester) -> None:
    # No test collected: the gate failed (no runs) but pytest's 5 hid it from "exit 1 on a failing gate".
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "no_such_test", "--handoffs",
                                          "--handoffs-store", f"chdb://{project.path / 'store'}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "FAIL overwrites: no runs to judge" in result.stdout.str()
    # A report path that cannot be written stops the session before any test runs (it was
    # found after the gate had judged and recorded), in the plugin's words, not --junit.
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--handoffs", "--handoffs-store",
                                          f"chdb://{project.path / 'store'}", f"--handoffs-junit={project.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot write the JUnit report to*give --handoffs-junit a file path*"])
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--handoffs", "--handoffs-store",
                                          f"chdb://{project.path / 'store'}", "--handoffs-baseline=,")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # was refused only once every test had run
    result.stderr.fnmatch_lines(["*--handoffs-baseline ',' names nothing*"])
    project.makefile(".toml", handoffs=POLICY + '\n[runs]\ntag = "nightly"\n')
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--handoffs", "--handoffs-store",
                                          f"chdb://{project.path / 'store'}")
    assert "gate PASS: 2 checks" in result.stdout.str() and "note: [runs] is not applied" in result.stdout.str()
