"""OTLP/JSON files (an ``ExportTraceServiceRequest`` per file, or one per line) into span rows.

The collector's decoder and ingest normalisation read them, so a file imports exactly as the
same request sent to ``handoffs collect`` would be stored. Each resource gets ``handoffs.source_id`` = the file's stem
unless it already carries one, and ``handoffs.source_format`` = ``otlp-json``. Invalid spans are
left out with a warning naming the file (the collector's partial success); an unreadable file
stops the import with a ``UsageError`` naming it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from handoffs import conventions as conv
from handoffs.collector import otlp
from handoffs.collector.normalise import normalise_decoded
from handoffs.errors import UsageError

from . import expand

log = logging.getLogger(__name__)

FORMAT = "otlp-json"
SUFFIXES = (".json", ".jsonl", ".ndjson")
BATCH_ROWS = 10_000


def load(paths: Iterable[str | Path], batch_rows: int = BATCH_ROWS) -> Iterator[pa.Table]:
    """Span rows (Arrow tables of about ``batch_rows``) from OTLP/JSON files or directories."""
    pending: list[pa.Table] = []
    rows = 0
    for path in expand(paths, SUFFIXES):
        for table in _read_file(path):
            pending.append(table)
            rows += table.num_rows
            if rows >= batch_rows:
                yield pa.concat_tables(pending)
                pending, rows = [], 0
    if pending:
        yield pa.concat_tables(pending)


def _documents(path: Path) -> Iterator[bytes]:
    """One request per file, or one per non-empty line (JSON lines)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        _check_request(json.loads(data), str(path))
        yield data
        return
    except (ValueError, UnicodeDecodeError) as exc:
        if "Extra data" not in str(exc):
            raise UsageError(f"{path}: not OTLP/JSON ({exc})") from None
    for number, line in enumerate(data.splitlines(), 1):
        if line.strip():
            yield _with_location(line, path, number)


def _with_location(line: bytes, path: Path, number: int) -> bytes:
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}:{number}: not a JSON object ({exc})") from None
    _check_request(document, f"{path}:{number}")
    return line


def _check_request(document: object, where: str) -> None:
    """Refuse JSON that is not a trace export request: OTLP's parser ignores unknown fields, so
    any other JSON object (another tool's log) would import as zero spans without a word."""
    if not isinstance(document, dict) or not ({"resourceSpans", "resource_spans"} & document.keys()):
        raise UsageError(f"{where}: not OTLP/JSON (no resourceSpans); is it another format? "
                         "See `handoffs import --help` for who-and-when and mast")


def _read_file(path: Path) -> Iterator[pa.Table]:
    rejected, errors = 0, []
    for document in _documents(path):
        try:
            request = ExportTraceServiceRequest.FromString(otlp.json_to_protobuf(document))
        except otlp.DecodeFailure as exc:
            raise UsageError(f"{path}: {exc}") from None
        _label(request, path.stem)
        decoded = otlp.decode_protobuf(request.SerializeToString())
        rejected += decoded.rejected
        errors.extend(decoded.errors)
        if decoded.accepted:
            yield normalise_decoded(decoded)
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
