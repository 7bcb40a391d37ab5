"""Who&When failure logs (Zhang et al., ICML 2025) as conversations: one file, one trace.

A file is ``{"history": [{"content", "role", "name"?}, ...], "question", ...}``; step N is
``history[N]``. The speaker is the message's ``name`` where present, else its ``role``; Magentic-One
logs put the speaker in ``role`` with the message kind in parentheses (``Orchestrator (-> WebSurfer)``),
of which the agent's name is kept. The label fields (``mistake_agent``, ``mistake_step``,
``mistake_reason``, ``ground_truth``, ``is_correct``) are neither needed nor imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from handoffs.errors import UsageError

from . import jsonfile
from .conversation import Conversation, ImportedMessage, split_speaker

FORMAT = "who-and-when"
SUFFIXES = (".json",)  # one record (or a list) per file; no JSON lines


def message_from(raw: Any) -> ImportedMessage:
    """One ``history`` entry as a message; raises ValueError when it is not one."""
    if not isinstance(raw, dict):
        raise ValueError(f"a history entry is a {type(raw).__name__}, not an object")
    name = raw.get("name")
    role = str(raw.get("role") or "")
    speaker = str(name) if name else role
    agent, target = split_speaker(speaker)
    content = raw.get("content")
    if content is None:
        content = ""
    elif not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False)
    return ImportedMessage(agent=agent or "unknown", role=role, content=content, target=target)


def conversation_from(record: Any, source_id: str, scope: str = "") -> Conversation:
    """One Who&When record as a conversation; raises ValueError when it is not one."""
    if not isinstance(record, dict) or not isinstance(record.get("history"), list):
        raise ValueError("expected an object with a 'history' list of messages")
    messages = [message_from(m) for m in record["history"]]
    task = record.get("question")
    return Conversation(source_id=source_id, source_format=FORMAT, messages=messages,
                        task=task if isinstance(task, str) else "", scope=scope)


def read(path: Path) -> Iterator[Conversation]:
    """The conversations in one file (one record, or a list of records as ``stem:index``).

    The scope of its id is the folder's name: the dataset numbers its files per folder
    (``Algorithm-Generated/1.json``, ``Hand-Crafted/1.json``). Only the name, not the path given,
    so that a file gets the same ids however it is named on the command line.
    Raises UsageError naming the file when it is not Who&When JSON.
    """
    scope = path.resolve().parent.name
    try:
        data = jsonfile.load(path)
        if isinstance(data, list):
            convs = [conversation_from(r, f"{path.stem}:{i}", scope) for i, r in enumerate(data)]
        else:
            convs = [conversation_from(data, path.stem, scope)]
    except ValueError as exc:
        raise UsageError(f"{path}: not a Who&When log ({exc}); fix or remove this file") from exc
    yield from convs
