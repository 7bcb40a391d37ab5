"""OTLP trace requests (protobuf or OTLP/JSON) into span rows, with validation per span.

One decoder for the collector and the OTLP/JSON importer. A request decodes into an Arrow
table in ``SPAN_ARROW_SCHEMA`` plus the spans it rejected and why, so a partly bad request keeps
its good spans (OTLP partial success). Values are rendered as the OpenTelemetry Collector's
ClickHouse exporter stores them: ints, floats and bools as strings, arrays and kvlists as JSON,
bytes as base64, hex ids, enum names ("Server", "Error").

Two implementations give identical rows: a C extension (``_otlp``) that walks the protobuf wire
format straight into Arrow buffers, with no Python object per span (the fast path), and the
pure-Python one below on the protobuf runtime (the reference, used when the extension is not
built). Tests compare the two on generated requests.
"""

from __future__ import annotations

import base64
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from handoffs import conventions as conv
from handoffs.errors import UsageError
from handoffs.store.spans import SPAN_ARROW_SCHEMA, SPAN_KINDS, STATUS_CODES, Event, Link, SpanBatch

try:  # the compiled fast path; the reference below runs when it was not built
    from . import _otlp  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _otlp = None

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

MAX_TIMESTAMP_NS = 2**63 - 1  # DateTime64(9) ends in 2262; OTLP's uint64 goes further
_MAX_ERRORS = 5


class DecodeFailure(UsageError):
    """The whole request is unreadable (not protobuf, not JSON, not OTLP): HTTP 400."""


@dataclass(frozen=True)
class Limits:
    """What a single span may carry. Longer strings are truncated; the rest is rejected."""

    max_value_bytes: int = 64 * 1024  # a string attribute value is cut to this many bytes
    max_key_bytes: int = 1024  # a longer attribute key rejects the span
    max_depth: int = 8  # nesting of array / kvlist values; deeper rejects the span


DEFAULT_LIMITS = Limits()


@dataclass
class Decoded:
    """The rows of one request, and what was left out of it."""

    table: pa.Table
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    # Rows without ``handoff.span.type``: spans of other instrumentations, to be normalised.
    foreign: list[int] = field(default_factory=list)
    truncated: int = 0  # attribute values cut to ``Limits.max_value_bytes``
    # Of ``rejected``: valid spans left out as a group (``without``), each group told in ``notes``.
    left_out: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.table.num_rows

    def without(self, drop: pa.ChunkedArray | pa.Array, note: str) -> Decoded:
        """These rows with those marked in ``drop`` left out and counted as rejected, ``note``
        saying why; itself when none is marked."""
        count = int(pc.sum(drop).as_py() or 0)  # vectorised: most requests leave nothing out
        if not count:
            return self
        marked = drop.to_pylist()
        position, kept = {}, 0
        for i, d in enumerate(marked):
            if not d:
                position[i] = kept
                kept += 1
        return Decoded(table=self.table.filter(pa.array([not d for d in marked])),
                       rejected=self.rejected + count, errors=self.errors,
                       foreign=[position[i] for i in self.foreign if i in position],
                       truncated=self.truncated, left_out=self.left_out + count,
                       notes=[*self.notes, f"{count} {note}"])

    def error_message(self) -> str:
        """One line for OTLP's ``partial_success.error_message``."""
        if not self.rejected:
            return ""
        parts = []
        if self.errors:
            more = self.rejected - self.left_out - len(self.errors)
            parts.append("; ".join(self.errors) + (f"; and {more} more" if more > 0 else ""))
        return f"{self.rejected} span(s) rejected: " + "; ".join(parts + self.notes)


def accelerated() -> bool:
    """True when the compiled decoder is in use."""
    return _otlp is not None


def decode_protobuf(data: bytes, project: str | None = None, limits: Limits = DEFAULT_LIMITS,
                    reference: bool = False) -> Decoded:
    """Decode an ``ExportTraceServiceRequest`` in protobuf. ``project`` overrides the client's.

    Raises ``DecodeFailure`` when the body is not a readable request at all.
    """
    if _otlp is not None and not reference:
        decoded = _decode_native(data, project, limits)
    else:
        try:
            request = ExportTraceServiceRequest.FromString(data)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise DecodeFailure(f"the body is not a valid OTLP ExportTraceServiceRequest in protobuf: "
                                f"{exc or type(exc).__name__}") from None
        decoded = _decode_message(request, project, limits)
    if isinstance(data, JsonRequest):
        _say_not_hex(decoded, data.not_hex)
    return decoded


