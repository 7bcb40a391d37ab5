"""Judging multi-agent conversations from their text alone: root-cause attribution, MAST modes.

Imported logs (Who&When, MAST) and instrumentations that record only messages give no
structure to reason over, so these functions read the messages themselves.

- ``attribute_messages`` names the agent and the step where a failed conversation went wrong.
  A calibrated scikit-learn model scores each step from signals that carry across systems
  (execution errors right after a step, its position, whether it is code, a plan or a claim,
  hedging and unverified claims, later objections), trained by ``python -m
  handoffs.detectors.train`` on Who&When and shipped in ``detectors/models/``; the agent is the
  speaker holding the most probability mass over its steps.
- ``classify_messages`` flags MAST modes with transparent textual rules (TAXONOMY.md's textual
  column); no MAST labels are on this machine, so these are weak signals with hand-set
  confidences, not a trained model.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handoffs import taxonomy
from handoffs.errors import UsageError

MODEL_DIR = Path(__file__).with_name("models")
ATTRIBUTION_MODEL = "attribution"
ATTRIBUTION_VERSION = "1"
# Version of this module's judgements (the attribution model and the rules); findings carry it.
VERSION = f"{ATTRIBUTION_VERSION}.0"


@dataclass(frozen=True)
class Message:
    """One message of a conversation: its index (step), speaker, raw role and text."""

    step: int
    agent: str
    role: str
    content: str


@dataclass(frozen=True)
class TextFinding:
    """A failure mode read from the text, at the message that shows it."""

    code: str
    confidence: float
    step: int
    agent: str
    evidence: str


# --- signals -----------------------------------------------------------------------------------
def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# A failed execution, in the spellings of AG2 (``exitcode: 1``), Magentic-One ("exit code: 1"),
# Python tracebacks and common shells.
ERROR = _rx(r"exit ?code:? ?[1-9]|execution failed|traceback \(most recent call last\)"
            r"|\b\w+(?:error|exception)\b:|command not found|no such file or directory"
            r"|\berror:|\bfailed to\b|\b404\b|timed? ?out\b")
SUCCESS = _rx(r"exit ?code:? ?0\b|execution succeeded")
# The message is tool or environment output rather than an agent's own words.
TOOL_OUTPUT = _rx(r"^\s*(?:exit ?code:|code output:|address: |there is no code from the last"
                  r"|the script ran|\[?stdout\]?|observation:)")
TOOL_SPEAKER = _rx(r"terminal|executor|computer|\btool\b|interpreter|environment|user_proxy")
CODE = re.compile(r"```|^\s*(?:import |from \w+ import |def |print\()", re.MULTILINE)
HEDGE = _rx(r"\bassum|hypothetical|placeholder|for (?:demonstration|example|illustration)"
            r"|\bsimulat|\bmock\b|dummy|sample data|let'?s say|\bprobabl|\blikely\b|\bmight\b"
            r"|\bapproximat|\bestimat|without (?:direct )?access|cannot (?:directly )?access"
            r"|manually|\bguess|i (?:believe|think|recall)")
VERIFY = _rx(r"\bverif|\bconfirm|double[- ]check|\bvalidat|cross[- ]check")
CLAIM = _rx(r"the answer is|final answer|\bresult is\b|therefore|\bconclu|\bthus\b|\bcorrect\b"
            r"|is \*\*|\bin summary\b|here (?:is|are) (?:the|a) (?:list|result|answer)")
PLAN = _rx(r"\bplan\b|^\s*(?:step )?\d+[.)]\s|^#+\s*step|\bfirst,|\bnext,")
OBJECTION = _rx(r"\bincorrect|\bwrong\b|\bmistake|\bnot correct|\bdiscrepan|\binconsisten"
                r"|\bdoes(?:n't| not) match|\bmissed\b|\bmissing\b|\bforgot|\bapolog|\bactually\b"
                r"|\bhowever\b|\bre-?evaluate|\bcorrect(?:ion|ed)\b")
TERMINATE = re.compile(r"\bTERMINATE\b")  # the keyword, upper case: "terminate this task" is prose
QUESTION = re.compile(r"\?\s*$", re.MULTILINE)
URL = _rx(r"https?://")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")

# Feature names in the order the model was fit on; ``message_features`` fills all of them.
FEATURES: tuple[str, ...] = (
    "pos", "pos_frac", "is_first", "is_last", "agent_rank", "agent_rank_0", "agent_rank_1",
    "first_of_speaker", "speaker_turn", "speaker_share", "speaker_is_top", "speaker_is_opener",
    "is_tool", "has_code", "has_error", "next_error", "next2_error", "next_success",
    "last_before_first_error", "before_first_error", "after_first_error", "errors_after",
    "hedge", "verify", "claim", "plan", "terminate", "question", "urls", "numbers",
    "log_len", "objections_after", "objections_next", "novelty", "task_sim",
    "next_is_tool", "unexecuted_claim", "first_unexecuted_claim", "named_in_objection",
)
# Groups of features for the ablation in the report (train.py): name -> features.
SIGNALS: dict[str, tuple[str, ...]] = {
    "position": ("pos", "pos_frac", "is_first", "is_last", "agent_rank", "agent_rank_0",
                 "agent_rank_1", "first_of_speaker", "speaker_turn"),
    "speaker": ("speaker_share", "speaker_is_top", "speaker_is_opener"),
    "execution errors": ("has_error", "next_error", "next2_error", "next_success",
                         "last_before_first_error", "before_first_error", "after_first_error",
                         "errors_after"),
    "message kind": ("is_tool", "has_code", "plan", "claim", "terminate", "question", "urls",
                     "numbers", "log_len", "next_is_tool"),
    "hedging and unexecuted claims": ("hedge", "verify", "unexecuted_claim", "first_unexecuted_claim"),
    "later objections": ("objections_after", "objections_next", "named_in_objection"),
    "novelty and task similarity": ("novelty", "task_sim"),
}


# Speakers that stand for the person who set the task (Magentic-One's "human", chat "user").
HUMAN_SPEAKERS = frozenset({"human", "user"})


def is_tool(message: Message) -> bool:
    """Tool or environment output (code execution results, web pages), not an agent's words."""
    return bool(TOOL_OUTPUT.search(message.content[:200]) or TOOL_SPEAKER.search(message.agent))


