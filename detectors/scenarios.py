"""Seeded SDK runs injecting the structural modes the demo does not, to measure their detectors.

The demo injects five modes. This suite plays a small supervisor team through the real SDK with
the noise a healthy team makes (outputs in several units, modifications after a unit completed,
a failed check redone in the same hand-off, transient tool errors retried with an idempotency
key, approved high-stakes actions, a worker handing a question back on an ambiguous task,
checkpoints resumed after a failure) and injects at most one of the other structural modes per
run. Ground truth goes on the run span in ``handoff.demo.injected``, as the demo writes it.

Written by the detectors' author: a check that each detector sees its own signal through the
real SDK and stays quiet on the noise, not an independent benchmark (the demo is that).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from handoffs import conventions as c
from handoffs import sdk
from handoffs import taxonomy as t

SUPERVISOR = "supervisor"
WORKERS = ("analyst", "coder", "tester", "writer")

MODES = ("re-derivation", "duplicate-side-effect", "missing-compensation", "restart-instead-of-resume",
         "unapproved-high-stakes-action", "conformity", "FM-1.1", "FM-1.2", "FM-1.4", "FM-1.5", "FM-2.2",
         "FM-2.4", "FM-2.5", "FM-2.6", "FM-3.3")


class _Play:
    """One run: a supervisor delegating tasks in order, each output feeding the next."""

    def __init__(self, rng: random.Random, run: sdk.Run, mode: str | None) -> None:
        self.rng = rng
        self.run = run
        self.mode = mode
        self.truth: list[dict[str, Any]] = []
        self.workers = rng.sample(WORKERS, rng.randint(2, 4))
        family = rng.choice(("gpt", "claude"))
        self.sup_model = f"{family}-large"
        # Conformity needs author and acceptor of one family; otherwise mix families.
        other = "llama" if family != "llama" else "gpt"
        self.models = {w: (f"{family}-small" if mode == "conformity" else f"{other}-{i}")
                       for i, w in enumerate(self.workers)}
        self.at = rng.randrange(len(self.workers))  # the task where the mode is injected
        self.outputs: list[sdk.Output] = []
        self.tasks: list[str] = []

    def inject(self, code: str, agent: str, step: int) -> None:
        self.truth.append({"code": code, "agent": agent, "step": step})

    def worker_turn(self, d: sdk.Delegation, i: int, worker: str) -> sdk.Output:
        rng, mode, here = self.rng, self.mode, i == self.at
        name = "helper" if here and mode == "FM-2.6" else worker
        with sdk.agent(name, role="worker", model=self.models.get(worker, "gpt-small"),
                       consumes=self.outputs[-1:]) as w:
            tokens = rng.randint(300, 800)
            for _ in range(rng.randint(1, 3)):
                tokens += rng.randint(100, 400)
                with w.llm(input_tokens=tokens, output_tokens=rng.randint(50, 300)):
                    pass
            if here and mode == "FM-1.4":
                with w.llm(input_tokens=tokens // 4, output_tokens=50) as lost:
                    pass
                self.inject("FM-1.4", name, lost.step)
            if rng.random() < 0.3:  # a transient error, retried under one idempotency key
                key = f"{self.run.run_id}:{i}"
                with w.tool("fetch", {"i": i}, side_effect=True, target=f"t{i}", idempotency_key=key) as first:
                    first.error("timeout")
                with w.tool("fetch", {"i": i}, side_effect=True, target=f"t{i}", idempotency_key=key,
                            retry_of=first):
                    pass
            if rng.random() < 0.3:  # a high-stakes action, approved first
                with w.tool("deploy", {"i": i}, high_stakes=True, side_effect=True, target=f"env{i}") as dep:
                    dep.approval("deploy", approver="oncall")
            if here and mode == "unapproved-high-stakes-action":
                with w.tool("drop_table", {"i": i}, high_stakes=True, side_effect=True, target="prod") as bad:
                    pass
                self.inject(mode, name, bad.step)
            if here and mode == "duplicate-side-effect":
                with w.tool("charge", {"amount": 5}, side_effect=True, target="card") as first:
                    pass
                with w.tool("charge", {"amount": 5}, side_effect=True, target="card", retry_of=first) as dup:
                    pass
                self.inject(mode, name, dup.step)
            if here and mode == "missing-compensation":
                with w.tool("create_bucket", {"i": i}, side_effect=True, target="bucket"):
                    pass
                with w.tool("upload", {"i": i}, side_effect=True, target="bucket") as up:
                    up.error("quota exceeded")
                self.inject(mode, name, up.step)
            elif rng.random() < 0.2:  # a failed step after a side effect, rolled back
                with w.tool("create_bucket", {"i": i}, side_effect=True, target=f"tmp{i}") as made:
                    pass
                with w.tool("upload", {"i": i}, side_effect=True, target=f"tmp{i}") as up:
                    up.error("quota exceeded")
                with w.compensate("delete_bucket", of=made):
                    pass
                with w.tool("upload", {"i": i, "small": True}, side_effect=True, target=f"tmp{i}b", retry_of=up):
                    pass
            if here and mode == "FM-1.2":
                helper = next(x for x in WORKERS if x not in self.workers[:1] and x != worker)
                with w.delegate(helper, task="do half of it") as sub:
                    with sdk.agent(helper, role="worker"):
                        o = sub.output("half", tokens=10, unit_complete=True)
                    with w.verify("review", target=o) as v:
                        v.verdict("pass")
                    sub.decision("accepted", output=o)
                self.inject(mode, name, sub.step)
            if here and mode == "FM-2.4":
                d.set_status(c.DelegationStatus.COMPLETED)
                self.inject(mode, name, d.step)
                return None  # type: ignore[return-value]
            units = rng.randint(1, 3)
            out = None
            for u in range(units):
                out = d.output(f"{worker} part {u} {rng.random()}", tokens=rng.randint(50, 400),
                               unit_complete=u == units - 1 or rng.random() < 0.3)
            if here and mode == "FM-2.6":
                self.inject(mode, SUPERVISOR, d.step)
            return out

    def play(self) -> None:
        rng, mode = self.rng, self.mode
        with sdk.agent(SUPERVISOR, role="supervisor", model=self.sup_model) as sup:
            with sup.llm(input_tokens=500, output_tokens=200):
                pass
            failed_before = False
            for i, worker in enumerate(self.workers):
                here = i == self.at
                ambiguous = here and mode == "FM-2.2" or rng.random() < 0.2
                task = f"task {i} {rng.random()}"
                self.tasks.append(task)
                with sup.delegate(worker, task=task, consumes=self.outputs[-1:]) as d:
                    if ambiguous:
                        d.set_attribute(c.TASK_AMBIGUOUS, True)
                        if not (here and mode == "FM-2.2"):  # a good worker asks first
                            with sdk.agent(worker, role="worker") as w:
                                with w.delegate(SUPERVISOR, task="which format?") as q:
                                    with sdk.agent(SUPERVISOR, role="supervisor"):
                                        q.output("json", tokens=3, unit_complete=True)
                    out = self.worker_turn(d, i, worker)
                    if ambiguous and here and mode == "FM-2.2":
                        self.inject(mode, worker, d.step)
                    if out is None:
                        continue
                    if here and mode == "conformity":
                        step = d.decision("accepted", output=out)
                        self.inject("conformity", SUPERVISOR, step)
                        self.inject(t.MISSING_VERIFICATION, SUPERVISOR, step)
                        self.outputs.append(out)
                        continue
                    if here and mode == "FM-1.1":
                        with sup.verify("requirements check", target=out) as v:
                            v.verdict("fail")
                        self.inject(mode, worker, out.step)
                    elif here and mode == "FM-3.3":
                        with sup.verify("smoke test", target=out) as v:
                            v.verdict("pass")
                        self.inject(mode, SUPERVISOR, v.step)
                    elif rng.random() < 0.25:  # a check fails; the worker redoes it in the hand-off
                        with sup.verify("unit tests", target=d) as v:
                            v.verdict("fail")
                        d.decision("rejected", output=out)
                        out = self.worker_turn(d, 100 + i, worker)
                        with sup.verify("unit tests", target=d) as v:
                            v.verdict("pass")
                    else:
                        with sup.verify("unit tests", target=out, coverage=rng.choice((0.7, 1.0))) as v:
                            v.verdict("pass")
                    if here and mode == "re-derivation":
                        step = d.decision("rederived", output=out, reason="recomputed it myself")
                        self.inject(mode, SUPERVISOR, step)
                    elif out.unit_complete and rng.random() < 0.3:
                        d.decision("modified", output=out, result="tidied")
                    else:
                        d.decision("accepted", output=out)
                    if not (here and mode == "FM-2.5"):
                        self.outputs.append(out)
                    else:
                        self.inject(mode, SUPERVISOR, d.step)
                if here and mode == "restart-instead-of-resume" and not failed_before:
                    failed_before = True
                    self.run.checkpoint(f"after-{i}")
                    with sup.tool("publish", {"i": i}) as boom:
                        boom.error("network down")
                    first = self.workers[0]
                    with sup.delegate(first, task=self.tasks[0]) as again:
                        redo = self.worker_turn(again, 200, first)
                        with sup.verify("unit tests", target=redo) as v:
                            v.verdict("pass")
                        again.decision("accepted", output=redo)
                    self.outputs.append(redo)
                    self.inject(mode, SUPERVISOR, again.step)
                    self.inject(t.STEP_REPETITION, SUPERVISOR, again.step)
                elif i == 0 and rng.random() < 0.2:  # a failure after a checkpoint, resumed properly
                    self.run.checkpoint("after-0")
                    with sup.tool("publish", {"i": i}) as boom:
                        boom.error("network down")
                    self.run.resume("after-0")
                    with sup.tool("publish", {"i": i}, retry_of=boom):
                        pass
            with sup.tool("save", {"n": len(self.outputs)}, side_effect=True, target="repo",
                          idempotency_key=f"{self.run.run_id}:save", consumes=self.outputs):
                pass
        if mode == "FM-3.3":
            target = self.outputs[self.at] if self.at < len(self.outputs) else self.outputs[-1]
            with sdk.agent("reviewer", role="verifier") as rev, rev.verify("integration", target=target) as v:
                v.verdict("fail")
        if mode == "conformity":
            with sdk.agent("reviewer", role="verifier") as rev, \
                    rev.verify("integration", target=self.outputs[self.at]) as v:
                v.verdict("fail")
        success = mode not in ("FM-1.1", "FM-3.3", "conformity", "missing-compensation")
        reason = "max_turns reached" if mode == "FM-1.5" else "done"
        step = self.run.terminate(reason, success_claimed=success, agent=SUPERVISOR)
        if mode == "FM-1.5":
            self.inject(mode, SUPERVISOR, step)


def simulate(n_runs: int, seed: int, failure_rate: float = 0.6,
             progress: Callable[[int], None] | None = None) -> list[list[dict[str, Any]]]:
    """Play ``n_runs`` runs through the SDK as it is configured; return each run's ground truth."""
    truths = []
    for i in range(n_runs):
        rng = random.Random(f"handoffs-scenarios:{seed}:{i}")
        mode = rng.choice(MODES) if rng.random() < failure_rate else None
        with sdk.run("scenario", tags=["scenarios"]) as run:
            play = _Play(rng, run, mode)
            play.play()
            run.set_attribute(c.DEMO_INJECTED, json.dumps(play.truth, separators=(",", ":")))
        truths.append(play.truth)
        if progress:
            progress(i)
    return truths
