"""Logging: configured once by the CLI; every entry passes through a secret-redaction processor.

Library modules only call ``structlog.get_logger()``. Secret values (client secret, password,
access and refresh tokens) are registered with :func:`register_secret` as soon as they are known;
:func:`redact` removes them from any text, and the processor applies it to every log entry.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "redact", "register_secret"]

_SECRET_KEYS = re.compile(r"(secret|password|passwd|token|authorization|api[_-]?key)", re.I)
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")  # user:password@ in a URL
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it would be logged or reported."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and any bearer token masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, _MASK)
    if "@" in text:
        text = _URL_USERINFO.sub(r"\1" + _MASK + "@", text)
    return _BEARER.sub(r"\1" + _MASK, text)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key) and not key.endswith(("_expires_at", "_expires_in", "expiry")):
        return _MASK if value not in (None, "") else value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets in every key and value of the entry."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _format_exc_redacted(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict = structlog.processors.format_exc_info(logger, method, event_dict)
    if isinstance(event_dict.get("exception"), str):
        event_dict["exception"] = redact(event_dict["exception"])
    return event_dict


def configure_logging(level: str = "info", *, json: bool | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog once: JSON lines when not on a terminal, console rendering otherwise."""
    out = stream or sys.stderr
    if json is None:
        json = not out.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _format_exc_redacted,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
