"""The Factus v1 client: one method per operation, outcome classification, retries and re-auth.

Every call goes through the shared :class:`RateLimiter` and carries a fresh bearer token. A 401 on a
business call triggers one re-authentication (refresh, else login) and one retry of that request.
Idempotent calls (GET, DELETE) retry transient faults with capped exponential backoff and full
jitter, honouring ``Retry-After``. ``POST /v1/bills/validate`` is sent exactly once: a transient fault
raises :class:`TransientError` and the caller reconciles by reference code before any resend.

The client only ever talks to ``settings.base_url``: redirects are not followed and user-supplied
path segments (numbers, reference codes) are percent-encoded.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import random
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import structlog

from daemon.errors import ConfigError, FactusError, NotFoundError, TransientError
from daemon.factus import _wire
from daemon.factus.models import (
    BillOutcome,
    BillPage,
    DownloadedFile,
    EmailContent,
    OutcomeKind,
    TokenInfo,
)
from daemon.factus.ratelimit import PRIORITY_DOWNLOAD, PRIORITY_READ, PRIORITY_VALIDATE, RateLimiter
from daemon.factus.retry import RetryPolicy, call_with_retries
from daemon.factus.tokens import TokenManager
from daemon.money import to_decimal
from daemon.settings import FactusSettings

__all__ = ["FactusClient", "PathSegmentError", "check_base_url", "check_segment", "classify_bill_response"]

_log = structlog.get_logger(__name__)
_MAX_PAGES = 10_000
_USER_AGENT = "factus-daemon"


class _TokenUnavailable(Exception):
    """Carries a token-endpoint TransientError past the business-call retry loop (no nested retries)."""

    def __init__(self, error: TransientError) -> None:
        super().__init__(error.message)
        self.error = error


def _is_loopback(url: str) -> bool:
    host = (httpx.URL(url).host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PathSegmentError(ValueError):
    """A number or reference code that cannot be used as one segment of a Factus path."""


def check_segment(value: object, *, what: str = "reference code", allow_slash: bool = True) -> str:
    """Return ``value`` as text if it can be one path segment, else raise :class:`PathSegmentError`.

    Refused: empty or blank values, dot-only values (``.``/``..`` are path navigation that URL
    normalisation would resolve into *another* route), control characters, and, unless
    ``allow_slash``, ``/`` and ``\\`` (bill numbers are prefix + digits and never contain them).
    Everything else is percent-encoded by :func:`_seg`, so it stays inside its segment.
    """
    text = str(value)
    if not text.strip():
        raise PathSegmentError(f"the {what} is empty")
    if set(text) <= {"."}:
        raise PathSegmentError(f"the {what} {text!r} is not valid (only dots)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise PathSegmentError(f"the {what} {text!r} contains control characters")
    if not allow_slash and ("/" in text or "\\" in text):
        raise PathSegmentError(f"the {what} {text!r} is not valid (it contains a slash)")
    return text


def _seg(value: object, *, what: str = "reference code") -> str:
    """Percent-encode one path segment so user input can never reach another route."""
    return quote(check_segment(value, what=what), safe="")


def _number_seg(number: object) -> str:
    """A bill number as a path segment (no slashes at all, see :func:`check_segment`)."""
    return quote(check_segment(number, what="bill number", allow_slash=False), safe="")


def check_base_url(url: str) -> None:
    """Raise :class:`ConfigError` unless ``url`` is an ``http(s)://host[:port][/path]`` URL."""
    problem = None
    try:
        parsed = httpx.URL(url)
        if url != url.strip():
            problem = "it has spaces around it"
        elif parsed.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not parsed.host:
            problem = "it has no host"
        elif parsed.port is not None and not 0 < parsed.port < 65536:
            problem = f"port {parsed.port} does not exist"
        elif parsed.path.rstrip("/").endswith("/v1"):
            problem = "it must not end in /v1 (the client adds /v1/... itself)"
    except (httpx.InvalidURL, TypeError, ValueError):
        problem = "it is not a URL"
    if problem is not None:
        raise ConfigError(
            f"the Factus base URL {url!r} (FACTUS_BASE_URL or [factus] base_url) is not valid: {problem}, "
            "e.g. https://api-sandbox.factus.com.co"
        )


