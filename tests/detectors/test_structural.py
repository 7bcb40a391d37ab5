"""Each structural detector on a trace the SDK wrote: it fires on the failure and not on a clean run."""

from __future__ import annotations

import pytest

from handoffs import sdk
from handoffs.detectors import detect, structural
from handoffs.store import Store


def _clean_run(name: str = "clean") -> str:
    """A supervisor delegating two tasks, verifying and accepting each, terminating with success."""
    with sdk.run(name) as run:
        with sdk.agent("supervisor", role="supervisor", model="gpt-4o") as sup:
            outs = []
            for worker, task in (("schema_writer", "write the schema"), ("router", "write the routes")):
                with sup.delegate(worker, task=task, consumes=outs) as d:
                    with sdk.agent(worker, role="worker", model="claude-3-5-sonnet") as w:
                        with w.llm(input_tokens=300, output_tokens=80):
                            pass
                        with w.tool("write_file", {"path": worker}, side_effect=True, target=worker,
                                    idempotency_key=f"k-{worker}"):
                            pass
                        out = d.output(f"{worker} result", tokens=120, unit_complete=True)
                    with sup.verify("unit tests", target=out, coverage=1.0) as v:
                        v.verdict("pass")
                    d.decision("accepted", output=out)
                outs.append(out)
        run.terminate("done", success_claimed=True, agent="supervisor")
    return run.run_id


def _codes(store: Store) -> dict[str, set[str]]:
    return {tf.run_id: tf.codes() for tf in detect(store)}


def test_clean_run_has_no_findings(store: Store, traced) -> None:
    with traced():
        rid = _clean_run()
    assert _codes(store)[rid] == set()


def test_overwrite_before_first_unit(store: Store, traced) -> None:
    with traced():
        with sdk.run("overwrite") as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("coder", task="write f") as d:
                    with sdk.agent("coder", role="worker") as w:
                        with w.llm(input_tokens=10, output_tokens=40):
                            pass
                        out = d.output("def f(", tokens=40, unit_complete=False)
                    step = d.decision("overwrote", output=out, result="def f(): return 1",
                                      reason="faster to write it myself")
            run.terminate("done", success_claimed=True, agent="supervisor")
    [tf] = detect(store)
    [f] = [f for f in tf.findings if f.code == "overwrite"]
    assert (f.agent, f.step, f.confidence) == ("supervisor", step, 1.0)
    assert f.evidence.endswith("before its first logical unit completed: faster to write it myself")


def test_premature_termination_with_open_delegation(store: Store, traced) -> None:
    with traced():
        with sdk.run("premature") as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("tester", task="write tests"):
                    with sdk.agent("tester", role="worker"):
                        pass
            step = run.terminate("done", success_claimed=True, agent="supervisor")
    [tf] = detect(store)
    [f] = [f for f in tf.findings if f.code == "FM-3.1"]
    assert (f.agent, f.step) == ("supervisor", step)
    assert "still open" in f.evidence and "tester" in f.evidence


def test_step_repetition_and_not_retries(store: Store, traced) -> None:
    with traced():
        with sdk.run("repeat") as run:
            with sdk.agent("researcher") as a:
                with a.tool("search", {"q": "x"}):
                    pass
                with a.tool("search", {"q": "x"}) as second:
                    pass
                with a.tool("fetch", {"u": 1}) as first:
                    first.error("timeout")
                with a.tool("fetch", {"u": 1}, retry_of=first):
                    pass
            run.terminate("done", success_claimed=True)
    [tf] = detect(store)
    reps = [f for f in tf.findings if f.code == "FM-1.3"]
    assert [(f.span_id, f.agent) for f in reps] == [(second.span_id, "researcher")]


def test_duplicate_side_effect_without_idempotency_key(store: Store, traced) -> None:
    with traced():
        with sdk.run("dup") as run:
            with sdk.agent("payer") as a:
                with a.tool("charge", {"amount": 5}, side_effect=True, target="card-1") as first:
                    pass
                with a.tool("charge", {"amount": 5}, side_effect=True, target="card-1",
                            retry_of=first) as again:
                    pass
                with a.tool("email", {"to": "a"}, side_effect=True, target="a", idempotency_key="m1") as m:
                    pass
                with a.tool("email", {"to": "a"}, side_effect=True, target="a", idempotency_key="m1",
                            retry_of=m):
                    pass
            run.terminate("done", success_claimed=True)
    [tf] = detect(store)
    dups = [f for f in tf.findings if f.code == "duplicate-side-effect"]
    assert [f.span_id for f in dups] == [again.span_id]


