#!/usr/bin/env bash
# Install handoffs with its test extras into a fresh venv and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q ".[test]"
.venv/bin/ruff check .
.venv/bin/pytest -q -n 2 "$@"
