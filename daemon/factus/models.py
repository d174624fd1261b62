"""Typed results of the Factus client: tokens, bill outcomes, pages and downloaded files.

Money is ``Decimal``; raw Factus ``data`` objects are kept as plain dicts next to the few fields the
daemon decides on, because the v1 response shapes are loose and only partly documented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BillOutcome",
    "BillPage",
    "DownloadedFile",
    "EmailContent",
    "OutcomeKind",
    "TokenInfo",
]

OutcomeKind = Literal["validated", "rejected", "dian_pending", "invalid", "conflict"]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An OAuth token pair and its expiry; token values never appear in ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    """Wall-clock epoch seconds at which Factus stops accepting ``access_token``."""
    lifetime_s: float = 3600.0
    """``expires_in`` as granted; bounds the refresh margin for very short-lived tokens."""
    token_type: str = "Bearer"  # noqa: S105 - the OAuth scheme name, not a secret


class BillOutcome(BaseModel):
    """What one ``POST /v1/bills/validate`` produced, classified for the caller.

    ``kind``:
        * ``validated``: DIAN accepted the bill (``status`` 1); ``number``, ``cufe``, ``qr`` are set.
        * ``rejected``: a DIAN rule answered "Rechazo" (200 with status 0, or 422 with rule codes);
          Factus keeps a hidden pending bill that must be deleted by reference before a resubmit.
        * ``dian_pending``: stored but DIAN did not answer (status 0, no rejection): resend the same
          payload with the same reference code.
        * ``invalid``: the request itself was refused (422/400 field errors); fix the input.
        * ``conflict``: 409, a pending bill blocks the account.
    """

    model_config = ConfigDict(frozen=True)

    kind: OutcomeKind
    http_status: int
    reference_code: str | None = None
    number: str | None = None
    bill_id: int | None = None
    cufe: str | None = None
    qr: str | None = None
    total: Decimal | None = None
    status: int | None = None
    rules: dict[str, str] = Field(default_factory=dict)
    """DIAN rule code -> message, rejections only."""
    field_errors: dict[str, list[str]] = Field(default_factory=dict)
    """Request field path -> Spanish validation messages (``invalid`` only)."""
    notifications: list[str] = Field(default_factory=list)
    """DIAN entries that are not rejections ("Notificación: ..."): kept for audit, not failures."""
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    """The raw ``data`` object of the response (empty when there was none)."""

    @property
    def ok(self) -> bool:
        """True when the bill is validated by DIAN."""
        return self.kind == "validated"


class BillPage(BaseModel):
    """One page of ``GET /v1/bills``: the raw list items plus the pagination numbers."""

    model_config = ConfigDict(frozen=True)

    items: list[dict[str, Any]]
    total: int
    current_page: int
    last_page: int
    per_page: int


@dataclass(frozen=True, slots=True)
class DownloadedFile:
    """A decoded download: the name Factus gives it (with ``.pdf``/``.xml``) and the bytes."""

    file_name: str
    content: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EmailContent:
    """``GET /v1/bills/:number/email-content``: the e-mail subject and the decoded ZIP attachment."""

    subject: str
    attachment: bytes = field(repr=False)
