"""The recorder every integration shares, without any framework: what a sequence of messages
and hand-offs becomes once replayed through the SDK into a real store."""

from __future__ import annotations

import subprocess
import sys

from handoffs import conventions as c
from handoffs.integrations.recorder import Recorder, judge

from .conftest import delegations, terminations, tools

DRAFT = "Rayleigh scattering: short blue wavelengths are scattered far more than red ones by the air."


def test_judge_tells_acceptance_edits_and_replacements_apart():
    assert judge(DRAFT, f"Here it is: {DRAFT} TERMINATE") is c.DecisionAction.ACCEPTED
    assert judge(DRAFT, "Thanks.") is c.DecisionAction.ACCEPTED
    edited = DRAFT.replace("far more", "much more").replace("the air", "air molecules")
    assert judge(DRAFT, edited) is c.DecisionAction.MODIFIED
    assert judge(DRAFT, "The sky is blue because it mirrors the oceans, as any sailor knows well.") \
        is c.DecisionAction.OVERWROTE


def test_judge_matches_whole_tokens_and_reads_unspaced_scripts_by_character():
    # An output found only inside longer words of the reply was not kept: the reply replaced it.
    assert judge("42", "The answer is 1425, by my own calculation.") is c.DecisionAction.OVERWROTE
    assert judge("no", "I know a better plan: ship on Friday after the review.") is c.DecisionAction.OVERWROTE
    assert judge("42", "It is 42, as computed.") is c.DecisionAction.ACCEPTED
    # Chinese has no spaces: one term changed is an edit, an unrelated text of the same
    # length a replacement, the output quoted before a marker an acceptance.
    blue = "天空是蓝色的，因为瑞利散射使蓝光散射得更多。"
    assert judge(blue, blue.replace("瑞利", "米氏")) is c.DecisionAction.MODIFIED
    assert judge(blue, "海洋是蓝色的，因为它反射了天空的颜色，而且水本身也吸收红光。") is c.DecisionAction.OVERWROTE
    assert judge(blue, f"答案：{blue}TERMINATE") is c.DecisionAction.ACCEPTED


def test_transfer_and_return_is_one_delegation_judged_by_the_next_reply(traced):
    r = Recorder("swarm")
    r.message("supervisor", "")
    r.handoff("supervisor", "writer")
    r.message("writer", DRAFT)
    r.handoff("writer", "supervisor")  # handing back returns the delegation, it is not a new one
    r.message("supervisor", "My own answer: the sky mirrors the oceans, as any sailor knows well.")
    r.end("done", success_claimed=True)
    r.emit()
    rows = delegations(traced)
    assert [(x["source"], x["target"], x["status"], x["decisions"], x["outputs"]) for x in rows] == [
        ("supervisor", "writer", "completed", ["overwrote"], [DRAFT])]
    assert terminations(traced) == [{"reason": "done", "success": "true"}]


def test_implicit_handoffs_follow_the_speakers_but_not_back_to_the_delegator(traced):
    r = Recorder("round-robin", implicit_handoffs=True)
    r.message("planner", "Coder, write the function.")
    r.message("coder", "def f(): return 1")
    r.message("reviewer", "Looks right to me.")
    r.message("planner", "def f(): return 1")
    r.end("Maximum number of messages 4 reached", success_claimed=False, waiting_on="coder")
    r.emit()
    rows = delegations(traced)
    assert [(x["source"], x["target"], x["status"]) for x in rows] == [
        ("planner", "coder", "completed"), ("coder", "reviewer", "completed"), ("planner", "coder", "open")]
    assert rows[0]["decisions"] == ["accepted"]


def test_a_delegation_the_caller_awaits_records_the_result_or_the_failure(traced):
    r = Recorder("tools")
    r.handoff("editor", "researcher", task="why blue?", mode=c.HandoffMode.DELEGATE.value)
    r.returned("editor", "researcher", DRAFT)
    r.handoff("editor", "fact_checker", task="check it", mode=c.HandoffMode.DELEGATE.value)
    r.returned("editor", "fact_checker", None, error="tool timed out")
    r.tool("editor", "spell_check", '{"text": "..."}', error="dictionary missing")
    r.message("editor", DRAFT)
    r.emit()
    assert tools(traced) == [{"tool": "spell_check", "agent": "editor", "failed": True}]
    rows = delegations(traced)
    assert [(x["target"], x["mode"], x["status"], x["decisions"]) for x in rows] == [
        ("researcher", "delegate", "completed", ["accepted"]), ("fact_checker", "delegate", "failed", [])]


