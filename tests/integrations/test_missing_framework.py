"""An integration called without its framework says which extra installs it."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

from handoffs.errors import UsageError
from handoffs.integrations import autogen, crewai, langgraph, openai_agents


def _first_of(stream: Any) -> Any:
    return asyncio.run(anext(stream))


CALLS: dict[str, tuple[str, str, Callable[[], Any]]] = {
    "langgraph": ("langchain_core", "langgraph", lambda: langgraph.callback()),
    "openai-agents hooks": ("agents", "openai-agents", lambda: openai_agents.hooks()),
    "openai-agents run": ("agents", "openai-agents", lambda: asyncio.run(openai_agents.run(object(), "task"))),
    "autogen": ("autogen_agentchat", "autogen", lambda: _first_of(autogen.trace(object(), "task"))),
    "crewai": ("crewai", "crewai", lambda: crewai.kickoff(object())),
}


@pytest.mark.parametrize("case", sorted(CALLS))
def test_a_missing_framework_names_its_extra(case: str) -> None:
    module, extra, call = CALLS[case]
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(UsageError, match=rf"'{module}'.*pip install 'handoffs\[{extra}\]'"):
        call()