def test_missing_compensation_and_its_fix(store: Store, traced) -> None:
    with traced():
        for compensate in (False, True):
            with sdk.run(f"comp-{compensate}") as run:
                with sdk.agent("deployer") as a:
                    with a.tool("create_db", {"n": 1}, side_effect=True, target="db") as made:
                        pass
                    with a.tool("migrate", {"n": 1}, side_effect=True, target="db") as mig:
                        mig.error("migration failed")
                    if compensate:
                        with a.compensate("drop_db", of=made):
                            pass
                run.terminate("error", success_claimed=False)
            if not compensate:
                broken, failed_span = run.run_id, mig.span_id
            else:
                fixed = run.run_id
    found = {tf.run_id: tf for tf in detect(store)}
    [f] = [f for f in found[broken].findings if f.code == "missing-compensation"]
    assert (f.span_id, f.agent) == (failed_span, "deployer")
    assert "missing-compensation" not in found[fixed].codes()


def test_restart_instead_of_resume_only_after_a_checkpoint(store: Store, traced) -> None:
    # Three runs judged in one chunk: the detector reads only checkpointed traces, and must
    # still find the restart among traces that have none.
    with traced():
        runs = {}
        for shape in ("restarted", "resumed", "no checkpoint"):
            with sdk.run(shape) as run:
                with sdk.agent("ops") as ops:
                    with ops.tool("fetch", {"q": 1}):
                        pass
                    if shape != "no checkpoint":
                        sdk.checkpoint("c1")
                    with ops.tool("build", {"v": 2}) as build:
                        build.error("compiler crashed")
                    if shape == "resumed":
                        sdk.resume("c1")
                    with ops.tool("fetch", {"q": 1}) as again:
                        pass
                run.terminate("done", success_claimed=True)
            runs[shape] = (run.run_id, again.span_id)
    found = {tf.run_id: tf for tf in detect(store)}
    restarted, again_span = runs["restarted"]
    [f] = [f for f in found[restarted].findings if f.code == "restart-instead-of-resume"]
    assert (f.span_id, f.agent) == (again_span, "ops")
    assert "checkpoint c1" in f.evidence
    assert "restart-instead-of-resume" not in found[runs["resumed"][0]].codes()
    assert "restart-instead-of-resume" not in found[runs["no checkpoint"][0]].codes()


def test_unapproved_high_stakes(store: Store, traced) -> None:
    with traced():
        with sdk.run("stakes") as run:
            with sdk.agent("ops") as a:
                with a.tool("delete_prod", {"t": 1}, high_stakes=True, side_effect=True, target="prod") as bad:
                    pass
                with a.tool("delete_prod", {"t": 2}, high_stakes=True, side_effect=True, target="stage") as ok:
                    ok.approval("delete_prod", approver="alice")
            run.terminate("done", success_claimed=True)
    [tf] = detect(store)
    assert [f.span_id for f in tf.findings if f.code == "unapproved-high-stakes-action"] == [bad.span_id]


def test_missing_verification_and_incorrect_verification(store: Store, traced) -> None:
    with traced():
        with sdk.run("verify") as run:
            with sdk.agent("supervisor", role="supervisor", model="gpt-4o") as sup:
                with sup.delegate("coder", task="a") as d1:
                    with sdk.agent("coder", model="gpt-4o-mini"):
                        o1 = d1.output("a", tokens=10, unit_complete=True)
                    d1.decision("accepted", output=o1)
                with sup.delegate("coder", task="b") as d2:
                    with sdk.agent("coder", model="gpt-4o-mini"):
                        o2 = d2.output("b", tokens=10, unit_complete=True)
                    with sup.verify("smoke", target=o2) as v1:
                        v1.verdict("pass")
                    d2.decision("accepted", output=o2)
                with sup.verify("integration", target=o2) as v2:
                    v2.verdict("fail")
            run.terminate("done", success_claimed=False)
    [tf] = detect(store)
    by = {f.code: f for f in tf.findings}
    assert by["FM-3.2"].span_id == d1.span_id
    assert by["FM-3.3"].span_id == v1.span_id
    assert by["conformity"].agent == "supervisor"  # gpt-4o accepted gpt-4o-mini's flawed output


