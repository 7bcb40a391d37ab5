"""LangGraph graphs traced as hand-offs: the supervisor pattern, with tool-calling workers.

    from handoffs.integrations import langgraph as handoffs_langgraph
    app.invoke(inputs, config={"callbacks": [handoffs_langgraph.callback("report")]})

Each top-level node of the graph is an agent; the AI messages a node adds are its messages. A
node hands off with a ``transfer_to_<node>`` tool call or by returning ``Command(goto=<node>)``
(the two spellings of LangGraph's supervisor pattern; a goto that follows a transfer call of the
same node counts once). When the graph finishes the run is recorded; an error (a recursion
limit, an exception in a node) ends it without a success claim, and a hand-off whose target
never ran stays open. LangChain is imported only when ``callback`` is called.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from .recorder import Recorder, framework

TRANSFER_PREFIX = "transfer_to_"
END = "__end__"


def _messages(update: Any) -> list[Any]:
    if isinstance(update, dict):
        found = update.get("messages", [])
        return list(found) if isinstance(found, list | tuple) else [found]
    return []


def _targets(goto: Any) -> list[str]:
    items = goto if isinstance(goto, list | tuple) else [goto]
    names = [getattr(item, "node", item) for item in items]  # Send objects name their node
    return [n for n in names if isinstance(n, str) and n and not n.startswith("__")]


def callback(name: str = "langgraph") -> Any:
    """A LangChain callback handler that records one graph run (pass it in ``config["callbacks"]``)."""
    with framework("langgraph"):
        from langchain_core.callbacks import BaseCallbackHandler

    class HandoffsCallback(BaseCallbackHandler):  # type: ignore[misc]
        """Notes node outputs, transfers and the end of the graph run for ``Recorder``."""

        raise_error = False

        def __init__(self) -> None:
            self.recorder = Recorder(name, topology="centralized")
            self.root: UUID | None = None
            self.nodes: dict[UUID, str] = {}
            self.seen: set[str] = set()
            self.run_id: str | None = None

        def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID,
                           parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                           **kwargs: Any) -> None:
            if self.root is None and parent_run_id is None:
                self.root = run_id
            elif parent_run_id == self.root and metadata and metadata.get("langgraph_node"):
                node = str(metadata["langgraph_node"])
                if not node.startswith("__"):
                    self.nodes[run_id] = node

        def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
            node = self.nodes.pop(run_id, None)
            if node is not None:
                self._node_output(node, outputs)
            elif run_id == self.root:
                self.recorder.end("completed", success_claimed=True)
                self._finish()

        def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
            self.nodes.pop(run_id, None)
            if run_id == self.root:
                self.recorder.end(type(error).__name__, success_claimed=False,
                                  error=str(error) or type(error).__name__)
                self._finish()

        def _node_output(self, node: str, outputs: Any) -> None:
            # A Command carries its update; a plain node returns the update itself (a dict, whose
            # own ``update`` attribute is a method, hence the type test).
            update = outputs if isinstance(outputs, dict) else getattr(outputs, "update", None)
            handed: set[str] = set()
            messages = _messages(update)
            # A tool's result comes back as a ToolMessage; status "error" marks a failed call.
            failed = {getattr(m, "tool_call_id", None): str(m.content) for m in messages
                      if getattr(m, "type", None) == "tool" and getattr(m, "status", None) == "error"}
            for message in messages:
                # A subgraph node (a ReAct worker) returns its whole state: count each message once.
                key = getattr(message, "id", None) or str(id(message))
                if getattr(message, "type", None) != "ai" or key in self.seen:
                    continue
                self.seen.add(key)
                content = message.content if isinstance(message.content, str) else str(message.content or "")
                usage = getattr(message, "usage_metadata", None) or {}
                self.recorder.message(node, content, tokens=usage.get("output_tokens"))
                for call in getattr(message, "tool_calls", None) or []:
                    tool = str(call.get("name", ""))
                    if tool.startswith(TRANSFER_PREFIX):
                        target = tool[len(TRANSFER_PREFIX):]
                        args = call.get("args") or {}
                        task = args.get("task") or args.get("task_description") if isinstance(args, dict) else None
                        self.recorder.handoff(node, target, task=task)
                        handed.add(target)
                    elif tool:
                        self.recorder.tool(node, tool, json.dumps(call.get("args") or {}, sort_keys=True, default=str),
                                           error=failed.get(call.get("id")))
            for target in _targets(() if isinstance(outputs, dict) else getattr(outputs, "goto", ())):
                if target not in handed:
                    self.recorder.handoff(node, target)

        def _finish(self) -> None:
            if self.run_id is None:
                self.run_id = self.recorder.emit()

    return HandoffsCallback()


def invoke(graph: Any, inputs: Any, *, name: str = "langgraph", config: dict[str, Any] | None = None,
           **kwargs: Any) -> Any:
    """``graph.invoke(inputs, config)`` with the recording callback added; returns its output."""
    config = dict(config or {})
    config["callbacks"] = [*config.get("callbacks", []), callback(name)]
    return graph.invoke(inputs, config=config, **kwargs)
