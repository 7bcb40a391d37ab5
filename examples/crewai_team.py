"""A hierarchical CrewAI crew traced with handoffs, on scripted LLMs (no API key needed).

    python examples/crewai_team.py --scenario overwrite --store chdb:///tmp/ex-crewai
    handoffs detect --store chdb:///tmp/ex-crewai --format jsonl

The manager delegates the task to the writer with CrewAI's ``Delegate work to coworker`` tool.
Scenarios: ``overwrite`` (the manager's final answer replaces the writer's), ``accept`` (it
passes the writer's answer on) and ``open`` (the process is interrupted while the writer is
at work, as Ctrl-C or a CI job's timeout does, and the crew stops with the delegation open:
premature termination). The LLMs are a scripted
``BaseLLM`` subclass. Needs ``pip install 'handoffs[crewai]'``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

from crewai import Agent, Crew, Process, Task  # noqa: E402
from crewai.llms.base_llm import BaseLLM  # noqa: E402

from handoffs import sdk  # noqa: E402
from handoffs.integrations import crewai as handoffs_crewai  # noqa: E402
from handoffs.store import open_store  # noqa: E402

TASK = "Explain why the sky is blue, in two sentences."
RESEARCH = ("Sunlight is scattered by the molecules of the air, and short blue wavelengths are scattered "
            "far more than red ones (Rayleigh scattering), so blue light reaches us from every direction.")
REWRITE = ("The sky is blue because it reflects the colour of the oceans that cover most of the planet, "
           "as anyone looking at the horizon can see.")


class ScriptedLLM(BaseLLM):
    """A CrewAI LLM that answers from a script: one reply per call, an exception where scripted."""

    replies: list[Any] = []

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None,
             from_task: Any = None, from_agent: Any = None, response_model: Any = None, **kwargs: Any) -> str:
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def supports_function_calling(self) -> bool:
        return False  # CrewAI then drives tools with its ReAct text format, which the script speaks


def _delegate(coworker: str) -> str:
    args = {"task": TASK, "context": "The answer goes to a general audience.", "coworker": coworker}
    return f"Thought: the writer should draft this.\nAction: Delegate work to coworker\nAction Input: {json.dumps(args)}"


def build(scenario: str) -> Crew:
    """The crew, its LLMs scripted for ``scenario``."""
    final = f"Here is the writer's answer: {RESEARCH}" if scenario == "accept" else REWRITE
    manager_llm = ScriptedLLM(model="scripted-manager", replies=[
        _delegate("Writer"), f"Thought: I now know the final answer\nFinal Answer: {final}"])
    writer_reply: Any = (KeyboardInterrupt() if scenario == "open"
                         else f"Thought: I know the answer\nFinal Answer: {RESEARCH}")
    writer_llm = ScriptedLLM(model="scripted-writer", replies=[writer_reply])
    writer = Agent(role="Writer", goal="Write clear explanations", backstory="A science writer.",
                   llm=writer_llm, allow_delegation=False, max_retry_limit=0)
    manager = Agent(role="Manager", goal="Deliver the answer", backstory="Runs the team.",
                    llm=manager_llm, allow_delegation=True)
    task = Task(description=TASK, expected_output="Two sentences.")
    return Crew(agents=[writer], tasks=[task], process=Process.hierarchical, manager_agent=manager)


def main(scenario: str) -> Any:
    """Run ``scenario``; the interrupt of ``open`` stops the crew (and is returned)."""
    try:
        return handoffs_crewai.kickoff(build(scenario), name=f"crewai-{scenario}")
    except KeyboardInterrupt as exc:
        return exc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["overwrite", "accept", "open"], default="overwrite")
    parser.add_argument("--store", default=None, help="store URL (default: $HANDOFFS_STORE or the embedded store)")
    args = parser.parse_args()
    sdk.configure("crewai-example", store=open_store(args.store), capture_content=True)
    outcome = main(args.scenario)
    sdk.flush()
    print(f"crew stopped: {type(outcome).__name__}" if isinstance(outcome, BaseException)
          else f"final answer: {outcome.raw}")
