"""``python -m handoffs.detectors``: print the per-mode reference table of ``docs/detectors.md``."""

from .structural import reference

print(reference(), end="")