class JsonRequest(bytes):
    """A request converted from OTLP/JSON that had ids which are not hex, and which spans
    (index -> id name -> value): the decoder rejects those spans for the length of their id,
    and ``decode_protobuf`` says instead that the id is not hex."""

    not_hex: dict[int, dict[str, str]]

    def __new__(cls, data: bytes, not_hex: dict[int, dict[str, str]]) -> JsonRequest:
        self = super().__new__(cls, data)
        self.not_hex = not_hex
        return self


def json_to_protobuf(data: bytes) -> bytes:
    """OTLP/JSON (hex ids, lowerCamelCase, int64 as strings) to the same request in protobuf;
    a ``JsonRequest`` when some id is not hex."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeFailure(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeFailure("the body is not an OTLP/JSON ExportTraceServiceRequest (expected an object)")
    not_hex: dict[int, dict[str, str]] = {}
    try:
        _hex_ids_to_base64(doc, not_hex)
        request = json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, AttributeError, ValueError, RecursionError) as exc:
        raise DecodeFailure(f"the body is not an OTLP/JSON ExportTraceServiceRequest: "
                            f"{str(exc)[:300]}") from None
    body = request.SerializeToString()
    return JsonRequest(body, not_hex) if not_hex else body  # no copy in the usual case


def decode_json(data: bytes, project: str | None = None, limits: Limits = DEFAULT_LIMITS,
                reference: bool = False) -> Decoded:
    """Decode an OTLP/JSON ``ExportTraceServiceRequest``."""
    return decode_protobuf(json_to_protobuf(data), project, limits, reference)


def decode(data: bytes, content_type: str, project: str | None = None,
           limits: Limits = DEFAULT_LIMITS) -> Decoded:
    """Decode a body of either OTLP encoding, by its media type."""
    if content_type == JSON:
        return decode_json(data, project, limits)
    return decode_protobuf(data, project, limits)


# --- OTLP/JSON ids: hex in JSON, bytes in protobuf ----------------------------------------------

# JSON key -> what an error calls it, in the order the decoder checks them.
_ID_NAMES = {"traceId": "trace id", "trace_id": "trace id", "spanId": "span id", "span_id": "span id",
             "parentSpanId": "parent span id", "parent_span_id": "parent span id"}
_ID_KEYS = set(_ID_NAMES)
_ID_ORDER = ("trace id", "span id", "parent span id", "link trace id", "link span id")
_ERROR_LABEL = re.compile(r"span #(\d+)(?: [0-9a-f]+)?")


def _hex_ids_to_base64(doc: dict[str, Any], not_hex: dict[int, dict[str, str]]) -> None:
    """Rewrite hex ids into proto3 JSON's base64 in place; a bad id becomes one byte (its span is
    rejected later), and an id that is not hex is noted in ``not_hex`` under its span's index."""
    index = -1  # counted as the decoder counts spans, for its error labels
    for rs in _items(doc, "resourceSpans", "resource_spans"):
        for ss in _items(rs, "scopeSpans", "scope_spans"):
            for span in _items(ss, "spans"):
                index += 1
                _fix_ids(span, index, "", not_hex)
                for link in _items(span, "links"):
                    _fix_ids(link, index, "link ", not_hex)


def _items(obj: Any, *keys: str) -> list[Any]:
    if not isinstance(obj, dict):
        return []
    for key in keys:
        value = obj.get(key)
        if isinstance(value, list):
            return value
    return []


def _fix_ids(obj: Any, index: int, prefix: str, not_hex: dict[int, dict[str, str]]) -> None:
    if not isinstance(obj, dict):
        return
    for key in _ID_KEYS & obj.keys():
        value = obj[key]
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            raw = b"\x00"  # not hex: a one-byte id, which the decoder rejects with its span
            not_hex.setdefault(index, {})[prefix + _ID_NAMES[key]] = value
        obj[key] = base64.b64encode(raw).decode()


