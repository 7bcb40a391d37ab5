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
        with sdk.run("fixed in a new hand-off") as refixed:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("coder", task="implement parser") as d:
                    with sdk.agent("coder", role="worker"):
                        first = d.output("v1", tokens=100, unit_complete=True)
                    with sup.verify("unit tests", target=first, coverage=1.0) as v:
                        v.verdict("fail")
                    d.decision("rejected", output=first, reason="2 tests fail")
                with sup.delegate("coder", task="fix the parser", consumes=[first]) as d:
                    with sdk.agent("coder", role="worker"):
                        fixed_again = d.output("v2", tokens=100, unit_complete=True)
                    with sup.verify("unit tests", target=fixed_again, coverage=1.0) as v:
                        v.verdict("pass")
                    d.decision("accepted", output=fixed_again)
            refixed.terminate("all tasks done", success_claimed=True, agent="supervisor")
    codes = {rid: {f.code for f in fs} for rid, fs in _findings(store).items()}
    assert codes[fixed] == set() and codes[spec_fixed] == set() and codes[refixed.run_id] == set()
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


# --- recovered failures, and evidence that says what happened (sweep 2) -------------------------

def _side_effect_then(name: str, body) -> str:
    """A run: the supervisor makes a side effect, then ``body(sup)`` runs; returns the run id."""
    with sdk.run(name) as run:
        with sdk.agent("supervisor", role="supervisor", model="gpt-4o") as sup:
            with sup.tool("write_file", {"p": "plan.md"}, side_effect=True, target="plan.md"):
                pass
            body(sup)
        run.terminate("all tasks done", success_claimed=True, agent="supervisor")
    return run.run_id


def _attempts(sup, chained: bool, side_effect: bool) -> None:
    """Attempts 1 and 2 fail, 3 succeeds; each retry names the first attempt, or the one before."""
    with sup.tool("upload", {"f": 1}, side_effect=side_effect, target="bucket") as first:
        first.error("503")
    with sup.tool("upload", {"f": 1}, side_effect=side_effect, target="bucket", retry_of=first, attempt=2) as second:
        second.error("503")
    with sup.tool("upload", {"f": 1}, side_effect=side_effect, target="bucket",
                  retry_of=second if chained else first, attempt=3):
        pass


def _delegation_crashes(sup, again: bool = True) -> None:
    try:
        with sup.delegate("coder", task="implement parser"):
            with sdk.agent("coder", role="worker"):
                raise RuntimeError("rate limited")
    except RuntimeError:
        pass
    if again:
        with sup.delegate("coder", task="implement parser") as d:
            with sdk.agent("coder", role="worker"):
                out = d.output("parser", tokens=10, unit_complete=True)
            with sup.verify("unit tests", target=out) as v:
                v.verdict("pass")
            d.decision("accepted", output=out)


def _fallback(sup, fallback: bool = True) -> None:
    try:
        with sup.tool("web_search", {"q": "error 42"}):
            raise ConnectionError("search API down")
    except ConnectionError:
        pass
    if fallback:
        with sup.tool("docs_search", {"q": "error 42"}):
            pass


def _cancelled(sup) -> None:
    import asyncio
    try:
        with sup.delegate("slow", task="look up order 9"):
            with sdk.agent("slow", role="worker"):
                raise asyncio.CancelledError()
    except asyncio.CancelledError:
        pass


def test_a_recovered_failure_needs_no_compensation(store: Store, traced) -> None:
    # Retries chained or naming the first attempt, a task handed again to the same delegate, a
    # read-only call its action carried on past, a cancelled hedge: each read as an abandoned
    # action (missing-compensation on ordinary runs).
    with traced():
        recovered = [
            _side_effect_then("retries name the first", lambda sup: _attempts(sup, False, True)),
            _side_effect_then("retries chained", lambda sup: _attempts(sup, True, True)),
            _side_effect_then("read-only retries", lambda sup: _attempts(sup, True, False)),
            _side_effect_then("delegated again", _delegation_crashes),
            _side_effect_then("fallback", _fallback),
            _side_effect_then("cancelled", _cancelled),
        ]
        abandoned = _side_effect_then("gave up after a read-only failure", lambda sup: _fallback(sup, False))
        crashed = _side_effect_then("not delegated again", lambda sup: _delegation_crashes(sup, False))
    found = _findings(store)
    for rid in recovered:
        assert "missing-compensation" not in {f.code for f in found[rid]}, rid
    [gave_up] = [f for f in found[abandoned] if f.code == "missing-compensation"]
    assert "write_file@" in gave_up.evidence
    # The delegate crashed: the finding names it, not the delegator whose side effect stands.
    [f] = [f for f in found[crashed] if f.code == "missing-compensation"]
    assert f.agent == "coder" and f.evidence.startswith("coder failed"), f.evidence
    assert "supervisor" in f.evidence


