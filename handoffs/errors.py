"""The errors handoffs raises on purpose. The CLI turns each into one line on stderr."""

from __future__ import annotations


class HandoffsError(Exception):
    """Base of every error meant for the user; its message says what to do."""

    exit_code = 1


class UsageError(HandoffsError):
    """Bad input from the user: a wrong URL, a malformed file or policy. Exit code 2."""

    exit_code = 2


class StoreError(HandoffsError):
    """The store cannot be reached or refused a statement. Exit code 2 at the CLI."""

    exit_code = 2


class StoreUnreachableError(StoreError):
    """No answer from the store's server (refused, unknown host, timed out), as opposed to an
    answer that refuses (credentials, a statement): the one a collector can wait out."""
