"""The cascade graph in a second Python process, beside the engine's structural queries.

The graph is Python, and the embedded engine keeps the interpreter lock while it runs a
query, so a thread cannot give the graph the second core; another process can. It is a plain
child (``main()`` of this module, in a fresh interpreter) fed over its standard input, not a
multiprocessing pool: spawning a pool re-runs the caller's main script in the child, which a
library must not do to its users. Frames are an 8-byte length and a body: a chunk's cascade
spans as an Arrow IPC stream in, its findings rows pickled out (parent and child are the same
program). If the child dies, the parent builds the graph itself: nothing is lost.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
from typing import IO, Any

import pyarrow as pa

from . import cascade

log = logging.getLogger("handoffs.detectors")

_LENGTH = struct.Struct("<Q")


def _send(stream: IO[bytes], body: bytes) -> None:
    stream.write(_LENGTH.pack(len(body)))
    stream.write(body)
    stream.flush()


def _receive(stream: IO[bytes]) -> bytes | None:
    """One frame's body, or None at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError(f"frame cut short: {len(body)} of {size} bytes")
    return body


def _arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class GraphWorker:
    """A child process that builds cascade graphs: ``submit`` a chunk's spans, do other work,
    then ``result()``. One chunk at a time; falls back to this process if the child is gone."""

    def __init__(self) -> None:
        # The child imports handoffs from where this process did.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._child: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", "from handoffs.detectors.graph_worker import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._pending: pa.Table | None = None
        self._sent = False

    def __enter__(self) -> GraphWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, nodes: pa.Table) -> None:
        """Hand a ``cascade.nodes_table`` to the child; its findings come from ``result()``."""
        self._pending, self._sent = nodes, False
        if self._child is not None:
            try:
                _send(self._child.stdin, _arrow_bytes(nodes))  # type: ignore[arg-type]
                self._sent = True
            except OSError as exc:
                self._lost(exc)

    def result(self) -> tuple[list[dict[str, Any]], cascade.Amplification]:
        """Findings rows and amplification of the table last submitted (``cascade.table_results``)."""
        nodes, self._pending = self._pending, None
        if nodes is None:
            raise RuntimeError("result() called with nothing submitted")
        if self._sent and self._child is not None:
            try:
                body = _receive(self._child.stdout)  # type: ignore[arg-type]
                if body is not None:
                    results: tuple[list[dict[str, Any]], cascade.Amplification] = pickle.loads(body)
                    return results
                self._lost(EOFError("the worker closed its output"))
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                self._lost(exc)
        return cascade.table_results(nodes)

    def _lost(self, exc: BaseException) -> None:
        log.warning("the cascade graph's worker process stopped (%s); building graphs in this one", exc)
        self.close()

    def close(self) -> None:
        """End the child: it exits when its input closes."""
        child, self._child = self._child, None
        if child is None:
            return
        for stream in (child.stdin, child.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> None:
    """The child's loop: a table in, its findings out, until the input closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (body := _receive(stdin)) is not None:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        _send(stdout, pickle.dumps(cascade.table_results(table), protocol=pickle.HIGHEST_PROTOCOL))