def test_detect_is_incremental_and_idempotent(store: Store, traced) -> None:
    with traced():
        _clean_run("a")
        with sdk.run("b") as run:
            with sdk.agent("supervisor") as sup:
                with sup.delegate("w", task="t"):
                    pass
            run.terminate("done", success_claimed=True)
    first = detect(store)
    again = detect(store)
    assert [tf.to_json() for tf in first] == [tf.to_json() for tf in again]
    n = store.scalar("SELECT count() FROM handoffs_findings FINAL")
    assert n == sum(len(tf.findings) for tf in first) > 0
    from handoffs.detectors import detect_pending
    assert detect_pending(store) == []
    detect(store, incremental=False)
    assert store.scalar("SELECT count() FROM handoffs_findings FINAL") == n


def test_detect_through_both_engines(any_store: Store) -> None:
    """The same findings in-process (chDB) and through clickhouse-connect over HTTP."""
    sdk.configure(service_name="engines", store=any_store)
    try:
        with sdk.run("premature") as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("tester", task="write tests"):
                    pass
            run.terminate("done", success_claimed=True, agent="supervisor")
    finally:
        sdk.flush()
        sdk.shutdown()
    [tf] = detect(any_store)
    assert "FM-3.1" in tf.codes()
    assert any_store.scalar("SELECT count() FROM system.tables WHERE name LIKE 'handoffs_scratch_%'") == 0


def test_the_reference_in_the_docs_is_the_one_the_detectors_generate() -> None:
    import subprocess
    import sys
    from pathlib import Path

    printed = subprocess.run([sys.executable, "-W", "error", "-m", "handoffs.detectors"], capture_output=True,
                             text=True, check=True)
    assert printed.stdout == structural.reference() and printed.stderr == ""
    docs = Path(__file__).resolve().parents[2] / "docs" / "detectors.md"
    assert structural.reference() in docs.read_text(), "run `python -m handoffs.detectors` and paste its table"


# --- legitimate patterns that looked like failures, and the failures they hid ------------------

def _findings(store: Store) -> dict[str, list]:
    """Findings per run id, from a fresh pass."""
    return {tf.run_id: tf.findings for tf in detect(store)}


def _fix_after_a_failed_check(second_check: str, spec: str = "unit tests") -> str:
    with sdk.run("revise") as run:
        with sdk.agent("supervisor", role="supervisor") as sup:
            with sup.delegate("coder", task="implement parser") as d:
                with sdk.agent("coder", role="worker"):
                    first = d.output("v1", tokens=100, unit_complete=True)
                with sup.verify(spec, target=first, coverage=1.0) as v:
                    v.verdict("fail")
                d.decision("rejected", output=first, reason="2 tests fail")
                with sdk.agent("coder", role="worker"):
                    fixed = d.output("v2", tokens=100, unit_complete=True)
                with sup.verify(second_check, target=fixed, coverage=1.0) as v:
                    v.verdict("pass")
                d.decision("accepted", output=fixed)
        run.terminate("all tasks done", success_claimed=True, agent="supervisor")
    return run.run_id


def test_a_failed_check_is_resolved_by_the_same_check_passing_the_fix_not_by_another_check(
        store: Store, traced) -> None:
    # The fix is a new output: its pass did not clear the failure (FM-3.1, FM-1.1 on a good run);
    # while a lint pass on the failed output cleared a failed test run.
    with traced():
        fixed = _fix_after_a_failed_check("unit tests")
        spec_fixed = _fix_after_a_failed_check("requirements check", spec="requirements check")
        linted = _fix_after_a_failed_check("lint")
        spec_formatted = _fix_after_a_failed_check("format", spec="requirements check")
    codes = {rid: {f.code for f in fs} for rid, fs in _findings(store).items()}
    assert codes[fixed] == set() and codes[spec_fixed] == set()
    assert codes[linted] == {"FM-3.1"} and codes[spec_formatted] == {"FM-3.1", "FM-1.1"}


