"""The OTLP decoder: per-span validation, value rendering, and the compiled decoder agreeing with
the Python reference on thousands of generated requests (and surviving mutated bytes)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import sys
import threading
import time
import zlib

import pyarrow as pa
import pytest
from collector_helpers import random_request, request, to_otlp_json
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from handoffs import conventions as conv
from handoffs.collector import otlp

needs_c = pytest.mark.skipif(not otlp.accelerated(), reason="the compiled decoder is not built")
# Generated requests per property; HANDOFFS_FUZZ_SCALE=0.1 for a quick local run (CI runs 1.0).
SCALE = float(os.environ.get("HANDOFFS_FUZZ_SCALE", "1"))
SMALL = otlp.Limits(max_value_bytes=48, max_key_bytes=20, max_depth=3)


def test_round_trip_renders_values_like_the_otel_exporter() -> None:
    req = request(0, 0, 1)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.extend([
        KeyValue(key="f", value=AnyValue(double_value=0.1)),
        KeyValue(key="b", value=AnyValue(bool_value=True)),
        KeyValue(key="raw", value=AnyValue(bytes_value=b"\x00\xff")),
        KeyValue(key="arr", value=AnyValue(array_value=ArrayValue(values=[
            AnyValue(int_value=-3), AnyValue(string_value='q"\n'), AnyValue(double_value=float("nan"))]))),
        KeyValue(key="kv", value=AnyValue(kvlist_value=KeyValueList(values=[
            KeyValue(key="a", value=AnyValue(bool_value=False)), KeyValue(key="n")]))),
    ])
    span.kind = Span.SPAN_KIND_SERVER
    span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    span.events.add(time_unix_nano=5, name="e", attributes=[KeyValue(key="k", value=AnyValue(int_value=7))])
    for reference in (True, False) if otlp.accelerated() else (True,):
        row = otlp.decode_protobuf(req.SerializeToString(), reference=reference).table.to_pylist()[0]
        attrs = dict(row["SpanAttributes"])
        assert attrs["f"] == "0.1" and attrs["b"] == "true" and attrs["raw"] == "AP8="
        assert json.loads(attrs["arr"]) == [-3, 'q"\n', "NaN"]
        assert json.loads(attrs["kv"]) == {"a": False, "n": None}
        assert attrs[conv.STEP] == "0"
        assert row["SpanKind"] == "Server" and row["StatusCode"] == "Error" and row["StatusMessage"] == "boom"
        assert row["ServiceName"] == "svc" and row["ScopeName"] == "tests"
        assert row["TraceId"] == span.trace_id.hex() and len(row["SpanId"]) == 16
        assert row["Duration"] == 500 and row["Events.Name"] == ["e"]
        assert dict(row["Events.Attributes"][0]) == {"k": "7"}


@needs_c
def test_the_compiled_decoder_lets_other_threads_run() -> None:
    """While one request thread decodes, the others (HTTP, spool, writer) keep running: the
    main thread here must get steps in while the decoder works, which a held GIL forbids."""
    body = request(0, 0, 40_000).SerializeToString()
    inside: list[float] = []

    def decode() -> None:  # the compiled walk alone: wrapping its buffers in Arrow is Python
        limits = otlp.DEFAULT_LIMITS
        inside.append(time.perf_counter())
        otlp._otlp.decode(body, None, limits.max_value_bytes, limits.max_key_bytes, limits.max_depth)
        inside.append(time.perf_counter())

    worker = threading.Thread(target=decode)
    steps: list[float] = []
    # A long switch interval: the interpreter does not take the GIL from the decoding thread
    # between its first timestamp and the call, so only a decoder that lets go of it leaves room.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    try:
        worker.start()
        while worker.is_alive():
            steps.append(time.perf_counter())
    finally:
        sys.setswitchinterval(interval)
    begun, ended = inside
    assert any(begun < t < ended for t in steps), f"no step in {ended - begun:.3f} s of decoding"


@pytest.mark.parametrize("reference", [True, False])
def test_bad_spans_are_rejected_and_good_ones_kept(reference: bool) -> None:
    if not reference and not otlp.accelerated():
        pytest.skip("the compiled decoder is not built")
    req = request(1, 0, 6, bad={1})
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[2].span_id = b"\x00" * 8
    spans[3].start_time_unix_nano = 2**64 - 1
    spans[4].parent_span_id = b"\x01\x02"
    decoded = otlp.decode_protobuf(req.SerializeToString(), reference=reference)
    assert decoded.accepted == 2 and decoded.rejected == 4
    message = decoded.error_message()
    assert "trace id must be 16 bytes, got 3" in message
    assert "span id is all zeros" in message
    assert "start time 18446744073709551615 is out of range" in message
    assert "parent span id must be 8 bytes, got 2" in message
    assert [r["SpanName"] for r in decoded.table.to_pylist()] == ["span 0", "span 5"]


def test_rows_left_out_as_a_group_keep_the_rest_and_their_normalisation_marks() -> None:
    req = request(2, 0, 5, bad={0})
    spans = req.resource_spans[0].scope_spans[0].spans
    for i in (2, 4):  # spans of another instrumentation: no handoff.span.type
        del spans[i].attributes[:]
    decoded = otlp.decode_protobuf(req.SerializeToString())
    assert (decoded.accepted, decoded.rejected, decoded.foreign) == (4, 1, [1, 3])
    names = decoded.table.column("SpanName").to_pylist()
    kept = decoded.without(pa.array([name in ("span 1", "span 2") for name in names]), "were too old")
    assert kept.table.column("SpanName").to_pylist() == ["span 3", "span 4"]
    assert kept.foreign == [1]  # span 4, now the second row
    assert (kept.accepted, kept.rejected, kept.left_out) == (2, 3, 2)
    assert kept.error_message() == (
        "3 span(s) rejected: span #0 0000000300000001: trace id must be 16 bytes, got 3; 2 were too old")
    assert decoded.without(pa.array([False] * 4), "were too old") is decoded


@pytest.mark.parametrize("reference", [True, False])
def test_huge_values_are_truncated_and_deep_nesting_rejected(reference: bool) -> None:
    if not reference and not otlp.accelerated():
        pytest.skip("the compiled decoder is not built")
    req = request(2, 0, 3)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[0].attributes.add(key="big", value=AnyValue(string_value="é" * 100))
    deep = AnyValue(int_value=1)
    for _ in range(5):
        deep = AnyValue(array_value=ArrayValue(values=[deep]))
    spans[1].attributes.add(key="deep", value=deep)
    spans[2].attributes.add(key="k" * 21, value=AnyValue(string_value="v"))
    decoded = otlp.decode_protobuf(req.SerializeToString(), limits=SMALL, reference=reference)
    assert decoded.accepted == 1 and decoded.truncated == 1
    big = dict(decoded.table.to_pylist()[0]["SpanAttributes"])["big"]
    assert big == "é" * 24  # 48 bytes, cut on a character boundary
    assert "deeper than 3 levels" in decoded.error_message()
    assert "attribute key is over 20 bytes" in decoded.error_message()


@needs_c
def test_invalid_utf8_rejects_only_its_span_in_the_compiled_decoder() -> None:
    req = request(3, 0, 2)
    req.resource_spans[0].scope_spans[0].spans[0].name = "MARK"
    data = req.SerializeToString().replace(b"MARK", b"M\xffRK")
    decoded = otlp.decode_protobuf(data)
    assert decoded.accepted == 1 and decoded.rejected == 1
    assert "not valid UTF-8" in decoded.error_message()


def test_project_from_the_token_overrides_the_clients_claim() -> None:
    data = request(4, 0, 2, project="someone-else").SerializeToString()
    for reference in (True, False) if otlp.accelerated() else (True,):
        rows = otlp.decode_protobuf(data, project="mine", reference=reference).table.to_pylist()
        for row in rows:
            resource = row["ResourceAttributes"]
            assert [v for k, v in resource if k == conv.RESOURCE_PROJECT] == ["mine"]


def test_otlp_json_with_hex_ids_decodes_like_protobuf() -> None:
    req = request(5, 0, 3, bad={2})
    from_json = otlp.decode_json(to_otlp_json(req))
    from_pb = otlp.decode_protobuf(req.SerializeToString())
    assert from_json.table.equals(from_pb.table) and from_json.rejected == 1


def test_otlp_json_int64_as_strings_and_enum_ints() -> None:
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "x", "kind": 2, "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [{"key": "n", "value": {"intValue": "42"}}], "status": {"code": 2}}]}]}]}
    row = otlp.decode_json(json.dumps(doc).encode()).table.to_pylist()[0]
    assert row["SpanKind"] == "Server" and row["StatusCode"] == "Error"
    assert row["Duration"] == 10**9 and dict(row["SpanAttributes"]) == {"n": "42"}
    assert row["TraceId"] == "5b8efff798038103d269b633813fc60c"


def test_otlp_json_ids_that_are_not_hex_are_rejected_saying_so() -> None:
    # protobuf's own JSON mapping writes ids in base64; a hand-written id may be anything.
    doc = json_format.MessageToDict(request(6, 0, 3))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    base64_id = spans[0]["traceId"]  # as MessageToJson wrote it
    spans[1]["traceId"] = base64.b64decode(spans[1]["traceId"]).hex()
    spans[1]["spanId"] = "abc"
    spans[2]["traceId"] = base64.b64decode(spans[2]["traceId"]).hex()
    spans[2]["spanId"] = base64.b64decode(spans[2]["spanId"]).hex()
    body = json.dumps(doc).encode()
    for reference in (True, False) if otlp.accelerated() else (True,):
        decoded = otlp.decode_json(body, reference=reference)
        assert (decoded.accepted, decoded.rejected) == (1, 2)
        assert decoded.errors == [
            f"span #0: trace id and span id are not hex ({base64_id!r}): OTLP/JSON ids are hex strings, not base64",
            "span #1: span id is not hex ('abc'): OTLP/JSON ids are hex strings, not base64"]


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"resourceSpans": 3}', b"\xff\xfe", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "x"}]}]}]}'])
def test_unreadable_json_is_a_decode_failure(body: bytes) -> None:
    with pytest.raises(otlp.DecodeFailure):
        otlp.decode_json(body)


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x0b"])
def test_unreadable_protobuf_is_a_decode_failure(body: bytes) -> None:
    for reference in (True, False) if otlp.accelerated() else (True,):
        with pytest.raises(otlp.DecodeFailure):
            otlp.decode_protobuf(body, reference=reference)


def test_gunzip_is_bounded() -> None:
    bomb = gzip.compress(b"\x00" * (8 << 20))
    assert len(bomb) < 64 << 10
    with pytest.raises(otlp.BodyTooLarge):
        otlp.gunzip(bomb, 1 << 20)
    assert otlp.gunzip(gzip.compress(b"abc"), 10) == b"abc"
    with pytest.raises(otlp.DecodeFailure):
        otlp.gunzip(b"not gzip", 10)
    with pytest.raises(otlp.DecodeFailure):
        otlp.gunzip(gzip.compress(b"abcdef" * 100)[:-12], 10_000)
    assert zlib  # imported for readers: gzip framing is zlib's


# --- generated requests -------------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20) | st.sampled_from(
    ["", conv.SPAN_TYPE, "é" * 30, "\x00\n\t\"\\", "x" * 60])
ids16 = st.binary(min_size=16, max_size=16) | st.binary(max_size=20)
ids8 = st.binary(min_size=8, max_size=8) | st.binary(max_size=10)
times = st.integers(0, 2**64 - 1) | st.integers(1, 2**62)
scalar = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), text),
    st.builds(lambda i: AnyValue(int_value=i), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
    st.builds(lambda d: AnyValue(double_value=d), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=20)),
    st.just(AnyValue()),
)
any_value = st.recursive(scalar, lambda inner: st.one_of(
    st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(inner, max_size=3)),
    st.builds(lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])),
              st.lists(st.tuples(text, inner), max_size=3)),
), max_leaves=8)
key_values = st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v), text, any_value), max_size=4)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    span = Span(trace_id=draw(ids16), span_id=draw(ids8), parent_span_id=draw(st.just(b"") | ids8),
                trace_state=draw(text), name=draw(text), kind=draw(st.integers(-1, 7)),
                start_time_unix_nano=draw(times), end_time_unix_nano=draw(times),
                attributes=draw(key_values))
    if draw(st.booleans()):
        span.status.CopyFrom(Status(code=draw(st.integers(0, 4)), message=draw(text)))
    for _ in range(draw(st.integers(0, 2))):
        span.events.add(time_unix_nano=draw(times), name=draw(text), attributes=draw(key_values))
    for _ in range(draw(st.integers(0, 2))):
        span.links.add(trace_id=draw(ids16), span_id=draw(ids8), trace_state=draw(text),
                       attributes=draw(key_values))
    return span


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(draw(key_values))
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = draw(text), draw(text)
            ss.spans.extend(draw(st.lists(spans(), max_size=4)))
    return req


def _same(a: otlp.Decoded, b: otlp.Decoded) -> None:
    assert a.table.equals(b.table), (a.table.to_pylist(), b.table.to_pylist())
    assert (a.rejected, a.errors, a.foreign, a.truncated) == (b.rejected, b.errors, b.foreign, b.truncated)


@needs_c
@settings(max_examples=max(10, int(300 * SCALE)), deadline=None, suppress_health_check=list(HealthCheck))
@given(requests(), st.sampled_from([None, "p1"]), st.sampled_from([SMALL, otlp.DEFAULT_LIMITS]))
def test_compiled_decoder_agrees_with_the_reference(req: ExportTraceServiceRequest, project: str | None,
                                                    limits: otlp.Limits) -> None:
    data = req.SerializeToString()
    _same(otlp.decode_protobuf(data, project, limits), otlp.decode_protobuf(data, project, limits, reference=True))


# The bulk: requests from a seeded generator (cheap to make, so thousands run in seconds), each
# mixing good spans with every kind of bad one; hypothesis draws the seeds and the mutations.

@needs_c
@settings(max_examples=max(10, int(3500 * SCALE)), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1), st.sampled_from([None, "p1"]), st.sampled_from([SMALL, otlp.DEFAULT_LIMITS]))
def test_compiled_decoder_agrees_with_the_reference_in_bulk(seed: int, project: str | None,
                                                            limits: otlp.Limits) -> None:
    data = random_request(random.Random(seed)).SerializeToString()
    _same(otlp.decode_protobuf(data, project, limits), otlp.decode_protobuf(data, project, limits, reference=True))


@settings(max_examples=max(10, int(1000 * SCALE)), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1))
def test_otlp_json_and_protobuf_agree(seed: int) -> None:
    req = random_request(random.Random(seed))
    _same(otlp.decode_json(to_otlp_json(req), limits=SMALL), otlp.decode_protobuf(req.SerializeToString(), limits=SMALL))


@settings(max_examples=max(10, int(5200 * SCALE)), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 10**6))
def test_mutated_bytes_never_crash_the_decoder(seed: int, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(random_request(random.Random(seed)).SerializeToString())
    if not data:
        return
    for pos, value in flips:
        data[pos % len(data)] = value
    data = bytearray(data[: max(1, len(data) - cut % 4)])
    try:
        decoded = otlp.decode_protobuf(bytes(data), limits=SMALL)
    except otlp.DecodeFailure as exc:
        assert str(exc)
        return
    table = decoded.table
    table.validate(full=True)
    assert decoded.accepted == table.num_rows and decoded.rejected >= 0
    assert all(len(t) == 32 for t in table.column("TraceId").to_pylist())