def test_missing_compensation_lists_only_side_effects_before_the_failure(store: Store, traced) -> None:
    with traced():
        with sdk.run("two failures") as run:
            with sdk.agent("mailer", role="worker") as a:
                for u in (1, 2):
                    with a.tool("create_user", {"u": u}, side_effect=True, target=f"user{u}") as made:
                        pass
                    with a.tool("send_welcome", {"u": u}, side_effect=True, target=f"mail{u}") as mail:
                        mail.error("smtp down")
                    if u == 1:
                        first, first_made = mail, made
            run.terminate("failed", success_claimed=False, agent="mailer")
    [f] = [f for f in _findings(store)[run.run_id] if f.code == "missing-compensation"]
    assert f.span_id == first.span_id
    assert f.evidence.endswith(f"1 side effect(s) nobody undid: create_user@{first_made.step}"), f.evidence


def test_overwrite_evidence_counts_the_outputs_before_the_decision(store: Store, traced) -> None:
    with traced():
        with sdk.run("overwrite while streaming") as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("writer", task="write chapter 1") as d:
                    with sdk.agent("writer", role="worker"):
                        o1 = d.output("para 1", tokens=100)
                    d.decision("overwrote", output=o1, result="mine", reason="impatient")
                    with sdk.agent("writer", role="worker"):
                        d.output("para 2", tokens=1000)
                        d.output("para 3", tokens=1000, unit_complete=True)
            run.terminate("done", success_claimed=True, agent="supervisor")
    [f] = [f for f in _findings(store)[run.run_id] if f.code == "overwrite"]
    assert "after 1 output(s), 100 tokens, before its first logical unit" in f.evidence, f.evidence


def test_ignored_input_evidence_counts_the_outputs_used_later(store: Store, traced) -> None:
    with traced():
        with sdk.run("ignored") as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                outs = {}
                for worker in ("w_x", "w_a", "w_b"):
                    with sup.delegate(worker, task=f"task {worker}") as d:
                        with sdk.agent(worker, role="worker"):
                            outs[worker] = d.output(worker, tokens=10, unit_complete=True)
                        with sup.verify("review", target=outs[worker]) as v:
                            v.verdict("pass")
                        d.decision("accepted", output=outs[worker])
                    if worker == "w_x":
                        with sup.llm(input_tokens=300, output_tokens=10, consumes=[outs["w_x"]]):
                            pass
                with sup.llm(input_tokens=300, output_tokens=10, consumes=[outs["w_b"]]):
                    pass
            run.terminate("done", success_claimed=True, agent="supervisor")
    [f] = [f for f in _findings(store)[run.run_id] if f.code == "FM-2.5"]
    assert f.evidence.endswith("it later used 1 other output(s)"), f.evidence


def test_a_reviewer_beside_the_delegate_is_no_reasoning_action_mismatch(store: Store, traced) -> None:
    with traced():
        with sdk.run("reviewer decides") as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("coder", task="implement parser") as d:
                    with sdk.agent("coder", role="worker"):
                        out = d.output("code", tokens=100, unit_complete=True)
                    with sdk.agent("reviewer", role="reviewer") as r:
                        with r.verify("code review", target=out) as v:
                            v.verdict("pass")
                    d.decision("accepted", output=out)
            run.terminate("done", success_claimed=True, agent="supervisor")
        with sdk.run("someone else did it") as other:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("coder", task="implement parser") as d:
                    with sdk.agent("helper", role="worker"):
                        out = d.output("code", tokens=100, unit_complete=True)
                    d.decision("accepted", output=out)
            other.terminate("done", success_claimed=True, agent="supervisor")
    codes = _codes(store)
    assert "FM-2.6" not in codes[run.run_id] and "FM-2.6" in codes[other.run_id]