def test_a_control_transfer_is_open_only_until_its_target_takes_over(store: Store, traced) -> None:
    # A transfer never returns and gets no decision: every one was "still open" at termination.
    with traced():
        with sdk.run("transfer") as run:
            with sdk.agent("triage", role="router") as tri:
                with tri.delegate("billing", task="a refund question", mode="transfer"):
                    with sdk.agent("billing", role="worker"):
                        run.terminate("refund issued", success_claimed=True, agent="billing")
        with sdk.run("stopped before the target ran") as stopped:
            with sdk.agent("triage", role="router") as tri:
                with tri.delegate("billing", task="a refund question", mode="transfer"):
                    pass
            stopped.terminate("max turns", success_claimed=False)
    codes = _codes(store)
    assert codes[run.run_id] == set() and "FM-3.1" in codes[stopped.run_id]


@pytest.mark.parametrize(("reason", "limit"), [
    ("max_turns reached", True), ("Max turns (10) exceeded", True), ("budget exhausted", True),
    ("timed out", True), ("MaxTurnsExceeded", True), ("GraphRecursionError", True),
    ("all tasks done, within budget", False), ("maximised test coverage", False),
    ("exhaustive literature review complete", False)])
def test_a_limit_is_a_whole_word_in_the_termination_reason(reason: str, limit: bool, store: Store, traced) -> None:
    with traced():
        with sdk.run("limits") as run:
            with sdk.agent("supervisor", role="supervisor"):
                pass
            run.terminate(reason, success_claimed=not limit, agent="supervisor")
    assert ("FM-1.5" in _codes(store)[run.run_id]) is limit


def test_spec_checks_are_named_by_whole_words(store: Store, traced) -> None:
    with traced():
        aspect = _fix_after_a_failed_check("anything", spec="aspect ratio")
    assert "FM-1.1" not in _codes(store)[aspect]


def test_a_question_before_each_ambiguous_task_is_a_clarification_each_time(store: Store, traced) -> None:
    with traced():
        with sdk.run("clarify twice") as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                for task in ("export the data", "summarise it"):
                    with sup.delegate("analyst", task=task, ambiguous=True) as d:
                        with sdk.agent("analyst", role="worker") as w:
                            with w.delegate("supervisor", task=f"clarify: {task}?") as q:
                                with sdk.agent("supervisor", role="supervisor"):
                                    q.output("CSV", tokens=10, unit_complete=True)
                            out = d.output(f"done: {task}", tokens=100, unit_complete=True)
                        d.decision("accepted", output=out)
            run.terminate("all tasks done", success_claimed=True, agent="supervisor")
    assert "FM-2.2" not in _codes(store)[run.run_id]


def test_one_name_in_two_roles_is_judged_by_the_role_it_acted_in(store: Store, traced) -> None:
    with traced():
        with sdk.run("roles") as run:
            with sdk.agent("boss", role="supervisor") as boss:
                with boss.delegate("alice", task="write the design") as d:
                    with sdk.agent("alice", role="worker"):
                        out = d.output("design", unit_complete=True)
                    d.decision("accepted", output=out)
            with sdk.agent("alice", role="lead") as alice:
                with alice.delegate("bob", task="implement it") as d:
                    with sdk.agent("bob", role="worker"):
                        out = d.output("code", unit_complete=True)
                    d.decision("accepted", output=out)
            run.terminate("all tasks done", success_claimed=True, agent="boss")
        with sdk.run("worker leads") as bad:
            with sdk.agent("boss", role="supervisor") as boss:
                with boss.delegate("carol", task="write it") as d:
                    with sdk.agent("carol", role="worker") as carol:
                        with carol.delegate("dave", task="do it for me"):
                            pass
    codes = _codes(store)
    assert "FM-1.2" not in codes[run.run_id] and "FM-1.2" in codes[bad.run_id]


def test_an_approval_given_after_the_action_does_not_approve_it(store: Store, traced) -> None:
    with traced():
        with sdk.run("late approval") as late:
            with sdk.agent("ops", role="worker") as ops:
                with ops.tool("drop_table", args={"t": "users"}, target="users", high_stakes=True):
                    pass
                sdk.approval("drop_table", "alice", "approved")
        with sdk.run("approval first") as first:
            with sdk.agent("ops", role="worker") as ops:
                sdk.approval("drop_table", "alice", "approved")
                with ops.tool("drop_table", args={"t": "users"}, target="users", high_stakes=True):
                    pass
    codes = _codes(store)
    assert "unapproved-high-stakes-action" in codes[late.run_id]
    assert "unapproved-high-stakes-action" not in codes[first.run_id]
