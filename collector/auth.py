"""Bearer tokens for ingest, each mapping to the project its spans are stored under.

Tokens come from a file (one ``project token`` pair a line, ``#`` comments) or from
``$HANDOFFS_TOKENS`` (``project=token,project=token``). Only SHA-256 digests are kept in memory,
and a presented token is looked up by its digest, so lookups do not leak the secret by timing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from pathlib import Path

from handoffs.errors import UsageError

ENV_TOKENS = "HANDOFFS_TOKENS"
MIN_TOKEN_LENGTH = 16
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


class Tokens:
    """Token digests -> project names."""

    def __init__(self, pairs: dict[str, str] | None = None) -> None:
        self._projects: dict[bytes, str] = {}
        for token, project in (pairs or {}).items():
            self.add(token, project)

    def add(self, token: str, project: str) -> None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise UsageError(f"the token for project {project!r} is shorter than {MIN_TOKEN_LENGTH} "
                             "characters; generate one with: python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'")
        if not _PROJECT.match(project):
            raise UsageError(f"project name {project!r} must be letters, digits, '_', '.' or '-'")
        self._projects[_digest(token)] = project

    def __bool__(self) -> bool:
        return bool(self._projects)

    def __len__(self) -> int:
        return len(self._projects)

    def project_for(self, authorization: str | None) -> str | None:
        """The project of an ``Authorization: Bearer <token>`` header, or None if not valid."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._projects.get(_digest(token.strip()))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_tokens(path: str | Path | None = None, env: str | None = None) -> Tokens:
    """Tokens from ``path`` and from ``$HANDOFFS_TOKENS`` (both when both are given)."""
    tokens = Tokens()
    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read the tokens file {path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"the tokens file {path} is not UTF-8 text: expected lines of "
                             "'project token'") from exc
        for number, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise UsageError(f"{path}:{number}: expected 'project token', got {len(parts)} field(s)")
            tokens.add(parts[1], parts[0])
    text = os.environ.get(ENV_TOKENS, "") if env is None else env
    for item in filter(None, (p.strip() for p in text.split(","))):
        project, sep, token = item.partition("=")
        if not sep:
            raise UsageError(f"${ENV_TOKENS} entries look like project=token, got {item[:20]!r}...")
        tokens.add(token.strip(), project.strip())
    return tokens


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
