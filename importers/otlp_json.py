"""OTLP/JSON files (an ``ExportTraceServiceRequest`` per file, or one per line) into span rows.

The collector's decoder and ingest normalisation read them, so a file imports exactly as the
same request sent to ``handoffs collect`` would be stored. Each resource gets ``handoffs.source_id`` = the file's stem
unless it already carries one, and ``handoffs.source_format`` = ``otlp-json``. Invalid spans are
left out with a warning naming the file (the collector's partial success); an unreadable file,
or one with no valid span, stops the import with a ``UsageError`` naming it. Spans already
stored are left out (``unstored``), so importing a file twice stores it once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from handoffs import conventions as conv
from handoffs.collector import otlp
from handoffs.collector.normalise import normalise_decoded
from handoffs.errors import UsageError
from handoffs.store import Store, schema

from . import expand, jsonfile
from .jsonfile import STDIN

log = logging.getLogger(__name__)

FORMAT = "otlp-json"
SUFFIXES = (".json", ".jsonl", ".ndjson")
BATCH_ROWS = 10_000


def load(paths: Iterable[str | Path], batch_rows: int = BATCH_ROWS) -> Iterator[pa.Table]:
    """Span rows (Arrow tables of about ``batch_rows``) from OTLP/JSON files or directories.

    When a file or line cannot be read, the rows read before it are yielded before the
    UsageError naming it, so that they can be stored.
    """
    pending: list[pa.Table] = []
    rows = 0
    try:
        for path in expand(paths, SUFFIXES):
            for table in _read_file(path):
                pending.append(table)
                rows += table.num_rows
                if rows >= batch_rows:
                    yield pa.concat_tables(pending)
                    pending, rows = [], 0
    except UsageError:
        if pending:
            yield pa.concat_tables(pending)
        raise
    if pending:
        yield pa.concat_tables(pending)


def unstored(store: Store, table: pa.Table) -> pa.Table:
    """``table`` without the spans already stored or earlier in it, by (TraceId, SpanId).

    Importing a file twice, or files that overlap, thus stores each span once. One lookup per
    batch by trace id, which is the span table's sort key.
    """
    if not table.num_rows:
        return table
    trace_ids = pc.unique(table.column("TraceId"))
    stored = store.query_arrow(
        f"SELECT TraceId, SpanId FROM {schema.SPAN_TABLE} WHERE TraceId IN {{ids:Array(String)}}",
        {"ids": trace_ids.to_pylist()})
    keys = pc.binary_join_element_wise(table.column("TraceId"), table.column("SpanId"), ":")
    position = pa.array(range(table.num_rows), pa.int64())
    first = pa.table({"key": keys, "position": position}).group_by("key").aggregate(
        [("position", "min")]).column("position_min").combine_chunks()
    keep = pc.is_in(position, value_set=first)
    if stored.num_rows:
        stored_keys = pc.binary_join_element_wise(stored.column("TraceId"), stored.column("SpanId"), ":")
        keep = pc.and_(keep, pc.invert(pc.is_in(keys, value_set=stored_keys.combine_chunks())))
    return table.filter(keep)


def _documents(path: Path) -> Iterator[bytes]:
    """One request per file, or one per non-empty line (JSON lines)."""
    try:
        for document in jsonfile.documents(path):
            _check_request(document.value, f"{path}:{document.line}" if document.line else str(path))
            yield document.text
    except ValueError as exc:
        raise UsageError(f"{path}: not OTLP/JSON ({exc}); fix or remove this file") from None


def _check_request(document: object, where: str) -> None:
    """Refuse JSON that is not a trace export request: OTLP's parser ignores unknown fields, so
    any other JSON object (another tool's log) would import as zero spans without a word."""
    if not isinstance(document, dict) or not ({"resourceSpans", "resource_spans"} & document.keys()):
        raise UsageError(f"{where}: not OTLP/JSON (no resourceSpans); is it another format? "
                         "See `handoffs import --help` for who-and-when and mast")


def _read_file(path: Path) -> Iterator[pa.Table]:
    """The accepted spans of one file; UsageError when it has spans and none of them is valid."""
    accepted, rejected, errors = 0, 0, []
    for document in _documents(path):
        try:
            body = otlp.json_to_protobuf(document)
        except otlp.DecodeFailure as exc:
            raise UsageError(f"{path}: {exc}") from None
        request = ExportTraceServiceRequest.FromString(body)
        _label(request, "stdin" if path == STDIN else path.stem)
        labelled = request.SerializeToString()
        if isinstance(body, otlp.JsonRequest):  # keep what it knows of ids that are not hex
            labelled = otlp.JsonRequest(labelled, body.not_hex)
        decoded = otlp.decode_protobuf(labelled)
        accepted += decoded.accepted
        rejected += decoded.rejected
        errors.extend(decoded.errors)
        if decoded.accepted:
            yield normalise_decoded(decoded)
    if rejected and not accepted:
        raise UsageError(f"{path}: none of its {rejected} span(s) is valid: {'; '.join(errors[:3])}; "
                         "fix or remove this file")
    if rejected:
        log.warning("%s: %d invalid span(s) left out: %s", path, rejected, "; ".join(errors[:3]))


def _label(request: ExportTraceServiceRequest, source_id: str) -> None:
    """Mark every resource with the file it came from, unless it says where it came from."""
    for rs in request.resource_spans:
        keys = {kv.key for kv in rs.resource.attributes}
        if conv.RESOURCE_SOURCE_ID not in keys:
            rs.resource.attributes.append(KeyValue(key=conv.RESOURCE_SOURCE_ID,
                                                   value=AnyValue(string_value=source_id)))
        if conv.RESOURCE_SOURCE_FORMAT not in keys:
            rs.resource.attributes.append(KeyValue(key=conv.RESOURCE_SOURCE_FORMAT,
                                                   value=AnyValue(string_value=FORMAT)))
