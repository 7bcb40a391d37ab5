"""handoffs.detectors: where a span is judged. Findings, metrics, root-cause attribution.

    from handoffs.detectors import detect
    for tf in detect(store):                      # incremental and idempotent
        for f in tf.findings:
            print(tf.trace_id, f.code, f.agent, f.step, f.evidence)

Structural detectors are SQL over the normalised shape (``normalise``, ``structural``); error
cascades are a per-trace graph (``cascade``); imported message logs go through the text models
(``textual``). ``metrics.compute_metrics`` and ``attribution.attribute`` build on the same data.
"""

from __future__ import annotations

from .findings import Finding, TraceFindings
from .findings import load as load_findings
from .pipeline import detect, detect_current, detect_pending, version

__all__ = ["Finding", "TraceFindings", "detect", "detect_current", "detect_pending", "load_findings", "version"]