def test_restart_after_any_checkpoint_counted_once_per_step(store: Store, traced) -> None:
    with traced():
        with sdk.run("second checkpoint") as second:
            with sdk.agent("ops") as ops:
                with ops.tool("fetch", {"page": 1}):
                    pass
                second.checkpoint("cp1")
                with ops.tool("fetch", {"page": 2}):
                    pass
                second.checkpoint("cp2")
                with ops.tool("parse", {"page": 2}) as p:
                    p.error("parser crashed")
                with ops.tool("fetch", {"page": 2}) as again:
                    pass
            second.terminate("stopped", success_claimed=False)
        with sdk.run("two failures") as two:
            with sdk.agent("ops") as ops:
                with ops.tool("fetch", {"page": 1}):
                    pass
                two.checkpoint("cp1")
                for i in range(2):
                    with ops.tool("parse", {"page": 1, "try": i}) as p:
                        p.error("parser crashed")
                with ops.tool("fetch", {"page": 1}):
                    pass
            two.terminate("stopped", success_claimed=False)
    found = _findings(store)
    [f] = [f for f in found[second.run_id] if f.code == "restart-instead-of-resume"]
    assert f.span_id == again.span_id and "checkpoint cp2" in f.evidence, f.evidence
    [f] = [f for f in found[two.run_id] if f.code == "restart-instead-of-resume"]
    assert " 1 step(s) finished before checkpoint cp1" in f.evidence, f.evidence


def test_conformity_reads_the_family_of_provider_prefixed_model_ids(store: Store, traced) -> None:
    with traced():
        runs = {}
        for author in ("us.meta.llama3-1-70b-instruct-v1:0", "us.anthropic.claude-3-haiku-20240307-v1:0"):
            with sdk.run("bedrock") as run:
                with sdk.agent("supervisor", role="supervisor",
                               model="us.anthropic.claude-3-5-sonnet-20241022-v2:0") as sup:
                    with sup.delegate("worker", task="job") as d:
                        with sdk.agent("worker", role="worker", model=author):
                            out = d.output("r", tokens=10, unit_complete=True)
                        d.decision("accepted", output=out)
                    with sup.verify("integration", target=out) as v:
                        v.verdict("fail")
                run.terminate("stopped", success_claimed=False, agent="supervisor")
            runs[author] = run.run_id
    codes = _codes(store)
    assert "conformity" not in codes[runs["us.meta.llama3-1-70b-instruct-v1:0"]]
    assert "conformity" in codes[runs["us.anthropic.claude-3-haiku-20240307-v1:0"]]


@pytest.mark.parametrize("chained", [False, True])
def test_a_failure_retried_successfully_later_in_its_chain_is_no_cascade_root(
        chained: bool, store: Store, traced) -> None:
    # Attempts 1 and 2 fail, 3 succeeds: the failed attempt no successful retry named directly
    # made the worker's output erroneous, and the next worker's own failure a cascade from it.
    with traced():
        with sdk.run("retried upstream") as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("fetcher", task="fetch the data") as d:
                    with sdk.agent("fetcher", role="worker") as w:
                        _attempts(w, chained, False)
                        out = d.output("data", tokens=10, unit_complete=True)
                    d.decision("accepted", output=out)
                try:
                    with sup.delegate("analyst", task="analyse it", consumes=[out]):
                        with sdk.agent("analyst", role="worker"):
                            raise ValueError("bad input")
                except ValueError:
                    pass
            run.terminate("failed", success_claimed=False, agent="supervisor")
    assert "error-cascade" not in _codes(store)[run.run_id]


