"""``handoffs import FORMAT PATH...``: published logs and OTLP JSON files into the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from handoffs import importers
from handoffs.store import SpanBatch, Store, open_store

from .options import store_option

OTLP_JSON = "otlp-json"
FORMATS = (OTLP_JSON, *sorted(importers.READERS))


def _progress() -> Progress:
    # On stderr, and only on a terminal: stdout stays the summary line scripts read.
    console = Console(stderr=True)
    return Progress(TextColumn("[bold]import[/] {task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                    transient=True, disable=not console.is_terminal)


def _insert_loaded(store: Store, loaded: Any) -> int:
    """Insert what ``otlp_json.load`` returned: span rows, or an iterable of them."""
    if isinstance(loaded, int):
        return loaded
    if isinstance(loaded, (SpanBatch, pa.Table)):
        return store.insert_spans(loaded) if len(loaded) else 0
    return sum(_insert_loaded(store, part) for part in loaded)


@click.command("import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(FORMATS))
@click.argument("paths", metavar="PATH...", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@store_option
def import_(fmt: str, paths: tuple[Path, ...], store_url: str | None) -> None:
    """Import logs: FORMAT is otlp-json, who-and-when or mast; a PATH may be a directory.

    Each record keeps its own id as handoffs.source_id and each message's index as its step.
    A file that cannot be read stops the import with one line naming it (exit 2); the files
    before it stay imported, and importing a record twice stores it once.
    """
    store = open_store(store_url)
    try:
        if fmt == OTLP_JSON:
            from handoffs.importers import otlp_json

            spans = _insert_loaded(store, otlp_json.load(list(paths)))
            click.echo(f"imported {spans} spans from {len(paths)} path(s)")
            return
        files = importers.expand(paths)
        with _progress() as progress:
            task = progress.add_task(fmt, total=len(files))

            def conversations() -> Iterator[importers.Conversation]:
                for path in files:
                    progress.update(task, description=f"{fmt} {path.name}")
                    yield from importers.READERS[fmt](path)
                    progress.advance(task)

            result = importers.write(store, conversations())
        skipped = f", {result.skipped} already stored" if result.skipped else ""
        click.echo(f"imported {result.conversations} traces ({result.spans} spans) "
                   f"from {len(files)} file(s){skipped}")
    finally:
        store.close()
