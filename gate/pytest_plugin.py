"""pytest plugin: trace each test as a run, then gate the session on the policy. Off unless
enabled (``--handoffs`` or ``HANDOFFS_PYTEST=1``), because every pytest in an environment
where handoffs is installed loads it through the ``pytest11`` entry point.

    pytest --handoffs --handoffs-policy=handoffs.toml --handoffs-store=chdb:///tmp/h

Each test call runs inside ``sdk.run(<node id>, test_id=<node id>)`` tagged with the session,
so the agent code under test needs no glue: its ``sdk.agent``/``delegate`` spans land in that
run (a test that opens its own ``sdk.run`` has that run judged instead). At the end of the
session the controller (never an xdist worker) runs the detectors, applies the policy to the
session's runs, prints the table in the terminal summary and fails the session when a check
fails. Under xdist, workers reach the embedded store through the controller, its owner.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from handoffs import conventions as c
from handoffs.errors import HandoffsError
from handoffs.store.schema import RUNS_TABLE

ENV_ENABLE = "HANDOFFS_PYTEST"
DEFAULT_POLICY = "handoffs.toml"
SESSION_TAG_PREFIX = "pytest-session:"
RUN_TAG = "pytest"
_NAME = "handoffs-gate"

# Runs in the traces this session's test runs opened: the test runs themselves and any run a
# test opened inside them (same trace: a child span). The gate drops the idle ones. Bloom
# filters on tags and trace id (migration 7) spare a scan of every run; DISTINCT, not FINAL,
# drops a run stored twice.
_SESSION_RUNS_SQL = """
SELECT DISTINCT run_id FROM """ + RUNS_TABLE + """
WHERE trace_id IN (SELECT trace_id FROM """ + RUNS_TABLE + """ WHERE has(tags, {tag:String}))
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("handoffs", "handoffs: trace agent runs per test and gate on delegation quality")
    group.addoption("--handoffs", action="store_true", default=False,
                    help=f"Trace each test as a handoffs run and apply the gate policy at the end "
                         f"(also ${ENV_ENABLE}=1).")
    group.addoption("--handoffs-policy", default=None, metavar="FILE",
                    help=f"Gate policy TOML (default: ini handoffs_policy, else {DEFAULT_POLICY} "
                         "in the root dir if it exists; without one, runs are traced, not gated).")
    group.addoption("--handoffs-store", default=None, metavar="URL",
                    help="Store URL (default: ini handoffs_store, $HANDOFFS_STORE, the embedded store).")
    group.addoption("--handoffs-baseline", default=None, metavar="RUN",
                    help="Baseline run ids or commits, comma-separated (default: the policy's).")
    group.addoption("--handoffs-junit", default=None, metavar="FILE",
                    help="Also write the gate's JUnit XML here.")
    group.addoption("--handoffs-trace-only", action="store_true", default=False,
                    help="Trace the runs but do not judge them (a later `handoffs gate` step will).")
    parser.addini("handoffs_policy", "handoffs gate policy file", default="")
    parser.addini("handoffs_store", "handoffs store URL", default="")


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("handoffs")) or os.environ.get(ENV_ENABLE, "") in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config):
        return
    plugin = HandoffsPlugin(config)
    config.pluginmanager.register(plugin, _NAME)
    if config.pluginmanager.hasplugin("xdist") and plugin.controller:
        config.pluginmanager.register(_XdistController(plugin), _NAME + "-xdist")


def _option(config: pytest.Config, name: str) -> str | None:
    """A command-line option, else its ini setting (policy and store have one); an ini policy
    path is relative to the ini file, wherever pytest runs from."""
    value = config.getoption(f"handoffs_{name}")
    if not value and name in ("policy", "store"):
        value = config.getini(f"handoffs_{name}")
        if value and name == "policy" and config.inipath is not None:
            value = str(config.inipath.parent / value)
    return value or None


def _default_policy(config: pytest.Config) -> Path | None:
    """``handoffs.toml`` in the root dir, else beside the ini file, else where pytest runs."""
    for folder in (config.rootpath, config.inipath and config.inipath.parent, config.invocation_params.dir):
        if folder is not None and (folder / DEFAULT_POLICY).is_file():
            return folder / DEFAULT_POLICY
    return None


def _misread_options(config: pytest.Config) -> list[str]:
    """Our options whose value pytest also took for a test path.

    pytest picks its root dir before plugins add their options, so ``--handoffs-junit FILE``
    (not ``=FILE``) reads an existing FILE as a test path too, moving the root dir above it.
    """
    args = [str(a) for a in config.invocation_params.args]
    return [flag for flag in (f"--handoffs-{name}" for name in ("policy", "junit", "store", "baseline"))
            if flag in args and args.index(flag) + 1 < len(args) and Path(args[args.index(flag) + 1]).exists()]


def _plugin_flags(message: str) -> str:
    """A gate error names the command line's options; here they are the plugin's."""
    return re.sub(r"(?<![\w-])--(junit|baseline|policy|store)\b", r"--handoffs-\1", message)


