"""handoffs.demo: a simulated team with injected failures, emitting spans through the real SDK.

    from handoffs.demo import simulate
    runs = simulate(20, seed=7, inject="overwrite,FM-3.1", store="chdb:///tmp/demo")
    runs[0].injected      # [{"code": "overwrite", "agent": "supervisor", "step": 7}]

The same ground truth is on each run span (``handoff.demo.injected``). ``handoffs demo`` runs it
end to end: SDK -> OTLP over loopback -> collector -> store -> detectors -> report.
"""

from __future__ import annotations

from .simulator import KINDS, TOPOLOGIES, DemoRun, parse_kinds, plan, play, simulate

__all__ = ["KINDS", "TOPOLOGIES", "DemoRun", "parse_kinds", "plan", "play", "simulate"]
