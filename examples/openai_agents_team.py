"""OpenAI Agents SDK teams traced with handoffs, on scripted models (no API key needed).

    python examples/openai_agents_team.py --scenario overwrite --store chdb:///tmp/ex-agents
    handoffs detect --store chdb:///tmp/ex-agents --format jsonl

Scenarios: ``overwrite`` (agents as tools: the editor asks the researcher, then answers with
its own text in place of the researcher's), ``handoff`` (the triage agent hands off to the
writer, whose answer is the result) and ``open`` (the triage agent hands off, then the run hits
its turn limit before the writer answers: premature termination).
Needs ``pip install 'handoffs[openai-agents]'``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from agents import Agent, set_tracing_disabled
from agents.exceptions import MaxTurnsExceeded
from agents.testing import ScriptedModel, assistant_message, function_call

from handoffs import sdk
from handoffs.integrations import openai_agents as handoffs_agents
from handoffs.store import open_store

TASK = "Explain why the sky is blue, in two sentences."
RESEARCH = ("Sunlight is scattered by the molecules of the air, and short blue wavelengths are scattered "
            "far more than red ones (Rayleigh scattering), so blue light reaches us from every direction.")
REWRITE = ("The sky is blue because it reflects the colour of the oceans that cover most of the planet, "
           "as anyone looking at the horizon can see.")


def build(scenario: str) -> tuple[Agent, int]:
    """The entry agent for ``scenario`` and the run's turn limit."""
    if scenario == "overwrite":
        researcher = Agent(name="researcher", instructions="Research the question.",
                           model=ScriptedModel([[assistant_message(RESEARCH)]]))
        editor = Agent(
            name="editor", instructions="Ask the researcher, then answer.",
            tools=[researcher.as_tool(tool_name="ask_researcher", tool_description="Ask the researcher.")],
            model=ScriptedModel([[function_call("ask_researcher", {"input": TASK}, call_id="call-1")],
                                 [assistant_message(REWRITE)]]))
        return editor, 10
    writer = Agent(name="writer", instructions="Write the answer.",
                   model=ScriptedModel([[assistant_message(RESEARCH)]]))
    triage = Agent(name="triage", instructions="Hand the question to the writer.", handoffs=[writer],
                   model=ScriptedModel([[function_call("transfer_to_writer", {}, call_id="call-1")]]))
    return triage, (1 if scenario == "open" else 10)


async def main(scenario: str) -> Any:
    """Run ``scenario``; the turn limit of ``open`` ends it with ``MaxTurnsExceeded`` (returned)."""
    agent, max_turns = build(scenario)
    try:
        return await handoffs_agents.run(agent, TASK, name=f"openai-agents-{scenario}", max_turns=max_turns)
    except MaxTurnsExceeded as exc:
        return exc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["overwrite", "handoff", "open"], default="overwrite")
    parser.add_argument("--store", default=None, help="store URL (default: $HANDOFFS_STORE or the embedded store)")
    args = parser.parse_args()
    sdk.configure("openai-agents-example", store=open_store(args.store), capture_content=True)
    # The Agents SDK's own traces go to OpenAI's platform, which needs an API key; there is none
    # here (scripted models), so they would only warn. handoffs reads the run through its hooks.
    set_tracing_disabled(True)
    outcome = asyncio.run(main(args.scenario))
    sdk.flush()
    print(f"run stopped: {type(outcome).__name__}" if isinstance(outcome, Exception)
          else f"final output: {outcome.final_output}")
