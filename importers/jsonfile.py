"""JSON and JSON-lines files as every importer reads them, failing the same way for each.

One reading so that an empty, truncated or too deeply nested file gets the same words whatever
its format, and a JSON-lines file's error names the line it is on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handoffs.errors import UsageError

STDIN = Path("-")  # the path that means standard input (OTLP/JSON only: see importers.files)


@dataclass(frozen=True)
class Document:
    """One JSON document of a file: its line (0 when it is the whole file), text and value."""

    line: int
    text: bytes
    value: Any


def read_bytes(path: Path) -> bytes:
    """The file's bytes (standard input's for ``STDIN``); UsageError when it cannot be read or
    holds nothing."""
    if path == STDIN:
        data = sys.stdin.buffer.read()
        if not data.strip():
            raise UsageError("standard input (-): nothing was read; pipe the OTLP/JSON into it")
        return data
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if not data.strip():
        raise UsageError(f"{path}: the file is empty; fix or remove it")
    return data


def load(path: Path) -> Any:
    """The one JSON document in ``path``.

    Raises UsageError when the file cannot be read or is empty, ValueError saying why it is not JSON.
    """
    return _loads(read_bytes(path), 0)


def documents(path: Path) -> Iterator[Document]:
    """The JSON document in ``path``, or one per non-blank line when it holds several (JSON lines).

    Lines are read one at a time, so the documents before a bad line are yielded before the
    ValueError naming it. Raises UsageError when the file cannot be read or is empty.
    """
    data = read_bytes(path)
    try:
        value = _loads(data, 0)
    except _NotJson as exc:
        if exc.reason != "Extra data":  # one broken document, not several documents
            raise
    else:
        yield Document(0, data, value)
        return
    for number, line in enumerate(data.splitlines(), 1):
        if line.strip():
            yield Document(number, line, _loads(line, number))


class _NotJson(ValueError):
    """A document that is not JSON: why, and where in the file when that is known."""

    def __init__(self, reason: str, line: int = 0, column: int = 0) -> None:
        where = (f": line {line}" + (f" column {column}" if column else "")) if line else ""
        super().__init__(reason + where)
        self.reason = reason


def _loads(text: bytes, line: int) -> Any:
    """Parse ``text`` (the file, or its line ``line``); positions in errors are the file's."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _NotJson(exc.msg, line or exc.lineno, exc.colno) from None
    except RecursionError:
        # Python's reader recurses once per level and gives up at about a thousand.
        raise _NotJson("JSON nested too deeply to read", line) from None