def _tfidf_similarities(texts: list[str]) -> list[list[float]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    if not any(t.strip() for t in texts):
        return [[0.0] * len(texts) for _ in texts]
    try:
        matrix = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b\w\w+\b").fit_transform(texts)
    except ValueError:  # only stop words or punctuation
        return [[0.0] * len(texts) for _ in texts]
    return cosine_similarity(matrix).tolist()


def _mentions(text: str, agent: str) -> bool:
    """Whether ``text`` names ``agent`` (as written, or with spaces for underscores)."""
    if len(agent) < 3:
        return False
    lowered = text.lower()
    name = agent.lower()
    return name in lowered or name.replace("_", " ") in lowered


def message_features(messages: Sequence[Message]) -> list[dict[str, float]]:
    """One feature row per message (see ``FEATURES``): what the step scorer sees.

    Only the conversation's own text and order are used: no agent names, prompt words or
    dataset ids, so that the scorer carries to systems it was not fit on.
    """
    n = len(messages)
    if n == 0:
        return []
    tool = [is_tool(m) for m in messages]
    error = [bool(ERROR.search(m.content)) for m in messages]
    success = [bool(SUCCESS.search(m.content[:200])) for m in messages]
    objection = [bool(OBJECTION.search(m.content)) and not tool[i] for i, m in enumerate(messages)]
    first_error = next((i for i in range(n) if error[i]), None)
    last_before = None
    if first_error is not None:
        last_before = next((i for i in range(first_error - 1, -1, -1) if not tool[i]), None)
    speakers = [m.agent for m in messages]
    agent_counts: dict[str, int] = defaultdict(int)
    for i, s in enumerate(speakers):
        if not tool[i]:
            agent_counts[s] += 1
    top = max(agent_counts.values()) if agent_counts else 0
    total_agent = sum(agent_counts.values()) or 1
    sims = _tfidf_similarities([m.content[:4000] for m in messages])
    # A claim (a conclusion, a verification, a list of facts) made without code to run and not
    # followed by any execution: nothing checked it.
    unexecuted = [
        not tool[i] and i > 0 and not CODE.search(m.content)
        and not (i + 1 < n and tool[i + 1])
        and bool(CLAIM.search(m.content) or VERIFY.search(m.content) or len(NUMBER.findall(m.content)) >= 3)
        for i, m in enumerate(messages)
    ]
    first_unexecuted = next((i for i in range(n) if unexecuted[i]), None)
    rows: list[dict[str, float]] = []
    rank = 0
    seen: dict[str, int] = defaultdict(int)
    for i, m in enumerate(messages):
        text = m.content
        after = range(i + 1, n)
        row = {
            "pos": float(min(i, 20)),
            "pos_frac": i / max(n - 1, 1),
            "is_first": float(i == 0),
            "is_last": float(i == n - 1),
            "agent_rank": float(min(rank, 10)),
            "agent_rank_0": float(rank == 0 and not tool[i]),
            "agent_rank_1": float(rank == 1 and not tool[i]),
            "first_of_speaker": float(seen[m.agent] == 0),
            "speaker_turn": float(min(seen[m.agent], 10)),
            "speaker_share": agent_counts.get(m.agent, 0) / total_agent,
            "speaker_is_top": float(agent_counts.get(m.agent, 0) == top and top > 0),
            "speaker_is_opener": float(m.agent == speakers[0]),
            "is_tool": float(tool[i]),
            "has_code": float(bool(CODE.search(text))),
            "has_error": float(error[i]),
            "next_error": float(i + 1 < n and error[i + 1]),
            "next2_error": float(any(error[j] for j in range(i + 1, min(n, i + 3)))),
            "next_success": float(i + 1 < n and success[i + 1]),
            "last_before_first_error": float(last_before == i),
            "before_first_error": float(first_error is not None and i < first_error),
            "after_first_error": float(first_error is not None and i > first_error),
            "errors_after": sum(error[j] for j in after) / max(n - 1, 1),
            "hedge": float(min(len(HEDGE.findall(text)), 5)),
            "verify": float(min(len(VERIFY.findall(text)), 5)),
            "claim": float(min(len(CLAIM.findall(text)), 5)),
            "plan": float(min(len(PLAN.findall(text)), 10)),
            "terminate": float(bool(TERMINATE.search(text))),
            "question": float(min(len(QUESTION.findall(text)), 5)),
            "urls": float(min(len(URL.findall(text)), 10)),
            "numbers": math.log1p(len(NUMBER.findall(text))),
            "log_len": math.log1p(len(text)),
            "objections_after": sum(objection[j] for j in after if speakers[j] != m.agent) / max(n - 1, 1),
            "objections_next": float(any(objection[j] for j in range(i + 1, min(n, i + 3))
                                         if speakers[j] != m.agent)),
            "novelty": 1.0 - max((sims[i][j] for j in range(i)), default=0.0),
            "task_sim": sims[i][0] if i else 1.0,
            "next_is_tool": float(i + 1 < n and tool[i + 1]),
            "unexecuted_claim": float(unexecuted[i]),
            "first_unexecuted_claim": float(first_unexecuted == i),
            # Later objections that name this speaker: agents address whom they contradict.
            "named_in_objection": float(min(sum(
                1 for j in after if objection[j] and speakers[j] != m.agent
                and _mentions(messages[j].content, m.agent)), 3)),
        }
        rows.append(row)
        seen[m.agent] += 1
        if not tool[i]:
            rank += 1
    return rows


# --- attribution -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attribution:
    """Root cause of a failed conversation, with the step distribution behind it."""

    agent: str
    step: int
    confidence: float
    agent_confidence: float
    step_probabilities: tuple[float, ...]
    raw_confidence: float  # the step's own calibrated probability, before normalising


def step_scores(model: Any, messages: Sequence[Message], features: Sequence[str] = FEATURES,
                rows: Sequence[dict[str, float]] | None = None) -> list[float]:
    """The model's calibrated probability, per step, that it is the decisive error.

    ``rows`` are the messages' ``message_features`` when the caller already has them.
    """
    rows = message_features(messages) if rows is None else rows
    matrix = [[row[f] for f in features] for row in rows]
    return [float(p) for p in model.predict_proba(matrix)[:, 1]]


def attribute(model: Any, messages: Sequence[Message], features: Sequence[str] = FEATURES,
              rows: Sequence[dict[str, float]] | None = None) -> Attribution:
    """Attribute with ``model`` (a fitted step scorer); see ``attribute_messages``."""
    if not messages:
        raise UsageError("cannot attribute an empty conversation: it has no messages")
    raw = step_scores(model, messages, features, rows)
    total = sum(raw)
    # Exactly one step is the decisive error: normalise over the conversation.
    probs = [s / total for s in raw] if total > 0 else [1 / len(raw)] * len(raw)
    mass: dict[str, float] = defaultdict(float)
    for m, p in zip(messages, probs, strict=True):
        mass[m.agent] += p
    # The person who asked and a tool that only reports are not agents that can be at fault;
    # they are named only when nobody else speaks.
    candidates = [a for a in mass if a.lower() not in HUMAN_SPEAKERS
                  and not all(is_tool(m) for m in messages if m.agent == a)] or list(mass)
    agent = max(candidates,
                key=lambda a: (mass[a], -next(i for i, m in enumerate(messages) if m.agent == a)))
    own = [i for i, m in enumerate(messages) if m.agent == agent]
    best = max(own, key=lambda i: probs[i])
    return Attribution(agent=agent, step=messages[best].step, confidence=probs[best],
                       agent_confidence=mass[agent], step_probabilities=tuple(probs),
                       raw_confidence=raw[best])


def model_path(name: str = ATTRIBUTION_MODEL, version: str = ATTRIBUTION_VERSION) -> Path:
    return MODEL_DIR / f"{name}-v{version}.joblib"


@functools.lru_cache(maxsize=4)
def load_model(name: str = ATTRIBUTION_MODEL, version: str = ATTRIBUTION_VERSION) -> Any:
    """The shipped model artifact (a dict with ``model`` and ``features``), loaded once."""
    import joblib

    path = model_path(name, version)
    if not path.exists():
        raise UsageError(f"model artifact {path} is missing; rebuild it with "
                         "`python -m handoffs.detectors.train`")
    return joblib.load(path)


def model_card(name: str = ATTRIBUTION_MODEL, version: str = ATTRIBUTION_VERSION) -> dict[str, Any]:
    """The JSON model card beside the artifact: version, training data, command, metrics."""
    return json.loads(model_path(name, version).with_suffix(".json").read_text(encoding="utf-8"))


def attribute_messages(messages: list[Message]) -> tuple[str, int, float]:
    """Root cause of a failed conversation: (agent, step, confidence) from the text alone.

    The agent is the speaker with the most probability mass over its steps; the step is that
    agent's most probable step; the confidence is that step's share of the probability over the
    conversation: it ranks attributions (higher is right more often) but is compressed, see the
    calibration section of ``reports/who_and_when.md``.
    """
    artifact = load_model()
    result = attribute(artifact["model"], messages, artifact["features"])
    return result.agent, result.step, result.confidence


# --- MAST modes from text ------------------------------------------------------------------------
DUPLICATE_SIMILARITY = 0.92
MIN_DUPLICATE_CHARS = 80
RESTART = _rx(r"let'?s start (?:over|again|from scratch)|start(?:ing)? from scratch|begin again"
              r"|restart (?:the|our) (?:task|process|conversation)")
SUCCESS_CLAIM = _rx(r"all tests? pass|tests? passed|\bverified\b|successfully verified|is correct\b"
                    r"|works (?:as expected|correctly)|confirmed")
CONTINUE = _rx(r"^\s*(?:continue|keep going|please continue|go on)\b")


def _evidence(message: Message, limit: int = 160) -> str:
    text = " ".join(message.content.split())
    return f"step {message.step} ({message.agent}): {text[:limit]}"


def classify_messages(messages: list[Message]) -> list[TextFinding]:
    """MAST modes read from the text with transparent rules (weak signals, uncalibrated).

    Covered: FM-1.3 (near-duplicate messages), FM-1.5 (talk past TERMINATE, "continue" loops),
    FM-2.1 ("let's start over"), FM-2.2 (assumptions stated without a question), FM-3.1
    (TERMINATE right after an error), FM-3.2 (claims of verification with no execution in the
    log), FM-3.3 (success claimed beside an execution error). Other modes are not judged here.
    """
    findings: list[TextFinding] = []
    n = len(messages)
    if n == 0:
        return findings
    tool = [is_tool(m) for m in messages]
    error = [bool(ERROR.search(m.content)) for m in messages]
    executed = [bool(SUCCESS.search(m.content) or error[i]) and tool[i] for i, m in enumerate(messages)]
    sims = _tfidf_similarities([m.content[:4000] for m in messages])

    def add(code: str, confidence: float, m: Message, why: str) -> None:
        findings.append(TextFinding(code, round(confidence, 3), m.step, m.agent, f"{why}; {_evidence(m)}"))

    for i, m in enumerate(messages):
        if tool[i] or len(m.content) < MIN_DUPLICATE_CHARS:
            continue
        for j in range(i):
            if not tool[j] and messages[j].agent == m.agent and sims[i][j] >= DUPLICATE_SIMILARITY:
                add(taxonomy.STEP_REPETITION, 0.5 + 0.5 * (sims[i][j] - DUPLICATE_SIMILARITY)
                    / (1 - DUPLICATE_SIMILARITY), m,
                    f"repeats step {messages[j].step} (TF-IDF cosine {sims[i][j]:.2f})")
                break
    # An agent's own TERMINATE; tool output quoting the word ("reply TERMINATE to end") is not one.
    terminations = [i for i, m in enumerate(messages) if not tool[i] and TERMINATE.search(m.content)]
    if terminations and any(not tool[i] for i in range(terminations[0] + 1, n)):
        first = terminations[0]
        add(taxonomy.UNAWARE_OF_TERMINATION, 0.6, messages[first + 1],
            f"conversation goes on after TERMINATE at step {messages[first].step}")
    continues = [i for i, m in enumerate(messages) if CONTINUE.search(m.content)]
    if len(continues) >= 3:
        add(taxonomy.UNAWARE_OF_TERMINATION, 0.5, messages[continues[-1]], f"{len(continues)} bare 'continue' turns")
    for i, m in enumerate(messages):
        if i > n // 3 and RESTART.search(m.content):
            add(taxonomy.CONVERSATION_RESET, 0.5, m, "restarts the work late in the conversation")
        if not tool[i] and HEDGE.search(m.content) and not QUESTION.search(m.content) \
                and re.search(r"\bassum|hypothetical|placeholder|\bsimulat|\bmock\b|dummy", m.content, re.I):
            add(taxonomy.FAIL_TO_ASK_CLARIFICATION, 0.4, m, "proceeds on an assumption without asking")
    for i in terminations:
        recent = [j for j in range(max(0, i - 2), i + 1) if error[j]]
        if recent and not any(SUCCESS.search(messages[j].content) for j in range(recent[-1] + 1, i + 1)):
            add(taxonomy.PREMATURE_TERMINATION, 0.7, messages[i],
                f"terminates right after the error at step {messages[recent[-1]].step}")
    for i, m in enumerate(messages):
        if tool[i] or not SUCCESS_CLAIM.search(m.content):
            continue
        near_error = [j for j in range(max(0, i - 1), min(n, i + 2)) if error[j]]
        if near_error:
            add(taxonomy.INCORRECT_VERIFICATION, 0.6, m, f"claims success beside the execution error at step "
                f"{messages[near_error[0]].step}")
        elif not any(executed[:i]) and VERIFY.search(m.content):
            add(taxonomy.MISSING_VERIFICATION, 0.4, m, "claims verification with no execution before it")
    return findings
