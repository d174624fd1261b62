"""Exceptions of factus-daemon, grouped by what the caller must do.

Our exception hierarchy::

    DaemonError                      root; ``exit_code`` is what the CLI returns
    ├── ConfigError                  settings or a mapping profile are wrong: fix the file, exit 2
    ├── InputError                   a source file cannot be read at all (file-level)
    ├── LedgerError                  the durable ledger is unusable
    └── FactusError                  the Factus API answered with a failure
        ├── TransientError           408/429/5xx/transport: retry later (``retry_after_s``)
        ├── AuthError                credentials or tokens refused: fix credentials, nothing is lost
        ├── NotFoundError            404: the document or route does not exist
        ├── ConflictError            409: a pending document blocks the account
        └── ApiValidationError       422 or other 4xx: the request itself is wrong, do not retry

Messages name the offending value and a remedy and never contain a secret.
"""

from __future__ import annotations

from typing import Any


class DaemonError(Exception):
    """Root of every error the daemon raises on purpose."""

    exit_code = 1


class ConfigError(DaemonError):
    """Raised when settings, the TOML config or a mapping profile are invalid."""

    exit_code = 2


class InputError(DaemonError):
    """Raised when a source file cannot be read as a whole (not a per-row error)."""


class LedgerError(DaemonError):
    """Raised when the SQLite ledger cannot be opened or written."""


class FactusError(DaemonError):
    """Raised when the Factus API answers with a failure.

    Args:
        message: human readable message (Spanish from Factus is kept as is).
        status_code: HTTP status, or None for transport failures.
        body: the decoded JSON body when there was one (never contains our secrets).
    """

    exit_code = 4

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class TransientError(FactusError):
    """Raised for 408, 429, 5xx and transport faults: the same request may succeed later.

    ``request_sent`` tells how far the failed request got: False when it certainly never reached
    Factus (no connection, or the token step before it failed), True when it may have been
    processed (the answer was lost or timed out), None when Factus answered (see ``status_code``).
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: Any = None,
        retry_after_s: float | None = None,
        request_sent: bool | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.retry_after_s = retry_after_s
        self.request_sent = request_sent


class AuthError(FactusError):
    """Raised when Factus refuses our credentials or tokens (400 invalid_grant, 401)."""

    exit_code = 5


class NotFoundError(FactusError):
    """Raised on 404: the document, reference or route does not exist."""

    exit_code = 6


class ConflictError(FactusError):
    """Raised on 409: a pending document blocks new documents of its family."""

    exit_code = 7


class ApiValidationError(FactusError):
    """Raised on 422 and other non-retriable 4xx answers.

    ``errors`` maps a field path or DIAN rule to its messages.
    """

    exit_code = 8

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: Any = None,
        errors: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.errors = errors or {}
