"""AutoGen AgentChat, run for real on scripted models (ReplayChatCompletionClient): round-robin,
selector and swarm teams become delegations; a rewritten draft is an overwrite, a run cut short
while the writer owes its draft is premature termination."""

from __future__ import annotations

import asyncio

import pytest

from handoffs import taxonomy as t

from .conftest import delegations, detected_codes, example, terminations

pytest.importorskip("autogen_agentchat", reason="AutoGen AgentChat is not installed (pip install 'handoffs[autogen]')")
pytest.importorskip("autogen_ext.models.replay", reason="autogen-ext is not installed (pip install 'handoffs[autogen]')")
pytestmark = pytest.mark.frameworks

TEAMS = ["round_robin", "selector", "swarm"]


@pytest.mark.parametrize("team", TEAMS)
def test_supervisor_rewriting_the_draft_is_an_overwrite(traced, team):
    ex = example("autogen_team")
    result = asyncio.run(ex.main(team, "overwrite"))
    assert "TERMINATE" in result.stop_reason

    rows = delegations(traced)
    assert [(r["source"], r["target"]) for r in rows] == [("supervisor", "writer")]
    assert rows[0]["status"] == "completed"
    assert rows[0]["outputs"] == [ex.DRAFT]
    assert rows[0]["decisions"] == ["overwrote"]
    assert terminations(traced)[0]["success"] == "true"
    assert t.OVERWRITE in detected_codes(traced)


@pytest.mark.parametrize("team", ["round_robin", "swarm"])
def test_run_cut_short_with_the_writer_owing_its_draft_is_premature_termination(traced, team):
    ex = example("autogen_team")
    result = asyncio.run(ex.main(team, "open"))
    assert "Maximum number of messages" in result.stop_reason

    rows = delegations(traced)
    assert rows[-1]["source"] == "supervisor" and rows[-1]["target"] == "writer"
    assert rows[-1]["status"] == "open"
    assert terminations(traced)[0]["success"] == "false"
    codes = detected_codes(traced)
    assert t.PREMATURE_TERMINATION in codes
    assert t.OVERWRITE not in codes


def test_a_draft_the_supervisor_passes_on_is_accepted(traced):
    """The control case: the supervisor quotes the draft as its answer; nothing is flagged."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    from handoffs.integrations import autogen as handoffs_autogen

    ex = example("autogen_team")
    team = RoundRobinGroupChat(
        [AssistantAgent("supervisor", model_client=ex._client([ex.ASK, f"Here it is: {ex.DRAFT} TERMINATE"])),
         AssistantAgent("writer", model_client=ex._client([ex.DRAFT]))],
        termination_condition=TextMentionTermination("TERMINATE"))
    asyncio.run(handoffs_autogen.run(team, task=ex.TASK))
    rows = delegations(traced)
    assert rows[0]["decisions"] == ["accepted"] and rows[0]["status"] == "completed"
    codes = detected_codes(traced)
    assert t.OVERWRITE not in codes and t.PREMATURE_TERMINATION not in codes


def test_a_swarm_worker_that_raised_fails_its_delegation(traced):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import TextMentionTermination
    from autogen_agentchat.teams import Swarm
    from autogen_core import FunctionCall
    from autogen_core.models import CreateResult, RequestUsage
    from autogen_ext.models.replay import ReplayChatCompletionClient

    from handoffs.integrations import autogen as handoffs_autogen

    info = {"vision": False, "function_calling": True, "json_output": False, "family": "unknown",
            "structured_output": False}

    class Crashing(ReplayChatCompletionClient):
        async def create(self, *args: object, **kwargs: object) -> CreateResult:
            raise RuntimeError("model crashed")

    handoff = CreateResult(finish_reason="function_calls", cached=False,
                           content=[FunctionCall(id="1", name="transfer_to_writer", arguments="{}")],
                           usage=RequestUsage(prompt_tokens=1, completion_tokens=1))
    team = Swarm([AssistantAgent("supervisor", model_client=ReplayChatCompletionClient([handoff], model_info=info),
                                 handoffs=["writer"]),
                  AssistantAgent("writer", model_client=Crashing([], model_info=info), handoffs=["supervisor"])],
                 termination_condition=TextMentionTermination("TERMINATE"))
    with pytest.raises(RuntimeError):
        asyncio.run(handoffs_autogen.run(team, task="Write the draft."))
    assert [(r["target"], r["status"]) for r in delegations(traced)] == [("writer", "failed")]
    assert t.PREMATURE_TERMINATION not in detected_codes(traced)


def _inner_team(name: str | None = None) -> object:
    """A writer and an editor in a round-robin of their own, done when the editor approves."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    ex = example("autogen_team")
    return RoundRobinGroupChat([AssistantAgent("writer", model_client=ex._client([ex.DRAFT])),
                                AssistantAgent("editor", model_client=ex._client(["Fine as it is. APPROVE"]))],
                               termination_condition=TextMentionTermination("APPROVE"), name=name)


def test_a_society_of_mind_is_one_worker_answering_with_its_summary(traced):
    """The society's inner team speaks in the outer stream too: its agents are not the outer team's."""
    from autogen_agentchat.agents import AssistantAgent, SocietyOfMindAgent
    from autogen_agentchat.conditions import TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    from handoffs.integrations import autogen as handoffs_autogen

    from .conftest import turns

    ex = example("autogen_team")
    summary = "Summary: air molecules scatter blue light far more than red, so the sky looks blue."
    society = SocietyOfMindAgent("society", team=_inner_team(), model_client=ex._client([summary]))
    supervisor = AssistantAgent("supervisor", model_client=ex._client([ex.ASK, f"Here it is: {summary} TERMINATE"]))
    team = RoundRobinGroupChat([supervisor, society], termination_condition=TextMentionTermination("TERMINATE"))
    result = asyncio.run(handoffs_autogen.run(team, task=ex.TASK))
    assert [m.source for m in result.messages] == ["user", "supervisor", "writer", "editor", "society", "supervisor"]

    rows = delegations(traced)
    assert [(r["source"], r["target"], r["status"]) for r in rows] == [("supervisor", "society", "completed")]
    assert rows[0]["outputs"] == [summary] and rows[0]["decisions"] == ["accepted"]
    assert [x["agent"] for x in turns(traced)] == ["supervisor", "society", "supervisor"]


def test_a_team_taking_part_in_a_team_speaks_through_its_members(traced):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    from handoffs.integrations import autogen as handoffs_autogen

    ex = example("autogen_team")
    supervisor = AssistantAgent("supervisor", model_client=ex._client([ex.ASK, ex.REWRITE]))
    team = RoundRobinGroupChat([supervisor, _inner_team("writers")],
                               termination_condition=TextMentionTermination("TERMINATE", sources=["supervisor"]))
    asyncio.run(handoffs_autogen.run(team, task=ex.TASK))
    rows = delegations(traced)
    assert [(r["source"], r["target"], r["status"]) for r in rows] == [("supervisor", "writers", "completed")]
    assert rows[0]["outputs"][0] == ex.DRAFT
