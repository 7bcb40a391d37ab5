"""The tracing API: span names, attributes, events, parent links (threads, asyncio), content, errors."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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


def test_long_texts_are_cut_to_the_collectors_limit_when_recorded_and_counted(
        capture_with_content: Captured) -> None:
    """What the store exporter keeps is what the collector keeps; the queue does not hold megabytes."""
    from handoffs.sdk.export import MAX_VALUE_BYTES

    big = "é" * 50_000  # 100,000 bytes of UTF-8
    with sdk.run("r", attributes={"note": "n" * 70_000}), sdk.agent("a") as a:
        with a.delegate("b", task=big) as d:
            out = d.output(big)
            d.output("short")
    spans = capture_with_content.by_name()
    delegation = spans["execute_tool transfer_to_b"]
    assert delegation.attributes[c.TASK] == "é" * (MAX_VALUE_BYTES // 2)
    assert delegation.events[0].attributes[c.OUTPUT_CONTENT] == "é" * (MAX_VALUE_BYTES // 2)
    assert delegation.events[1].attributes[c.OUTPUT_CONTENT] == "short"
    assert out.hash == sdk.content_hash(big)  # the hash is of the whole text
    assert len(spans["handoff.run r"].attributes["note"]) == MAX_VALUE_BYTES
    assert sdk.stats().truncated == 3


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


def test_recording_after_the_block_closed_is_a_usage_error_naming_the_span(captured: Captured) -> None:
    """OpenTelemetry drops an event on an ended span with a log line: the decision would be lost
    and the hand-off would look still open to the detectors."""
    with sdk.run("late") as run:
        with sdk.agent("sup") as sup:
            with sup.delegate("writer") as d:
                out = d.output("in time")
            late = [lambda: d.output("too late"), lambda: d.decision("accepted", output=out),
                    lambda: d.set_status("completed"), lambda: d.error("bad"), lambda: d.approval("x", "y")]
            for record in late:
                with pytest.raises(UsageError, match=r"the hand-off sup -> writer after its `with` block closed"):
                    record()
            with sup.verify("lint") as v, sup.llm("m") as llm, sup.tool("t") as tool:
                pass
            for record in (lambda: v.verdict("pass"), lambda: llm.usage(1, 2), lambda: tool.set_attribute("k", 1)):
                with pytest.raises(UsageError, match="after its `with` block closed"):
                    record()
    for record in (lambda: run.terminate("done", True), lambda: run.checkpoint("c"), lambda: run.resume("c")):
        with pytest.raises(UsageError, match=r"the run 'late' .* after its `with` block closed.*inside the block"):
            record()
    spans = captured.by_name()
    delegation = spans["execute_tool transfer_to_writer"]
    assert [e.attributes[c.OUTPUT_HASH] for e in delegation.events] == [sdk.content_hash("in time")]
    assert delegation.attributes[c.DELEGATION_STATUS] == "open"
    assert not spans["handoff.run late"].events


def test_a_handle_used_without_with_says_how_to_open_it(captured: Captured) -> None:
    with sdk.run("r"), sdk.agent("a") as a:
        d = a.delegate("b", task="t")
        tool = a.tool("t")
        for record in (lambda: d.output("x"), lambda: d.decision("accepted"), lambda: sdk.run("r2").terminate("d", True),
                       lambda: a.verify("c").verdict("pass"), lambda: tool.span_id,
                       lambda: a.tool("t", retry_of=tool), lambda: tool.trace_id):
            with pytest.raises(UsageError, match="use it as `with ... as x:`"):
                record()
        with d:  # and it still works once opened
            d.output("x")
    assert captured.by_name()["execute_tool transfer_to_b"].events[0].name == c.EVENT_OUTPUT


def test_a_delegation_keeps_far_more_events_than_opentelemetrys_default_of_128(captured: Captured) -> None:
    """Integrations record one output per message: a long conversation must not lose its start."""
    with sdk.run("r"), sdk.agent("sup") as sup, sup.delegate("w") as d:
        outs = [d.output(f"chunk {i}", tokens=1) for i in range(200)]
        d.decision("overwrote", output=outs[-1], result="mine")
    span = captured.by_name()["execute_tool transfer_to_w"]
    assert [e.attributes[c.OUTPUT_INDEX] for e in span.events[:-1]] == list(range(1, 201))
    assert span.events[-1].name == c.EVENT_DECISION and span.dropped_events == 0
    assert sdk.stats().events_dropped == 0


def test_events_beyond_the_span_limit_are_counted_as_dropped_not_lost_silently(
        caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_events=2))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.settings.tracer = provider.get_tracer("t")
    try:
        with caplog.at_level("WARNING", logger="handoffs.sdk"):
            with sdk.run("r") as run, sdk.agent("sup") as sup, sup.delegate("w") as d:
                for i in range(3):
                    d.output(f"o{i}")
                d.decision("accepted")
                for i in range(3):
                    run.checkpoint(f"c{i}")
        counted = tracing.settings.stats.events_dropped
    finally:
        sdk.shutdown()  # back to the default tracer
    spans = {s.name: s for s in exporter.get_finished_spans()}
    span = spans["execute_tool transfer_to_w"]
    assert len(span.events) == 2 and span.dropped_events == 2
    assert spans["handoff.run r"].dropped_events == 1
    assert counted == 3
    assert caplog.text.count("reached its limit of events") == 1


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


def test_a_failing_redact_hook_leaves_a_placeholder_and_the_callers_exception(captured: Captured) -> None:
    """Before: the hook's KeyError escaped __exit__ before span.end() and the context detach, so
    both spans were lost and every later span in the process became a child of a dead one."""
    from opentelemetry import trace

    def redact(text: str) -> str:
        if "Traceback" in text:
            raise KeyError("redactor bug")
        return text

    tracing.settings.redact = redact
    with pytest.raises(RuntimeError, match="original error"), sdk.run("first"), sdk.agent("a"):
        raise RuntimeError("original error")
    assert trace.get_current_span() is trace.INVALID_SPAN and sdk.current_run_id() is None
    with sdk.run("after"):
        pass
    spans = captured.by_name()
    assert set(spans) == {"handoff.run first", "invoke_agent a", "handoff.run after"}
    agent = spans["invoke_agent a"]
    (event,) = agent.events
    assert event.attributes[c.EXCEPTION_MESSAGE] == "original error"
    assert event.attributes[c.EXCEPTION_STACKTRACE] == "[redaction failed: KeyError]"
    assert spans["handoff.run after"].parent is None


def test_a_redact_hook_returning_something_else_than_text_is_replaced_too(capture_with_content: Captured) -> None:
    tracing.settings.redact = lambda text: None  # type: ignore[assignment,return-value]
    with sdk.run("r"), sdk.agent("a") as a, a.delegate("b", task="t") as d:
        d.output("x")
    span = capture_with_content.by_name()["execute_tool transfer_to_b"]
    assert span.attributes[c.TASK] == "[redaction failed: returned NoneType, not str]"
    assert span.events[0].attributes[c.OUTPUT_CONTENT] == span.attributes[c.TASK]


def test_a_normal_exit_is_not_a_failure_but_keyboard_interrupt_is(captured: Captured) -> None:
    for run_id, exc in (("exit0", SystemExit(0)), ("exit-none", SystemExit(None)), ("exit1", SystemExit(1)),
                        ("interrupted", KeyboardInterrupt())):
        with pytest.raises(type(exc)), sdk.run(run_id, run_id=run_id):
            raise exc

    def gen() -> Iterator[int]:
        with sdk.run("closed-early", run_id="closed-early"), sdk.agent("a") as a, a.delegate("b") as d:
            d.output("x")
            yield 1
            yield 2

    g = gen()
    next(g)
    g.close()
    spans = captured.spans()
    status = {s.attributes[c.RUN_ID]: s.status.status_code for s in spans if s.attributes[c.SPAN_TYPE] == "run"}
    assert status == {"exit0": StatusCode.UNSET, "exit-none": StatusCode.UNSET, "exit1": StatusCode.ERROR,
                      "interrupted": StatusCode.ERROR, "closed-early": StatusCode.UNSET}
    delegation = next(s for s in spans if s.name == "execute_tool transfer_to_b")
    assert delegation.status.status_code is StatusCode.UNSET
    assert [e.name for e in delegation.events] == [c.EVENT_OUTPUT]
    assert delegation.attributes[c.DELEGATION_STATUS] == "open"


def test_a_traced_generator_is_inside_its_span_while_it_runs_and_ends_it_when_done(captured: Captured) -> None:
    seen: list[str | None] = []

    @sdk.traced_agent("streamer", role="worker")
    def streamer(n: int) -> Iterator[int]:
        me = sdk.current_agent()
        seen.append(me.name if me else None)
        for i in range(n):
            with me.tool("chunk") if me else sdk.agent("orphan"):  # a span inside the body
                pass
            yield i

    with sdk.run("r"):
        got = []
        for item in streamer(3):
            seen.append(getattr(sdk.current_agent(), "name", None))  # the consumer, between items
            got.append(item)
        early = streamer(5)
        next(early)
        early.close()
    assert got == [0, 1, 2]
    assert seen == ["streamer", None, None, None, "streamer"]
    spans = captured.spans()
    agents = [s for s in spans if s.name == "invoke_agent streamer"]
    tools = [s for s in spans if s.name == "execute_tool chunk"]
    assert len(agents) == 2 and len(tools) == 4
    assert {t.parent.span_id for t in tools} == {a.context.span_id for a in agents}
    assert all(a.status.status_code is StatusCode.UNSET for a in agents)  # closed early is not a failure


def test_a_traced_async_generator_is_inside_its_span_while_it_runs(captured: Captured) -> None:
    @sdk.traced_agent("astreamer")
    async def astreamer() -> Any:
        me = sdk.current_agent()
        assert me is not None and me.name == "astreamer"
        for i in range(2):
            await asyncio.sleep(0)
            with me.llm("m"):
                pass
            yield i
        raise ValueError("stream broke")

    async def main() -> list[int]:
        got = []
        with sdk.run("r"):
            with pytest.raises(ValueError, match="stream broke"):
                async for item in astreamer():
                    assert sdk.current_agent() is None
                    got.append(item)
        return got

    assert asyncio.run(main()) == [0, 1]
    spans = captured.spans()
    agent = next(s for s in spans if s.name == "invoke_agent astreamer")
    chats = [s for s in spans if s.name == "chat m"]
    assert len(chats) == 2 and all(ch.parent.span_id == agent.context.span_id for ch in chats)
    assert agent.status.status_code is StatusCode.ERROR


def test_wrong_types_and_values_are_usage_errors_before_a_step_is_taken(captured: Captured) -> None:
    import numpy as np

    with sdk.run("r"), sdk.agent("sup") as sup:
        with sup.delegate("w") as d:
            first = d.output("x")
            for record in (lambda: d.output(None), lambda: d.output({"a": 1}), lambda: d.output(42),  # type: ignore[arg-type]
                           lambda: d.decision("modified", result={"a": 1})):  # type: ignore[arg-type]
                with pytest.raises(UsageError, match=r"expected text \(str or bytes\).*json.dumps"):
                    record()
            for tokens in ("12", 1.7, True):
                with pytest.raises(UsageError, match="tokens must be a whole number"):
                    d.output("z", tokens=tokens)  # type: ignore[arg-type]
            second = d.output(b"y", tokens=np.int64(7))  # type: ignore[arg-type]
            assert second.step == first.step + 1 and second.tokens == 7 and type(second.tokens) is int
        with pytest.raises(UsageError, match=r"delegation mode must be one of \['delegate', 'transfer'\]"):
            sup.delegate("w5", mode="yeet")
        with pytest.raises(UsageError, match="whole number"), sup.llm("m", input_tokens="many"):  # type: ignore[arg-type]
            pass
        with pytest.raises(UsageError, match="coverage must be a number"), sup.verify("c", coverage="half"):  # type: ignore[arg-type]
            pass
        with sup.delegate("w6", mode=c.HandoffMode.TRANSFER):
            pass
    spans = captured.by_name()
    assert spans["execute_tool transfer_to_w6"].attributes[c.MODE] == "transfer"
    assert spans["execute_tool transfer_to_w"].events[1].attributes[c.OUTPUT_TOKENS] == 7
    assert "execute_tool transfer_to_w5" not in spans


def test_approval_outside_any_span_is_refused_like_checkpoint_outside_a_run(captured: Captured) -> None:
    with pytest.raises(UsageError, match="no span is open here"):
        sdk.approval("deploy", "alice")
    with sdk.run("r"), sdk.agent("ops") as ops, ops.tool("deploy"):
        sdk.approval("deploy", "alice")
    sdk.shutdown()  # no provider: spans are OpenTelemetry's no-op, a with block is still open
    with sdk.run("r"), sdk.agent("ops"):
        sdk.approval("deploy", "alice")
    tool = next(s for s in captured.exporter.get_finished_spans() if s.name == "execute_tool deploy")
    assert tool.events[0].name == c.EVENT_APPROVAL


def test_a_missing_or_blank_name_is_a_usage_error_and_other_names_are_spelled(captured: Captured) -> None:
    with sdk.run("r"), sdk.agent("sup") as sup:
        for opened in (lambda: sdk.agent(None), lambda: sdk.agent("  "),  # type: ignore[arg-type]
                       lambda: sup.delegate(None), lambda: sup.tool(""), lambda: sup.verify(None),  # type: ignore[arg-type]
                       lambda: sdk.run(None)):  # type: ignore[arg-type]
            with pytest.raises(UsageError, match="must be a name, not"):
                opened()
        with sdk.agent(c.SpanType.AGENT, role=7, model=3.5, agent_id=12, description=b"d"):  # type: ignore[arg-type]
            pass
    agent = next(s for s in captured.spans() if s.attributes.get(c.GEN_AI_AGENT_ID) is not None)
    # every value is text, as the store exporter would have spelled it; OTLP no longer drops any
    assert {k: agent.attributes[k] for k in (c.AGENT_ROLE, c.GEN_AI_REQUEST_MODEL, c.GEN_AI_AGENT_ID,
                                             c.GEN_AI_AGENT_DESCRIPTION)} == {
        c.AGENT_ROLE: "7", c.GEN_AI_REQUEST_MODEL: "3.5", c.GEN_AI_AGENT_ID: "12",
        c.GEN_AI_AGENT_DESCRIPTION: "b'd'"}
    assert agent.attributes[c.GEN_AI_AGENT_NAME] == str(c.SpanType.AGENT)


def test_a_run_opened_inside_another_starts_its_own_trace_linked_to_where_it_was_opened(
        captured: Captured) -> None:
    with sdk.run("outer") as outer, sdk.agent("sup") as sup:
        with sdk.run("inner") as inner, sdk.agent("w"):
            pass
        with sup.delegate("after"):  # the outer run's steps carry on
            pass
    spans = captured.by_name()
    outer_trace = spans["handoff.run outer"].context.trace_id
    inner_span = spans["handoff.run inner"]
    assert inner_span.parent is None and inner_span.context.trace_id != outer_trace
    assert [link.context.span_id for link in inner_span.links] == [spans["invoke_agent sup"].context.span_id]
    assert spans["invoke_agent w"].context.trace_id == inner_span.context.trace_id
    assert (spans["invoke_agent w"].attributes[c.RUN_ID], inner_span.attributes[c.STEP]) == (inner.run_id, 1)
    after = spans["execute_tool transfer_to_after"]
    assert after.context.trace_id == outer_trace and after.attributes[c.RUN_ID] == outer.run_id
    assert after.attributes[c.STEP] == 3


def test_a_second_run_under_the_same_application_span_starts_its_own_trace(captured: Captured) -> None:
    # A batch job's span around two runs put both in one trace: detection judged them as one run.
    tracer = tracing.settings.tracer  # the application's own spans, on the provider configure made
    with tracer.start_as_current_span("batch job") as job:
        with sdk.run("first"), sdk.agent("a"):
            pass
        with sdk.run("second"), sdk.agent("b"):
            pass
    spans = captured.by_name()
    job_trace = job.get_span_context().trace_id
    first, second = spans["handoff.run first"], spans["handoff.run second"]
    assert first.context.trace_id == job_trace and first.parent.span_id == job.get_span_context().span_id
    assert second.context.trace_id != job_trace and second.parent is None
    assert [link.context.span_id for link in second.links] == [job.get_span_context().span_id]
    assert spans["invoke_agent b"].context.trace_id == second.context.trace_id


def test_runs_started_at_once_under_one_application_span_get_one_trace_each(captured: Captured) -> None:
    tracer = tracing.settings.tracer
    together = threading.Barrier(4)

    def team(i: int) -> None:
        together.wait(5)
        with sdk.run(f"r{i}"), sdk.agent(f"a{i}"):
            pass

    with tracer.start_as_current_span("batch job") as job:
        threads = [threading.Thread(target=sdk.propagate(team), args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    runs = [s for s in captured.spans() if s.name.startswith("handoff.run ")]
    assert len({s.context.trace_id for s in runs}) == 4
    assert sum(s.context.trace_id == job.get_span_context().trace_id for s in runs) == 1
