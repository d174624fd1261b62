"""Low-level wire helpers shared by the token manager and the client.

One place sends a request under the rate limiter and logs it, maps transport failures and HTTP
statuses onto the :mod:`daemon.errors` tree, and digs messages and error maps out of the loosely
specified Factus bodies (``errors[0].message`` -> ``data.message`` -> ``message`` ->
``error_description`` -> ``error`` -> HTTP reason).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from daemon.errors import (
    ApiValidationError,
    AuthError,
    ConflictError,
    FactusError,
    NotFoundError,
    TransientError,
)
from daemon.factus.ratelimit import RateLimiter
from daemon.factus.retry import parse_retry_after
from daemon.log import redact
from daemon.money import dumps_json

__all__ = [
    "TRANSIENT_STATUSES",
    "decode_json",
    "error_for",
    "errors_map",
    "message_of",
    "send",
    "string_list",
]

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_log = structlog.get_logger("daemon.factus")
_RULE = re.compile(r"Regla:\s*([A-Za-z0-9_.-]+)", re.I)


def send(
    http: httpx.Client,
    limiter: RateLimiter,
    method: str,
    url: str,
    path: str,
    *,
    priority: int,
    attempt: int = 0,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    data: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> httpx.Response:
    """Send one request under the rate limiter; log it; turn transport failures into TransientError.

    ``path`` is what is logged (never a query string or body). HTTP error statuses are returned,
    not raised: callers classify them.
    """
    limiter.acquire(priority)
    start = time.perf_counter()
    kwargs: dict[str, Any] = {"headers": dict(headers or {}), "params": params, "data": data}
    if json is not None:
        # Serialised here so Decimal money goes out as exact JSON numbers, never through a float.
        kwargs["content"] = dumps_json(json).encode("utf-8")
        kwargs["headers"]["Content-Type"] = "application/json"
    if timeout is not None:
        kwargs["timeout"] = timeout
    try:
        response = http.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        elapsed_ms = round((time.perf_counter() - start) * 1000)
        error = type(exc).__name__
        _log.warning(
            "factus_request",
            method=method,
            path=path,
            status=None,
            elapsed_ms=elapsed_ms,
            attempt=attempt,
            error=error,
        )
        # A connection that was never made (or a pool slot never obtained) sent nothing.
        sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if isinstance(exc, httpx.TimeoutException):
            raise TransientError(
                f"{method} {path}: Factus did not answer in time ({error})", request_sent=sent
            ) from None
        detail = redact(str(exc))[:200] or error
        raise TransientError(
            f"{method} {path}: cannot reach Factus ({error}: {detail})", request_sent=sent
        ) from None
    elapsed_ms = round((time.perf_counter() - start) * 1000)
    limiter.observe(response.headers, response.status_code)
    _log.debug(
        "factus_request",
        method=method,
        path=path,
        status=response.status_code,
        elapsed_ms=elapsed_ms,
        attempt=attempt,
    )
    return response


def decode_json(response: httpx.Response) -> Any:
    """The JSON body, or None when it is empty or not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def message_of(body: Any, response: httpx.Response | None = None) -> str:
    """The most specific human message in an error body, defensively."""
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            first = errors[0]
            found = _text(first.get("message")) if isinstance(first, Mapping) else _text(first)
            if found:
                return found
        data = body.get("data")
        if isinstance(data, Mapping) and (found := _text(data.get("message"))):
            return found
        for key in ("message", "error_description", "error"):
            if found := _text(body.get(key)):
                return found
    elif found := _text(body):
        return found[:300]
    if response is not None:
        return response.reason_phrase or f"HTTP {response.status_code}"
    return "no message"


def string_list(value: Any) -> list[str]:
    """Normalise an error value (string, list of strings, nested dict) to a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        out: list[str] = []
        for item in value.values():
            out.extend(string_list(item))
        return out
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            out.extend(string_list(item))
        return out
    return [str(value)]


def errors_map(body: Any) -> dict[str, list[str]]:
    """Field path or DIAN rule -> messages, read from ``data.errors`` then ``errors``.

    A list of rule strings (``"Regla: FAK24, Rechazo: ..."``) is keyed by its rule code; a list of
    ``{"code", "message"}`` objects (the generic error shape) is not a field map and is ignored.
    """
    candidates: list[Any] = []
    if isinstance(body, Mapping):
        data = body.get("data")
        if isinstance(data, Mapping):
            candidates.append(data.get("errors"))
        candidates.append(body.get("errors"))
    for errors in candidates:
        if isinstance(errors, Mapping) and errors:
            return {str(k): string_list(v) for k, v in errors.items()}
        if isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors):
            out: dict[str, list[str]] = {}
            for i, entry in enumerate(errors):
                match = _RULE.search(entry)
                out.setdefault(match.group(1) if match else f"error{i}", []).append(entry)
            return out
    return {}


def retry_after_of(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``), if any."""
    return parse_retry_after(response.headers.get("retry-after"))


def error_for(response: httpx.Response, body: Any, method: str, path: str) -> FactusError:
    """Map a non-2xx response to the matching :class:`FactusError` subclass."""
    status = response.status_code
    message = redact(message_of(body, response))
    text = f"Factus answered {status} to {method} {path}: {message}"
    if status in TRANSIENT_STATUSES or status >= 500:
        return TransientError(text, status_code=status, body=body, retry_after_s=retry_after_of(response))
    if status == 401:
        return AuthError(
            f"{text} (the token was refused even after signing in again; check the FACTUS_* credentials)",
            status_code=status,
            body=body,
        )
    if status == 404:
        return NotFoundError(text, status_code=status, body=body)
    if status == 409:
        return ConflictError(text, status_code=status, body=body)
    if 400 <= status < 500:
        return ApiValidationError(text, status_code=status, body=body, errors=errors_map(body))
    return FactusError(text, status_code=status, body=body)