def test_missing_compensation_scope_is_the_action_not_the_run(store: Store, traced) -> None:
    # The same agent in another turn of the same hand-off is the same action; its side effect in
    # an earlier, completed hand-off is not (the same-agent clause took in the whole run).
    with traced():
        with sdk.run("two turns") as same:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("deployer", task="deploy") as d:
                    with sdk.agent("deployer", role="worker") as w:
                        with w.tool("create_db", {"n": 1}, side_effect=True, target="db"):
                            pass
                    with sdk.agent("deployer", role="worker") as w:
                        with w.tool("migrate", {"n": 1}, side_effect=True, target="db") as mig:
                            mig.error("migration failed")
            same.terminate("failed", success_claimed=False, agent="supervisor")
        with sdk.run("earlier hand-off") as earlier:
            with sdk.agent("supervisor", role="supervisor") as sup:
                for task in ("create the db", "migrate it"):
                    with sup.delegate("deployer", task=task) as d:
                        with sdk.agent("deployer", role="worker") as w:
                            with w.tool(task, {"n": 1}, side_effect=True, target="db") as t:
                                if task == "migrate it":
                                    t.error("migration failed")
                            out = d.output("done", tokens=1, unit_complete=True)
                        d.decision("accepted", output=out)
            earlier.terminate("failed", success_claimed=False, agent="supervisor")
    codes = _codes(store)
    assert "missing-compensation" in codes[same.run_id]
    assert "missing-compensation" not in codes[earlier.run_id]


# --- sweep 3: failures the sweep's scripted teams hid, and spellings read as failures ----------

def test_one_approval_on_the_parent_covers_one_action(store: Store, traced) -> None:
    # One approval naming drop_table covered every later drop_table under the same agent.
    with traced():
        with sdk.run("one approval, two drops") as run:
            with sdk.agent("ops", role="worker") as ops:
                sdk.approval("drop_table", "alice", "approved")
                with ops.tool("drop_table", args={"t": "tmp"}, target="tmp", high_stakes=True):
                    pass
                with ops.tool("drop_table", args={"t": "users"}, target="users", high_stakes=True) as second:
                    pass
                sdk.approval("drop_table", "alice", "approved")
                with ops.tool("drop_table", args={"t": "logs"}, target="logs", high_stakes=True):
                    pass
    flagged = [f.span_id for f in _findings(store)[run.run_id] if f.code == "unapproved-high-stakes-action"]
    assert flagged == [second.span_id]


def _delegation_still_running(sup) -> None:
    """The supervisor claims success while a hand-off it made runs on in another thread."""
    import threading

    started, claimed = threading.Event(), threading.Event()

    def work() -> None:
        with sup.delegate("slow_worker", task="long analysis") as d:
            with sdk.agent("slow_worker", role="worker"):
                started.set()
                claimed.wait(5)
                out = d.output("late result", tokens=10, unit_complete=True)
            with sup.verify("review", target=out) as v:
                v.verdict("pass")
            d.decision("accepted", output=out)

    thread = threading.Thread(target=sdk.propagate(work))
    thread.start()
    started.wait(5)
    sdk.current_run().terminate("all tasks done", success_claimed=True, agent="supervisor")
    claimed.set()
    thread.join()


def test_success_claimed_over_a_failed_or_still_running_hand_off_is_premature(store: Store, traced) -> None:
    def claims(name: str, body) -> str:
        with sdk.run(name) as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                body(sup)
            if name != "still running":
                run.terminate("all tasks done", success_claimed=True, agent="supervisor")
        return run.run_id

    with traced():
        crashed = claims("crashed", lambda sup: _delegation_crashes(sup, again=False))
        redone = claims("delegated again", _delegation_crashes)
        running = claims("still running", _delegation_still_running)
    found = _findings(store)
    [f] = [f for f in found[crashed] if f.code == "FM-3.1"]
    assert f.agent == "supervisor" and "over 1 failed hand-off(s) (to coder)" in f.evidence, f.evidence
    [f] = [f for f in found[running] if f.code == "FM-3.1"]
    assert "1 delegation(s) were still running (to slow_worker)" in f.evidence, f.evidence
    assert "FM-3.1" not in {f.code for f in found[redone]}


