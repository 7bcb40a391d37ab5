"""The CI quality gate: a policy of checks on metrics and failure modes, judged against a
baseline with tests that respect run-to-run noise, reported as a table, JUnit, Markdown or JSON.

    policy = load_policy("handoffs.toml")
    result = run_gate(open_store(url), policy)       # records the outcome in the store
    sys.exit(result.exit_code)                       # 0 pass (warnings allowed), 1 fail

``handoffs gate`` is the command line over this; ``handoffs.gate.pytest_plugin`` runs it at
the end of a pytest session.
"""

from __future__ import annotations

from . import report
from .judge import CheckResult, Evidence, GateResult, Run, record_result, refresh_detection, run_gate
from .policy import Check, Policy, load_policy, parse_policy

__all__ = [
    "Check", "CheckResult", "Evidence", "GateResult", "Policy", "Run", "load_policy", "parse_policy",
    "record_result", "refresh_detection", "report", "run_gate",
]
