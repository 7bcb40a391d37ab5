"""The error-cascade graph on traces the SDK wrote: what links one error to another."""

from __future__ import annotations

import threading

from handoffs import sdk
from handoffs.detectors import detect
from handoffs.store import Store


def _failing_hand_off(sup: sdk.Agent, worker: str, started: threading.Barrier | None = None) -> None:
    try:
        with sup.delegate(worker, task=f"job for {worker}"), sdk.agent(worker, role="worker"):
            if started is not None:
                started.wait(5)  # both hand-offs are open at once
            raise RuntimeError("429 rate limited")
    except RuntimeError:
        pass


def test_without_data_flow_only_a_failure_that_came_before_another_explains_it(store: Store, traced) -> None:
    # The fallback for traces that record no data flow linked any earlier failed hand-off to any
    # later one of the same delegator: two that ran at once became a cascade.
    with traced():
        with sdk.run("parallel") as parallel:
            with sdk.agent("supervisor", role="supervisor") as sup:
                both = threading.Barrier(2)
                threads = [threading.Thread(target=sdk.propagate(_failing_hand_off), args=(sup, w, both))
                           for w in ("worker_a", "worker_b")]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        with sdk.run("in turn") as in_turn:
            with sdk.agent("supervisor", role="supervisor") as sup:
                _failing_hand_off(sup, "worker_a")
                _failing_hand_off(sup, "worker_b")
    codes = {tf.run_id: tf.codes() for tf in detect(store)}
    assert "error-cascade" not in codes[parallel.run_id]
    assert "error-cascade" in codes[in_turn.run_id]


def test_cascade_evidence_names_each_hop_once(store: Store, traced) -> None:
    # The hand-off and the agent's turn under it both consumed the bad output and both erred:
    # the evidence listed "fetcher -> analyst" twice.
    with traced():
        with sdk.run("cascade") as run:
            with sdk.agent("supervisor", role="supervisor") as sup:
                with sup.delegate("fetcher", task="fetch data") as d:
                    with sdk.agent("fetcher", role="worker"):
                        out = d.output("rows", tokens=10, unit_complete=True)
                    with sup.verify("schema check", target=out) as v:
                        v.verdict("fail")
                    d.decision("accepted", output=out)
                try:
                    with sup.delegate("analyst", task="analyse", consumes=[out]), \
                            sdk.agent("analyst", role="worker", consumes=[out]):
                        raise ValueError("column missing")
                except ValueError:
                    pass
            run.terminate("failed", success_claimed=False, agent="supervisor")
    [tf] = detect(store)
    [f] = [f for f in tf.findings if f.code == "error-cascade"]
    assert f.evidence.count(" -> analyst ") == 1, f.evidence
    assert "spread to 2 erroneous span(s)" in f.evidence and "ValueError: column missing" in f.evidence
