"""A simulated agent team building a REST API, with failures injected on purpose, through the real SDK.

A supervisor (``centralized``) or a router passing control along (``independent``) hands the
work (schema, route handlers, tests, docs) to 2-4 workers. Each run is planned from its own
seeded random stream, so ``simulate(n, seed)`` emits the same runs every time (span and run ids
aside). What was injected is written on the run span as ``handoff.demo.injected``: a JSON list of
``{"code", "agent", "step"}`` with codes from ``handoffs.taxonomy`` and steps as the SDK numbered
them, so detectors can be held to it.

Clean runs carry the noise a real team makes, none of it a failure: outputs delivered in several
units, outputs modified after their unit completed, a check that fails and the worker redoing it
in the same hand-off, transient tool errors retried with an idempotency key, repeated tools with
different arguments, high-stakes deploys approved first, growing context windows, varied team
sizes, models and token counts.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from handoffs import conventions as c
from handoffs import sdk
from handoffs import taxonomy as t
from handoffs.errors import UsageError
from handoffs.store import Store

# --inject names -> taxonomy codes (either spelling is accepted).
KINDS: dict[str, str] = {
    "overwrite": t.OVERWRITE,
    "premature-termination": t.PREMATURE_TERMINATION,
    "error-cascade": t.ERROR_CASCADE,
    "step-repetition": t.STEP_REPETITION,
    "missing-verification": t.MISSING_VERIFICATION,
}
_NEEDS_SUPERVISOR = {t.OVERWRITE, t.MISSING_VERIFICATION}  # both are about a supervisor's decision

SUPERVISOR = "supervisor"
ROUTER = "router"
TOPOLOGIES = ("centralized", "independent")
_MODELS = ("gpt-4o-mini", "claude-haiku", "llama-3-70b", "gpt-4o")
_SUPERVISOR_MODELS = ("gpt-4o", "claude-sonnet")


@dataclass(frozen=True)
class Task:
    """One piece of the API: who builds it, from which earlier pieces, checked how, saved where."""

    name: str
    worker: str
    deps: tuple[str, ...]
    check: str
    path: str


_TASKS = (
    ("schema", "schema_writer", (), "schema migration dry-run", "db/schema.sql"),
    ("routes", "route_writer", ("schema",), "route unit tests", "api/routes.py"),
    ("tests", "test_writer", ("routes",), "integration tests", "tests/test_api.py"),
    ("docs", "docs_writer", ("routes",), "docs link check", "docs/api.md"),
)


@dataclass
class DemoRun:
    """What one simulated run was and what was injected into it (also on its run span)."""

    index: int
    run_id: str
    topology: str
    workers: list[str]
    tasks: list[str]
    kinds: list[str]  # taxonomy codes planned for this run
    injected: list[dict[str, Any]] = field(default_factory=list)  # with agents and steps, once played
    trace_id: str = ""


def parse_kinds(spec: str | Iterable[str] | None) -> list[str]:
    """``"overwrite,FM-3.1"`` / ``"all"`` / ``"none"`` -> taxonomy codes; unknown names are a UsageError."""
    if spec is None:
        return list(KINDS.values())
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if items in ([], ["none"]):
        return []
    if items == ["all"]:
        return list(KINDS.values())
    codes = set(KINDS.values())
    out = []
    for item in items:
        code = KINDS.get(item, item)
        if code not in codes:
            raise UsageError(f"unknown failure kind {item!r}; use 'all', 'none' or a comma list of "
                             f"{', '.join(KINDS)} (or their codes {', '.join(sorted(codes))})")
        if code not in out:
            out.append(code)
    return out


def plan(index: int, seed: int, kinds: Sequence[str], failure_rate: float, salt: str) -> DemoRun:
    """Decide one run's shape and what goes wrong in it, from its own random stream."""
    rng = random.Random(f"handoffs-demo:{seed}:{index}")
    chosen: list[str] = []
    if kinds and rng.random() < failure_rate:
        chosen.append(rng.choice(list(kinds)))
        if len(kinds) > 1 and rng.random() < 0.15:  # now and then two things go wrong at once
            second = rng.choice([k for k in kinds if k != chosen[0]])
            chosen.append(second)
    if any(k in _NEEDS_SUPERVISOR for k in chosen):
        topology = "centralized"
    else:
        # Cascades split evenly, so the topologies' error amplification can be compared.
        share = 0.5 if t.ERROR_CASCADE in chosen else 0.35
        topology = "independent" if rng.random() < share else "centralized"
    if topology == "independent":
        chosen = [k for k in chosen if k not in _NEEDS_SUPERVISOR]
    team = rng.randint(2, 4)
    n_tasks = max(3, team)
    workers = [w for _, w, *_ in _TASKS[:team]]
    tasks = [name for name, *_ in _TASKS[:n_tasks]]
    return DemoRun(index, f"demo-{seed}-{index:05d}-{salt}", topology, workers, tasks, chosen)


