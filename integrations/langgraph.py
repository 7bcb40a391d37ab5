"""LangGraph graphs traced as hand-offs: the supervisor pattern, with tool-calling workers.

    from handoffs.integrations import langgraph as handoffs_langgraph
    app.invoke(inputs, config={"callbacks": [handoffs_langgraph.callback("report")]})

Each top-level node of the graph is an agent; the AI messages a node adds are its messages. A
node hands off with a ``transfer_to_<node>`` tool call, by returning ``Command(goto=<node>)``
(or several nodes, or ``Send``s: hand-offs that run side by side), or from inside a subgraph
with ``Command(goto=<node>, graph=Command.PARENT)`` (langgraph-supervisor's hand-off tools); a
goto that follows a transfer call of the same node counts once. Every ``invoke`` the callback
sees is a run of its own, recorded when the graph finishes (once, by the first of them, when
a graph is given several of these callbacks); an error (a recursion limit, an
exception in a node) ends it without a success claim, a node that raised fails the hand-off it
was working on, and a hand-off whose target never ran stays open. A graph paused by
``interrupt()`` is recorded with a checkpoint instead of a termination; the invoke that resumes
it (``Command(resume=...)``) is a run that resumes from that checkpoint, the hand-offs the pause
left open re-opened in it. LangChain is imported only when ``callback`` is called.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from .recorder import Recorder, ToolCall, framework

TRANSFER_PREFIX = "transfer_to_"
END = "__end__"
# Hand-offs left open by paused runs, by checkpoint, until a run resumes them (the oldest are
# dropped past this many, so threads never resumed do not accumulate).
MAX_PAUSED = 1000
_paused: OrderedDict[str, list[tuple[str, str, str | None, str]]] = OrderedDict()
# Graph runs being recorded, by root run id, and the callback recording each: a graph given two
# of these callbacks (in config and bound with ``with_config``, or ``invoke`` on a config that
# already has one) shows both the same run id, and only the first records it. Async runs call
# the callbacks from a thread pool, hence the lock.
_recording: dict[UUID, object] = {}
_recording_lock = threading.Lock()


def _messages(update: Any) -> list[Any]:
    if isinstance(update, dict):
        found = update.get("messages", [])
        return list(found) if isinstance(found, list | tuple) else [found]
    return []


def _targets(goto: Any) -> list[str]:
    items = goto if isinstance(goto, list | tuple) else [goto]
    names = [getattr(item, "node", item) for item in items]  # Send objects name their node
    return [n for n in names if isinstance(n, str) and n and not n.startswith("__")]


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@dataclass
class _GraphRun:
    """What one invoke of the graph has shown so far."""

    recorder: Recorder
    checkpoint: str
    nodes: dict[UUID, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    calls: dict[str, ToolCall] = field(default_factory=dict)  # tool call id -> the call, for late failures
    interrupted: bool = False


def _pause(run: _GraphRun) -> None:
    run.recorder.pause(run.checkpoint)
    _paused[run.checkpoint] = run.recorder.still_open()
    _paused.move_to_end(run.checkpoint)
    while len(_paused) > MAX_PAUSED:
        _paused.popitem(last=False)


def callback(name: str = "langgraph") -> Any:
    """A LangChain callback handler that records each graph run it sees (pass it in ``config["callbacks"]``)."""
    with framework("langgraph"):
        from langchain_core.callbacks import BaseCallbackHandler
        from langgraph.errors import GraphBubbleUp, GraphInterrupt, ParentCommand

    class HandoffsCallback(BaseCallbackHandler):  # type: ignore[misc]
        """Notes node outputs, transfers and the end of each graph run for a ``Recorder``."""

        raise_error = False

        def __init__(self) -> None:
            self.runs: dict[UUID, _GraphRun] = {}  # by the graph's root run id: invokes may overlap
            self.node_runs: dict[UUID, UUID] = {}  # node run id -> its graph's root run id
            self.run_id: str | None = None  # the last one recorded
            # What a graph run's start names as its parent: none for a top-level invoke; invoke()
            # given a callback manager sets the manager's parent run (a chain group, say).
            self.root_parent: UUID | None = None

        def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID,
                           parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                           **kwargs: Any) -> None:
            if parent_run_id == self.root_parent:
                with _recording_lock:
                    if _recording.setdefault(run_id, self) is not self or run_id in self.runs:
                        return
                thread = (metadata or {}).get("thread_id")
                run = _GraphRun(Recorder(name, topology="centralized"),
                                f"langgraph:{thread}" if thread is not None else f"langgraph:{run_id}")
                if getattr(inputs, "resume", None) is not None:  # Command(resume=...) continues a pause
                    run.recorder.resume(run.checkpoint, _paused.pop(run.checkpoint, []))
                self.runs[run_id] = run
            elif parent_run_id in self.runs and metadata and metadata.get("langgraph_node"):
                node = str(metadata["langgraph_node"])
                if not node.startswith("__"):
                    self.runs[parent_run_id].nodes[run_id] = node
                    self.node_runs[run_id] = parent_run_id

        def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
            node, run = self._node(run_id)
            if node is not None and run is not None:
                self._node_output(run, node, outputs)
            elif run_id in self.runs:
                run = self.runs.pop(run_id)
                if run.interrupted:
                    _pause(run)
                else:
                    run.recorder.end("completed", success_claimed=True)
                self._finish(run_id, run)

        def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
            node, run = self._node(run_id)
            if node is not None and run is not None:
                if isinstance(error, ParentCommand):  # a hand-off tool's Command(graph=PARENT)
                    self._node_output(run, node, error.args[0] if error.args else None)
                elif isinstance(error, GraphInterrupt):
                    run.interrupted = True
                elif not isinstance(error, GraphBubbleUp):
                    run.recorder.failed(node, _error_text(error))
            elif run_id in self.runs:
                run = self.runs.pop(run_id)
                run.recorder.end(type(error).__name__, success_claimed=False, error=str(error) or type(error).__name__)
                self._finish(run_id, run)

        def _node(self, run_id: UUID) -> tuple[str | None, _GraphRun | None]:
            root = self.node_runs.pop(run_id, None)
            run = self.runs.get(root) if root is not None else None
            return (run.nodes.pop(run_id, None), run) if run is not None else (None, None)

        def _node_output(self, run: _GraphRun, node: str, outputs: Any) -> None:
            # A Command carries its update; a plain node returns the update itself (a dict, whose
            # own ``update`` attribute is a method, hence the type test).
            update = outputs if isinstance(outputs, dict) else getattr(outputs, "update", None)
            handed: set[str] = set()
            messages = _messages(update)
            for message in messages:
                # A subgraph node (a ReAct worker) returns its whole state: count each message once.
                key = getattr(message, "id", None) or str(id(message))
                if getattr(message, "type", None) != "ai" or key in run.seen:
                    continue
                run.seen.add(key)
                handed |= self._ai_message(run, node, message)
            # A tool's result comes back as a ToolMessage, from this node or a later one (a
            # ToolNode); status "error" marks the call failed.
            for message in messages:
                if getattr(message, "type", None) == "tool" and getattr(message, "status", None) == "error":
                    call = run.calls.get(getattr(message, "tool_call_id", None) or "")
                    if call is not None and call.error is None:
                        call.error = str(message.content)
            for target in _targets(() if isinstance(outputs, dict) else getattr(outputs, "goto", ())):
                if target not in handed:
                    run.recorder.handoff(node, target)

        def _ai_message(self, run: _GraphRun, node: str, message: Any) -> set[str]:
            """Record one AI message of ``node``: its text and its calls; returns the nodes it handed to."""
            handed = set()
            content = message.content if isinstance(message.content, str) else str(message.content or "")
            usage = getattr(message, "usage_metadata", None) or {}
            run.recorder.message(node, content, tokens=usage.get("output_tokens"))
            for call in getattr(message, "tool_calls", None) or []:
                tool = str(call.get("name", ""))
                if tool.startswith(TRANSFER_PREFIX):
                    target = tool[len(TRANSFER_PREFIX):]
                    args = call.get("args") or {}
                    task = args.get("task") or args.get("task_description") if isinstance(args, dict) else None
                    run.recorder.handoff(node, target, task=task)
                    handed.add(target)
                elif tool:
                    recorded = run.recorder.tool(node, tool, json.dumps(call.get("args") or {}, sort_keys=True,
                                                                        default=str))
                    if recorded is not None and call.get("id"):
                        run.calls[str(call["id"])] = recorded
            return handed

        def _finish(self, run_id: UUID, run: _GraphRun) -> None:
            with _recording_lock:
                _recording.pop(run_id, None)
            for node_run in run.nodes:
                self.node_runs.pop(node_run, None)
            self.run_id = run.recorder.emit()

    return HandoffsCallback()


def _with_handler(callbacks: Any, handler: Any) -> Any:
    """``callbacks`` in any form LangChain takes (a list, a callback manager, None; a single
    handler too) with ``handler`` added, as a new list or manager: the caller's is left as it was."""
    from langchain_core.callbacks import BaseCallbackManager

    if callbacks is None:
        return [handler]
    if isinstance(callbacks, list | tuple):
        return [*callbacks, handler]
    if isinstance(callbacks, BaseCallbackManager):
        # A copy keeps the manager's own tags, metadata and parent run; inherited, the handler
        # also sees the graph's nodes, as one passed in a list does.
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        return manager
    return [callbacks, handler]


def invoke(graph: Any, inputs: Any, *, name: str = "langgraph", config: dict[str, Any] | None = None,
           **kwargs: Any) -> Any:
    """``graph.invoke(inputs, config)`` with the recording callback added; returns its output."""
    handler = callback(name)
    config = dict(config or {})
    config["callbacks"] = _with_handler(config.get("callbacks"), handler)
    handler.root_parent = getattr(config["callbacks"], "parent_run_id", None)
    return graph.invoke(inputs, config=config, **kwargs)
