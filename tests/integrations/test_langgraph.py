"""LangGraph, run for real on LangChain's scripted chat models: a supervisor node hands off to
a tool-calling ReAct worker by a transfer tool call and Command(goto=); answering over the
worker is an overwrite, a recursion limit right after the hand-off premature termination."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from handoffs import taxonomy as t

from .conftest import delegations, detected_codes, example, terminations, tools, turns

pytest.importorskip("langgraph.prebuilt", reason="LangGraph is not installed (pip install 'handoffs[langgraph]')")
pytestmark = [pytest.mark.frameworks,
              pytest.mark.filterwarnings("ignore:create_react_agent has been moved")]


def _example():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return example("langgraph_team")


def test_supervisor_answering_over_the_worker_is_an_overwrite(traced):
    ex = _example()
    state = ex.main("overwrite")
    assert state["messages"][-1].content == ex.REWRITE

    rows = delegations(traced)
    # The transfer tool call and the Command(goto=) that follows it are one hand-off.
    assert [(r["source"], r["target"]) for r in rows] == [("supervisor", "researcher")]
    assert rows[0]["outputs"] == [ex.RESEARCH]
    assert rows[0]["decisions"] == ["overwrote"] and rows[0]["status"] == "completed"
    assert tools(traced) == [{"tool": "search", "agent": "researcher", "failed": False}]
    assert t.OVERWRITE in detected_codes(traced)


def test_supervisor_passing_the_answer_on_accepts_it(traced):
    ex = _example()
    ex.main("accept")
    rows = delegations(traced)
    assert rows[0]["decisions"] == ["accepted"]
    codes = detected_codes(traced)
    assert t.OVERWRITE not in codes and t.PREMATURE_TERMINATION not in codes


def test_recursion_limit_after_the_handoff_is_premature_termination(traced):
    from langgraph.errors import GraphRecursionError

    ex = _example()
    assert isinstance(ex.main("open"), GraphRecursionError)

    rows = delegations(traced)
    assert [(r["source"], r["target"], r["status"]) for r in rows] == [("supervisor", "researcher", "open")]
    assert terminations(traced) == [{"reason": "GraphRecursionError", "success": "false"}]
    assert t.PREMATURE_TERMINATION in detected_codes(traced)


BLUE = "Blue light is scattered most by the molecules of the air, so the whole sky looks blue to us."
RED = "Sunsets are red because the blue light is scattered away along the long path through the air."


def _team(supervisor_script: list[Any], worker: Any, checkpointer: Any = None) -> Any:
    """A supervisor node handing off to ``writer`` by a transfer call and Command(goto=)."""
    from langgraph.graph import START, MessagesState, StateGraph

    ex = _example()
    graph = StateGraph(MessagesState)
    graph.add_node("supervisor", ex.supervisor_node(ex.ScriptedChatModel(responses=supervisor_script)))
    graph.add_node("writer", worker)
    graph.add_edge(START, "supervisor")
    graph.add_edge("writer", "supervisor")
    return graph.compile(checkpointer=checkpointer)


def _transfer() -> Any:
    from langchain_core.messages import AIMessage

    return AIMessage(content="", tool_calls=[{"name": "transfer_to_writer", "args": {"task": "why blue"}, "id": "t1"}])


def _writer(state: Any) -> Any:
    from langchain_core.messages import AIMessage

    return {"messages": [AIMessage(content=BLUE, name="writer")]}


def test_send_to_two_workers_is_two_completed_delegations(traced):
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.types import Command, Send

    from handoffs.integrations import langgraph as handoffs_langgraph

    calls = []

    def supervisor(state: MessagesState) -> Any:
        calls.append(1)
        if len(calls) == 1:
            return Command(goto=[Send("physicist", state), Send("painter", state)],
                           update={"messages": [AIMessage(content="Splitting the work.", name="supervisor")]})
        return Command(goto=END, update={"messages": [AIMessage(content=f"{BLUE} {RED}", name="supervisor")]})

    graph = StateGraph(MessagesState)
    graph.add_node("supervisor", supervisor)
    graph.add_node("physicist", lambda s: {"messages": [AIMessage(content=BLUE, name="physicist")]})
    graph.add_node("painter", lambda s: {"messages": [AIMessage(content=RED, name="painter")]})
    graph.add_edge(START, "supervisor")
    graph.add_edge("physicist", "supervisor")
    graph.add_edge("painter", "supervisor")
    handoffs_langgraph.invoke(graph.compile(), {"messages": [("user", "explain")]})
    rows = delegations(traced)
    assert [(r["target"], r["status"], r["outputs"], r["decisions"]) for r in rows] == [
        ("physicist", "completed", [BLUE], ["accepted"]), ("painter", "completed", [RED], ["accepted"])]
    assert [(r["agent"], r["within"]) for r in turns(traced)] == [
        ("supervisor", ""), ("physicist", "physicist"), ("painter", "painter"), ("supervisor", "")]
    assert t.PREMATURE_TERMINATION not in detected_codes(traced)


def test_one_callback_for_two_invokes_records_two_runs(traced):
    from langchain_core.messages import AIMessage

    from handoffs.integrations import langgraph as handoffs_langgraph

    config = {"callbacks": [handoffs_langgraph.callback("reused")]}
    for i in range(2):
        _team([_transfer(), AIMessage(content=f"run {i}: {BLUE}")], _writer).invoke(
            {"messages": [("user", f"question {i}")]}, config=config)
    rows = delegations(traced)
    assert len(rows) == 2 and len({r["trace"] for r in rows}) == 2
    assert [x["success"] for x in terminations(traced)] == ["true", "true"]


def test_a_graph_given_the_callback_twice_records_one_run(traced):
    from langchain_core.messages import AIMessage

    from handoffs.integrations import langgraph as handoffs_langgraph

    def team(i: int) -> Any:
        return _team([_transfer(), AIMessage(content=f"run {i}: {BLUE}")], _writer)

    # Two callbacks in one config; invoke() adding its own to a config that has one; a callback
    # bound with with_config and another in the config.
    team(0).invoke({"messages": [("user", "q")]},
                   config={"callbacks": [handoffs_langgraph.callback(), handoffs_langgraph.callback()]})
    handoffs_langgraph.invoke(team(1), {"messages": [("user", "q")]},
                              config={"callbacks": [handoffs_langgraph.callback()]})
    team(2).with_config(callbacks=[handoffs_langgraph.callback()]).invoke(
        {"messages": [("user", "q")]}, config={"callbacks": [handoffs_langgraph.callback()]})
    rows = delegations(traced)
    assert len(rows) == 3 and len({r["trace"] for r in rows}) == 3
    assert len(terminations(traced)) == 3


def test_a_handoff_tool_commanding_the_parent_graph_is_a_delegation(traced):
    """langgraph-supervisor's pattern: a ReAct supervisor whose transfer tool returns
    Command(goto=..., graph=Command.PARENT); then it writes over the researcher's answer."""
    from typing import Annotated

    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.tools import InjectedToolCallId, tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import InjectedState, create_react_agent
    from langgraph.types import Command

    from handoffs.integrations import langgraph as handoffs_langgraph

    def hand_to_researcher(task: str, state: dict, tool_call_id: str) -> Command:
        """Hand the task to the researcher."""
        done = ToolMessage(content="Transferred", tool_call_id=tool_call_id, name="transfer_to_researcher")
        return Command(goto="researcher", graph=Command.PARENT, update={"messages": [*state["messages"], done]})

    # Real annotations (this module's are strings, which LangChain would resolve in its globals).
    hand_to_researcher.__annotations__ = {"task": str, "state": Annotated[dict, InjectedState],
                                          "tool_call_id": Annotated[str, InjectedToolCallId], "return": Command}
    to_researcher = tool("transfer_to_researcher")(hand_to_researcher)

    chat = _example().ScriptedChatModel
    transfer = AIMessage(content="", tool_calls=[{"name": "transfer_to_researcher", "args": {"task": "why blue"},
                                                  "id": "t1"}])
    own = "The sky is blue because it mirrors the oceans, as every sailor on the horizon can plainly see."
    supervisor = create_react_agent(chat(responses=[transfer, AIMessage(content=own)]), [to_researcher],
                                    name="supervisor")
    researcher = create_react_agent(chat(responses=[AIMessage(content=BLUE)]), [], name="researcher")
    graph = StateGraph(MessagesState)
    graph.add_node("supervisor", supervisor, destinations=("researcher",))
    graph.add_node("researcher", researcher)
    graph.add_edge(START, "supervisor")
    graph.add_edge("researcher", "supervisor")
    handoffs_langgraph.invoke(graph.compile(), {"messages": [("user", "why is the sky blue?")]})
    rows = delegations(traced)
    assert [(r["source"], r["target"], r["outputs"], r["decisions"]) for r in rows] == [
        ("supervisor", "researcher", [BLUE], ["overwrote"])]


