"""The store's ClickHouse HTTP endpoint, as other processes on an embedded store reach it."""

from __future__ import annotations

import base64
import http.client
from pathlib import Path

from handoffs.store import Store
from handoffs.store.sharing import owned_endpoint


def test_a_reply_leaves_without_waiting_for_the_clients_acknowledgement(
        chdb_dir: Path, store: Store, accepted_nodelay: list[int]) -> None:
    # A reply is written as headers, then body. Under Nagle's algorithm the body waited for the
    # client's delayed ACK of the headers: every query from a second process took 44 ms.
    ep = owned_endpoint(chdb_dir)
    assert ep is not None
    auth = base64.b64encode(f"default:{ep.password}".encode()).decode()
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=30)
    try:
        conn.request("POST", "/?database=" + store.url.database, body=b"SELECT 41 + 1",
                     headers={"Authorization": f"Basic {auth}"})
        reply = conn.getresponse()
        assert (reply.status, reply.read()) == (200, b"42\n")
    finally:
        conn.close()
    assert accepted_nodelay and all(accepted_nodelay)
