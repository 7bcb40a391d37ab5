"""CI metadata for runs: commit, branch, build id and URL from the CI system's environment.

Read from GitHub Actions, GitLab CI and Jenkins; ``HANDOFFS_COMMIT``, ``HANDOFFS_BRANCH``,
``HANDOFFS_BUILD_ID`` and ``HANDOFFS_BUILD_URL`` override whatever the CI system says, so a
baseline can be "the last green run on main" wherever the suite runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from handoffs import conventions as c


def _github(env: Mapping[str, str]) -> dict[str, str]:
    if env.get("GITHUB_ACTIONS") != "true":
        return {}
    ref = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME", "")
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    url = ""
    if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return {c.RUN_COMMIT: env.get("GITHUB_SHA", ""), c.RUN_BRANCH: ref,
            c.RUN_BUILD_ID: env.get("GITHUB_RUN_ID", ""), c.RUN_BUILD_URL: url}


def _gitlab(env: Mapping[str, str]) -> dict[str, str]:
    if env.get("GITLAB_CI") != "true":
        return {}
    branch = env.get("CI_COMMIT_BRANCH") or env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get(
        "CI_COMMIT_REF_NAME", "")
    return {c.RUN_COMMIT: env.get("CI_COMMIT_SHA", ""), c.RUN_BRANCH: branch,
            c.RUN_BUILD_ID: env.get("CI_PIPELINE_ID", ""), c.RUN_BUILD_URL: env.get("CI_PIPELINE_URL", "")}


def _jenkins(env: Mapping[str, str]) -> dict[str, str]:
    if not env.get("JENKINS_URL"):
        return {}
    branch = env.get("BRANCH_NAME") or env.get("GIT_BRANCH", "")
    return {c.RUN_COMMIT: env.get("GIT_COMMIT", ""), c.RUN_BRANCH: branch.removeprefix("origin/"),
            c.RUN_BUILD_ID: env.get("BUILD_NUMBER", ""), c.RUN_BUILD_URL: env.get("BUILD_URL", "")}


_OVERRIDES = {c.RUN_COMMIT: "HANDOFFS_COMMIT", c.RUN_BRANCH: "HANDOFFS_BRANCH",
              c.RUN_BUILD_ID: "HANDOFFS_BUILD_ID", c.RUN_BUILD_URL: "HANDOFFS_BUILD_URL"}


def ci_metadata(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Run attributes (``handoff.run.commit`` ...) for the CI system we run under; empty ones dropped."""
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    for reader in (_github, _gitlab, _jenkins):
        found = reader(env)
        if found:
            break
    for key, var in _OVERRIDES.items():
        if env.get(var):
            found[key] = env[var]
    return {k: v for k, v in found.items() if v}


def in_git_checkout(cwd: str | None = None) -> bool:
    """Whether ``cwd`` is inside a git work tree (for saying why ``git_metadata`` found nothing)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=cwd, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "true"


def git_metadata(cwd: str | None = None) -> dict[str, str]:
    """Commit and branch of the git checkout at ``cwd``, for runs made outside CI (empty if none).

    Not part of ``ci_metadata``: outside CI a run says where it ran only when a caller (the
    pytest plugin) asks for it, so library users get no surprise subprocess per run.
    """
    found: dict[str, str] = {}
    for key, args in ((c.RUN_COMMIT, ["rev-parse", "HEAD"]),
                      (c.RUN_BRANCH, ["rev-parse", "--abbrev-ref", "HEAD"])):
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return {}
        value = out.stdout.strip()
        if out.returncode == 0 and value and value != "HEAD":  # "HEAD": a detached checkout
            found[key] = value
    return found
