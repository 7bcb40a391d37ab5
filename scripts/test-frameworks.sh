#!/usr/bin/env bash
# The integrations' tests against the real agent frameworks, each in a fresh venv.
# Two venvs: CrewAI 1.15 needs openai<3 while the OpenAI Agents SDK 0.24 needs openai>=3.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv-fw
.venv-fw/bin/pip install -q --upgrade pip
.venv-fw/bin/pip install -q ".[test,openai-agents,autogen,langgraph]" \
  openinference-instrumentation-openai-agents openinference-instrumentation-autogen-agentchat \
  openinference-instrumentation-langchain
.venv-fw/bin/pytest -q -m frameworks tests/integrations tests/collector/test_normalise.py

python3 -m venv .venv-crew
.venv-crew/bin/pip install -q --upgrade pip
.venv-crew/bin/pip install -q ".[test,crewai]" openinference-instrumentation-crewai
.venv-crew/bin/pytest -q -m frameworks tests/integrations/test_crewai.py tests/collector/test_normalise.py -k crewai