def test_a_modification_reads_as_an_overwrite_only_where_the_trace_records_units(store: Store, traced) -> None:
    # unit_complete defaults to False: a team that never sets it modified "before its first unit".
    def modifies(name: str, unit_later: bool) -> str:
        with sdk.run(name) as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("writer", task="draft the README") as d:
                    with sdk.agent("writer", role="worker"):
                        out = d.output("# Readme ...", tokens=300)
                    with sup.verify("review", target=out) as v:
                        v.verdict("pass")
                    d.decision("modified", output=out, result="# README", reason="fixed a typo")
                    if unit_later:
                        with sdk.agent("writer", role="worker"):
                            d.output("# Readme, section 2", tokens=300, unit_complete=True)
            run.terminate("all tasks done", success_claimed=True, agent="supervisor")
        return run.run_id

    with traced():
        unrecorded = modifies("no unit flags", unit_later=False)
        cut_in = modifies("modified before the unit completed", unit_later=True)
    codes = _codes(store)
    assert "overwrite" not in codes[unrecorded] and "overwrite" in codes[cut_in]


@pytest.mark.parametrize("role", ["orchestrating agent", "Planning", "dispatcher", "Team Lead", "routing"])
def test_coordinating_roles_are_read_in_any_spelling(role: str, store: Store, traced) -> None:
    with traced():
        with sdk.run("role spellings") as run:
            with sdk.agent("boss", role=role) as boss:
                with boss.delegate("worker", task="job") as d:
                    with sdk.agent("worker", role="worker"):
                        out = d.output("done", tokens=10, unit_complete=True)
                    with boss.verify("review", target=out) as v:
                        v.verdict("pass")
                    d.decision("accepted", output=out)
            run.terminate("all tasks done", success_claimed=True, agent="boss")
    assert "FM-1.2" not in _codes(store)[run.run_id]


def test_a_redelivery_under_one_idempotency_key_is_no_step_repetition(store: Store, traced) -> None:
    with traced():
        with sdk.run("at-least-once") as run:
            with sdk.agent("mailer", role="worker") as a:
                for key in ("invoice:42", "invoice:42", "invoice:43", ""):
                    with a.tool("send_invoice", {"order": 42}, side_effect=True, target="order-42",
                                idempotency_key=key or None):
                        pass
            run.terminate("all tasks done", success_claimed=True, agent="mailer")
        with sdk.run("redelivered") as redelivered:
            with sdk.agent("mailer", role="worker") as a:
                for _ in range(2):
                    with a.tool("send_invoice", {"order": 42}, side_effect=True, target="order-42",
                                idempotency_key="invoice:42"):
                        pass
            redelivered.terminate("all tasks done", success_claimed=True, agent="mailer")
    found = _findings(store)
    # Calls under different keys, or none, are still the same call made again.
    assert "FM-1.3" in {f.code for f in found[run.run_id]}
    assert "FM-1.3" not in {f.code for f in found[redelivered.run_id]}


def test_a_failed_hand_off_leaves_the_side_effects_of_the_hand_offs_it_built_on(store: Store, traced) -> None:
    # One worker provisions, the next configures what it made and fails: the action is split
    # over two hand-offs, linked by the output the second was given.
    def deploys(name: str, linked: bool) -> str:
        with sdk.run(name) as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("provisioner", task="create the VM") as d:
                    with sdk.agent("provisioner", role="worker") as w:
                        with w.tool("create_vm", {"n": "web1"}, side_effect=True, target="vm:web1"):
                            pass
                        out = d.output("vm ready", tokens=10, unit_complete=True)
                    with sup.verify("review", target=out) as v:
                        v.verdict("pass")
                    d.decision("accepted", output=out)
                try:
                    with sup.delegate("configurer", task="configure web1", consumes=[out] if linked else None):
                        with sdk.agent("configurer", role="worker") as w:
                            with w.tool("ssh_configure", {"n": "web1"}, side_effect=True, target="vm:web1"):
                                raise RuntimeError("ssh refused")
                except RuntimeError:
                    pass
            run.terminate("deployment failed", success_claimed=False, agent="supervisor")
        return run.run_id

    with traced():
        linked = deploys("built on the VM", linked=True)
        unlinked = deploys("no data flow", linked=False)
    found = _findings(store)
    [f] = [f for f in found[linked] if f.code == "missing-compensation"]
    assert f.agent == "configurer" and "1 side effect(s) nobody undid: create_vm@" in f.evidence, f.evidence
    assert "missing-compensation" not in {f.code for f in found[unlinked]}
