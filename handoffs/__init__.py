"""handoffs: is delegation working? Tracing, detection and gating for LLM multi-agent systems."""

__version__ = "0.1.0"
