"""Store URLs: ``chdb:///dir`` (embedded) and ``clickhouse://user:pass@host:8123/db`` (server)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from handoffs.errors import UsageError

ENV_STORE = "HANDOFFS_STORE"
ENV_HOME = "HANDOFFS_HOME"


def default_store_dir() -> Path:
    """Where the embedded store lives unless told otherwise: ``$HANDOFFS_HOME`` or ~/.handoffs."""
    home = os.environ.get(ENV_HOME)
    return Path(home) if home else Path.home() / ".handoffs" / "store"


def default_store_url() -> str:
    return os.environ.get(ENV_STORE) or f"chdb://{default_store_dir()}"


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``path`` is set for chDB, host/port/credentials for a server."""

    scheme: str  # chdb | clickhouse | clickhouses
    path: Path | None = None
    host: str = "localhost"
    port: int = 8123
    username: str = "default"
    password: str = ""
    database: str = "default"
    options: dict[str, str] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.scheme == "chdb"

    @property
    def secure(self) -> bool:
        return self.scheme in ("clickhouses", "https")

    def redacted(self, placeholder: str = "") -> str:
        """The URL without its password, for messages and logs; with ``placeholder`` standing
        in for it (when there is one), for commands a person copies and completes."""
        if self.embedded:
            return f"chdb://{self.path}" + (f"?database={self.database}" if self.database != "default" else "")
        secret = f":{placeholder}" if placeholder and self.password else ""
        user = f"{self.username}{secret}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}/{self.database}"


def redact(raw: str, placeholder: str = "") -> str:
    """A store URL as typed, without its password (see ``StoreURL.redacted``), also when it
    does not parse."""
    try:
        return parse_store_url(raw).redacted(placeholder)
    except UsageError:
        return _without_password(raw)


def _without_password(raw: str) -> str:
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1@", raw)


def parse_store_url(url: str | None) -> StoreURL:
    """Parse a store URL, or raise UsageError saying what a valid one looks like."""
    raw = url or default_store_url()
    shown = _without_password(raw)  # messages never carry the password
    hint = "use chdb:///path/to/dir or clickhouse://user:password@host:8123/database"
    parts = urlsplit(raw)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        path = unquote((parts.netloc or "") + parts.path)
        if not path:
            raise UsageError(f"store URL {shown!r} has no directory: {hint}")
        return StoreURL("chdb", path=Path(path).expanduser(), options=options,
                        database=options.get("database", "default"))
    if scheme in ("clickhouse", "clickhouses", "http", "https"):
        if not parts.hostname:
            raise UsageError(f"store URL {shown!r} has no host: {hint}")
        secure = scheme in ("clickhouses", "https")
        try:
            port = parts.port or (8443 if secure else 8123)
        except ValueError as exc:
            raise UsageError(f"store URL {shown!r} has a bad port: {hint}") from exc
        database = parts.path.strip("/") or "default"
        return StoreURL(
            "clickhouses" if secure else "clickhouse",
            host=parts.hostname,
            port=port,
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            database=database,
            options=options,
        )
    raise UsageError(f"store URL {shown!r} has an unknown scheme {parts.scheme!r}: {hint}")