def test_an_interrupted_graph_is_paused_not_done_and_its_resumption_keeps_the_handoff(traced):
    from langchain_core.messages import AIMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command, interrupt

    from handoffs.integrations import langgraph as handoffs_langgraph

    from .conftest import run_events

    def writer(state: Any) -> Any:
        interrupt("approve the draft?")
        return _writer(state)

    app = _team([_transfer(), AIMessage(content=f"Here it is: {BLUE}")], writer, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "hitl-1"}}
    assert "__interrupt__" in handoffs_langgraph.invoke(app, {"messages": [("user", "why blue?")]}, config=config)
    assert run_events(traced) == [["handoff.checkpoint"]]
    assert t.PREMATURE_TERMINATION not in detected_codes(traced)

    handoffs_langgraph.invoke(app, Command(resume=True), config=config)
    assert run_events(traced)[1] == ["handoff.resume", "handoff.termination"]
    assert [(r["status"], r["decisions"]) for r in delegations(traced)] == [("open", []), ("completed", ["accepted"])]


def test_a_toolnode_error_fails_the_tool_call(traced):
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from handoffs.integrations import langgraph as handoffs_langgraph

    @tool
    def lookup(q: str) -> str:
        """Look it up."""
        raise RuntimeError("database is down")

    model = _example().ScriptedChatModel(responses=[
        AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"q": "x"}, "id": "l1"}]),
        AIMessage(content="I could not look it up.")])

    def agent(state: MessagesState) -> Any:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup], handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    handoffs_langgraph.invoke(graph.compile(), {"messages": [("user", "go")]})
    assert tools(traced) == [{"tool": "lookup", "agent": "agent", "failed": True}]


