"""Everything the emulator remembers, behind one lock: tokens, rate window, ranges, bills, counters.

The bill life cycle follows the contract (§5.3):

* a new reference is validated (status 1), or DIAN-rejected (422 with a "Rechazo" rule; the bill is
  kept as a hidden pending document, status 0), or left DIAN-pending by a time-out fault (status 0,
  no rejection);
* while any pending bill exists, a create with another reference answers 409; the same reference
  answers 409 when its pending bill was rejected, and is validated (same number) when it was only
  waiting for DIAN;
* a reference that is already validated follows the configured duplicate policy;
* pending bills can be deleted by reference; validated ones cannot.

Every public method expects the caller to hold :attr:`EmulatorState.lock` (the HTTP layer takes it
once per request), so numbering can never hand out the same number twice.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from daemon import catalog
from daemon.emulator.calc import BillTotals, compute_bill
from daemon.emulator.config import EmulatorConfig
from daemon.emulator.faults import Faults
from daemon.emulator.tables import Tables
from daemon.emulator.validation import BillContext
from daemon.money import fmt2, nit_check_digit

__all__ = [
    "COLOMBIA",
    "COMPANY",
    "Bill",
    "CreateResult",
    "EmulatorState",
    "NumberingRange",
    "RangeExhaustedError",
    "RateDecision",
    "TokenPair",
]

COLOMBIA = timezone(timedelta(hours=-5), "America/Bogota")
DIAN_ENVIRONMENT = "2"  # 1 production, 2 habilitación (sandbox)
QR_BASE = "https://catalogo-vpfe-hab.dian.gov.co/document/searchqr?documentkey="

COMPANY: dict[str, Any] = {
    "url_logo": None,
    "nit": "900825759",
    "dv": "7",
    "company": "FACTUS EMULADOR S.A.S.",
    "name": "FACTUS EMULADOR S.A.S.",
    "graphic_representation_name": "FACTUS EMULADOR S.A.S.",
    "registration_code": "1234567",
    "economic_activity": "6201",
    "phone": "3001234567",
    "email": "emulador@factus.invalid",
    "direction": "Calle 10 # 3-13",
    "municipality": "San Gil",
}

RANGE_DOCUMENTS = {
    "21": "Factura de Venta",
    "22": "Nota Crédito",
    "23": "Nota Débito",
    "24": "Documento Soporte",
    "25": "Nota de Ajuste Documento Soporte",
    "26": "Nómina",
    "27": "Nota de Ajuste Nómina",
    "28": "Nota de eliminación de nómina",
    "30": "Factura de talonario y de papel",
}


@dataclass(slots=True)
class NumberingRange:
    """A numbering range; ``current`` is the next consecutive to hand out."""

    id: int
    document: str
    prefix: str
    from_: int
    to: int
    current: int
    resolution_number: str | None
    start_date: date
    end_date: date
    technical_key: str | None
    is_active: bool = True
    created_at: str = "2024-01-01T10:00:00.000000Z"

    @property
    def is_expired(self) -> bool:
        """True when the resolution's end date has passed."""
        return datetime.now(COLOMBIA).date() > self.end_date

    @property
    def months(self) -> int:
        """Validity of the resolution in months (shown on bills)."""
        return (self.end_date.year - self.start_date.year) * 12 + self.end_date.month - self.start_date.month

    def take(self) -> int:
        """Consume and return the next consecutive."""
        if self.current > self.to:
            raise RangeExhaustedError(self.id)
        number = self.current
        self.current += 1
        return number


class RangeExhaustedError(Exception):
    """Raised when a numbering range has no number left."""


def _seed_ranges() -> dict[int, NumberingRange]:
    sandbox_key = "fc8eac422eba16e22ffd8c6f94b3f40a6e38162c"
    start, end = date(2019, 1, 19), date(2030, 1, 19)
    old_end = date(2021, 1, 19)
    R = NumberingRange
    ranges = [
        R(7, "21", "SETT", 1, 5000, 1, "18760000002", start, old_end, sandbox_key, is_active=False),
        R(8, "21", "SETP", 990000000, 995000000, 990000001, "18760000001", start, end, sandbox_key),
        R(9, "22", "NC", 1, 99999999, 1, None, start, end, None),
        R(10, "23", "ND", 1, 99999999, 1, None, start, end, None),
        R(11, "24", "SEDS", 984000000, 985000000, 984000001, "18760000001", start, end, sandbox_key),
        R(12, "25", "NDS", 1, 99999999, 1, None, start, end, None),
    ]
    return {r.id: r for r in ranges}


