"""Published multi-agent logs into span rows: Who&When and MAST/MAD conversation logs.

    from handoffs.importers import read, write
    result = write(store, read("who-and-when", paths))

Each record becomes one trace (a run span and one ``message`` span per message), keyed by the
dataset's own id (``handoffs.source_id``) within the part of the dataset that numbers it
(``Conversation.scope``); labels in the datasets are never imported.
OTLP JSON files are read by ``handoffs.importers.otlp_json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from handoffs.errors import UsageError

from . import mast, who_and_when
from .conversation import Conversation, ImportedMessage, ImportResult, split_speaker, write
from .jsonfile import STDIN

# Text formats: name -> reader of one file.
READERS: dict[str, Callable[[Path], Iterator[Conversation]]] = {
    who_and_when.FORMAT: who_and_when.read,
    mast.FORMAT: mast.read,
}
# name -> the suffixes its reader reads, which are the files it takes from a directory.
SUFFIXES: dict[str, tuple[str, ...]] = {
    who_and_when.FORMAT: who_and_when.SUFFIXES,
    mast.FORMAT: mast.SUFFIXES,
}

__all__ = ["Conversation", "ImportResult", "ImportedMessage", "READERS", "SUFFIXES", "files", "read",
           "split_speaker", "write"]


def read(fmt: str, paths: Iterable[str | Path]) -> Iterator[Conversation]:
    """Conversations of every file in ``paths``, in order (``files`` says which).

    Raises UsageError naming the first file that cannot be read (after yielding the earlier ones).
    """
    for path in files(fmt, paths):
        yield from READERS[fmt](path)


def files(fmt: str, paths: Iterable[str | Path]) -> list[Path]:
    """The files of ``paths`` that format ``fmt`` reads: those named, and in directories named,
    those with one of its suffixes."""
    if fmt not in READERS:
        raise UsageError(f"unknown format {fmt!r}; use one of: {', '.join(sorted(READERS))}")
    paths = list(paths)
    if any(Path(p) == STDIN for p in paths):
        raise UsageError(f"{fmt} records are named by their file (its name is the record's id): "
                         "save them to files and import those; only otlp-json reads standard input (-)")
    return expand(paths, SUFFIXES[fmt])


def expand(paths: Iterable[str | Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Files named, and the files of directories named whose suffix is one of ``suffixes``,
    sorted. A directory with none of them is an error: importing nothing is never the intent."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in suffixes and f.is_file())
            if not found:
                raise UsageError(f"{p}: no {' or '.join('*' + s for s in suffixes)} files in this directory")
            files.extend(found)
        elif p.exists() or p == STDIN:
            files.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    return files