class _XdistController:
    """Hands the session id to each xdist worker, so their runs carry the controller's tag."""

    def __init__(self, plugin: HandoffsPlugin) -> None:
        self.plugin = plugin

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["handoffs_session"] = self.plugin.session_id


class HandoffsPlugin:
    """Tracing per test everywhere; judging on the controller only."""

    def __init__(self, config: pytest.Config) -> None:
        from handoffs import sdk
        from handoffs.gate import load_policy, report
        from handoffs.gate.judge import baseline_values
        from handoffs.sdk.ci import ci_metadata, git_metadata
        from handoffs.store import open_store
        from handoffs.store.engines import quiet_client_logs

        quiet_client_logs()  # a store that cannot be reached is said once, in the UsageError
        self.config = config
        workerinput = getattr(config, "workerinput", None)
        self.controller = workerinput is None
        self.session_id = workerinput["handoffs_session"] if workerinput else uuid.uuid4().hex[:16]
        self.tag = SESSION_TAG_PREFIX + self.session_id
        self.result: Any = None
        self.judge = self.controller and not config.getoption("handoffs_trace_only")
        self.error: str | None = None
        self.misread = _misread_options(config)
        policy_path = _option(config, "policy")
        if policy_path is None and (found := _default_policy(config)) is not None:
            policy_path = str(found)
        try:
            # A bad policy or store stops the session before any test runs, as bad options do.
            # Workers read it too: its project is the resource attribute their runs must carry.
            self.policy = load_policy(policy_path) if policy_path else None
            self.store = open_store(_option(config, "store"))
            if self.judge and self.policy is not None:  # what the gate would refuse, refused before the tests
                junit = config.getoption("handoffs_junit")
                if junit:
                    report.check_junit_path(junit)
                baseline = config.getoption("handoffs_baseline")
                if baseline is not None:
                    baseline_values(baseline)
        except HandoffsError as exc:
            raise pytest.UsageError(f"handoffs: {_plugin_flags(str(exc))}") from exc
        if self.controller and not ci_metadata().get(c.RUN_COMMIT):
            # Outside CI, the checkout says which commit the runs belong to; workers inherit it.
            # The root dir first; where pytest runs if that is no checkout (a misread option moved it).
            found: dict[str, str] = {}
            for folder in (config.rootpath, config.invocation_params.dir):
                found = found or git_metadata(str(folder))
            for key, var in ((c.RUN_COMMIT, "HANDOFFS_COMMIT"), (c.RUN_BRANCH, "HANDOFFS_BRANCH")):
                if found.get(key):
                    os.environ.setdefault(var, found[key])
        sdk.configure(service_name=f"pytest:{config.rootpath.name}", store=self.store,
                      project=self.policy.project if self.policy and self.policy.project else None)
        self.sdk = sdk

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        with self.sdk.run(item.nodeid, test_id=item.nodeid, tags=[RUN_TAG, self.tag]):
            return (yield)

    def session_runs(self) -> list[str]:
        """Run ids of this session, on every worker: what the gate judges."""
        return sorted(r["run_id"] for r in self.store.query(_SESSION_RUNS_SQL, {"tag": self.tag}))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from handoffs.gate import report, run_gate

        self.sdk.flush()
        self.sdk.shutdown()
        if not self.judge or self.policy is None:
            return
        try:
            self.result = run_gate(self.store, self.policy, run_ids=self.session_runs(),
                                   baseline=_option(self.config, "baseline"))
            junit = self.config.getoption("handoffs_junit")
            if junit:
                report.write_junit(self.result, junit)
            report.append_step_summary(self.result)
        except HandoffsError as exc:
            self.error = _plugin_flags(str(exc))
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        # A failing gate fails the session, also when no test was collected (pytest's 5).
        if self.result.exit_code and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.judge:
            return
        from handoffs.gate import report

        terminalreporter.section("handoffs gate")
        for option in self.misread:
            terminalreporter.write_line(f"handoffs: pytest also read the value of {option} as a test path "
                                        f"(its root dir is now {self.config.rootpath}): write {option}=VALUE",
                                        yellow=True)
        if self.policy is None:
            terminalreporter.write_line(
                f"handoffs: runs traced, not gated: no policy (give --handoffs-policy=FILE, or put "
                f"{DEFAULT_POLICY} in {self.config.rootpath})", yellow=True)
            return
        if self.result is not None:  # judged (and recorded), even if writing a report then failed
            buf = io.StringIO()
            report.write_table(self.result, buf, width=terminalreporter._tw.fullwidth)
            terminalreporter.write(buf.getvalue())
        if self.error:
            verb = "could not write its reports" if self.result is not None else "could not judge"
            terminalreporter.write_line(f"handoffs gate {verb}: {self.error}", red=True)
        elif self.result is not None and self.result.exit_code:
            terminalreporter.write_line("handoffs gate FAILED: the session fails on delegation quality",
                                        red=True, bold=True)