@dataclass(slots=True)
class Bill:
    """One stored bill (validated or pending) with everything needed to render it."""

    id: int
    number: str
    prefix: str
    consecutive: int
    range_id: int
    reference_code: str
    status: int
    payload: dict[str, Any]
    totals: BillTotals
    cufe: str
    created_at: datetime
    validated_at: datetime | None = None
    rejection: dict[str, str] | None = None
    notifications: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)

    @property
    def pending_kind(self) -> Literal["rejected", "dian_pending"] | None:
        """Why a status-0 bill is pending, or None when it is validated."""
        if self.status == 1:
            return None
        return "rejected" if self.rejection else "dian_pending"

    @property
    def errors(self) -> list[str]:
        """The ``errors`` strings Factus shows: rejections first, then notifications."""
        return [*(self.rejection or {}).values(), *self.notifications]

    def summary(self) -> dict[str, Any]:
        """The ``/__emulator__/state`` view of this bill."""
        return {
            "id": self.id,
            "reference_code": self.reference_code,
            "number": self.number,
            "status": self.status,
            "cufe": self.cufe,
            "total": fmt2(self.totals.total),
            "pending": self.pending_kind,
            "rules": dict(self.rejection or {}),
        }


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What ``/oauth/token`` answers."""

    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(slots=True)
class _Access:
    expires_at: float
    refresh_token: str


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Outcome of one rate-limit check, with the header values to send."""

    allowed: bool
    limit: int
    remaining: int
    reset_epoch: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` (and ``Retry-After`` when refused)."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_s)
        return out


PENDING_MESSAGE = "Se encontró una factura pendiente por enviar a la DIAN"
PENDING_DETAIL = "Elimine o envíe a la DIAN el documento pendiente antes de crear uno nuevo"


@dataclass(frozen=True, slots=True)
class CreateResult:
    """What a create did: the HTTP status to answer and the bill involved.

    ``kind``: ``validated`` (new or resent and now validated), ``existing`` (duplicate policy
    return-existing), ``dian_pending``, ``rejected`` (422 with ``rules``), ``conflict`` (409,
    ``message`` and the ``detail`` of its error entry).
    """

    kind: Literal["validated", "existing", "dian_pending", "rejected", "conflict"]
    bill: Bill | None = None
    rules: dict[str, str] = field(default_factory=dict)
    message: str = ""
    detail: str = PENDING_DETAIL


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class EmulatorState:
    """The emulator's memory. Hold :attr:`lock` around every call."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        tables: Tables | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.tables = tables or Tables.load(
            municipalities_file=config.municipalities_file,
            units_file=config.units_file,
            countries_file=config.countries_file,
        )
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()
        self.reset()

    # --- life cycle ---------------------------------------------------------------------------------

    def default_faults(self) -> Faults:
        """The faults a reset returns to: the configured baseline latency and failure rate."""
        return Faults(latency_ms=self.config.latency_ms, fail_rate=self.config.fail_rate)

    def reset(self) -> None:
        """Forget bills, tokens, counters and faults; restore the numbering ranges."""
        self.ranges = _seed_ranges()
        self.bills: list[Bill] = []
        self.deleted: list[dict[str, Any]] = []
        self.next_bill_id = 1
        self.next_event = 1
        self.access_tokens: dict[str, _Access] = {}
        self.refresh_tokens: dict[str, str | None] = {}  # refresh -> access token it came with
        self.issued_tokens: list[str] = []  # every access and refresh token handed out, in order
        self.window_start: float | None = None
        self.window_hits = 0
        self.faults = self.default_faults()
        self.requests_total = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.validate_count = 0
        self.too_many_count = 0
        self.reset_count = 0

    def count(self, route: str, status: int | str) -> None:
        """Record one answered (or dropped) API request."""
        self.requests_total += 1
        self.by_route[route] += 1
        self.by_status[str(status)] += 1
        if route == "POST /v1/bills/validate":
            self.validate_count += 1
        if status == 429:
            self.too_many_count += 1
        if status == "reset":
            self.reset_count += 1

    def snapshot(self) -> dict[str, Any]:
        """The ``GET /__emulator__/state`` document."""
        return {
            "bills": [b.summary() for b in self.bills],
            "pending": [b.summary() for b in self.bills if b.status == 0],
            "deleted": list(self.deleted),
            "numbering_ranges": {str(r.id): r.current for r in self.ranges.values()},
            "tokens": {
                "access": sum(1 for a in self.access_tokens.values() if a.expires_at > self.clock()),
                "refresh": len(self.refresh_tokens),
            },
            "rate_limit": {
                "limit": self.config.rate_limit,
                "window_s": self.config.rate_window_s,
                "used": self.window_hits if self._window_open() else 0,
            },
            "requests": {
                "total": self.requests_total,
                "by_route": dict(self.by_route),
                "by_status": dict(self.by_status),
                "validate": self.validate_count,
                "429": self.too_many_count,
                "reset": self.reset_count,
            },
            "faults": self.faults.to_dict(),
        }

    # --- OAuth --------------------------------------------------------------------------------------

    def _new_access_token(self, jti: str) -> str:
        now = int(self.wall_clock())
        header = {"typ": "JWT", "alg": "RS256"}
        claims = {
            "aud": self.config.client_id,
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": now + self.config.token_ttl_s,
            "sub": "1",
            "scopes": [],
        }
        return ".".join(
            (
                _b64url(json.dumps(header, separators=(",", ":")).encode()),
                _b64url(json.dumps(claims, separators=(",", ":")).encode()),
                _b64url(secrets.token_bytes(256)),
            )
        )

    def issue_tokens(self) -> TokenPair:
        """Issue a new access + refresh token pair."""
        access = self._new_access_token(secrets.token_hex(40))
        refresh = "def50200" + secrets.token_hex(320)
        self.access_tokens[access] = _Access(self.clock() + self.config.token_ttl_s, refresh)
        self.refresh_tokens[refresh] = access
        self.issued_tokens += [access, refresh]
        return TokenPair(access, refresh, self.config.token_ttl_s)

    def refresh(self, refresh_token: str) -> TokenPair | None:
        """Rotate a refresh token; None when it is unknown, used or revoked."""
        if refresh_token not in self.refresh_tokens:
            return None
        old_access = self.refresh_tokens.pop(refresh_token)
        if self.config.refresh_revokes_access and old_access is not None:
            self.access_tokens.pop(old_access, None)
        return self.issue_tokens()

    def authenticate(self, authorization: str | None) -> bool:
        """True when the ``Authorization`` header carries a live access token."""
        if not authorization or authorization[:7].lower() != "bearer ":
            return False
        token = authorization[7:].strip()
        access = self.access_tokens.get(token)
        if access is None:
            return False
        if access.expires_at <= self.clock():
            del self.access_tokens[token]
            return False
        return True

    def expire_tokens(self) -> int:
        """Invalidate every access token issued so far; return how many were live."""
        live = sum(1 for a in self.access_tokens.values() if a.expires_at > self.clock())
        self.access_tokens.clear()
        for refresh in self.refresh_tokens:
            self.refresh_tokens[refresh] = None
        return live

    # --- rate limit ---------------------------------------------------------------------------------

    def _window_open(self) -> bool:
        return self.window_start is not None and self.clock() < self.window_start + self.config.rate_window_s

    def rate_check(self) -> RateDecision:
        """Count one business request against the fixed window (refused hits are not counted)."""
        now = self.clock()
        if not self._window_open():
            self.window_start, self.window_hits = now, 0
        assert self.window_start is not None
        left_s = self.window_start + self.config.rate_window_s - now
        reset_epoch = math.ceil(self.wall_clock() + left_s)
        limit = self.config.rate_limit
        if self.window_hits >= limit:
            return RateDecision(False, limit, 0, reset_epoch, max(1, math.ceil(left_s)))
        self.window_hits += 1
        return RateDecision(True, limit, limit - self.window_hits, reset_epoch, 0)

    def burst_decision(self) -> RateDecision:
        """A 429 forced by the ``burst_429`` fault."""
        retry = max(1, self.faults.retry_after_s)
        return RateDecision(False, self.config.rate_limit, 0, math.ceil(self.wall_clock() + retry), retry)

    # --- bills --------------------------------------------------------------------------------------

    def bill_context(self) -> BillContext:
        """What field validation checks ids against."""
        active = [
            r.id for r in self.ranges.values() if r.document == "21" and r.is_active and not r.is_expired
        ]
        return BillContext(
            municipality_ids=self.tables.municipalities.keys(),
            unit_ids=self.tables.units.keys(),
            tribute_ids=self.tables.tributes.keys(),
            active_bill_ranges=active,
            known_ranges=self.ranges.keys(),
            range_aliases=self.config.numbering_range_aliases,
        )

    def find_by_reference(self, reference: str) -> list[Bill]:
        """Stored bills with exactly this reference code (several only under create-duplicate)."""
        return [b for b in self.bills if b.reference_code == reference]

    def find_by_number(self, number: str) -> Bill | None:
        """The bill with this full number (prefix + consecutive)."""
        for bill in self.bills:
            if bill.number == number:
                return bill
        return None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Undo every change to bills, numbering, counters and faults when the block raises.

        A create runs inside one (together with rendering its answer), so an unexpected error can
        never leave a half-written bill, a hidden pending document or a consumed consecutive.
        """
        bills = list(self.bills)
        bill_fields = [
            (b, b.status, b.validated_at, b.rejection, list(b.notifications), list(b.events)) for b in bills
        ]
        currents = {rid: r.current for rid, r in self.ranges.items()}
        next_ids = (self.next_bill_id, self.next_event)
        deleted = list(self.deleted)
        faults = copy.deepcopy(self.faults)
        try:
            yield
        except BaseException:
            self.bills = bills
            for bill, status, validated_at, rejection, notifications, events in bill_fields:
                bill.status, bill.validated_at, bill.rejection = status, validated_at, rejection
                bill.notifications, bill.events = notifications, events
            for rid, current in currents.items():
                self.ranges[rid].current = current
            self.next_bill_id, self.next_event = next_ids
            self.deleted = deleted
            self.faults = faults
            raise

    def create(self, payload: dict[str, Any]) -> CreateResult:
        """Apply the create/resend rules to a validated, normalised payload."""
        reference: str = payload["reference_code"]
        same = self.find_by_reference(reference)
        pending_same = [b for b in same if b.status == 0]
        validated_same = [b for b in same if b.status == 1]
        if pending_same:
            bill = pending_same[0]
            if bill.rejection:
                return CreateResult("conflict", bill, message=PENDING_MESSAGE)
            if self.faults.take_dian_timeout(reference):
                return CreateResult("dian_pending", bill)
            self._validate(bill)
            return CreateResult("validated", bill)
        others_pending = [b for b in self.bills if b.status == 0]
        if others_pending:
            return CreateResult("conflict", others_pending[0], message=PENDING_MESSAGE)
        if validated_same:
            policy = self.config.duplicate_policy
            if policy == "return-existing":
                return CreateResult("existing", validated_same[0])
            if policy == "conflict":
                return CreateResult(
                    "conflict",
                    validated_same[0],
                    message=f"El documento con el código de referencia {reference} ya se encuentra validado",
                    detail="Use otro código de referencia para crear un documento nuevo",
                )
        rules = self._dian_rules(payload)  # decided before anything is stored or numbered
        bill = self._store(payload)
        if rules:
            bill.rejection = rules
            return CreateResult("rejected", bill, rules=rules)
        if self.faults.take_dian_timeout(reference):
            return CreateResult("dian_pending", bill)
        self._validate(bill)
        return CreateResult("validated", bill)

    def _dian_rules(self, payload: dict[str, Any]) -> dict[str, str]:
        customer = payload["customer"]
        if (
            customer.get("identification_document_id") == catalog.NIT_DOCUMENT_ID
            and customer.get("dv") is not None
        ) and customer["dv"] != nit_check_digit(customer["identification"]):
            return {"FAK24": "Regla: FAK24, Rechazo: No está informado el DV del NIT"}
        rejection = self.faults.rejection_for(payload["reference_code"])
        if rejection is not None:
            code, text = rejection
            return {code: text}
        return {}

    def _store(self, payload: dict[str, Any]) -> Bill:
        """Compute everything the bill needs, then take its number and append it (nothing before)."""
        rng = self.ranges[payload["numbering_range_id"]]
        customer = payload["customer"]
        if (
            customer.get("identification_document_id") == catalog.NIT_DOCUMENT_ID
            and customer.get("dv") is None
        ):
            customer["dv"] = nit_check_digit(customer["identification"])
        totals = compute_bill(payload["items"], payload["allowance_charges"])
        now = datetime.now(COLOMBIA).replace(microsecond=0)
        consecutive = rng.take()
        number = f"{rng.prefix}{consecutive}"
        notifications = []
        if not customer.get("email"):
            notifications.append("Regla: CAK55, Notificación: Informar el correo electrónico del adquiriente")
        if customer.get("identification_document_id") == catalog.NIT_DOCUMENT_ID:
            notifications.append(
                "Regla: FAJ43b, Notificación: Nombre informado No corresponde al registrado en el RUT "
                "con respecto al Nit suminstrado."
            )
        bill = Bill(
            id=self.next_bill_id,
            number=number,
            prefix=rng.prefix,
            consecutive=consecutive,
            range_id=rng.id,
            reference_code=payload["reference_code"],
            status=0,
            payload=payload,
            totals=totals,
            cufe=self._cufe(number, now, totals, customer, rng.technical_key or ""),
            created_at=now,
            notifications=notifications,
        )
        self.next_bill_id += 1
        self.bills.append(bill)
        return bill

    def _validate(self, bill: Bill) -> None:
        bill.status = 1
        bill.validated_at = datetime.now(COLOMBIA).replace(microsecond=0)

    @staticmethod
    def _cufe(
        number: str, issued: datetime, totals: BillTotals, customer: dict[str, Any], technical_key: str
    ) -> str:
        """DIAN CUFE: SHA-384 of number, date, time, amounts per tax (01, 04, 03), total, NITs, key, env."""
        per_code = {"01": Decimal(0), "04": Decimal(0), "03": Decimal(0)}
        for (code, _rate), (_base, tax) in totals.taxes.items():
            if code in per_code:
                per_code[code] += tax
        parts = [
            number,
            issued.strftime("%Y-%m-%d"),
            issued.strftime("%H:%M:%S-05:00"),
            fmt2(totals.gross_value),  # ValFac = the XML's LineExtensionAmount
            "01",
            fmt2(per_code["01"]),
            "04",
            fmt2(per_code["04"]),
            "03",
            fmt2(per_code["03"]),
            fmt2(totals.total),
            COMPANY["nit"],
            str(customer.get("identification") or ""),
            technical_key,
            DIAN_ENVIRONMENT,
        ]
        return hashlib.sha384("".join(parts).encode("utf-8")).hexdigest()

    def delete_by_reference(self, reference: str) -> Literal["deleted", "validated", "missing"]:
        """Delete the pending bill with this reference (validated bills are immutable)."""
        same = self.find_by_reference(reference)
        if not same:
            return "missing"
        pending = [b for b in same if b.status == 0]
        if not pending:
            return "validated"
        for bill in pending:
            self.bills.remove(bill)
            self.deleted.append(bill.summary())
        return "deleted"

    def add_event(self, bill: Bill, event_type: str, person: dict[str, Any]) -> dict[str, Any]:
        """Record a RADIAN event on a bill and return it."""
        now = datetime.now(COLOMBIA)
        number = f"EV{self.next_event}"
        self.next_event += 1
        event = {
            "number": number,
            "cude": hashlib.sha384(f"{bill.cufe}{event_type}{number}".encode()).hexdigest(),
            "event_code": event_type,
            "event_name": EVENT_NAMES[event_type],
            "effective_date": now.strftime("%Y-%m-%d"),
            "effective_time": now.strftime("%H:%M:%S"),
        }
        bill.events.append({**event, "_person": person})
        return event


EVENT_NAMES = {
    "030": "Acuse de recibo de Factura Electrónica de Venta",
    "031": "Reclamo de la Factura Electrónica de Venta",
    "032": "Recibo del bien y/o prestación del servicio",
    "033": "Aceptación expresa",
    "034": "Aceptación tácita",
}