def _say_not_hex(decoded: Decoded, not_hex: dict[int, dict[str, str]]) -> None:
    """Reword the decoder's errors for spans with ids that are not hex: its "trace id must be 16
    bytes, got 1" is true of the placeholder, not of what the client sent."""
    for i, error in enumerate(decoded.errors):
        label, _, _ = error.partition(": ")
        match = _ERROR_LABEL.fullmatch(label)
        ids = not_hex.get(int(match.group(1))) if match else None
        if ids:
            names = [name for name in _ID_ORDER if name in ids]
            shown = ids[names[0]]
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            which = f"{names[0]} is" if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]} are"
            decoded.errors[i] = f"{label}: {which} not hex ({shown!r}): OTLP/JSON ids are hex strings, not base64"


# --- responses ----------------------------------------------------------------------------------

def response_body(decoded: Decoded | None, content_type: str) -> bytes:
    """An ``ExportTraceServiceResponse`` in the request's encoding, with partial success if any."""
    response = ExportTraceServiceResponse()
    if decoded is not None and decoded.rejected:
        response.partial_success.CopyFrom(ExportTracePartialSuccess(
            rejected_spans=decoded.rejected, error_message=decoded.error_message()))
    if content_type == JSON:
        return json_format.MessageToJson(response, indent=None).encode()
    return response.SerializeToString()


def status_body(message: str, code: int, content_type: str) -> bytes:
    """A ``google.rpc.Status`` for an error response, in the request's encoding."""
    from google.rpc.status_pb2 import Status

    status = Status(code=code, message=message)
    if content_type == JSON:
        return json_format.MessageToJson(status, indent=None).encode()
    return status.SerializeToString()


# --- value rendering (the C extension follows these rules byte for byte) --------------------------

def format_double(value: float) -> str:
    """The shortest ``%.Ng`` (N = 15..17) that reads back as ``value``; NaN/Infinity spelled out."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    for precision in (15, 16, 17):
        text = f"{value:.{precision}g}"
        if float(text) == value:
            return text
    return text  # unreachable: 17 significant digits always read back


class _Reject(Exception):
    """A span breaks a rule; the message says which and how to fix it."""


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _json_value(value: AnyValue, depth: int, limits: Limits) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return _json_string(value.string_value)
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        d = value.double_value
        return _json_string(format_double(d)) if math.isnan(d) or math.isinf(d) else format_double(d)
    if kind == "bytes_value":
        return _json_string(base64.b64encode(value.bytes_value).decode())
    if kind in ("array_value", "kvlist_value"):
        if depth >= limits.max_depth:
            raise _Reject(f"an attribute value nests arrays/maps deeper than {limits.max_depth} levels")
        if kind == "array_value":
            return "[" + ",".join(_json_value(v, depth + 1, limits) for v in value.array_value.values) + "]"
        return "{" + ",".join(_json_string(kv.key) + ":" + _json_value(kv.value, depth + 1, limits)
                              for kv in value.kvlist_value.values) + "}"
    return "null"


class _Renderer:
    """Renders AnyValues to strings under ``limits`` and counts truncations."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.truncated = 0

    def value(self, value: AnyValue) -> str:
        kind = value.WhichOneof("value")
        if kind == "string_value":
            return self.cut(value.string_value)
        if kind == "int_value":
            return str(value.int_value)
        if kind == "bool_value":
            return "true" if value.bool_value else "false"
        if kind == "double_value":
            return format_double(value.double_value)
        if kind == "bytes_value":
            return base64.b64encode(value.bytes_value).decode()
        if kind in ("array_value", "kvlist_value"):
            text = _json_value(value, 0, self.limits)
            if len(text.encode()) > self.limits.max_value_bytes:
                raise _Reject(f"an array/map attribute value is over {self.limits.max_value_bytes} bytes "
                              "as JSON; send less")
            return text
        return ""

    def cut(self, text: str) -> str:
        limit = self.limits.max_value_bytes
        if len(text) * 4 <= limit:
            return text
        raw = text.encode()
        if len(raw) <= limit:
            return text
        self.truncated += 1
        return raw[:limit].decode("utf-8", "ignore")

    def attributes(self, kvs: Any) -> list[tuple[str, str]]:
        out = []
        for kv in kvs:
            if len(kv.key.encode()) > self.limits.max_key_bytes:
                raise _Reject(f"an attribute key is over {self.limits.max_key_bytes} bytes")
            out.append((kv.key, self.value(kv.value)))
        return out