def _tasks_of(run: DemoRun) -> list[Task]:
    out = []
    for i, (name, default_worker, deps, check, path) in enumerate(_TASKS[:len(run.tasks)]):
        worker = default_worker if default_worker in run.workers else run.workers[i % len(run.workers)]
        out.append(Task(name, worker, deps, check, path))
    return out


def _content(rng: random.Random, task: Task, part: str) -> str:
    return f"-- {task.name} {part}\n" + "\n".join(
        f"{task.name}_{rng.randrange(10_000):04d} = {rng.randrange(1_000_000)}" for _ in range(rng.randint(2, 6)))


class _Player:
    """Plays one planned run through the SDK, recording the steps of what it injects."""

    def __init__(self, run: DemoRun, seed: int) -> None:
        self.run = run
        self.rng = random.Random(f"handoffs-demo-play:{seed}:{run.index}")
        self.tasks = _tasks_of(run)
        self.models = {w: self.rng.choice(_MODELS) for w in run.workers}
        self.outputs: dict[str, sdk.Output] = {}
        self.bad: set[str] = set()  # tasks whose output is erroneous (error cascade)
        kinds = run.kinds
        rng = self.rng
        self.premature = (rng.choice(("open", "failed-check")) if t.PREMATURE_TERMINATION in kinds else "")
        # Each injection gets a task of its own, before the last one if the run ends early, and
        # away from the tasks an error cascade spreads into, so every planned failure happens.
        n = len(self.tasks) - 1 if self.premature else len(self.tasks)
        taken: set[int] = set()

        def pick(code: str, among: Iterable[int]) -> int:
            options = [p for p in among if p < n and p not in taken]
            if code not in kinds or not options:
                return -1
            chosen = rng.choice(options)
            taken.add(chosen)
            return chosen

        # A cascade starts in a piece others build on: the schema or the routes.
        self.cascade_at = pick(t.ERROR_CASCADE, (0, 1))
        if self.cascade_at >= 0:
            root = self.tasks[self.cascade_at].name
            taken.update(j for j, task in enumerate(self.tasks) if root in task.deps)
        self.overwrite_at = pick(t.OVERWRITE, range(n))
        self.unverified_at = pick(t.MISSING_VERIFICATION, range(n))
        self.repeat_at = pick(t.STEP_REPETITION, range(n))
        self.rework_at = rng.randrange(len(self.tasks)) if rng.random() < 0.3 else -1
        self.modify_at = rng.randrange(len(self.tasks)) if rng.random() < 0.3 else -1
        self.retry_at = rng.randrange(len(self.tasks)) if rng.random() < 0.4 else -1

    def inject(self, code: str, agent: str, step: int) -> None:
        self.run.injected.append({"code": code, "agent": agent, "step": step})

    # --- a worker's turn ----------------------------------------------------------------------
    def work(self, d: sdk.Delegation, i: int, task: Task, upstream: list[sdk.Output], turn: int = 1,
             partial: bool = False) -> sdk.Output:
        """The worker's agent span under ``d``: model calls, tools, and its outputs on ``d``."""
        rng = self.rng
        poisoned = bool(set(task.deps) & self.bad)
        root = i == self.cascade_at and turn == 1
        with sdk.agent(task.worker, role="worker", model=self.models[task.worker], consumes=upstream) as w:
            context = rng.randint(400, 1500)
            units = 1 if partial else rng.randint(1, 3)
            last_out: sdk.Output | None = None
            for u in range(units):
                context += rng.randint(100, 900)  # context only grows within a turn
                with w.llm(input_tokens=context, output_tokens=rng.randint(80, 700), consumes=upstream):
                    pass
                with w.tool("search_docs", args={"q": f"{task.name} part {u} turn {turn}"}):
                    pass
                if i == self.repeat_at and u == 0 and turn == 1:
                    with w.tool("read_file", args={"path": task.path}):
                        pass
                    with w.tool("read_file", args={"path": task.path}) as again:
                        pass
                    self.inject(t.STEP_REPETITION, task.worker, again.step)
                if i == self.retry_at and u == 0 and turn == 1 and not (root or poisoned or partial):
                    key = f"{self.run.run_id}:run:{task.name}"
                    with w.tool("run_code", args={"file": task.path}, idempotency_key=key) as first:
                        first.error("sandbox timed out")
                    with w.tool("run_code", args={"file": task.path}, idempotency_key=key, retry_of=first):
                        pass
                if root and u == units - 1:
                    with w.tool("run_code", args={"file": task.path, "check": "compile"}) as broken:
                        broken.error(f"{task.path}: column type 'Int65' does not exist")
                    self.inject(t.ERROR_CASCADE, task.worker, broken.step)
                    self.bad.add(task.name)
                elif poisoned and turn == 1:
                    # Every unit built on the bad input breaks, and so does the turn. With nobody
                    # checking (independent), the worker also retries in vain before moving on.
                    args = {"file": task.path, "check": f"unit {u}"}
                    with w.tool("run_code", args=args) as fails:
                        fails.error(f"{task.path}: references a name its input does not define")
                    if self.run.topology == "independent":
                        with w.tool("run_code", args=args, retry_of=fails) as again:
                            again.error(f"{task.path}: references a name its input does not define")
                    w.error("built on an erroneous upstream output")
                    self.bad.add(task.name)
                complete = not partial and u == units - 1 or (u < units - 1 and rng.random() < 0.3)
                last_out = d.output(_content(rng, task, f"unit {u} turn {turn}"),
                                    tokens=rng.randint(60, 900), unit_complete=complete)
        assert last_out is not None
        return last_out

    # --- centralized: a supervisor delegates, checks and decides --------------------------------
    def centralized(self, run: sdk.Run) -> None:
        rng = self.rng
        with sdk.agent(SUPERVISOR, role="supervisor", model=rng.choice(_SUPERVISOR_MODELS)) as sup:
            with sup.llm(input_tokens=rng.randint(300, 900), output_tokens=rng.randint(100, 400)):
                pass  # the plan
            last = len(self.tasks) - 1
            for i, task in enumerate(self.tasks):
                upstream = [self.outputs[dep] for dep in task.deps if dep in self.outputs]
                with sup.delegate(task.worker, task=f"write {task.name} for the orders API",
                                  consumes=upstream) as d:
                    if i == last and self.premature == "open":
                        self.work(d, i, task, upstream, partial=True)
                        step = run.terminate("all tasks done", success_claimed=True, agent=SUPERVISOR)
                        self.inject(t.PREMATURE_TERMINATION, SUPERVISOR, step)
                        return
                    if i == self.overwrite_at:
                        self.overwrite(sup, d, i, task, upstream)
                        continue
                    out = self.work(d, i, task, upstream)
                    if i == last and self.premature == "failed-check":
                        with sup.verify(task.check, target=out, coverage=1.0) as v:
                            v.verdict("fail", "3 of 41 cases failed")
                        step = run.terminate("all tasks done", success_claimed=True, agent=SUPERVISOR)
                        self.inject(t.PREMATURE_TERMINATION, SUPERVISOR, step)
                        return
                    if i == self.cascade_at or i == self.unverified_at:
                        step = d.decision("accepted", output=out)
                        self.inject(t.MISSING_VERIFICATION, SUPERVISOR, step)
                    elif task.name in self.bad or i == self.rework_at:
                        out = self.rework(sup, d, i, task, upstream, out)
                    else:
                        with sup.verify(task.check, target=out, coverage=rng.choice((0.6, 0.8, 1.0))) as v:
                            v.verdict("pass")
                        if i == self.modify_at and out.unit_complete:
                            d.decision("modified", output=out, result=_content(rng, task, "edited"),
                                       reason="renamed two fields to the API's style")
                        else:
                            d.decision("accepted", output=out)
                    self.outputs[task.name] = out
                self.save(sup, task, [out])
            if rng.random() < 0.3:  # a high-stakes step done right: approved before it ran
                with sup.tool("deploy", args={"env": "staging"}, target="staging", side_effect=True,
                              high_stakes=True, idempotency_key=f"{self.run.run_id}:deploy") as deploy:
                    deploy.approval("deploy the orders API to staging", approver="oncall")
        run.terminate("all tasks done", success_claimed=True, agent=SUPERVISOR)

    def overwrite(self, sup: sdk.Agent, d: sdk.Delegation, i: int, task: Task,
                  upstream: list[sdk.Output]) -> None:
        """The supervisor cuts in before the worker completed a unit and writes the piece itself."""
        rng = self.rng
        partial = self.work(d, i, task, upstream, partial=True)
        rewrite = _content(rng, task, "rewritten by the supervisor")
        step = d.decision("overwrote", output=partial, result=rewrite, reason="faster to write it myself")
        self.inject(t.OVERWRITE, SUPERVISOR, step)
        with sup.llm(input_tokens=rng.randint(900, 2500), output_tokens=rng.randint(200, 900)):
            pass
        with sup.verify(task.check, target=d, coverage=1.0) as v:
            v.verdict("pass")
        with sup.tool("write_file", args={"path": task.path, "by": SUPERVISOR}, target=task.path,
                      side_effect=True, idempotency_key=f"{self.run.run_id}:write:{task.path}"):
            pass

    def rework(self, sup: sdk.Agent, d: sdk.Delegation, i: int, task: Task, upstream: list[sdk.Output],
               out: sdk.Output) -> sdk.Output:
        """A check fails; the supervisor sends the worker back within the same hand-off."""
        with sup.verify(task.check, target=d, coverage=1.0) as v:
            v.verdict("fail", "2 cases failed")
        d.decision("rejected", output=out, reason="checks fail; fix and resend")
        again = self.work(d, i, task, upstream, turn=2)
        with sup.verify(task.check, target=d, coverage=1.0) as v:
            v.verdict("pass")
        d.decision("accepted", output=again)
        self.bad.discard(task.name)  # caught and fixed here: the cascade stops
        return again

    def save(self, agent: sdk.Agent, task: Task, outputs: list[sdk.Output]) -> None:
        with agent.tool("write_file", args={"path": task.path}, target=task.path, side_effect=True,
                        idempotency_key=f"{self.run.run_id}:write:{task.path}", consumes=outputs):
            pass

    # --- independent: control passes along, nobody decides ----------------------------------------
    def independent(self, run: sdk.Run) -> None:
        rng = self.rng
        with sdk.agent(ROUTER, role="router", model=rng.choice(_SUPERVISOR_MODELS)) as router:
            last = len(self.tasks) - 1
            for i, task in enumerate(self.tasks):
                upstream = [self.outputs[dep] for dep in task.deps if dep in self.outputs]
                with router.delegate(task.worker, task=f"write {task.name} for the orders API",
                                     mode=c.HandoffMode.TRANSFER.value, consumes=upstream) as d:
                    if i == last and self.premature == "open":
                        self.work(d, i, task, upstream, partial=True)
                        step = run.terminate("all tasks done", success_claimed=True, agent=ROUTER)
                        self.inject(t.PREMATURE_TERMINATION, ROUTER, step)
                        return
                    out = self.work(d, i, task, upstream)
                    if i == last and self.premature == "failed-check":
                        with sdk.agent(task.worker, role="worker") as w, \
                                w.verify(task.check, target=out, coverage=1.0) as v:
                            v.verdict("fail", "3 of 41 cases failed")
                        step = run.terminate("all tasks done", success_claimed=True, agent=ROUTER)
                        self.inject(t.PREMATURE_TERMINATION, ROUTER, step)
                        return
                    if task.name not in self.bad:
                        # Workers check their own work before passing control on.
                        with sdk.agent(task.worker, role="worker") as w, \
                                w.verify(task.check, target=out, coverage=rng.choice((0.6, 0.8, 1.0))) as v:
                            v.verdict("pass")
                    self.outputs[task.name] = out
            with router.tool("assemble_release", args={"tasks": [x.name for x in self.tasks]},
                             side_effect=True, target="release.zip",
                             idempotency_key=f"{self.run.run_id}:release",
                             consumes=list(self.outputs.values())) as release:
                if self.bad:
                    release.error("release bundle does not build")
        run.terminate("all tasks done", success_claimed=True, agent=ROUTER)


