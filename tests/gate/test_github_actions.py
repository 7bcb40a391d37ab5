"""docs/github-actions.yml runs here: its shell steps, in order, as GitHub would run them, on
the embedded store in a temp dir: a green build on main, then a pull request that overwrites
sub-agents' work, which the gate must fail with a JUnit report and a job summary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "docs" / "github-actions.yml"
# Steps that need the network or GitHub's own services; everything else runs as written.
SKIPPED = {"Install"}

AGENT_TESTS = '''
import os
import pytest
from handoffs import sdk


@pytest.mark.parametrize("i", range(6))
def test_team_writes_the_report(i):
    overwrite = os.environ.get("TEAM_OVERWRITES") == "1"
    with sdk.agent("supervisor", role="supervisor") as sup:
        with sup.delegate("writer", task="write the report") as d:
            with sdk.agent("writer", role="worker"):
                out = d.output(f"draft {i}", tokens=40, unit_complete=not overwrite)
            d.decision("overwrote" if overwrite else "accepted", output=out)
'''


def _expand(text: str, workspace: Path) -> str:
    return re.sub(r"\$\{\{\s*github\.workspace\s*\}\}", str(workspace), text)


def _build(workflow: dict, workspace: Path, sha: str, ref: str, overwrite: bool) -> dict[str, int]:
    """Run the job's shell steps like a runner: job env, GitHub's variables, one bash per step."""
    job = workflow["jobs"]["agents"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HANDOFFS_", "GITHUB_", "PYTEST_"))}
    env.update({k: _expand(str(v), workspace) for k, v in job.get("env", {}).items()})
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "GITHUB_ACTIONS": "true", "GITHUB_SHA": sha, "GITHUB_REF_NAME": ref, "GITHUB_RUN_ID": sha[:6],
        "GITHUB_REPOSITORY": "acme/agents", "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_STEP_SUMMARY": str(workspace / "summary.md"),
        "TEAM_OVERWRITES": "1" if overwrite else "0",
    })
    codes = {}
    for step in job["steps"]:
        if "run" not in step or step.get("name") in SKIPPED:
            continue
        proc = subprocess.run(["bash", "-e", "-c", _expand(step["run"], workspace)], cwd=workspace, env=env,
                              capture_output=True, text=True, timeout=600)
        codes[step["name"]] = proc.returncode
        print(f"--- {step['name']}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return codes


@pytest.mark.slow
def test_the_documented_workflow_passes_a_green_build_and_fails_a_regression(tmp_path: Path) -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    run_steps = [s["name"] for s in workflow["jobs"]["agents"]["steps"] if "run" in s]
    assert run_steps == ["Install", "Run the agent suite under tracing", "Gate on delegation quality"]
    (tmp_path / "tests" / "agents").mkdir(parents=True)
    (tmp_path / "tests" / "agents" / "test_team.py").write_text(AGENT_TESTS)
    shutil.copy(ROOT / "handoffs.example.toml", tmp_path / "handoffs.toml")

    main = _build(workflow, tmp_path, "1" * 40, "main", overwrite=False)
    assert main == {"Run the agent suite under tracing": 0, "Gate on delegation quality": 0}
    assert (tmp_path / ".handoffs-store").is_dir()  # the directory the cache steps keep

    pr = _build(workflow, tmp_path, "2" * 40, "feature", overwrite=True)
    assert pr == {"Run the agent suite under tracing": 0, "Gate on delegation quality": 1}
    suite = ET.parse(tmp_path / "reports" / "handoffs-gate.xml").getroot().find("testsuite")
    assert suite is not None
    failed = {c.get("name"): c.find("failure") for c in suite.iter("testcase") if c.find("failure") is not None}
    assert "supervisor overwrites" in failed
    assert "tests/agents/test_team.py::test_team_writes_the_report" in failed["supervisor overwrites"].text
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["commit"] == "2" * 40 and props["branch"] == "feature"
    assert "green on branch main" in props["baseline"] and "1" * 12 in props["baseline"]
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("handoffs gate:") == 2 and "handoffs gate: FAIL" in summary