def test_a_worker_node_that_raised_fails_its_delegation(traced):
    from langchain_core.messages import AIMessage

    from handoffs.integrations import langgraph as handoffs_langgraph

    def writer(state: Any) -> Any:
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError):
        handoffs_langgraph.invoke(_team([_transfer(), AIMessage(content=BLUE)], writer), {"messages": [("user", "q")]})
    assert [(r["target"], r["status"]) for r in delegations(traced)] == [("writer", "failed")]
    assert t.PREMATURE_TERMINATION not in detected_codes(traced)


@pytest.mark.parametrize("form", ["list", "manager", "handler", "none"])
def test_invoke_adds_its_callback_to_any_form_of_callbacks_leaving_the_callers_alone(traced, form):
    """``config["callbacks"]`` may be a list, a CallbackManager, a single handler or None."""
    from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
    from langchain_core.messages import AIMessage

    from handoffs.integrations import langgraph as handoffs_langgraph

    class Mine(BaseCallbackHandler):
        def __init__(self) -> None:
            self.graph_runs = 0

        def on_chain_start(self, serialized: Any, inputs: Any, *, parent_run_id: Any = None, **kwargs: Any) -> None:
            self.graph_runs += parent_run_id is None

    mine = Mine()
    callbacks: Any = {"list": [mine], "manager": CallbackManager(handlers=[mine], inheritable_handlers=[mine]),
                      "handler": mine, "none": None}[form]
    config = {"callbacks": callbacks, "tags": ["mine"]}
    handoffs_langgraph.invoke(_team([_transfer(), AIMessage(content=f"Here it is: {BLUE}")], _writer),
                              {"messages": [("user", "why blue?")]}, config=config)

    assert [(r["source"], r["target"], r["status"]) for r in delegations(traced)] == [
        ("supervisor", "writer", "completed")]
    assert mine.graph_runs == (0 if form == "none" else 1)
    assert config == {"callbacks": callbacks, "tags": ["mine"]}
    if form == "list":
        assert callbacks == [mine]
    elif form == "manager":
        assert callbacks.handlers == [mine] and callbacks.inheritable_handlers == [mine]


def test_invoke_given_a_chain_groups_manager_records_the_graph_within_it(traced):
    """A manager with a parent run (``trace_as_chain_group``): the graph's run is a child of it."""
    from langchain_core.callbacks.manager import trace_as_chain_group
    from langchain_core.messages import AIMessage

    from handoffs.integrations import langgraph as handoffs_langgraph

    with trace_as_chain_group("group") as manager:
        handoffs_langgraph.invoke(_team([_transfer(), AIMessage(content=f"Here it is: {BLUE}")], _writer),
                                  {"messages": [("user", "why blue?")]}, config={"callbacks": manager})
        assert manager.handlers == [] and manager.inheritable_handlers == []
    assert [(r["source"], r["target"], r["status"]) for r in delegations(traced)] == [
        ("supervisor", "writer", "completed")]
    assert terminations(traced) == [{"reason": "completed", "success": "true"}]