def test_importing_handoffs_and_its_integrations_imports_no_framework():
    code = ("import sys, handoffs, handoffs.sdk, handoffs.integrations.autogen, handoffs.integrations.crewai, "
            "handoffs.integrations.langgraph, handoffs.integrations.openai_agents\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('agents', 'autogen_agentchat', 'autogen_core', 'langgraph', 'langchain_core', 'crewai')]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


REPLY = "Rayleigh scattering explains the blue sky; the red sunset follows from the same scattering."


def test_delegations_made_together_each_keep_their_worker_and_output(traced):
    """Two hand-offs opened before either answers (parallel agent tools, LangGraph Send)."""
    from .conftest import turns

    r = Recorder("fan-out")
    r.message("supervisor", "Splitting the work.")
    r.handoff("supervisor", "physicist", task="why blue")
    r.handoff("supervisor", "painter", task="why red")
    r.message("physicist", DRAFT)
    r.message("painter", "Sunsets are red because the blue light was scattered away on the long path.")
    r.message("supervisor", f"{DRAFT} Sunsets are red because the blue light was scattered away on the long path.")
    r.end("done", success_claimed=True)
    r.emit()
    rows = delegations(traced)
    assert [(x["target"], x["status"], x["decisions"], len(x["outputs"])) for x in rows] == [
        ("physicist", "completed", ["accepted"], 1), ("painter", "completed", ["accepted"], 1)]
    assert [(x["agent"], x["within"]) for x in turns(traced)] == [
        ("supervisor", ""), ("physicist", "physicist"), ("painter", "painter"), ("supervisor", "")]


def test_agent_tools_returning_in_turn_keep_their_siblings_open(traced):
    r = Recorder("agent-tools")
    r.handoff("editor", "physicist", mode=c.HandoffMode.DELEGATE.value)
    r.handoff("editor", "painter", mode=c.HandoffMode.DELEGATE.value)
    r.returned("editor", "physicist", DRAFT)
    r.returned("editor", "painter", "Sunsets are red.")
    r.message("editor", REPLY)
    r.emit()
    assert [(x["target"], x["status"], len(x["outputs"])) for x in delegations(traced)] == [
        ("physicist", "completed", 1), ("painter", "completed", 1)]


def test_a_response_in_several_messages_counts_its_tokens_once(traced):
    r = Recorder("tokens")
    r.handoff("triage", "writer")
    r.message("writer", "", tokens=30)  # a tool call: its tokens go to the next output
    r.message("writer", DRAFT, tokens=60)
    r.message("writer", "That is all.", tokens=10)
    r.emit()
    assert delegations(traced)[0]["tokens"] == ["90", "10"]


def test_a_run_that_failed_invents_no_acceptance_of_the_last_output(traced):
    r = Recorder("limit")
    r.handoff("editor", "physicist", mode=c.HandoffMode.DELEGATE.value)
    r.returned("editor", "physicist", DRAFT)
    r.end("MaxTurnsExceeded", success_claimed=False, agent="editor")
    r.emit()
    assert [(x["status"], x["decisions"]) for x in delegations(traced)] == [("completed", [])]


def test_a_worker_that_raised_fails_its_delegation(traced):
    r = Recorder("crash")
    r.handoff("supervisor", "writer")
    r.failed("writer", "RuntimeError: writer crashed")
    r.end("RuntimeError", success_claimed=False)
    r.emit()
    assert [x["status"] for x in delegations(traced)] == ["failed"]


def test_a_paused_run_claims_nothing_and_its_resumption_keeps_the_handoff(traced):
    from .conftest import run_events

    paused = Recorder("hitl")
    paused.message("supervisor", "")
    paused.handoff("supervisor", "writer", task="why blue")
    paused.pause("thread-1")
    paused.emit()
    resumed = Recorder("hitl")
    resumed.resume("thread-1", paused.still_open())
    resumed.message("writer", DRAFT)
    resumed.message("supervisor", f"Here it is: {DRAFT}")
    resumed.end("completed", success_claimed=True)
    resumed.emit()
    assert run_events(traced) == [[c.EVENT_CHECKPOINT], [c.EVENT_RESUME, c.EVENT_TERMINATION]]
    assert [(x["status"], x["decisions"]) for x in delegations(traced)] == [("open", []), ("completed", ["accepted"])]
