"""Text models: root-cause attribution from messages, MAST modes from text, the training harness."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from handoffs import taxonomy
from handoffs.detectors import textual, train
from handoffs.detectors.textual import (
    FEATURES,
    Message,
    TextFinding,
    attribute_messages,
    classify_messages,
    message_features,
)
from handoffs.errors import UsageError

TRACEBACK = ("exitcode: 1 (execution failed)\nCode output: Traceback (most recent call last):\n"
             "  File \"main.py\", line 3, in <module>\nNameError: name 'fetch_table' is not defined")


def _conversation(names: dict[str, str] | None = None) -> list[Message]:
    """A failed team run: the coder's code fails twice; a reviewer objects; the team stops."""
    n = names or {}
    manager, coder, reviewer, term = (n.get(k, k) for k in ("Manager", "Coder", "Reviewer", "Computer_terminal"))
    turns = [
        (manager, "assistant", "You are given a task and a plan from your manager.\n## Plan\n1. Coder "
                               "extracts the table.\n2. Reviewer checks the numbers.\n## Output format\n"
                               "the number of rows"),
        (coder, "user", "I will extract the table.\n```python\nrows = fetch_table('report')\nprint(len(rows))\n```"),
        (term, "user", TRACEBACK),
        (reviewer, "user", f"The code from {coder} is incorrect: fetch_table was never imported. "
                           "Please fix the mistake."),
        (coder, "user", "Let me try again.\n```python\nrows = fetch_table('report')\nprint(len(rows))\n```"),
        (term, "user", TRACEBACK),
        (reviewer, "user", "We cannot proceed. TERMINATE"),
    ]
    return [Message(i, agent, role, text) for i, (agent, role, text) in enumerate(turns)]


def test_attribution_names_the_agent_whose_code_failed() -> None:
    agent, step, confidence = attribute_messages(_conversation())
    assert agent == "Coder"
    assert step in (1, 4)
    assert 0.0 < confidence <= 1.0


def test_attribution_does_not_read_agent_names() -> None:
    """Renaming every agent (in speakers and text alike) changes the names, not the verdict.

    The confidence may move a little: a name inside a message changes its length and words.
    """
    names = {"Manager": "Orchestrator", "Coder": "WebSurfer", "Reviewer": "FileSurfer",
             "Computer_terminal": "ComputerTerminal"}
    plain = attribute_messages(_conversation())
    renamed = attribute_messages(_conversation(names))
    assert renamed[0] == names[plain[0]]
    assert renamed[1] == plain[1]
    assert renamed[2] == pytest.approx(plain[2], abs=0.01)


def test_attribution_of_an_empty_conversation_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        attribute_messages([])


def test_features_cover_every_declared_name_and_signal_group() -> None:
    rows = message_features(_conversation())
    assert all(set(row) == set(FEATURES) for row in rows)
    assert {f for group in textual.SIGNALS.values() for f in group} == set(FEATURES)
    assert rows[1]["last_before_first_error"] == 1.0 and rows[1]["next_error"] == 1.0
    assert rows[2]["is_tool"] == 1.0 and rows[2]["has_error"] == 1.0
    assert rows[1]["named_in_objection"] == 1.0


def test_shipped_model_has_a_card_that_matches_it() -> None:
    card = textual.model_card()
    artifact = textual.load_model()
    assert card["version"] == textual.ATTRIBUTION_VERSION
    assert card["command"].startswith(train.COMMAND)
    assert artifact["features"] == card["features"] == list(FEATURES)
    assert {"agent_accuracy", "step_accuracy", "brier_step"} <= set(card["metrics"])


def _toy_cases(n: int) -> list[train.Case]:
    cases = []
    for i in range(n):
        messages = _conversation()
        cases.append(train.Case(f"f{i}", messages, "Coder", 1, message_features(messages)))
    return cases


