"""Store URLs: what parses, and the one clear error for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from handoffs.errors import UsageError
from handoffs.store.url import parse_store_url, redact


def test_embedded_url_with_database() -> None:
    url = parse_store_url("chdb:///tmp/x?database=team")
    assert url.embedded and url.path == Path("/tmp/x") and url.database == "team"


def test_server_url_with_credentials_and_tls() -> None:
    url = parse_store_url("clickhouses://bob:s%40cret@ch.example:9440/traces")
    assert (url.host, url.port, url.username, url.password, url.database, url.secure) == (
        "ch.example", 9440, "bob", "s@cret", "traces", True)
    assert "s@cret" not in url.redacted()


def test_server_url_defaults() -> None:
    url = parse_store_url("clickhouse://localhost")
    assert (url.port, url.database, url.username) == (8123, "default", "default")


def test_default_comes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFFS_STORE", "clickhouse://h:8124/d")
    assert parse_store_url(None).port == 8124


@pytest.mark.parametrize("bad", ["mysql://x/y", "clickhouse://", "chdb://", "clickhouse://h:notaport/d"])
def test_bad_urls_say_what_a_good_one_looks_like(bad: str) -> None:
    with pytest.raises(UsageError, match="chdb:///path/to/dir or clickhouse://"):
        parse_store_url(bad)


def test_no_message_carries_the_password() -> None:
    assert redact("clickhouse://bob:s3cret@h:8123/d", "PASSWORD") == "clickhouse://bob:PASSWORD@h:8123/d"
    assert redact("clickhouse://bob@h/d", "PASSWORD") == "clickhouse://bob@h:8123/d"  # none to stand in for
    assert redact("chdb:///tmp/x?database=team") == "chdb:///tmp/x?database=team"
    assert redact("clickhouse://bob:s3cret@h:port/d") == "clickhouse://bob@h:port/d"  # does not parse
    with pytest.raises(UsageError) as info:
        parse_store_url("clickhouse://bob:s3cret@h:port/d")
    assert "s3cret" not in str(info.value) and "bob@h:port" in str(info.value)
