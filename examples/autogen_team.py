"""AutoGen AgentChat teams traced with handoffs, on scripted models (no API key needed).

    python examples/autogen_team.py --team swarm --scenario overwrite --store chdb:///tmp/ex-autogen
    handoffs detect --store chdb:///tmp/ex-autogen --format jsonl

Teams: ``round_robin``, ``selector`` and ``swarm`` (hand-offs). Scenarios: ``overwrite`` (the
supervisor replaces the writer's draft with its own text) and ``open`` (the run stops on a
message limit while the writer still owes its draft: premature termination).
Needs ``pip install 'handoffs[autogen]'``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat, Swarm
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

from handoffs import sdk
from handoffs.integrations import autogen as handoffs_autogen
from handoffs.store import open_store

TASK = "Explain why the sky is blue, in two sentences."
DRAFT = ("Draft: sunlight is scattered by the molecules of the air, and short blue wavelengths are "
         "scattered far more than red ones (Rayleigh scattering), so blue light reaches us from every "
         "direction of the sky.")
REWRITE = ("Final answer: the sky is blue because it reflects the colour of the oceans that cover most "
           "of the planet, as anyone looking at the horizon can see. TERMINATE")
ASK = "Writer, please draft the explanation."
ASK_MORE = "Writer, now add a second sentence on sunsets."
MODEL_INFO: Any = {"vision": False, "function_calling": True, "json_output": False, "family": "unknown",
                   "structured_output": False}


def _call(name: str) -> CreateResult:
    return CreateResult(finish_reason="function_calls", content=[FunctionCall(id=name, name=name, arguments="{}")],
                        usage=RequestUsage(prompt_tokens=10, completion_tokens=5), cached=False)


def _client(script: list[Any]) -> ReplayChatCompletionClient:
    return ReplayChatCompletionClient(script, model_info=MODEL_INFO)


def build(team: str, scenario: str) -> Any:
    """The team, its models scripted for ``scenario``."""
    if team == "swarm":
        if scenario == "overwrite":
            sup = _client([_call("transfer_to_writer"), REWRITE])
            writer = _client([DRAFT, _call("transfer_to_supervisor")])
            stop: Any = TextMentionTermination("TERMINATE") | MaxMessageTermination(12)
        else:
            sup, writer = _client([_call("transfer_to_writer")]), _client([DRAFT])
            stop = MaxMessageTermination(2)  # the task and the hand-off: the writer never answers
        return Swarm([AssistantAgent("supervisor", model_client=sup, handoffs=["writer"]),
                      AssistantAgent("writer", model_client=writer, handoffs=["supervisor"])],
                     termination_condition=stop)
    if scenario == "overwrite":
        sup, writer = _client([ASK, REWRITE]), _client([DRAFT])
        stop = TextMentionTermination("TERMINATE") | MaxMessageTermination(12)
    else:
        sup, writer = _client([ASK, ASK_MORE]), _client([DRAFT])
        stop = MaxMessageTermination(4)  # task, ask, draft, ask again: cut before the writer answers
    agents = [AssistantAgent("supervisor", model_client=sup), AssistantAgent("writer", model_client=writer)]
    if team == "round_robin":
        return RoundRobinGroupChat(agents, termination_condition=stop)
    picks = ["supervisor", "writer", "supervisor", "writer"]
    return SelectorGroupChat(agents, model_client=_client(picks), termination_condition=stop,
                             allow_repeated_speaker=True)


async def main(team: str, scenario: str) -> Any:
    return await handoffs_autogen.run(build(team, scenario), task=TASK, name=f"autogen-{team}-{scenario}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--team", choices=["round_robin", "selector", "swarm"], default="swarm")
    parser.add_argument("--scenario", choices=["overwrite", "open"], default="overwrite")
    parser.add_argument("--store", default=None, help="store URL (default: $HANDOFFS_STORE or the embedded store)")
    args = parser.parse_args()
    sdk.configure("autogen-example", store=open_store(args.store), capture_content=True)
    result = asyncio.run(main(args.team, args.scenario))
    sdk.flush()
    for message in result.messages:
        print(f"{getattr(message, 'source', '?'):>10}: {str(getattr(message, 'content', ''))[:90]}")
    print(f"stop reason: {result.stop_reason}")