class FactusClient:
    """Synchronous, thread-safe client of the Factus v1 API.

    Args:
        settings: the ``[factus]`` settings.
        http: an ``httpx.Client`` to send with (tests pass one on a ``MockTransport`` or pointed at
            the emulator). When omitted the client builds and owns one.
        rate_limiter: a limiter shared with other clients; default: one built from the settings.
        clock: wall-clock epoch seconds, used for token expiry.
        sleep: how retry backoff waits.
        rng: randomness for the backoff jitter.
    """

    def __init__(
        self,
        settings: FactusSettings,
        *,
        http: httpx.Client | None = None,
        rate_limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        check_base_url(settings.base_url)
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(settings.timeout_s),
            follow_redirects=False,
            headers={"User-Agent": _USER_AGENT},
            # Proxy variables apply to the real Factus, never to an emulator on this machine.
            trust_env=not _is_loopback(self.base_url),
        )
        self.rate_limiter = rate_limiter or RateLimiter(settings.rate_limit, settings.rate_window_s)
        self._sleep = sleep
        self.retry_policy = RetryPolicy(
            settings.max_retries, settings.backoff_base_s, settings.backoff_max_s, rng or random.Random()
        )
        self.tokens = TokenManager(
            settings,
            self._http,
            limiter=self.rate_limiter,
            clock=clock,
            sleep=sleep,
            policy=self.retry_policy,
        )

    @classmethod
    def from_settings(cls, settings: FactusSettings, *, rate_limiter: RateLimiter | None = None) -> Self:
        """Build a client that owns its HTTP connection pool."""
        return cls(settings, rate_limiter=rate_limiter)

    def close(self) -> None:
        """Close the HTTP connection pool when this client created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _send_authed(
        self,
        method: str,
        path: str,
        *,
        priority: int,
        attempt: int = 0,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send with a bearer token; on 401 re-authenticate and resend exactly once."""
        url = self.base_url + path
        token = self._token_call(self.tokens.ensure_fresh)
        for reauthed in (False, True):
            headers = {"Authorization": f"Bearer {token.access_token}", "Accept": "application/json"}
            response = _wire.send(
                self._http,
                self.rate_limiter,
                method,
                url,
                path,
                priority=priority,
                attempt=attempt,
                headers=headers,
                params=params,
                json=json,
                timeout=timeout,
            )
            if response.status_code != 401 or reauthed:
                return response
            _log.info("factus_reauthenticate", method=method, path=path)
            token = self._token_call(functools.partial(self.tokens.reauthenticate, token.access_token))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _token_call(fn: Callable[[], TokenInfo]) -> TokenInfo:
        """Run a token operation; its transient failure (already retried) is not retried again."""
        try:
            return fn()
        except TransientError as exc:
            raise _TokenUnavailable(exc) from None

    def _call(
        self,
        method: str,
        path: str,
        *,
        priority: int = PRIORITY_READ,
        retry: bool = True,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
        accept: Callable[[int, int], bool] | None = None,
    ) -> Any:
        """Send, retry transient failures when ``retry``, and return the decoded JSON body.

        ``accept(status, attempt)`` may declare a non-2xx status acceptable (its body is returned).

        Raises:
            FactusError: the matching subclass for any other non-2xx answer.
        """

        def once(attempt: int) -> Any:
            response = self._send_authed(
                method, path, priority=priority, attempt=attempt, params=params, json=json, timeout=timeout
            )
            body = _wire.decode_json(response)
            status = response.status_code
            if 200 <= status < 300 or (accept is not None and accept(status, attempt)):
                return body
            raise _wire.error_for(response, body, method, path)

        try:
            if not retry:
                return once(0)
            return call_with_retries(
                once, policy=self.retry_policy, sleep=self._sleep, what=f"{method} {path}"
            )
        except _TokenUnavailable as exc:
            raise exc.error from None

    def _data(self, body: Any, method: str, path: str) -> Any:
        if isinstance(body, Mapping) and "data" in body:
            return body["data"]
        raise FactusError(f"Factus answered {method} {path} without a data object", body=body)

    # -- bills -------------------------------------------------------------------------------

    def create_bill(self, payload: Mapping[str, Any]) -> BillOutcome:
        """Create and validate one bill with DIAN: one POST, never retried on transient faults.

        Returns:
            The classified outcome (validated, rejected, dian_pending, invalid or conflict).

        Raises:
            TransientError: 408/429/5xx, transport failure, or an unreadable 2xx: the bill may or may
                not exist; reconcile with :meth:`find_bill` before sending again.
            AuthError: credentials refused even after signing in again.
            FactusError: any other answer (403 sandbox limits, 404...).
        """
        path = "/v1/bills/validate"
        try:
            response = self._send_authed(
                "POST",
                path,
                priority=PRIORITY_VALIDATE,
                json=payload,
                timeout=self.settings.validate_timeout_s,
            )
        except _TokenUnavailable as exc:
            exc.error.request_sent = False  # the token step failed: the POST never left
            raise exc.error from None
        body = _wire.decode_json(response)
        reference = payload.get("reference_code")
        outcome = classify_bill_response(
            response.status_code, body, reference_code=str(reference) if reference is not None else None
        )
        if outcome is not None:
            _log.info(
                "factus_bill_outcome",
                reference_code=outcome.reference_code,
                kind=outcome.kind,
                http_status=outcome.http_status,
                number=outcome.number,
            )
            return outcome
        if 200 <= response.status_code < 300:
            raise TransientError(
                f"Factus answered {response.status_code} to POST {path} with an unreadable body; "
                "look the bill up by reference code before sending it again",
                status_code=response.status_code,
                body=body,
            )
        raise _wire.error_for(response, body, "POST", path)

    def list_bills(
        self,
        *,
        reference_code: str | None = None,
        number: str | None = None,
        prefix: str | None = None,
        identification: str | None = None,
        names: str | None = None,
        status: int | None = None,
        page: int = 1,
        per_page: int | None = None,
    ) -> BillPage:
        """One page of ``GET /v1/bills`` with the Laravel ``filter[...]`` parameters."""
        params: dict[str, Any] = {"page": page}
        filters = {
            "reference_code": reference_code,
            "number": number,
            "prefix": prefix,
            "identification": identification,
            "names": names,
            "status": status,
        }
        for key, value in filters.items():
            if value is not None:
                params[f"filter[{key}]"] = str(value)
        if per_page is not None:
            params["per_page"] = per_page
        body = self._call("GET", "/v1/bills", params=params)
        return _page(self._data(body, "GET", "/v1/bills"), page)

    def iter_bills(self, *, per_page: int | None = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every bill matching ``filters`` (the keyword arguments of :meth:`list_bills`), all pages."""
        page = 1
        while page <= _MAX_PAGES:
            result = self.list_bills(page=page, per_page=per_page, **filters)
            yield from result.items
            if not result.items or result.current_page >= result.last_page:
                return
            page = result.current_page + 1

    def find_bill(self, reference_code: str) -> dict[str, Any] | None:
        """The bill whose ``reference_code`` is exactly ``reference_code``, or None.

        The server filter may be a partial match, so equality is checked here, over all pages. When
        several bills carry the reference (a server that created duplicates) a validated one wins.
        """
        matches = [
            item
            for item in self.iter_bills(reference_code=reference_code)
            if str(item.get("reference_code")) == reference_code
        ]
        if not matches:
            return None
        validated = [m for m in matches if _as_int(m.get("status")) == 1]
        return (validated or matches)[0]

    def show_bill(self, number: str) -> dict[str, Any]:
        """``GET /v1/bills/show/:number``: the full ``data`` (``bill``, ``customer``, ``items``...)."""
        path = f"/v1/bills/show/{_number_seg(number)}"
        data = self._data(self._call("GET", path), "GET", path)
        if not isinstance(data, dict):
            raise FactusError(f"Factus answered GET {path} with an unexpected data shape", body=data)
        return data

    def _download(self, kind: str, number: str) -> DownloadedFile:
        path = f"/v1/bills/download-{kind}/{_number_seg(number)}"
        data = self._data(self._call("GET", path, priority=PRIORITY_DOWNLOAD), "GET", path)
        if not isinstance(data, Mapping):
            raise FactusError(f"Factus answered GET {path} with an unexpected data shape")
        encoded = data.get(f"{kind}_base_64_encoded")
        if not isinstance(encoded, str):
            # Some docs prose says the XML comes in pdf_base_64_encoded; accept any *_base_64_encoded.
            encoded = next(
                (v for k, v in data.items() if str(k).endswith("base_64_encoded") and isinstance(v, str)),
                None,
            )
        if encoded is None:
            raise FactusError(f"Factus answered GET {path} without the {kind} content")
        content = _b64decode(encoded, what=f"{kind} of {number}")
        name = data.get("file_name")
        file_name = str(name) if isinstance(name, str | int) and str(name).strip() else str(number)
        if not file_name.lower().endswith(f".{kind}"):
            file_name += f".{kind}"
        return DownloadedFile(file_name=file_name, content=content)

    def download_pdf(self, number: str) -> DownloadedFile:
        """The graphic representation (PDF bytes and file name ending in ``.pdf``)."""
        return self._download("pdf", number)

    def download_xml(self, number: str) -> DownloadedFile:
        """The signed UBL invoice (XML bytes and file name ending in ``.xml``)."""
        return self._download("xml", number)

    def email_content(self, number: str) -> EmailContent:
        """The e-mail Factus would send for a bill: subject and the decoded ZIP attachment."""
        path = f"/v1/bills/{_number_seg(number)}/email-content"
        data = self._data(self._call("GET", path, priority=PRIORITY_DOWNLOAD), "GET", path)
        if not isinstance(data, Mapping):
            raise FactusError(f"Factus answered GET {path} with an unexpected data shape")
        attached = data.get("attached_document")
        return EmailContent(
            subject=str(data.get("subject") or ""),
            attachment=_b64decode(attached, what=f"e-mail attachment of {number}")
            if isinstance(attached, str)
            else b"",
        )

    def send_email(self, number: str, email: str, pdf_base64: str | None = None) -> str:
        """Ask Factus to e-mail the bill to ``email`` (not retried: it would send twice); the message."""
        path = f"/v1/bills/send-email/{_number_seg(number)}"
        body: dict[str, Any] = {"email": email}
        if pdf_base64 is not None:
            body["pdf_base_64_encoded"] = pdf_base64
        answer = self._call("POST", path, retry=False, json=body)
        return _wire.message_of(answer) if answer is not None else "sent"

    def delete_bill(self, reference_code: str) -> str:
        """Delete a pending (not validated) bill by reference code; return Factus's message.

        A 404 on a retry after a transient failure means the first attempt already deleted it.

        Raises:
            NotFoundError: no pending bill has this reference code.
            ConflictError / ApiValidationError: the bill is validated and cannot be deleted.
        """
        path = f"/v1/bills/destroy/reference/{_seg(reference_code)}"
        gone_on_retry: list[bool] = []

        def accept(status: int, attempt: int) -> bool:
            if status == 404 and attempt > 0:
                gone_on_retry.append(True)
                return True
            return False

        body = self._call("DELETE", path, accept=accept)
        if gone_on_retry:
            return f"bill {reference_code} was deleted (the retry found it already gone)"
        return _wire.message_of(body) if body is not None else "deleted"

    def radian_events(self, number: str) -> list[dict[str, Any]]:
        """RADIAN events recorded for a bill (empty list when none)."""
        path = f"/v1/bills/{_number_seg(number)}/radian/events"
        data = self._data(self._call("GET", path), "GET", path)
        return _items(data)

    def emit_radian_event(self, number: str, event_type: str, body: Mapping[str, Any]) -> Any:
        """Emit a RADIAN event (e.g. ``034`` tacit acceptance); not retried. Returns ``data`` or the body."""
        path = f"/v1/bills/radian/events/update/{_number_seg(number)}/{_seg(event_type, what='event type')}"
        answer = self._call("POST", path, retry=False, json=dict(body))
        if isinstance(answer, Mapping) and "data" in answer:
            return answer["data"]
        return answer

    # -- lookups -----------------------------------------------------------------------------

    def numbering_ranges(
        self, *, document: str | None = None, is_active: bool | None = None
    ) -> list[dict[str, Any]]:
        """Every numbering range (all pages), optionally filtered by document code and activity."""
        params: dict[str, Any] = {}
        if document is not None:
            params["filter[document]"] = str(document)
        if is_active is not None:
            params["filter[is_active]"] = "1" if is_active else "0"
        out: list[dict[str, Any]] = []
        page = 1
        while page <= _MAX_PAGES:
            body = self._call("GET", "/v1/numbering-ranges", params={**params, "page": page})
            data = self._data(body, "GET", "/v1/numbering-ranges")
            items = _items(data)
            out.extend(items)
            if not isinstance(data, Mapping) or not items:
                break
            result = _page(data, page)
            if result.current_page >= result.last_page:
                break
            page = result.current_page + 1
        return out

    def numbering_range(self, range_id: int) -> dict[str, Any]:
        """One numbering range by its Factus id."""
        path = f"/v1/numbering-ranges/{_seg(range_id, what='range id')}"
        data = self._data(self._call("GET", path), "GET", path)
        if not isinstance(data, dict):
            raise FactusError(f"Factus answered GET {path} with an unexpected data shape", body=data)
        return data

    def _lookup(self, path: str, name: str | None) -> list[dict[str, Any]]:
        params = {"name": name} if name else None
        items = _items(self._data(self._call("GET", path, params=params), "GET", path))
        if name:
            # The server filter is documented loosely; make "contains, ignoring case and accents" hold.
            wanted = _fold(name)
            items = [i for i in items if wanted in _fold(str(i.get("name", "")))]
        return items

    def municipalities(self, name: str | None = None) -> list[dict[str, Any]]:
        """Municipalities ``{id, code (DIVIPOLA), name, department}``, optionally by name."""
        return self._lookup("/v1/municipalities", name)

    def tributes(self, name: str | None = None) -> list[dict[str, Any]]:
        """Product tributes (taxes) ``{id, code, name, description}``."""
        return self._lookup("/v1/tributes/products", name)

    def measurement_units(self, name: str | None = None) -> list[dict[str, Any]]:
        """Units of measure ``{id, code, name}``."""
        return self._lookup("/v1/measurement-units", name)

    def countries(self, name: str | None = None) -> list[dict[str, Any]]:
        """Countries ``{id, code (ISO-2), name}``."""
        return self._lookup("/v1/countries", name)

    def acquirer(self, identification_document_id: int, identification_number: str) -> dict[str, Any]:
        """DIAN acquirer lookup: ``{name, email}`` of a registered identification."""
        path = "/v1/dian/acquirer"
        params = {
            "identification_document_id": str(identification_document_id),
            "identification_number": str(identification_number),
        }
        data = self._data(self._call("GET", path, params=params), "GET", path)
        if not isinstance(data, dict):
            raise NotFoundError(f"DIAN has no acquirer {identification_number}", body=data)
        return data


# -- response helpers ----------------------------------------------------------------------------


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _as_str(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _b64decode(value: str, *, what: str) -> bytes:
    text = value.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FactusError(f"Factus sent the {what} in invalid base64") from None


def _items(data: Any) -> list[dict[str, Any]]:
    """The list of objects in a ``data`` that is a list or a paginator ``{"data": [...]}``."""
    if isinstance(data, Mapping):
        data = data.get("data", [])
    if not isinstance(data, list):
        return []
    return [dict(item) for item in data if isinstance(item, Mapping)]


def _page(data: Any, page: int) -> BillPage:
    items = _items(data)
    meta: Mapping[str, Any] = {}
    if isinstance(data, Mapping):
        pagination = data.get("pagination")
        meta = pagination if isinstance(pagination, Mapping) else data
    current = _as_int(meta.get("current_page")) or page
    per_page = _as_int(meta.get("per_page")) or len(items)
    last = _as_int(meta.get("last_page"))
    total = _as_int(meta.get("total"))
    return BillPage(
        items=items,
        total=total if total is not None else len(items),
        current_page=current,
        last_page=last if last is not None else current,
        per_page=per_page,
    )


def _partition(entries: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split DIAN ``errors`` entries into rejections (rule -> message) and notifications."""
    rules: dict[str, str] = {}
    notes: list[str] = []
    for i, entry in enumerate(entries):
        if "rechazo" in entry.lower():
            match = _wire._RULE.search(entry)
            key = match.group(1) if match else f"rule{i}"
            rules[key] = f"{rules[key]} | {entry}" if key in rules else entry
        else:
            notes.append(entry)
    return rules, notes


def _rule_entries(errors: Any) -> list[str]:
    """Bill ``errors`` as ``Regla: X, ...`` strings, whether a list or a rule -> message map."""
    if isinstance(errors, Mapping):
        out: list[str] = []
        for rule, value in errors.items():
            for text in _wire.string_list(value):
                out.append(text if str(rule) in text else f"Regla: {rule}, {text}")
        return out
    return _wire.string_list(errors)


def classify_bill_response(
    status_code: int, body: Any, *, reference_code: str | None = None
) -> BillOutcome | None:
    """Classify a ``POST /v1/bills/validate`` answer; None when it is not a bill outcome.

    None is returned for 401, 404, 408/429/5xx, other statuses, and 2xx bodies without a bill; the
    caller raises the matching error for those.
    """
    message = _wire.message_of(body) if body is not None else ""
    raw_data = body.get("data") if isinstance(body, Mapping) else None
    data: dict[str, Any] = dict(raw_data) if isinstance(raw_data, Mapping) else {}

    def outcome(kind: OutcomeKind, **fields: Any) -> BillOutcome:
        fields.setdefault("reference_code", reference_code)
        return BillOutcome(kind=kind, http_status=status_code, message=message, data=data, **fields)

    if 200 <= status_code < 300:
        bill = data.get("bill") if isinstance(data.get("bill"), Mapping) else None
        if bill is None and ("number" in data or "cufe" in data):
            bill = data  # flat (v2-like) shape
        if not isinstance(bill, Mapping):
            return None
        status = _as_int(bill.get("status"))
        if status is None and "is_validated" in bill:
            status = 1 if bill.get("is_validated") in (True, 1, "1", "true") else 0
        rules, notes = _partition(_rule_entries(bill.get("errors")))
        kind: OutcomeKind
        if status == 1:
            kind = "validated"
        elif rules:
            kind = "rejected"
        else:
            kind = "dian_pending"
        total: Decimal | None
        try:
            raw_total = bill.get("total")
            if raw_total is None and isinstance(bill.get("totals"), Mapping):
                raw_total = bill["totals"].get("total")
            total = to_decimal(raw_total) if raw_total is not None else None
        except ValueError:
            total = None
        links: Mapping[str, Any] = bill["links"] if isinstance(bill.get("links"), Mapping) else {}
        return outcome(
            kind,
            reference_code=_as_str(bill.get("reference_code")) or reference_code,
            number=_as_str(bill.get("number")),
            bill_id=_as_int(bill.get("id")),
            cufe=_as_str(bill.get("cufe")),
            qr=_as_str(bill.get("qr")) or _as_str(links.get("qr")),
            total=total,
            status=status,
            rules=rules if kind == "rejected" else {},
            notifications=notes,
        )
    if status_code in (400, 422):
        errors = _wire.errors_map(body)
        entries = [
            text if key in text else f"Regla: {key}, {text}" if "rechazo" in text.lower() else text
            for key, texts in errors.items()
            for text in texts
        ]
        rules, notes = _partition(entries)
        if rules:
            return outcome("rejected", rules=rules, notifications=notes)
        return outcome("invalid", field_errors=errors)
    if status_code == 409:
        return outcome("conflict")
    return None
