"""The OTLP/HTTP collector: receive spans, spool them durably, insert them into the store.

    from handoffs.collector import Collector
    collector = Collector(store, port=0).start()   # .port is the port it listens on
    collector.stop()                                # flushes what it acknowledged
"""

from __future__ import annotations

from .auth import Tokens, load_tokens
from .server import Collector, default_spool_dir

__all__ = ["Collector", "Tokens", "default_spool_dir", "load_tokens"]
