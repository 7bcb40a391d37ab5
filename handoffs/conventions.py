"""Every span name, attribute key and closed value set that handoffs emits or reads.

One constants module, as in opentelemetry-semantic-conventions: no attribute name is spelled
twice in the code base. GenAI names are used where the OpenTelemetry GenAI conventions cover
the idea; delegation, which they do not cover, lives under ``handoff.*``.
The reference table for users is ``docs/conventions.md``; keep the two in step.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

# --- OpenTelemetry GenAI semantic conventions (read and emitted) ---------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
# Proposed hand-off attributes on the GenAI conventions; we emit them beside our own.
GEN_AI_HANDOFF_SOURCE_NAME: Final = "gen_ai.agent.handoff.source.name"
GEN_AI_HANDOFF_TARGET_NAME: Final = "gen_ai.agent.handoff.target.name"
# Evaluation results as span events, so other OTel tools can show our verdicts.
GEN_AI_EVALUATION_RESULT_EVENT: Final = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"


class Operation(str, Enum):
    """Values of ``gen_ai.operation.name`` that handoffs emits."""

    INVOKE_AGENT = "invoke_agent"
    EXECUTE_TOOL = "execute_tool"
    CHAT = "chat"


# --- Resource attributes --------------------------------------------------------------------
SERVICE_NAME: Final = "service.name"
RESOURCE_PROJECT: Final = "handoffs.project"
RESOURCE_SOURCE_ID: Final = "handoffs.source_id"  # dataset's own record id (importers)
RESOURCE_SOURCE_FORMAT: Final = "handoffs.source_format"  # otlp-json, who-and-when, mast
RESOURCE_SYSTEM: Final = "handoffs.system"  # the multi-agent system's name (e.g. mas_name)

# --- handoff.* : what GenAI does not cover ---------------------------------------------------
# Every span the SDK makes carries its kind and its step within the run.
SPAN_TYPE: Final = "handoff.span.type"
STEP: Final = "handoff.step"
RUN_ID: Final = "handoff.run.id"
RUN_NAME: Final = "handoff.run.name"
# CI metadata on the run span: commit, branch, build id and URL, tags (JSON list).
RUN_COMMIT: Final = "handoff.run.commit"
RUN_BRANCH: Final = "handoff.run.branch"
RUN_BUILD_ID: Final = "handoff.run.build_id"
RUN_BUILD_URL: Final = "handoff.run.build_url"
RUN_TAGS: Final = "handoff.run.tags"
RUN_TEST_ID: Final = "handoff.run.test_id"
RUN_TOPOLOGY: Final = "handoff.run.topology"  # centralized, independent, decentralized, ...
RESUME_FROM_CHECKPOINT: Final = "handoff.resume.checkpoint_id"

AGENT_ROLE: Final = "handoff.agent.role"  # supervisor, worker, verifier, ... (free text)

# Delegation: an `execute_tool transfer_to_<target>` span.
DELEGATION_ID: Final = "handoff.delegation.id"
SOURCE_AGENT: Final = "handoff.source.agent"
TARGET_AGENT: Final = "handoff.target.agent"
TASK: Final = "handoff.task"
TASK_HASH: Final = "handoff.task.hash"
TASK_AMBIGUOUS: Final = "handoff.task.ambiguous"  # the delegator marked the task unclear
MODE: Final = "handoff.mode"  # delegate (caller waits for a result) | transfer (control passes)
DELEGATION_STATUS: Final = "handoff.delegation.status"  # completed | open | failed

# Outputs a sub-agent delivers: events named EVENT_OUTPUT on the delegation span.
OUTPUT_ID: Final = "handoff.output.id"
OUTPUT_HASH: Final = "handoff.output.hash"
OUTPUT_TOKENS: Final = "handoff.output.tokens"
OUTPUT_UNIT_COMPLETE: Final = "handoff.output.unit_complete"
OUTPUT_CONTENT: Final = "handoff.output.content"  # only when the user opts in
OUTPUT_INDEX: Final = "handoff.output.index"

# What the supervisor did with an output: events named EVENT_DECISION on the delegation span.
DECISION_ACTION: Final = "handoff.decision.action"
DECISION_AGENT: Final = "handoff.decision.agent"
DECISION_RESULT_HASH: Final = "handoff.decision.result_hash"
DECISION_REASON: Final = "handoff.decision.reason"

# Data flow: which outputs (ids) a span consumed, as a JSON list of strings.
INPUT_OUTPUT_IDS: Final = "handoff.input.output_ids"

# Tool calls: side effects, retries, idempotency, high stakes.
TOOL_ARGS_HASH: Final = "handoff.tool.args_hash"
TOOL_TARGET: Final = "handoff.tool.target"
TOOL_SIDE_EFFECT: Final = "handoff.tool.side_effect"
TOOL_HIGH_STAKES: Final = "handoff.tool.high_stakes"
IDEMPOTENCY_KEY: Final = "handoff.idempotency_key"
RETRY_ATTEMPT: Final = "handoff.retry.attempt"
RETRY_OF: Final = "handoff.retry.of"  # span id of the first attempt

# Verifications: a `handoff.verify <check>` span.
VERIFICATION_CHECK: Final = "handoff.verification.check"
VERIFICATION_TARGET: Final = "handoff.verification.target"  # output id or delegation id
VERIFICATION_VERDICT: Final = "handoff.verification.verdict"  # pass | fail | error
VERIFICATION_COVERAGE: Final = "handoff.verification.coverage"  # share of the output checked

# Termination: an event named EVENT_TERMINATION on the run span.
TERMINATION_REASON: Final = "handoff.termination.reason"
TERMINATION_SUCCESS_CLAIMED: Final = "handoff.termination.success_claimed"
TERMINATION_AGENT: Final = "handoff.termination.agent"

# Compensation: a `handoff.compensate <action>` span undoing an earlier side effect.
COMPENSATION_OF: Final = "handoff.compensation.of"  # span id of the action undone

# Checkpoints (event on the run span) and human approvals (event on the span they gate).
CHECKPOINT_ID: Final = "handoff.checkpoint.id"
APPROVAL_ACTION: Final = "handoff.approval.action"
APPROVAL_APPROVER: Final = "handoff.approval.approver"
APPROVAL_DECISION: Final = "handoff.approval.decision"  # approved | denied

# Message text for imported logs and opted-in capture.
MESSAGE_CONTENT: Final = "handoff.message.content"
MESSAGE_ROLE: Final = "handoff.message.role"

# The demo's ground truth on its run span: JSON list of {"code", "agent", "step"} injected.
DEMO_INJECTED: Final = "handoff.demo.injected"

# Set by ingest normalisation on spans of other instrumentations: where the fact came from.
NORMALISED_FROM: Final = "handoff.normalised_from"
# Set by ``resolve_traces`` on those spans once their trace's read-time facts were added, so
# detection completes a trace once (and again when spans of it arrive later).
NORMALISED_RESOLVED: Final = "handoff.normalised.resolved"
# Set with a hand-off's status that ``resolve_traces`` inferred (none was recorded): it is
# inferred again when more of the trace arrives (an ``open`` transfer whose target then ran).
STATUS_INFERRED: Final = "handoff.delegation.status_inferred"

# --- Event names ----------------------------------------------------------------------------
EVENT_OUTPUT: Final = "handoff.output"
EVENT_DECISION: Final = "handoff.decision"
EVENT_TERMINATION: Final = "handoff.termination"
EVENT_CHECKPOINT: Final = "handoff.checkpoint"
EVENT_RESUME: Final = "handoff.resume"
EVENT_APPROVAL: Final = "handoff.approval"
EVENT_EXCEPTION: Final = "exception"  # OpenTelemetry's own
EXCEPTION_MESSAGE: Final = "exception.message"  # on EVENT_EXCEPTION (OpenTelemetry's)
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"


class SpanType(str, Enum):
    """Values of ``handoff.span.type``: what a span stands for, whatever its name."""

    RUN = "run"
    AGENT = "agent"
    DELEGATION = "delegation"
    TOOL = "tool"
    LLM = "llm"
    VERIFICATION = "verification"
    COMPENSATION = "compensation"
    MESSAGE = "message"  # one message of an imported conversation log


class DecisionAction(str, Enum):
    """What a supervisor did with a sub-agent's output."""

    ACCEPTED = "accepted"
    MODIFIED = "modified"
    OVERWROTE = "overwrote"
    REJECTED = "rejected"
    REDERIVED = "rederived"


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


class HandoffMode(str, Enum):
    DELEGATE = "delegate"
    TRANSFER = "transfer"


class DelegationStatus(str, Enum):
    COMPLETED = "completed"
    OPEN = "open"
    FAILED = "failed"


# Span name prefixes of the spans GenAI has no name for: "<prefix> <name>".
RUN_SPAN_PREFIX: Final = "handoff.run"
VERIFY_SPAN_PREFIX: Final = "handoff.verify"
COMPENSATE_SPAN_PREFIX: Final = "handoff.compensate"


def delegation_span_name(target: str) -> str:
    """The GenAI proposal's spelling of a hand-off span: ``execute_tool transfer_to_<agent>``."""
    return f"{Operation.EXECUTE_TOOL.value} transfer_to_{target}"
