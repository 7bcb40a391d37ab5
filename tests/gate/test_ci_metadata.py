"""CI metadata on runs: what GitHub Actions, GitLab CI and Jenkins say, overrides, and git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from handoffs import conventions as c
from handoffs.sdk.ci import ci_metadata, git_metadata


def test_github_actions_pull_request_uses_the_head_branch_and_links_the_run() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "abc", "GITHUB_REF_NAME": "12/merge",
           "GITHUB_HEAD_REF": "feature/x", "GITHUB_RUN_ID": "99", "GITHUB_REPOSITORY": "acme/agents"}
    assert ci_metadata(env) == {c.RUN_COMMIT: "abc", c.RUN_BRANCH: "feature/x", c.RUN_BUILD_ID: "99",
                                c.RUN_BUILD_URL: "https://github.com/acme/agents/actions/runs/99"}


def test_gitlab_and_jenkins() -> None:
    gitlab = {"GITLAB_CI": "true", "CI_COMMIT_SHA": "def", "CI_COMMIT_BRANCH": "main",
              "CI_PIPELINE_ID": "7", "CI_PIPELINE_URL": "https://gitlab/p/7"}
    assert ci_metadata(gitlab)[c.RUN_BRANCH] == "main" and ci_metadata(gitlab)[c.RUN_BUILD_ID] == "7"
    jenkins = {"JENKINS_URL": "https://ci", "GIT_COMMIT": "123", "GIT_BRANCH": "origin/main",
               "BUILD_NUMBER": "5", "BUILD_URL": "https://ci/job/5"}
    assert ci_metadata(jenkins) == {c.RUN_COMMIT: "123", c.RUN_BRANCH: "main", c.RUN_BUILD_ID: "5",
                                    c.RUN_BUILD_URL: "https://ci/job/5"}


def test_overrides_win_and_nothing_is_invented_outside_ci() -> None:
    assert ci_metadata({}) == {}
    env = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "abc", "HANDOFFS_COMMIT": "fixed", "HANDOFFS_BRANCH": "rel"}
    found = ci_metadata(env)
    assert found[c.RUN_COMMIT] == "fixed" and found[c.RUN_BRANCH] == "rel"


def test_git_metadata_reads_the_checkout(tmp_path: Path) -> None:
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    assert git_metadata(str(tmp_path)) == {}  # not a checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q", "-b", "trunk"], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "m"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_metadata(str(tmp_path)) == {c.RUN_COMMIT: sha, c.RUN_BRANCH: "trunk"}