def play(run: DemoRun, seed: int) -> DemoRun:
    """Emit one planned run through the SDK as it is configured now."""
    player = _Player(run, seed)
    with sdk.run("build-orders-api", run_id=run.run_id, tags=["demo", run.topology],
                 topology=run.topology) as r:
        if run.topology == "centralized":
            player.centralized(r)
        else:
            player.independent(r)
        r.set_attribute(c.DEMO_INJECTED, json.dumps(run.injected, separators=(",", ":")))
        run.trace_id = r.trace_id
    return run


def simulate(n_runs: int = 20, seed: int = 0, inject: str | Iterable[str] | None = "all",
             failure_rate: float = 0.6, *, store: Store | str | None = None, endpoint: str | None = None,
             service_name: str = "demo-team", progress: Callable[[DemoRun], None] | None = None) -> list[DemoRun]:
    """Run ``n_runs`` simulated team runs; each fails with ``failure_rate`` in one of ``inject``.

    With ``store`` or ``endpoint`` the SDK is configured for the duration (and flushed at the
    end); with neither, spans go wherever the SDK is configured already.
    """
    if n_runs < 0 or not 0.0 <= failure_rate <= 1.0:
        raise UsageError("n_runs must be >= 0 and failure_rate between 0 and 1")
    kinds = parse_kinds(inject)
    own = store is not None or endpoint is not None
    if own:
        sdk.configure(service_name, store=store, endpoint=endpoint, project="demo")
    salt = uuid.uuid4().hex[:8]  # a second demo on the same store makes new runs, not duplicates
    runs = []
    try:
        for i in range(n_runs):
            run = play(plan(i, seed, kinds, failure_rate, salt), seed)
            runs.append(run)
            if progress is not None:
                progress(run)
    finally:
        if own:
            sdk.shutdown()
    return runs