def _hex_id(raw: bytes, size: int, what: str, optional: bool = False) -> str:
    if optional and not raw:
        return ""
    if len(raw) != size:
        raise _Reject(f"{what} must be {size} bytes, got {len(raw)}")
    if raw == bytes(size):
        raise _Reject(f"{what} is all zeros, which OTLP forbids")
    return raw.hex()


def _check_time(ns: int, what: str, allow_zero: bool) -> None:
    if (ns == 0 and not allow_zero) or ns > MAX_TIMESTAMP_NS:
        raise _Reject(f"{what} {ns} is out of range (nanoseconds since 1970, before 2262)")


def _span_label(span: Any, index: int) -> str:
    return f"span #{index}" + (f" {span.span_id.hex()}" if len(span.span_id) == 8 else "")


def _decode_message(request: ExportTraceServiceRequest, project: str | None, limits: Limits) -> Decoded:
    batch = SpanBatch()
    render = _Renderer(limits)
    rejected, errors, foreign = 0, [], []
    index = -1
    for rs in request.resource_spans:
        try:
            resource = render.attributes(rs.resource.attributes)
            resource_error = None
        except _Reject as exc:
            resource, resource_error = [], f"resource: {exc}"
        if project is not None:
            resource = [kv for kv in resource if kv[0] != conv.RESOURCE_PROJECT]
            resource.append((conv.RESOURCE_PROJECT, project))
        service = ""
        for key, value in resource:
            if key == conv.SERVICE_NAME:
                service = value
                break
        for ss in rs.scope_spans:
            scope_name, scope_version = ss.scope.name, ss.scope.version
            for span in ss.spans:
                index += 1
                try:
                    if resource_error:
                        raise _Reject(resource_error)
                    row = _span_row(span, render)
                except _Reject as exc:
                    rejected += 1
                    if len(errors) < _MAX_ERRORS:
                        errors.append(f"{_span_label(span, index)}: {exc}")
                    continue
                attributes, events, links, trace_id, span_id, parent = row
                if not any(k == conv.SPAN_TYPE for k, _ in attributes):
                    foreign.append(len(batch))
                batch.append(
                    trace_id=trace_id, span_id=span_id, parent_span_id=parent,
                    trace_state=render.cut(span.trace_state), name=render.cut(span.name),
                    kind=SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else SPAN_KINDS[0],
                    start_ns=span.start_time_unix_nano,
                    duration_ns=max(0, span.end_time_unix_nano - span.start_time_unix_nano),
                    service_name=service, resource_attributes=_Pairs(resource),
                    attributes=_Pairs(attributes),
                    status_code=(STATUS_CODES[span.status.code]
                                 if 0 <= span.status.code < len(STATUS_CODES) else STATUS_CODES[0]),
                    status_message=render.cut(span.status.message),
                    scope_name=render.cut(scope_name), scope_version=render.cut(scope_version),
                    events=events, links=links,
                )
    return Decoded(batch.to_arrow(), rejected, errors, foreign, render.truncated)


