"""MAST / MAD records (Cemri et al. 2025, ``mcemri/MAD`` on HuggingFace) as conversations.

The shape assumed, as the public release documents it (the dataset itself is not on this
machine; ``tests/importers`` holds fixtures of this shape)::

    {"mas_name": "AG2", "llm_name": "gpt-4o", "benchmark_name": "GSM-Plus", "trace_id": 17,
     "trace": {"trajectory": "<the whole conversation as one text>"},
     "mast_annotation": {"1.1": 0, "1.2": 1, ..., "3.3": 0}}

A file holds one record, a JSON list of records, or JSON Lines. ``trace`` may also be the
trajectory text itself. The trajectory is split into messages at the speaker markers of the
system that wrote it (see ``MARKERS``), or read as a list of messages when it is one; text
before the first marker becomes a ``preamble`` message, and a trajectory with no recognisable
marker stays one message. ``mast_annotation`` (the labels) is not imported: detectors must
judge the text alone.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handoffs import conventions as c
from handoffs.errors import UsageError

from . import jsonfile
from .conversation import Conversation, ImportedMessage, split_speaker
from .who_and_when import message_from

FORMAT = "mast"
SUFFIXES = (".json", ".jsonl")
PREAMBLE_AGENT = "system"
PREAMBLE_ROLE = "preamble"
TRAJECTORY_ROLE = "trajectory"


@dataclass(frozen=True)
class Marker:
    """A line that opens a message in one family of logs; ``speaker`` (and ``target``) groups."""

    name: str
    pattern: re.Pattern[str]
    generic: bool = False  # matches ordinary prose too: keep only speakers seen twice


def _m(name: str, regex: str, generic: bool = False) -> Marker:
    return Marker(name, re.compile(regex, re.MULTILINE), generic)


# Tried in this order; the first that finds two or more messages wins. Specific formats come
# first because the generic ``Name: text`` form also matches lines inside messages.
MARKERS: tuple[Marker, ...] = (
    # AG2 / AutoGen 0.2: "Planner (to chat_manager):" on its own line.
    _m("ag2", r"^(?P<speaker>[^\n()]{1,80}?) \(to (?P<target>[^\n()]{1,80})\):[ \t]*$"),
    # AutoGen 0.4 console, Magentic-One: "---------- Orchestrator (-> WebSurfer) ----------".
    _m("console", r"^-{3,}[ \t]*(?P<speaker>[^\-\s][^\n]{0,79}?)[ \t]*-{3,}[ \t]*$"),
    # ChatDev: "[2024-05-01 10:00:00 INFO] Programmer: **Programmer<->Chief Technology Officer on :
    # Coding, turn 0**", or a bare "**[Programmer]**"; the name before the colon is the speaker.
    _m("chatdev", r"^(?:\[[^\]\n]{0,60}\][ \t]*)?(?:(?P<prefix>[A-Z][\w ]{0,60}?):[ \t]*)?"
                  r"\*\*\[?(?P<speaker>[^*\[\]\n<]{1,80}?)\]?"
                  r"(?:<->(?P<target>[^*\n]{1,80}?)(?: on :[^*\n]*)?)?\*\*"),
    # HyperAgent: "... Planner's Response:" / "Navigator->Planner: ...".
    _m("hyperagent", r"^[^\n]*?\b(?P<speaker>[A-Z]\w{1,40})'s [Rr]esponse:"),
    _m("arrow", r"^(?P<speaker>[A-Z][\w .]{0,40}?)[ \t]*->[ \t]*(?P<target>[A-Z][\w .]{0,40}?):[ \t]"),
    # "[Coder]: ..." (a letter first, so "[2024-05-01 ...]" timestamps do not count).
    _m("bracket", r"^\[(?P<speaker>[A-Za-z][^\]\n]{0,60})\][ \t]*:?[ \t]"),
    # "Planner: ...", "Alice(ProductManager): ...": the widest net, last.
    _m("colon", r"^(?P<speaker>[A-Z][\w.\-]{0,30}(?: [A-Z][\w.\-]{0,30}){0,3}(?:[ \t]*\([^)\n]{0,40}\))?):[ \t]",
       generic=True),
)

# Words that open ordinary lines ("Note: ...") rather than name a speaker.
_NOT_SPEAKERS = frozenset({
    "note", "step", "output", "answer", "final answer", "example", "input", "result", "results",
    "error", "traceback", "warning", "question", "task", "thought", "action", "observation",
    "plan", "summary", "explanation", "solution", "reason", "code", "response", "info", "debug",
    "file", "path", "status", "title", "description", "usage", "returns", "args", "exitcode",
})
# AutoGen 0.4 console headers name the message class and put the speaker in parentheses.
_MESSAGE_CLASS = re.compile(r"^\w+(?:Message|Event)$")
_SEPARATOR = re.compile(r"(?:\n[ \t]*-{5,}[ \t]*)+\s*$")


def _speaker(raw: str, target: str | None) -> tuple[str, str]:
    head, kind_target = split_speaker(raw)
    inner = re.match(r"^\s*(\w+)\s*\((.*)\)\s*$", raw)
    if inner and _MESSAGE_CLASS.match(inner.group(1)):
        head = inner.group(2).strip()
    return head.strip(), (target or kind_target or "").strip()


def _structured(text: str) -> list[ImportedMessage] | None:
    """A trajectory that is itself a list of ``{"role", "content", "name"?}`` messages (JSON or a
    Python literal, as some MAD systems dump them), or None."""
    stripped = text.strip()
    if not stripped.startswith("["):
        return None
    try:
        data = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):  # too deep to parse: text, like any other
        try:
            data = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if not (isinstance(data, list) and data
            and all(isinstance(m, dict) and "content" in m for m in data)):
        return None
    return [message_from(m) for m in data]


def split_trajectory(text: str) -> tuple[list[ImportedMessage], str]:
    """Split one trajectory into messages; return them and the name of the marker used."""
    structured = _structured(text)
    if structured is not None:
        return structured, "messages"
    for marker in MARKERS:
        matches = list(marker.pattern.finditer(text))
        if marker.generic:
            counts = Counter(m.group("speaker").strip() for m in matches)
            matches = [m for m in matches
                       if counts[m.group("speaker").strip()] >= 2
                       and m.group("speaker").strip().lower() not in _NOT_SPEAKERS]
        if len(matches) < 2:
            continue
        messages = []
        preamble = text[:matches[0].start()].strip()
        if preamble:
            messages.append(ImportedMessage(PREAMBLE_AGENT, PREAMBLE_ROLE, preamble))
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            body = _SEPARATOR.sub("", text[m.end():end]).strip()
            groups = m.groupdict()
            agent, target = _speaker(groups.get("prefix") or groups["speaker"], groups.get("target"))
            messages.append(ImportedMessage(agent or "unknown", groups["speaker"].strip(), body, target))
        return messages, marker.name
    return [ImportedMessage(PREAMBLE_AGENT, TRAJECTORY_ROLE, text.strip())], ""


def conversation_from(record: Any, default_id: str) -> Conversation:
    """One MAD record as a conversation; raises ValueError when it is not one.

    Its id is its ``trace_id`` (``default_id`` without one), scoped by benchmark and model: one
    system's records share ``trace_id`` numbers across them.
    """
    if not isinstance(record, dict):
        raise ValueError(f"a record is a {type(record).__name__}, not an object")
    trace = record.get("trace")
    text = trace.get("trajectory") if isinstance(trace, dict) else trace
    if text is None and isinstance(record.get("trajectory"), str):
        text = record["trajectory"]
    if not isinstance(text, str):
        raise ValueError("a record has no 'trace.trajectory' text")
    messages, marker = split_trajectory(text)
    source_id = record.get("trace_id")
    source_id = default_id if source_id is None or source_id == "" else str(source_id)
    scope = "/".join(str(record[k]) for k in ("benchmark_name", "llm_name") if record.get(k))
    attributes = {}
    if record.get("llm_name"):
        attributes[c.GEN_AI_REQUEST_MODEL] = str(record["llm_name"])
    return Conversation(source_id=source_id, source_format=FORMAT, messages=messages,
                        system=str(record.get("mas_name") or ""), attributes=attributes, scope=scope)


def _records(path: Path) -> list[Any]:
    """The records of one file: one record, a JSON list of them, or one per line (JSON lines)."""
    records: list[Any] = []
    for document in jsonfile.documents(path):
        if not document.line and isinstance(document.value, list):
            records.extend(document.value)
        else:
            records.append(document.value)
    return records


def read(path: Path) -> Iterator[Conversation]:
    """The conversations in one file. Raises UsageError naming the file when it is not MAD data."""
    try:
        convs = [conversation_from(r, f"{path.stem}:{i}") for i, r in enumerate(_records(path))]
    except ValueError as exc:
        raise UsageError(f"{path}: not a MAST/MAD record file ({exc}); fix or remove this file") from exc
    yield from convs
