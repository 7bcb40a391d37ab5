"""The tracing API: span names, attributes, events, parent links (threads, asyncio), content, errors."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING

import pytest
from opentelemetry.trace import StatusCode

from handoffs import conventions as c
from handoffs import sdk
from handoffs.errors import UsageError
from handoffs.sdk import tracing

if TYPE_CHECKING:
    from conftest import Captured  # tests/sdk/conftest.py


def _team(run_name: str = "build-api") -> tuple[sdk.Run, sdk.Output]:
    with sdk.run(run_name, tags=["nightly"], topology="centralized") as run:
        with sdk.agent("supervisor", role="supervisor", model="gpt-4o") as sup:
            with sup.delegate("schema_writer", task="write the schema") as d:
                with sdk.agent("schema_writer", role="worker", model="gpt-4o-mini") as w:
                    with w.llm(input_tokens=100, output_tokens=50):
                        pass
                    out = d.output("CREATE TABLE users (id Int64)", tokens=120, unit_complete=True)
                d.decision("accepted", output=out, reason="looks right")
            with sup.tool("write_file", args={"path": "schema.sql"}, target="schema.sql", side_effect=True,
                          idempotency_key="k1", consumes=[out]):
                pass
            with sup.verify("unit tests", target=out, coverage=0.5) as v:
                v.verdict("pass")
        run.terminate("done", success_claimed=True, agent="supervisor")
    return run, out


def test_a_team_run_gives_genai_and_handoff_spans_with_the_right_parents(captured: Captured) -> None:
    run, out = _team()
    spans = captured.by_name()
    assert set(spans) == {"handoff.run build-api", "invoke_agent supervisor",
                          "execute_tool transfer_to_schema_writer", "invoke_agent schema_writer",
                          "chat gpt-4o-mini", "execute_tool write_file", "handoff.verify unit tests"}
    parent = {name: (s.parent.span_id if s.parent else None) for name, s in spans.items()}
    sid = {name: s.context.span_id for name, s in spans.items()}
    assert parent["handoff.run build-api"] is None
    assert parent["invoke_agent supervisor"] == sid["handoff.run build-api"]
    assert parent["execute_tool transfer_to_schema_writer"] == sid["invoke_agent supervisor"]
    assert parent["invoke_agent schema_writer"] == sid["execute_tool transfer_to_schema_writer"]
    assert parent["chat gpt-4o-mini"] == sid["invoke_agent schema_writer"]
    assert parent["handoff.verify unit tests"] == sid["invoke_agent supervisor"]
    assert len({s.context.trace_id for s in spans.values()}) == 1
    # every span: its type, the run id, and a step unique within the run
    for s in spans.values():
        assert s.attributes[c.RUN_ID] == run.run_id
        assert s.attributes[c.SPAN_TYPE]
    steps = sorted(s.attributes[c.STEP] for s in spans.values())
    assert steps == sorted(set(steps)) and steps[0] == 1


def test_delegation_span_carries_both_vocabularies_and_its_outputs_and_decisions(captured: Captured) -> None:
    run, out = _team()
    d = captured.by_name()["execute_tool transfer_to_schema_writer"]
    a = d.attributes
    assert a[c.SPAN_TYPE] == "delegation"
    assert a[c.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert a[c.GEN_AI_TOOL_NAME] == "transfer_to_schema_writer"
    assert (a[c.SOURCE_AGENT], a[c.TARGET_AGENT]) == ("supervisor", "schema_writer")
    assert (a[c.GEN_AI_HANDOFF_SOURCE_NAME], a[c.GEN_AI_HANDOFF_TARGET_NAME]) == ("supervisor", "schema_writer")
    assert a[c.DELEGATION_STATUS] == "completed"
    assert a[c.TASK_HASH] == sdk.content_hash("write the schema")
    assert c.TASK not in a  # content is opt-in
    assert [e.name for e in d.events] == [c.EVENT_OUTPUT, c.EVENT_DECISION]
    output, decision = d.events
    assert output.attributes[c.OUTPUT_ID] == out.id
    assert output.attributes[c.OUTPUT_HASH] == sdk.content_hash("CREATE TABLE users (id Int64)")
    assert output.attributes[c.OUTPUT_TOKENS] == 120
    assert output.attributes[c.OUTPUT_UNIT_COMPLETE] is True
    assert c.OUTPUT_CONTENT not in output.attributes
    assert decision.attributes[c.DECISION_ACTION] == "accepted"
    assert decision.attributes[c.DECISION_AGENT] == "supervisor"
    assert decision.attributes[c.OUTPUT_ID] == out.id
    assert decision.attributes[c.STEP] > output.attributes[c.STEP] > a[c.STEP]
    assert output.timestamp <= decision.timestamp <= d.end_time


def test_tool_verification_and_termination_attributes(captured: Captured) -> None:
    run, out = _team()
    spans = captured.by_name()
    tool = spans["execute_tool write_file"].attributes
    assert tool[c.TOOL_TARGET] == "schema.sql" and tool[c.TOOL_SIDE_EFFECT] is True
    assert tool[c.IDEMPOTENCY_KEY] == "k1"
    assert json.loads(tool[c.INPUT_OUTPUT_IDS]) == [out.id]
    assert tool[c.TOOL_ARGS_HASH] == tracing._args_hash({"path": "schema.sql"})
    check = spans["handoff.verify unit tests"]
    assert check.attributes[c.VERIFICATION_VERDICT] == "pass"
    assert check.attributes[c.VERIFICATION_TARGET] == out.id
    assert check.attributes[c.VERIFICATION_COVERAGE] == 0.5
    assert check.events[0].name == c.GEN_AI_EVALUATION_RESULT_EVENT
    root = spans["handoff.run build-api"]
    assert json.loads(root.attributes[c.RUN_TAGS]) == ["nightly"]
    assert root.attributes[c.RUN_TOPOLOGY] == "centralized"
    (term,) = [e for e in root.events if e.name == c.EVENT_TERMINATION]
    assert term.attributes[c.TERMINATION_SUCCESS_CLAIMED] is True
    assert term.attributes[c.TERMINATION_AGENT] == "supervisor"


def test_delegation_status_is_open_without_a_decision_and_failed_on_error(captured: Captured) -> None:
    with sdk.run("r"), sdk.agent("sup") as sup:
        with sup.delegate("a") as d:
            d.output("partial", unit_complete=False)
        with pytest.raises(RuntimeError), sup.delegate("b"):
            raise RuntimeError("worker crashed")
        with sup.delegate("c") as d:
            d.error("bad output")
        with sup.delegate("d", ambiguous=True) as d:
            d.set_status("completed")
    spans = captured.by_name()
    status = {t: spans[f"execute_tool transfer_to_{t}"].attributes[c.DELEGATION_STATUS] for t in "abcd"}
    assert status == {"a": "open", "b": "failed", "c": "failed", "d": "completed"}
    assert spans["execute_tool transfer_to_d"].attributes[c.TASK_AMBIGUOUS] is True
    assert c.TASK_AMBIGUOUS not in spans["execute_tool transfer_to_a"].attributes
    crashed = spans["execute_tool transfer_to_b"]
    assert crashed.status.status_code is StatusCode.ERROR
    assert [e.name for e in crashed.events] == [c.EVENT_EXCEPTION]


def test_bad_values_are_usage_errors(captured: Captured) -> None:
    with sdk.run("r"), sdk.agent("sup") as sup, sup.delegate("a") as d:
        with pytest.raises(UsageError):
            d.decision("ignored")
        with pytest.raises(UsageError):
            d.set_status("half-done")
        with pytest.raises(UsageError), sup.verify("x") as v:
            v.verdict("maybe")
    with pytest.raises(UsageError):
        sdk.configure(endpoint="http://x", store="chdb:///tmp/nowhere")


def test_content_is_captured_only_on_request_and_redacted_first(capture_with_content: Captured) -> None:
    with sdk.run("r"), sdk.agent("sup") as sup:
        with sup.delegate("w", task="log in with hunter2") as d:
            out = d.output("password is hunter2", tokens=3)
            d.decision("accepted", output=out, reason="hunter2 works")
        with pytest.raises(ValueError), sup.tool("login"):
            raise ValueError("wrong password hunter2")
    spans = capture_with_content.by_name()
    d = spans["execute_tool transfer_to_w"]
    assert d.attributes[c.TASK] == "log in with [redacted]"
    assert d.attributes[c.TASK_HASH] == sdk.content_hash("log in with hunter2")
    assert d.events[0].attributes[c.OUTPUT_CONTENT] == "password is [redacted]"
    assert d.events[1].attributes[c.DECISION_REASON] == "[redacted] works"
    tool = spans["execute_tool login"]
    assert "hunter2" not in tool.status.description
    assert tool.events[0].attributes[c.EXCEPTION_MESSAGE] == "wrong password [redacted]"
    everything = repr([(s.attributes, [e.attributes for e in s.events], s.status.description)
                       for s in spans.values()])
    assert "hunter2" not in everything


def test_steps_and_parents_hold_across_a_thread_pool(captured: Captured) -> None:
    def work(i: int) -> None:
        with sdk.agent(f"worker{i}", role="worker") as w, w.llm("m", input_tokens=i):
            pass

    with sdk.run("r") as run, sdk.agent("sup") as sup:
        with sdk.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(work, range(16)))
        t = threading.Thread(target=sdk.propagate(work), args=(99,))
        t.start()
        t.join()
        sup_id = sup.span.get_span_context().span_id
    spans = captured.spans()
    workers = [s for s in spans if s.name.startswith("invoke_agent worker")]
    assert len(workers) == 17
    assert all(s.parent is not None and s.parent.span_id == sup_id for s in workers)
    assert all(s.attributes[c.RUN_ID] == run.run_id for s in spans)
    steps = [s.attributes[c.STEP] for s in spans]
    assert len(steps) == len(set(steps)) == 2 + 17 * 2


def test_a_bare_thread_does_not_inherit_the_context(captured: Captured) -> None:
    """Why ``propagate`` exists: without it a thread starts from an empty context."""
    def work() -> None:
        with sdk.agent("orphan"):
            pass

    with sdk.run("r"):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    orphan = captured.by_name()["invoke_agent orphan"]
    assert orphan.parent is None and c.RUN_ID not in orphan.attributes


def test_asyncio_tasks_get_the_parent_that_created_them(captured: Captured) -> None:
    @sdk.traced_agent("worker", role="worker")
    async def worker(i: int) -> str:
        await asyncio.sleep(0)
        me = sdk.current_agent()
        assert me is not None
        with me.llm("m", output_tokens=i):
            await asyncio.sleep(0)
        return me.name

    async def main() -> None:
        with sdk.run("r"), sdk.agent("sup") as sup:
            with sup.delegate("worker") as d:
                names = await asyncio.gather(*(worker(i) for i in range(5)))
                assert names == ["worker"] * 5
                d.output("merged", unit_complete=True)

    asyncio.run(main())
    spans = captured.spans()
    delegation = next(s for s in spans if s.name == "execute_tool transfer_to_worker")
    workers = [s for s in spans if s.name == "invoke_agent worker"]
    chats = [s for s in spans if s.name == "chat m"]
    assert len(workers) == len(chats) == 5
    assert all(w.parent.span_id == delegation.context.span_id for w in workers)
    worker_ids = {w.context.span_id for w in workers}
    assert {ch.parent.span_id for ch in chats} == worker_ids  # each chat under its own worker


def test_sync_decorators(captured: Captured) -> None:
    @sdk.traced_tool("lookup", side_effect=False)
    def lookup(key: str) -> str:
        return key.upper()

    @sdk.traced_agent()
    def researcher() -> str:
        return lookup("x")

    with sdk.run("r"):
        assert researcher() == "X"
    spans = captured.by_name()
    tool = spans["execute_tool lookup"]
    assert tool.attributes[c.GEN_AI_AGENT_NAME] == "researcher"
    assert tool.parent.span_id == spans["invoke_agent researcher"].context.span_id


def test_retries_compensation_checkpoint_resume_and_approval(captured: Captured) -> None:
    with pytest.raises(UsageError, match="no run is open"):
        sdk.resume("c0")
    with sdk.run("r") as run, sdk.agent("ops") as ops:
        assert sdk.current_run() is run
        sdk.checkpoint("c1")
        with pytest.raises(TimeoutError), ops.tool("deploy", args=["v2"], idempotency_key="dep-1") as first:
            raise TimeoutError("gateway timeout")
        with ops.tool("deploy", args=["v2"], idempotency_key="dep-1", retry_of=first,
                      high_stakes=True) as again:
            again.approval("deploy v2", approver="alice")
        with ops.compensate("rollback", of=again):
            pass
        sdk.resume("c1")
    spans = captured.spans()
    deploys = [s for s in spans if s.name == "execute_tool deploy"]
    retry = next(s for s in deploys if c.RETRY_OF in s.attributes)
    assert retry.attributes[c.RETRY_OF] == first.span_id
    assert retry.attributes[c.RETRY_ATTEMPT] == 2
    assert retry.events[0].name == c.EVENT_APPROVAL
    assert retry.events[0].attributes[c.APPROVAL_APPROVER] == "alice"
    comp = next(s for s in spans if s.name == "handoff.compensate rollback")
    assert comp.attributes[c.COMPENSATION_OF] == again.span_id
    root = next(s for s in spans if s.name == "handoff.run r")
    assert [e.name for e in root.events] == [c.EVENT_CHECKPOINT, c.EVENT_RESUME]
    assert root.attributes[c.RESUME_FROM_CHECKPOINT] == "c1"


def test_user_attributes_on_a_run_are_validated_and_cannot_replace_ours(captured: Captured) -> None:
    with sdk.run("r", run_id="fixed", attributes={c.RUN_ID: "hijack", "team.size": 3, "bad": object()}):
        pass
    (root,) = captured.spans()
    assert root.attributes[c.RUN_ID] == "fixed"
    assert root.attributes["team.size"] == 3
    assert root.attributes.get("bad") is None  # OpenTelemetry refused the invalid value


def test_the_fast_attribute_path_is_active_on_the_installed_sdk(captured: Captured) -> None:
    """If an OpenTelemetry upgrade moves its internals, spans stay correct but slow: catch that here."""
    with sdk.run("r") as run:
        assert tracing._trusted_attributes(run.span) is not None
        assert tracing._trusted_events(run.span) is not None


def test_repeated_hand_offs_between_the_same_agents_share_nothing_but_their_fixed_attributes(
        captured: Captured) -> None:
    """Delegations copy a prepared attribute dict per (source, target, mode): no value may leak across."""
    with sdk.run("r"), sdk.agent("sup") as sup:
        with sup.delegate("w", task="first", ambiguous=True) as first:
            first.output("one")
        with sup.delegate("w") as second:
            pass
        with sup.delegate("w", mode="transfer") as third:
            third.decision("rejected")
    spans = {s.attributes.get(c.DELEGATION_ID): s for s in captured.spans() if s.name.endswith("transfer_to_w")}
    a, b, t = spans[first.delegation_id], spans[second.delegation_id], spans[third.delegation_id]
    assert a.attributes[c.TASK_HASH] == sdk.content_hash("first") and a.attributes[c.TASK_AMBIGUOUS] is True
    assert c.TASK_HASH not in b.attributes and c.TASK_AMBIGUOUS not in b.attributes
    assert (a.attributes[c.MODE], b.attributes[c.MODE], t.attributes[c.MODE]) == ("delegate", "delegate", "transfer")
    assert [e.name for e in a.events] == [c.EVENT_OUTPUT] and not b.events
    assert [e.name for e in t.events] == [c.EVENT_DECISION]
    assert (a.attributes[c.DELEGATION_STATUS], b.attributes[c.DELEGATION_STATUS]) == ("open", "open")
    assert t.attributes[c.DELEGATION_STATUS] == "completed"


def test_an_output_after_the_delegation_closed_does_not_change_the_exported_span(captured: Captured) -> None:
    with sdk.run("r"), sdk.agent("sup") as sup:
        with sup.delegate("w") as d:
            d.output("in time")
        d.output("too late")  # OpenTelemetry warns about an event on an ended span and drops it
    (span,) = [s for s in captured.spans() if s.name == "execute_tool transfer_to_w"]
    assert [e.attributes[c.OUTPUT_HASH] for e in span.events] == [sdk.content_hash("in time")]


def test_events_beyond_the_span_limit_are_counted_as_dropped_not_lost_silently() -> None:
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_events=2))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.settings.tracer = provider.get_tracer("t")
    try:
        with sdk.run("r"), sdk.agent("sup") as sup, sup.delegate("w") as d:
            for i in range(3):
                d.output(f"o{i}")
    finally:
        sdk.shutdown()  # back to the default tracer
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "execute_tool transfer_to_w"]
    assert len(span.events) == 2 and span.dropped_events == 1


def test_without_configure_spans_go_to_the_global_provider() -> None:
    sdk.shutdown()
    with sdk.run("r") as run, sdk.agent("a") as a, a.delegate("b") as d:
        d.output("x")
    assert not run.span.get_span_context().is_valid  # no global provider here: a no-op span, no error


@pytest.mark.parametrize("content", ["CREATE TABLE t (id Int64)", "naïve ✓", "lone \ud800 surrogate", b"\x00raw", ""])
def test_content_hash_is_eight_bytes_of_blake2b_over_utf8(content: str | bytes) -> None:
    """Stored hashes must not change with the implementation: detectors compare them across runs."""
    import hashlib

    data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    assert sdk.content_hash(content) == hashlib.blake2b(data, digest_size=8).hexdigest()
    assert sdk.content_hash(content) == sdk.content_hash(content)  # the shared hasher is not consumed