class _Pairs(Mapping[str, str]):
    """Key/value pairs kept in order, duplicates included, for ``SpanBatch.append``."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def items(self) -> Any:  # type: ignore[override]
        return self.pairs

    def __getitem__(self, key: str) -> str:
        for k, v in self.pairs:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Any:
        return (k for k, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


def _span_row(span: Any, render: _Renderer) -> tuple:
    trace_id = _hex_id(span.trace_id, 16, "trace id")
    span_id = _hex_id(span.span_id, 8, "span id")
    parent = _hex_id(span.parent_span_id, 8, "parent span id", optional=True)
    _check_time(span.start_time_unix_nano, "start time", allow_zero=False)
    _check_time(span.end_time_unix_nano, "end time", allow_zero=True)
    attributes = render.attributes(span.attributes)
    events = []
    for ev in span.events:
        _check_time(ev.time_unix_nano, "event time", allow_zero=True)
        events.append(Event(ev.time_unix_nano, render.cut(ev.name), _Pairs(render.attributes(ev.attributes))))
    links = []
    for lk in span.links:
        links.append(Link(_hex_id(lk.trace_id, 16, "link trace id"), _hex_id(lk.span_id, 8, "link span id"),
                          render.cut(lk.trace_state), _Pairs(render.attributes(lk.attributes))))
    return attributes, events, links, trace_id, span_id, parent


# --- the compiled decoder's buffers into Arrow --------------------------------------------------

_STRING_COLUMNS = ("TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind",
                   "ServiceName", "ScopeName", "ScopeVersion", "StatusCode", "StatusMessage")


def _strings(offsets: bytes, data: bytes, n: int) -> pa.Array:
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _offsets(raw: bytes, n: int) -> pa.Array:
    return pa.Array.from_buffers(pa.int32(), n + 1, [None, pa.py_buffer(raw)])


def _map(bufs: dict[str, bytes], prefix: str, n: int) -> pa.Array:
    """A Map(String, String) column from list offsets and key/value string buffers."""
    offsets = _offsets(bufs[prefix + ".offsets"], n)
    m = len(bufs[prefix + ".key.offsets"]) // 4 - 1
    keys = _strings(bufs[prefix + ".key.offsets"], bufs[prefix + ".key.data"], m)
    values = _strings(bufs[prefix + ".value.offsets"], bufs[prefix + ".value.data"], m)
    return pa.MapArray.from_arrays(offsets, keys, values)


def _list(offsets: bytes, values: pa.Array, n: int) -> pa.Array:
    return pa.ListArray.from_arrays(_offsets(offsets, n), values)


def _decode_native(data: bytes, project: str | None, limits: Limits) -> Decoded:
    try:
        n, rejected, errors, foreign, truncated, bufs = _otlp.decode(
            data, project, limits.max_value_bytes, limits.max_key_bytes, limits.max_depth)
    except ValueError as exc:
        raise DecodeFailure(f"the body is not a valid OTLP ExportTraceServiceRequest in protobuf: {exc}") from None
    columns: dict[str, pa.Array] = {}
    columns["Timestamp"] = pa.Array.from_buffers(pa.timestamp("ns"), n, [None, pa.py_buffer(bufs["Timestamp"])])
    columns["Duration"] = pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(bufs["Duration"])])
    for name in _STRING_COLUMNS:
        columns[name] = _strings(bufs[name + ".offsets"], bufs[name + ".data"], n)
    columns["ResourceAttributes"] = _map(bufs, "ResourceAttributes", n)
    columns["SpanAttributes"] = _map(bufs, "SpanAttributes", n)
    n_events = len(bufs["Events.Timestamp.values"]) // 8
    ev_ts = pa.Array.from_buffers(pa.timestamp("ns"), n_events, [None, pa.py_buffer(bufs["Events.Timestamp.values"])])
    columns["Events.Timestamp"] = _list(bufs["Events.offsets"], ev_ts, n)
    columns["Events.Name"] = _list(bufs["Events.offsets"], _strings(
        bufs["Events.Name.offsets"], bufs["Events.Name.data"], n_events), n)
    columns["Events.Attributes"] = _list(bufs["Events.offsets"], _map(bufs, "Events.Attributes", n_events), n)
    n_links = len(bufs["Links.TraceId.offsets"]) // 4 - 1
    for name in ("TraceId", "SpanId", "TraceState"):
        columns["Links." + name] = _list(bufs["Links.offsets"], _strings(
            bufs[f"Links.{name}.offsets"], bufs[f"Links.{name}.data"], n_links), n)
    columns["Links.Attributes"] = _list(bufs["Links.offsets"], _map(bufs, "Links.Attributes", n_links), n)
    table = pa.Table.from_arrays([columns[f.name] for f in SPAN_ARROW_SCHEMA], schema=SPAN_ARROW_SCHEMA)
    return Decoded(table, rejected, list(errors), list(foreign), truncated)


# --- gzip, bounded ------------------------------------------------------------------------------

class BodyTooLarge(UsageError):
    """The body (or what it inflates to) is over the size limit: HTTP 413."""


def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing to produce more than ``limit`` bytes (gzip bombs)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecodeFailure(f"the body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"the body inflates to more than {limit} bytes; send smaller batches")
    if not inflater.eof:
        raise DecodeFailure("the gzip body is truncated")
    return out


__all__ = [
    "DEFAULT_LIMITS", "JSON", "PROTOBUF", "BodyTooLarge", "DecodeFailure", "Decoded", "Limits",
    "accelerated", "decode", "decode_json", "decode_protobuf", "format_double", "gunzip",
    "json_to_protobuf", "response_body", "status_body",
]
