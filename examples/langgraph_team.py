"""A LangGraph supervisor with a tool-calling worker, traced with handoffs, on scripted models.

    python examples/langgraph_team.py --scenario overwrite --store chdb:///tmp/ex-langgraph
    handoffs detect --store chdb:///tmp/ex-langgraph --format jsonl

The supervisor node hands off with a ``transfer_to_researcher`` tool call and ``Command(goto=)``;
the researcher is a prebuilt ReAct agent that calls a ``search`` tool before answering.
Scenarios: ``overwrite`` (the supervisor answers with its own text in place of the
researcher's), ``accept`` (it passes the answer on) and ``open`` (the graph hits its recursion
limit right after the hand-off: premature termination). No API key: the chat models are
LangChain's scripted ``FakeMessagesListChatModel``. Needs ``pip install 'handoffs[langgraph]'``.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import create_react_agent
from langgraph.types import Command
from langgraph.warnings import LangGraphDeprecatedSinceV10

from handoffs import sdk
from handoffs.integrations import langgraph as handoffs_langgraph
from handoffs.store import open_store

# create_react_agent's successor, langchain.agents.create_agent, needs the whole langchain
# package; this example keeps to langgraph and langchain-core (the extra), so not its warning.
warnings.filterwarnings("ignore", category=LangGraphDeprecatedSinceV10, message=".*create_react_agent")

TASK = "Explain why the sky is blue, in two sentences."
RESEARCH = ("Sunlight is scattered by the molecules of the air, and short blue wavelengths are scattered "
            "far more than red ones (Rayleigh scattering), so blue light reaches us from every direction.")
REWRITE = ("The sky is blue because it reflects the colour of the oceans that cover most of the planet, "
           "as anyone looking at the horizon can see.")


class ScriptedChatModel(FakeMessagesListChatModel):
    """LangChain's scripted chat model, accepting tools so a ReAct agent can be built on it."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self


@tool
def search(query: str) -> str:
    """Look the query up."""
    return "Rayleigh scattering: scattering of light by particles much smaller than its wavelength."


def supervisor_node(model: Any) -> Any:
    """The supervisor: asks its model, and hands off with Command(goto=...) when it calls a
    transfer_to_<worker> tool (LangGraph's supervisor pattern), else ends the graph."""

    def supervisor(state: MessagesState) -> Any:  # Command(goto=...): its targets are the model's to pick
        reply = model.invoke(state["messages"])
        reply.name = "supervisor"
        if reply.tool_calls:
            call = reply.tool_calls[0]
            done = ToolMessage(content="Transferred.", tool_call_id=call["id"], name=call["name"])
            return Command(goto=call["name"].removeprefix("transfer_to_"), update={"messages": [reply, done]})
        return Command(goto=END, update={"messages": [reply]})

    return supervisor


def build(scenario: str) -> Any:
    """The compiled graph, its models scripted for ``scenario``."""
    final = f"Here is the answer: {RESEARCH}" if scenario == "accept" else REWRITE
    supervisor_model = ScriptedChatModel(responses=[
        AIMessage(content="", tool_calls=[{"name": "transfer_to_researcher", "args": {"task": TASK}, "id": "t1"}]),
        AIMessage(content=final),
    ])
    researcher_model = ScriptedChatModel(responses=[
        AIMessage(content="", tool_calls=[{"name": "search", "args": {"query": "why is the sky blue"}, "id": "s1"}]),
        AIMessage(content=RESEARCH),
    ])
    researcher = create_react_agent(researcher_model, [search], name="researcher")

    graph = StateGraph(MessagesState)
    graph.add_node("supervisor", supervisor_node(supervisor_model))
    graph.add_node("researcher", researcher)
    graph.add_edge(START, "supervisor")
    graph.add_edge("researcher", "supervisor")
    return graph.compile()


def main(scenario: str) -> Any:
    """Run ``scenario``; the recursion limit of ``open`` stops it (the error is returned)."""
    limit = 1 if scenario == "open" else 25
    try:
        return handoffs_langgraph.invoke(build(scenario), {"messages": [("user", TASK)]},
                                         name=f"langgraph-{scenario}", config={"recursion_limit": limit})
    except GraphRecursionError as exc:
        return exc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["overwrite", "accept", "open"], default="overwrite")
    parser.add_argument("--store", default=None, help="store URL (default: $HANDOFFS_STORE or the embedded store)")
    args = parser.parse_args()
    sdk.configure("langgraph-example", store=open_store(args.store), capture_content=True)
    outcome = main(args.scenario)
    sdk.flush()
    if isinstance(outcome, Exception):
        print(f"run stopped: {type(outcome).__name__}")
    else:
        for message in outcome["messages"]:
            print(f"{message.name or message.type:>12}: {str(message.content)[:90]}")
