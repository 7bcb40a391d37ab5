"""The failure modes handoffs judges (MAST's 14 plus the seeds' delegation modes) and the
metrics it computes: the codes every layer shares (demo ground truth, detectors, gate, dashboard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class FailureMode:
    code: str
    name: str
    category: str


SPECIFICATION = "specification / system design"
MISALIGNMENT = "inter-agent misalignment"
VERIFICATION = "task verification"
DELEGATION = "delegation and reliability"

MODES: Final[tuple[FailureMode, ...]] = (
    FailureMode("FM-1.1", "Disobey task specification", SPECIFICATION),
    FailureMode("FM-1.2", "Disobey role specification", SPECIFICATION),
    FailureMode("FM-1.3", "Step repetition", SPECIFICATION),
    FailureMode("FM-1.4", "Loss of conversation history", SPECIFICATION),
    FailureMode("FM-1.5", "Unaware of termination conditions", SPECIFICATION),
    FailureMode("FM-2.1", "Conversation reset", MISALIGNMENT),
    FailureMode("FM-2.2", "Fail to ask for clarification", MISALIGNMENT),
    FailureMode("FM-2.3", "Task derailment", MISALIGNMENT),
    FailureMode("FM-2.4", "Information withholding", MISALIGNMENT),
    FailureMode("FM-2.5", "Ignored other agent's input", MISALIGNMENT),
    FailureMode("FM-2.6", "Reasoning-action mismatch", MISALIGNMENT),
    FailureMode("FM-3.1", "Premature termination", VERIFICATION),
    FailureMode("FM-3.2", "No or incomplete verification", VERIFICATION),
    FailureMode("FM-3.3", "Incorrect verification", VERIFICATION),
    FailureMode("overwrite", "Supervisor overwrote sub-agent output", DELEGATION),
    FailureMode("re-derivation", "Result ignored and re-derived", DELEGATION),
    FailureMode("error-cascade", "Error cascade", DELEGATION),
    FailureMode("duplicate-side-effect", "Duplicate side effect", DELEGATION),
    FailureMode("missing-compensation", "Missing compensation", DELEGATION),
    FailureMode("restart-instead-of-resume", "Restart instead of resume", DELEGATION),
    FailureMode("unapproved-high-stakes-action", "Unapproved high-stakes action", DELEGATION),
    FailureMode("conformity", "Conformity", DELEGATION),
)

BY_CODE: Final[dict[str, FailureMode]] = {m.code: m for m in MODES}

# Codes the demo can inject (``handoffs demo --inject``) and hold detectors to.
OVERWRITE: Final = "overwrite"
PREMATURE_TERMINATION: Final = "FM-3.1"
ERROR_CASCADE: Final = "error-cascade"
STEP_REPETITION: Final = "FM-1.3"
MISSING_VERIFICATION: Final = "FM-3.2"
# Further codes the textual rules (handoffs.detectors.textual) report.
UNAWARE_OF_TERMINATION: Final = "FM-1.5"
CONVERSATION_RESET: Final = "FM-2.1"
FAIL_TO_ASK_CLARIFICATION: Final = "FM-2.2"
INCORRECT_VERIFICATION: Final = "FM-3.3"

# Metric names, as stored in handoffs_metrics.metric and read by the gate and the dashboard.
OVERWRITE_RATE: Final = "overwrite_rate"  # overwrites within the first 5 steps / delegations
TOKENS_BEFORE_INTERRUPTION: Final = "tokens_before_interruption"
AUTONOMOUS_COMPLETION_RATE: Final = "autonomous_completion_rate"
REWRITE_BUG_RATE: Final = "rewrite_bug_rate"
ORIGINAL_BUG_RATE: Final = "original_bug_rate"
ERROR_AMPLIFICATION: Final = "error_amplification"
COORDINATION_OVERHEAD: Final = "coordination_overhead"
FAILURE_RATE_PREFIX: Final = "failure_rate:"  # + a mode's code: findings of it per run

# Metric scopes in handoffs_metrics.scope: subject is the run id, agent name or "a->b".
SCOPE_RUN: Final = "run"
SCOPE_AGENT: Final = "agent"
SCOPE_PAIR: Final = "pair"


def failure_rate_metric(code: str) -> str:
    return FAILURE_RATE_PREFIX + code