def test_cross_validation_never_scores_a_file_the_model_was_fit_on() -> None:
    seen: list[tuple[set[str], set[str]]] = []

    def recording(fit_on: Sequence[train.Case], test: Sequence[train.Case]) -> list[train.Prediction]:
        seen.append(({c.source_id for c in fit_on}, {c.source_id for c in test}))
        return [train.Prediction(c, "Coder", 1, 0.5, 0.5) for c in test]

    preds = train.cross_validate(_toy_cases(16), recording, seed=0)
    assert len(seen) == train.FOLDS
    assert all(not (fit_on & test) for fit_on, test in seen)
    assert sorted(p.case.source_id for p in preds) == sorted(f"f{i}" for i in range(16))


def test_scores_count_agent_step_and_tolerance() -> None:
    cases = _toy_cases(4)
    preds = [train.Prediction(cases[0], "Coder", 1, 1.0, 1.0), train.Prediction(cases[1], "Coder", 2, 0.0, 1.0),
             train.Prediction(cases[2], "Reviewer", 3, 0.0, 0.0), train.Prediction(cases[3], "Coder", 0, 0.0, 1.0)]
    s = train.score(preds)
    assert (s.agent, s.step, s.step_tol1) == (75.0, 25.0, 75.0)
    assert s.brier_step == 0.0


# --- MAST modes from text -------------------------------------------------------------------------
def _codes(findings: list[TextFinding]) -> set[str]:
    return {f.code for f in findings}


def _msgs(*turns: tuple[str, str]) -> list[Message]:
    return [Message(i, agent, "user", text) for i, (agent, text) in enumerate(turns)]


def test_near_duplicate_messages_are_step_repetition() -> None:
    long = "I will now search the archive for the 2019 annual report and list every table it contains."
    findings = classify_messages(_msgs(("A", "Start."), ("B", long), ("A", "ok"), ("B", long + " Again.")))
    (rep,) = [f for f in findings if f.code == taxonomy.STEP_REPETITION]
    assert (rep.step, rep.agent) == (3, "B") and 0.5 <= rep.confidence <= 1.0
    assert "step 1" in rep.evidence


def test_terminate_right_after_an_error_is_premature_termination() -> None:
    findings = classify_messages(_msgs(("Coder", "```python\nx()\n```"), ("Computer_terminal", TRACEBACK),
                                       ("Coder", "TERMINATE")))
    assert taxonomy.PREMATURE_TERMINATION in _codes(findings)


def test_success_claimed_beside_a_traceback_is_incorrect_verification() -> None:
    findings = classify_messages(_msgs(("Coder", "```python\nrun_tests()\n```"), ("Computer_terminal", TRACEBACK),
                                       ("Verifier", "All tests pass, the result is verified.")))
    assert taxonomy.INCORRECT_VERIFICATION in _codes(findings)


def test_verification_claimed_without_any_execution() -> None:
    findings = classify_messages(_msgs(("Solver", "The answer is 42."),
                                       ("Verifier", "I have verified the answer: it is confirmed.")))
    assert taxonomy.MISSING_VERIFICATION in _codes(findings)


def test_a_clean_conversation_has_no_findings() -> None:
    findings = classify_messages(_msgs(
        ("Planner", "Plan: compute the sum of 2 and 3 with code."),
        ("Coder", "```python\nprint(2 + 3)\n```"),
        ("Computer_terminal", "exitcode: 0 (execution succeeded)\nCode output: 5"),
        ("Planner", "The result is 5, computed above. TERMINATE"),
    ))
    assert findings == []


def test_restart_and_talk_after_terminate() -> None:
    findings = classify_messages(_msgs(
        ("A", "Plan: do it."), ("B", "Working."), ("A", "Done. TERMINATE"), ("B", "Wait, one more thing."),
        ("A", "Let's start over from scratch."),
    ))
    assert {taxonomy.UNAWARE_OF_TERMINATION, taxonomy.CONVERSATION_RESET} <= _codes(findings)
