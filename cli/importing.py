"""``handoffs import FORMAT PATH...``: published logs and OTLP JSON files into the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from handoffs import importers
from handoffs.errors import UsageError
from handoffs.store import SpanBatch, Store, expired, open_store

from .options import store_option

OTLP_JSON = "otlp-json"
FORMATS = (OTLP_JSON, *sorted(importers.READERS))


def _progress() -> Progress:
    # On stderr, and only on a terminal: stdout stays the summary line scripts read.
    console = Console(stderr=True)
    return Progress(TextColumn("[bold]import[/] {task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                    transient=True, disable=not console.is_terminal)


class _SpanInserter:
    """Inserts what ``otlp_json.load`` returns (span rows, or an iterable of them), leaving out
    the spans the store's retention would delete on arrival and those already stored, and
    counting them."""

    def __init__(self, store: Store) -> None:
        from handoffs.importers import otlp_json  # here: the other formats need no collector decoder

        self.unstored = otlp_json.unstored
        self.store = store
        self.ttl_days = store.span_ttl_days()
        self.expired = 0
        self.inserted = 0
        self.already = 0

    def insert(self, loaded: Any) -> int:
        if isinstance(loaded, int):
            return loaded
        if isinstance(loaded, SpanBatch):
            loaded = loaded.to_arrow()
        if isinstance(loaded, pa.Table):
            if self.ttl_days is not None and loaded.num_rows:
                old = expired(loaded, self.ttl_days)
                count = pc.sum(old).as_py() or 0
                if count:
                    self.expired += count
                    loaded = loaded.filter(pc.invert(old))
            new = self.unstored(self.store, loaded)
            self.already += loaded.num_rows - new.num_rows
            inserted = self.store.insert_spans(new) if new.num_rows else 0
            self.inserted += inserted
            return inserted
        return sum(self.insert(part) for part in loaded)


def _stopped(exc: UsageError, kept: int, what: str) -> UsageError:
    """The error that stopped an import, saying what was stored before it, if anything."""
    done = f" ({kept} {what} before it were imported; importing again stores them once)" if kept else ""
    return UsageError(f"{exc}{done}")


@click.command("import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(FORMATS))
@click.argument("paths", metavar="PATH...", nargs=-1, required=True,
                type=click.Path(exists=True, allow_dash=True, path_type=Path))
@store_option
def import_(fmt: str, paths: tuple[Path, ...], store_url: str | None) -> None:
    """Import logs: FORMAT is otlp-json, who-and-when or mast; a PATH may be a directory,
    or - for standard input (otlp-json: `... | handoffs import otlp-json -`).

    Each record keeps its own id as handoffs.source_id and each message's index as its step.
    A file that cannot be read stops the import with one line naming it (exit 2); the files
    before it stay imported, and importing a record twice stores it once.
    """
    store = open_store(store_url)
    try:
        if fmt == OTLP_JSON:
            from handoffs.importers import otlp_json

            inserter = _SpanInserter(store)
            try:
                spans = inserter.insert(otlp_json.load(list(paths)))
            except UsageError as exc:
                raise _stopped(exc, inserter.inserted, "span(s)") from exc
            already = f", {inserter.already} already stored" if inserter.already else ""
            click.echo(f"imported {spans} spans from {len(paths)} path(s){already}")
            if inserter.expired:
                click.echo(f"handoffs: left out {inserter.expired} span(s) that started more than "
                           f"{inserter.ttl_days} days ago: the store's retention would delete them on "
                           "arrival. Keep them with `handoffs migrate --ttl-days 0` (or a longer "
                           "retention), then import again", err=True)
            return
        files = importers.files(fmt, paths)
        result = importers.ImportResult()
        with _progress() as progress:
            task = progress.add_task(fmt, total=len(files))

            def conversations() -> Iterator[importers.Conversation]:
                for path in files:
                    progress.update(task, description=f"{fmt} {path.name}")
                    yield from importers.READERS[fmt](path)
                    progress.advance(task)

            try:
                importers.write(store, conversations(), result=result)
            except UsageError as exc:
                raise _stopped(exc, result.conversations, "trace(s)") from exc
        skipped = f", {result.skipped} already stored" if result.skipped else ""
        click.echo(f"imported {result.conversations} traces ({result.spans} spans) "
                   f"from {len(files)} file(s){skipped}")
    finally:
        store.close()
