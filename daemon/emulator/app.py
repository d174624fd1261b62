"""Routes of the emulator: a pure function from :class:`Request` to :class:`Response`.

Order of checks for an API request (``/oauth/token`` and ``/v1/...``), as Laravel middleware does:
route match (404/405) -> latency fault -> bearer token (401) -> 429 burst fault and the rate limit
(with ``X-RateLimit-*`` headers on every ``/v1`` answer) -> failure fault (5xx) -> the endpoint.
``/__emulator__/...`` control routes need no token and are neither rate limited nor counted.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from daemon import catalog
from daemon.emulator import documents, render
from daemon.emulator.faults import FaultError
from daemon.emulator.state import (
    COMPANY,
    EVENT_NAMES,
    PENDING_DETAIL,
    PENDING_MESSAGE,
    Bill,
    EmulatorState,
    RangeExhaustedError,
    TokenPair,
)
from daemon.emulator.tables import fold
from daemon.emulator.validation import summary_message, validate_bill, validate_email_body, validate_event

__all__ = ["App", "Request", "Response"]

_log = structlog.get_logger("daemon.emulator")
_OK = "Solicitud exitosa"


@dataclass(slots=True)
class Request:
    """One HTTP request as the app sees it (header names lower-case)."""

    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.target)
        path = parts.path.rstrip("/") or "/"
        self.path = re.sub(r"/{2,}", "/", path)
        self.query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower())


@dataclass(slots=True)
class Response:
    """What to answer; ``reset`` means: close the connection with a TCP RST and send nothing."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (UTF-8, non-ASCII kept as is, like Laravel with JSON_UNESCAPED_UNICODE)."""
    body = json.dumps(payload, ensure_ascii=False, default=_json_default).encode("utf-8")
    return Response(status, body, "application/json", dict(headers or {}))


def _validation_error(errors: Mapping[str, list[str]]) -> Response:
    return json_response(
        422,
        {"status": "Validation error", "message": summary_message(errors), "data": {"errors": dict(errors)}},
    )


def _conflict(message: str, detail: str = PENDING_DETAIL) -> Response:
    return json_response(
        409,
        {
            "status": "Conflict",
            "message": message,
            "errors": [
                {
                    "code": 409,
                    "message": message,
                    "detail": detail,
                    "api_version": "v1",
                }
            ],
        },
    )


def _forbidden() -> Response:
    return json_response(
        403,
        {
            "status": "error",
            "message": "Forbidden endpoint",
            "errors": [
                {
                    "code": 403,
                    "message": "Forbidden endpoint",
                    "detail": "No permissions in sandbox",
                    "api_version": "v1",
                }
            ],
        },
    )


def _not_found(message: str) -> Response:
    return json_response(404, {"status": "Not Found", "message": message})


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack (e.g. 100 000 "["): malformed too
        return None


def _parse_form(request: Request) -> dict[str, str]:
    """``/oauth/token`` fields from form-urlencoded, multipart or JSON bodies."""
    ctype = (request.header("content-type") or "").lower()
    text = request.body.decode("utf-8", errors="replace")
    if "application/json" in ctype:
        data = _parse_json(request.body)
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    if "multipart/form-data" in ctype:
        match = re.search(r"boundary=\"?([^\";]+)\"?", request.header("content-type") or "")
        if not match:
            return {}
        fields: dict[str, str] = {}
        for part in text.split("--" + match.group(1)):
            head, sep, value = part.partition("\r\n\r\n")
            name = re.search(r'name="([^"]*)"', head)
            if sep and name:
                fields[name.group(1)] = value.removesuffix("\r\n")
        return fields
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


Handler = Callable[["App", Request, dict[str, str]], Response]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler


_ROUTES: list[_Route] = []


def _route(method: str, template: str) -> Callable[[Handler], Handler]:
    regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"

    def register(fn: Handler) -> Handler:
        _ROUTES.append(_Route(method, re.compile(regex), f"{method} {template}", fn))
        return fn

    return register


def _int_param(value: str | None, default: int, *, low: int = 1, high: int | None = None) -> int:
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        number = default
    number = max(low, number)
    return min(high, number) if high is not None else number


class App:
    """The emulator's request handler, independent of the HTTP server."""

    def __init__(self, state: EmulatorState, *, sleep: Callable[[float], object] = time.sleep) -> None:
        self.state = state
        self.sleep = sleep

    # --- entry point ----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request (never raises for a bad request)."""
        if request.path.startswith("/__emulator__"):
            return self._control(request)
        if request.path == "/oauth/token":
            route_name = "POST /oauth/token"
            if request.method != "POST":
                return self._counted(route_name, self._method_not_allowed(request, ["POST"]))
            self._latency()
            with self.state.lock:
                failure = self.state.faults.take_failure(self.state.rng, business=False)
            if failure is not None:
                return self._counted(route_name, self._failure(failure, {}))
            with self.state.lock:
                return self._counted(route_name, self._oauth(request))
        match = self._match(request)
        if isinstance(match, Response):
            return self._counted(f"{request.method} {request.path}", match)
        route, params = match
        self._latency()
        with self.state.lock:
            if not self.state.authenticate(request.header("authorization")):
                return self._counted(route.name, json_response(401, {"message": "Unauthenticated."}))
            if self.state.faults.take_burst():
                decision = self.state.burst_decision()
            else:
                decision = self.state.rate_check()
            headers = decision.headers()
            if not decision.allowed:
                return self._counted(
                    route.name, json_response(429, {"message": "Too Many Attempts."}, headers)
                )
            failure = self.state.faults.take_failure(self.state.rng)
            if failure is not None:
                return self._counted(route.name, self._failure(failure, headers))
            try:
                response = route.handler(self, request, params)
            except Exception:
                _log.exception("emulator_error", route=route.name)
                response = json_response(500, {"message": "Server Error"})
            if not response.reset:
                response.headers.update(headers)
            return self._counted(route.name, response)

    def _counted(self, route: str, response: Response) -> Response:
        with self.state.lock:
            self.state.count(route, "reset" if response.reset else response.status)
        return response

    def _latency(self) -> None:
        with self.state.lock:
            delay = self.state.faults.latency_s(self.state.rng)
        if delay > 0:
            self.sleep(delay)

    @staticmethod
    def _failure(status: int, headers: dict[str, str]) -> Response:
        if status == 502:
            body = b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>"
            return Response(502, body, "text/html; charset=utf-8", dict(headers))
        if status == 503:
            return json_response(503, {"message": "Service Unavailable"}, {**headers, "Retry-After": "1"})
        if status == 429:
            return json_response(429, {"message": "Too Many Attempts."}, {**headers, "Retry-After": "1"})
        return json_response(status, {"message": "Server Error"}, headers)

    @staticmethod
    def _method_not_allowed(request: Request, allowed: list[str]) -> Response:
        return json_response(
            405,
            {
                "message": f"The {request.method} method is not supported for route "
                f"{request.path.lstrip('/')}. Supported methods: {', '.join(allowed)}."
            },
            {"Allow": ", ".join(allowed)},
        )

    def _match(self, request: Request) -> tuple[_Route, dict[str, str]] | Response:
        allowed: list[str] = []
        for route in _ROUTES:
            found = route.pattern.match(request.path)
            if not found:
                continue
            # HEAD is served by every GET route (the server then sends the headers only)
            if route.method != request.method and not (request.method == "HEAD" and route.method == "GET"):
                allowed.append(route.method)
                continue
            return route, {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
        if allowed:
            return self._method_not_allowed(request, allowed)
        return json_response(404, {"message": f"The route {request.path.lstrip('/')} could not be found."})

    # --- control --------------------------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        action = request.path.removeprefix("/__emulator__").strip("/")
        with self.state.lock:
            if action == "state" and request.method == "GET":
                return json_response(200, self.state.snapshot())
            if action == "faults" and request.method == "GET":
                return json_response(200, {"faults": self.state.faults.to_dict()})
            if action == "faults" and request.method == "POST":
                body = _parse_json(request.body)
                if not isinstance(body, dict):
                    return json_response(400, {"message": "the faults body must be a JSON object"})
                try:
                    expired = self.set_faults(body)
                except FaultError as exc:
                    return json_response(400, {"message": str(exc)})
                return json_response(200, {"faults": self.state.faults.to_dict(), "expired_tokens": expired})
            if action == "reset" and request.method == "POST":
                self.state.reset()
                return json_response(200, {"message": "reset", "faults": self.state.faults.to_dict()})
        return json_response(404, {"message": f"unknown control route {request.method} {request.path}"})

    def set_faults(self, body: Mapping[str, Any]) -> int:
        """Merge a faults body (see :mod:`daemon.emulator.faults`); return how many tokens were expired."""
        with self.state.lock:
            expire = self.state.faults.merge(body, defaults=self.state.default_faults())
            return self.state.expire_tokens() if expire else 0

    # --- OAuth ----------------------------------------------------------------------------------------

    def _oauth(self, request: Request) -> Response:
        form = _parse_form(request)
        basic = request.header("authorization") or ""
        if basic[:6].lower() == "basic " and "client_id" not in form:
            # league/oauth2-server also takes the client credentials from HTTP Basic auth
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                client_id = client_secret = ""
            form.update(
                client_id=urllib.parse.unquote(client_id), client_secret=urllib.parse.unquote(client_secret)
            )
        cfg = self.state.config
        grant = form.get("grant_type", "")
        if grant not in ("password", "refresh_token"):
            text = "The authorization grant type is not supported by the authorization server."
            return json_response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": text,
                    "hint": "Check that all required parameters have been provided",
                    "message": text,
                },
            )
        if form.get("client_id") != cfg.client_id or form.get("client_secret") != cfg.client_secret:
            return json_response(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "Client authentication failed",
                    "message": "Client authentication failed",
                },
            )
        required = ("username", "password") if grant == "password" else ("refresh_token",)
        missing = next((name for name in required if not form.get(name)), None)
        if missing is not None:
            text = (
                "The request is missing a required parameter, includes an invalid parameter value, "
                "includes a parameter more than once, or is otherwise malformed."
            )
            return json_response(
                400,
                {
                    "error": "invalid_request",
                    "error_description": text,
                    "hint": f"Check the `{missing}` parameter",
                    "message": text,
                },
            )
        if grant == "password":
            if form["username"] != cfg.username or form["password"] != cfg.password:
                return json_response(
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": "The user credentials were incorrect.",
                        "message": "The user credentials were incorrect.",
                    },
                )
            pair: TokenPair | None = self.state.issue_tokens()
        else:
            refresh = form["refresh_token"]
            pair = None if self.state.faults.take_refresh_rejection() else self.state.refresh(refresh)
        if pair is None:
            return json_response(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "The refresh token is invalid.",
                    "hint": "Token has been revoked",
                    "message": "The refresh token is invalid.",
                },
            )
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": pair.expires_in,
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
            },
            {"Cache-Control": "no-store, private", "Pragma": "no-cache"},
        )

    # --- helpers for bill routes ------------------------------------------------------------------------

    def _bill_or_404(self, number: str) -> Bill | Response:
        bill = self.state.find_by_number(number)
        if bill is None:
            return _not_found(f"No se encontró la factura con número {number}")
        return bill

    def base_url(self, request: Request) -> str:
        """``http://host:port`` as the client addressed us (for pagination links)."""
        host = request.header("host") or f"{self.state.config.host}:{self.state.config.port}"
        return f"http://{host}"


# --- bills ------------------------------------------------------------------------------------------


@_route("POST", "/v1/bills/validate")
def _validate(app: App, request: Request, _params: dict[str, str]) -> Response:
    state = app.state
    payload = _parse_json(request.body)
    errors, clean = validate_bill(payload, state.bill_context())
    if errors:
        return _validation_error(errors)
    reference = clean["reference_code"]
    status = state.faults.take_reference_failure(reference)
    if status is not None:
        return App._failure(status, {})
    if state.faults.take_reset("before", reference, state.rng):
        return Response(0, reset=True)
    # Create and render in one transaction: any exception undoes the bill, its number and the
    # faults it consumed (the route answers 500 then, with nothing stored).
    try:
        with state.transaction():
            return _create_and_answer(app, clean)
    except RangeExhaustedError:
        return _validation_error(
            {"numbering_range_id": ["El rango de numeración no tiene consecutivos disponibles."]}
        )


def _create_and_answer(app: App, clean: dict[str, Any]) -> Response:
    state = app.state
    reference = clean["reference_code"]
    result = state.create(clean)
    stored = result.kind in ("validated", "dian_pending", "rejected")
    reset_after = stored and state.faults.take_reset("after", reference, state.rng)
    fail_after = None if reset_after or not stored else state.faults.take_failure_after_store(state.rng)
    if result.kind == "conflict":
        response = _conflict(result.message or PENDING_MESSAGE, result.detail)
    elif result.kind == "rejected":
        message = "El documento contiene errores de validación"
        response = json_response(
            422,
            {
                "status": "Validation error",
                "message": message,
                "data": {"message": message, "errors": result.rules},
            },
        )
    else:
        assert result.bill is not None
        data = render.bill_data(result.bill, state.tables, state.ranges)
        if result.kind == "existing":
            response = json_response(
                200,
                {
                    "status": "OK",
                    "message": f"Documento con el código de referencia {reference} ya se encuentra validado",
                    "data": data,
                },
            )
        elif result.kind == "dian_pending":
            response = json_response(
                201,
                {
                    "status": "Created",
                    "message": f"Documento con el código de referencia {reference} registrado; "
                    "pendiente de respuesta de la DIAN",
                    "data": data,
                },
            )
        else:
            response = json_response(
                201,
                {
                    "status": "Created",
                    "message": f"Documento con el código de referencia {reference} "
                    "registrado y validado con éxito",
                    "data": data,
                },
            )
    if reset_after:
        return Response(0, reset=True)
    if fail_after is not None:
        return App._failure(fail_after, {})
    return response


def _names(bill: Bill) -> str:
    customer = bill.payload["customer"]
    return fold(" ".join(str(customer.get(k) or "") for k in ("names", "company", "trade_name")))


def _filter(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(f"filter[{name}]")
    if value is None or not value.strip():
        return None
    return value.strip()


@_route("GET", "/v1/bills")
def _list_bills(app: App, request: Request, _params: dict[str, str]) -> Response:
    q = request.query
    bills = list(reversed(app.state.bills))
    if (value := _filter(q, "identification")) is not None:
        bills = [b for b in bills if value in str(b.payload["customer"].get("identification") or "")]
    if (value := _filter(q, "names")) is not None:
        needle = fold(value)
        bills = [b for b in bills if needle in _names(b)]
    if (value := _filter(q, "number")) is not None:
        bills = [b for b in bills if value.upper() in b.number.upper()]
    if (value := _filter(q, "prefix")) is not None:
        bills = [b for b in bills if b.prefix.upper() == value.upper()]
    if (value := _filter(q, "reference_code")) is not None:
        bills = [b for b in bills if value in b.reference_code]
    if (value := _filter(q, "status")) is not None:
        bills = [b for b in bills if str(b.status) == value]
    return _paginated(app, request, "/v1/bills", bills, render.bill_list_item)


def _paginated(
    app: App, request: Request, path: str, rows: list[Any], render_row: Callable[[Any], Any]
) -> Response:
    q = request.query
    per_page = _int_param(q.get("per_page") or q.get("filter[per_page]"), 10, high=100)
    page = _int_param(q.get("page"), 1)
    base = app.base_url(request) + path
    keep = {k: v for k, v in q.items() if k != "page"}

    def url_for(n: int) -> str:
        return base + "?" + urllib.parse.urlencode({**keep, "page": n})

    data = render.paginate(rows, page=page, per_page=per_page, url_for=url_for, render=render_row)
    return json_response(200, {"status": "OK", "message": _OK, "data": data})


@_route("GET", "/v1/bills/show/{number}")
def _show_bill(app: App, _request: Request, params: dict[str, str]) -> Response:
    bill = app._bill_or_404(params["number"])
    if isinstance(bill, Response):
        return bill
    data = render.bill_data(bill, app.state.tables, app.state.ranges)
    return json_response(200, {"status": "OK", "message": _OK, "data": data})


def _validated_or_error(app: App, number: str) -> Bill | Response:
    bill = app._bill_or_404(number)
    if isinstance(bill, Response):
        return bill
    if bill.status != 1:
        return json_response(
            409,
            {
                "status": "Conflict",
                "message": f"El documento {number} no ha sido validado por la DIAN",
                "errors": [
                    {"code": 409, "message": f"El documento {number} no ha sido validado por la DIAN"}
                ],
            },
        )
    return bill


@_route("GET", "/v1/bills/download-pdf/{number}")
def _download_pdf(app: App, _request: Request, params: dict[str, str]) -> Response:
    bill = _validated_or_error(app, params["number"])
    if isinstance(bill, Response):
        return bill
    content = documents.render_pdf(bill, app.state.tables)
    data = {"file_name": documents.file_name(bill), "pdf_base_64_encoded": base64.b64encode(content).decode()}
    return json_response(200, {"status": "OK", "message": _OK, "data": data})


@_route("GET", "/v1/bills/download-xml/{number}")
def _download_xml(app: App, _request: Request, params: dict[str, str]) -> Response:
    bill = _validated_or_error(app, params["number"])
    if isinstance(bill, Response):
        return bill
    content = documents.render_xml(bill, app.state.tables, app.state.ranges[bill.range_id])
    data = {"file_name": documents.file_name(bill), "xml_base_64_encoded": base64.b64encode(content).decode()}
    return json_response(200, {"status": "OK", "message": _OK, "data": data})


@_route("GET", "/v1/bills/{number}/email-content")
def _email_content(app: App, _request: Request, params: dict[str, str]) -> Response:
    bill = _validated_or_error(app, params["number"])
    if isinstance(bill, Response):
        return bill
    company = COMPANY["company"]
    archive = documents.email_zip(bill, app.state.tables, app.state.ranges[bill.range_id])
    data = {
        "subject": f"{COMPANY['nit']};{company};{bill.number};01;{company}",
        "attached_document": base64.b64encode(archive).decode(),
    }
    return json_response(200, {"status": "OK", "message": _OK, "data": data})


@_route("POST", "/v1/bills/send-email/{number}")
def _send_email(app: App, request: Request, params: dict[str, str]) -> Response:
    bill = _validated_or_error(app, params["number"])
    if isinstance(bill, Response):
        return bill
    errors, clean = validate_email_body(_parse_json(request.body))
    if errors:
        return _validation_error(errors)
    bill.emails.append(clean["email"])
    return json_response(200, {"status": "OK", "message": "Factura enviada al cliente con éxito"})


@_route("DELETE", "/v1/bills/destroy/reference/{reference_code}")
def _delete_bill(app: App, _request: Request, params: dict[str, str]) -> Response:
    reference = params["reference_code"]
    outcome = app.state.delete_by_reference(reference)
    if outcome == "missing":
        return _not_found(f"No se encontró el documento con código de referencia {reference}")
    if outcome == "validated":
        message = f"Documento con código de referencia {reference} se encuentra validado"
        status = app.state.config.delete_validated_status
        label = "Conflict" if status == 409 else "Validation error"
        return json_response(status, {"status": label, "message": message})
    return json_response(
        200,
        {"status": "OK", "message": f"Documento con código de referencia {reference} eliminado con éxito"},
    )


@_route("GET", "/v1/bills/{number}/radian/events")
def _radian_events(app: App, _request: Request, params: dict[str, str]) -> Response:
    bill = app._bill_or_404(params["number"])
    if isinstance(bill, Response):
        return bill
    events = [{k: v for k, v in e.items() if not k.startswith("_")} for e in bill.events]
    return json_response(200, {"status": "OK", "message": _OK, "data": events})


@_route("POST", "/v1/bills/radian/events/update/{number}/{event_type}")
def _emit_event(app: App, request: Request, params: dict[str, str]) -> Response:
    event_type = params["event_type"]
    bill = _validated_or_error(app, params["number"])
    if isinstance(bill, Response):
        return bill
    if event_type not in EVENT_NAMES:
        return _validation_error({"event_type": ["El tipo de evento seleccionado no es válido."]})
    if bill.payload["payment_form"] != "2":
        return _validation_error(
            {"event_type": ["Los eventos RADIAN solo aplican para facturas con forma de pago a crédito."]}
        )
    if any(e["event_code"] == event_type for e in bill.events):
        return _validation_error(
            {"event_type": [f"El evento {event_type} ya fue registrado para esta factura."]}
        )
    errors, person = validate_event(_parse_json(request.body), event_type)
    if errors:
        return _validation_error(errors)
    app.state.add_event(bill, event_type, person)
    events = [{k: v for k, v in e.items() if not k.startswith("_")} for e in bill.events]
    return json_response(200, {"status": "OK", "message": _OK, "data": events})


# --- numbering ranges --------------------------------------------------------------------------------


@_route("GET", "/v1/numbering-ranges")
def _list_ranges(app: App, request: Request, _params: dict[str, str]) -> Response:
    q = request.query
    ranges = sorted(app.state.ranges.values(), key=lambda r: r.id)
    if (value := _filter(q, "id")) is not None:
        ranges = [r for r in ranges if str(r.id) == value]
    if (value := _filter(q, "document")) is not None:
        ranges = [r for r in ranges if r.document == value]
    if (value := _filter(q, "resolution_number")) is not None:
        ranges = [r for r in ranges if value in (r.resolution_number or "")]
    if (value := _filter(q, "technical_key")) is not None:
        ranges = [r for r in ranges if value in (r.technical_key or "")]
    if (value := _filter(q, "is_active")) is not None:
        ranges = [r for r in ranges if str(int(r.is_active)) == value]
    return _paginated(app, request, "/v1/numbering-ranges", ranges, render.range_list_item)


@_route("GET", "/v1/numbering-ranges/dian")
def _dian_ranges(app: App, _request: Request, _params: dict[str, str]) -> Response:
    rows = [
        {
            "resolution_number": r.resolution_number,
            "resolution_date": r.start_date.isoformat(),
            "prefix": r.prefix,
            "from": r.from_,
            "to": r.to,
            "start_date": r.start_date.isoformat(),
            "end_date": r.end_date.isoformat(),
            "technical_key": r.technical_key,
        }
        for r in sorted(app.state.ranges.values(), key=lambda r: r.id)
        if r.resolution_number
    ]
    return json_response(200, {"status": "OK", "message": _OK, "data": rows})


@_route("GET", "/v1/numbering-ranges/{id}")
def _show_range(app: App, _request: Request, params: dict[str, str]) -> Response:
    try:
        rng = app.state.ranges.get(int(params["id"]))
    except ValueError:
        rng = None
    if rng is None:
        return _not_found(f"No se encontró el rango de numeración {params['id']}")
    return json_response(200, {"status": "OK", "message": _OK, "data": render.range_show(rng)})


@_route("POST", "/v1/numbering-ranges")
def _create_range(_app: App, _request: Request, _params: dict[str, str]) -> Response:
    return _forbidden()


@_route("PATCH", "/v1/numbering-ranges/{id}/current")
def _update_range(_app: App, _request: Request, _params: dict[str, str]) -> Response:
    return _forbidden()


@_route("DELETE", "/v1/numbering-ranges/{id}")
def _delete_range(_app: App, _request: Request, _params: dict[str, str]) -> Response:
    return _forbidden()


# --- lookups -----------------------------------------------------------------------------------------


def _name_query(request: Request) -> str | None:
    return request.query.get("filter[name]") or request.query.get("name") or None


@_route("GET", "/v1/municipalities")
def _municipalities(app: App, request: Request, _params: dict[str, str]) -> Response:
    rows = app.state.tables.municipality_rows(_name_query(request))
    return json_response(200, {"status": "OK", "message": _OK, "data": rows})


@_route("GET", "/v1/tributes/products")
def _tributes(app: App, request: Request, _params: dict[str, str]) -> Response:
    rows = app.state.tables.tribute_rows(_name_query(request))
    return json_response(200, {"status": "OK", "message": _OK, "data": rows})


@_route("GET", "/v1/measurement-units")
def _units(app: App, request: Request, _params: dict[str, str]) -> Response:
    rows = app.state.tables.unit_rows(_name_query(request))
    return json_response(200, {"status": "OK", "message": _OK, "data": rows})


@_route("GET", "/v1/countries")
def _countries(app: App, request: Request, _params: dict[str, str]) -> Response:
    rows = app.state.tables.country_rows(_name_query(request))
    return json_response(200, {"status": "OK", "message": _OK, "data": rows})


# §2.7 DIAN sandbox test identities: per document type, prefix + "9999" + 1…9 or 10 (e.g. CC 1399991…
# 1399999 and 13999910); only the types the contract lists (1, 2, 3) are seeded.
_ACQUIRER_PREFIXES = {1: "11", 2: "12", 3: "13"}


@_route("GET", "/v1/dian/acquirer")
def _acquirer(app: App, request: Request, _params: dict[str, str]) -> Response:
    q = request.query
    errors: dict[str, list[str]] = {}
    doc = q.get("identification_document_id", "").strip()
    number = q.get("identification_number", "").strip()
    if not doc:
        errors["identification_document_id"] = [
            "El campo tipo de documento de identificación es obligatorio."
        ]
    elif not doc.isdigit() or int(doc) not in catalog.IDENTIFICATION_DOCUMENTS:
        errors["identification_document_id"] = [
            "El tipo de documento de identificación seleccionado no es válido."
        ]
    if not number:
        errors["identification_number"] = ["El campo número de identificación es obligatorio."]
    if errors:
        return _validation_error(errors)
    doc_id = int(doc)
    prefix = _ACQUIRER_PREFIXES.get(doc_id)
    if prefix is None or not re.fullmatch(prefix + r"9999([1-9]|10)", number):
        return _not_found(f"No se encontró información del adquiriente con identificación {number}")
    index = number.removeprefix(prefix + "9999")
    doc_name = catalog.IDENTIFICATION_DOCUMENTS[doc_id][1]
    data = {"name": f"Nombre {doc_name} {index}", "email": f"adquiriente{prefix}{index}@example.com"}
    return json_response(200, {"status": "OK", "message": _OK, "data": data})


@_route("GET", "/v1/company")
def _company(_app: App, _request: Request, _params: dict[str, str]) -> Response:
    data = {
        "url_logo": COMPANY["url_logo"],
        "nit": COMPANY["nit"],
        "dv": COMPANY["dv"],
        "company": COMPANY["company"],
        "trade_name": COMPANY["company"],
        "names": None,
        "surnames": None,
        "graphic_representation_name": COMPANY["graphic_representation_name"],
        "registration_code": COMPANY["registration_code"],
        "economic_activity": COMPANY["economic_activity"],
        "phone": COMPANY["phone"],
        "email": COMPANY["email"],
        "address": COMPANY["direction"],
        "tribute": {"code": "01", "name": "IVA"},
        "legal_organization": {"code": "1", "name": "Persona Jurídica"},
        "municipality": {
            "code": "68679",
            "name": "San Gil",
            "department": {"code": "68", "name": "Santander"},
        },
        "responsibilities": [{"code": "O-13", "name": "Gran contribuyente"}],
        "created_at": "2024-01-01T10:00:00.000000Z",
        "updated_at": "2024-01-01T10:00:00.000000Z",
    }
    return json_response(200, {"status": "OK", "message": _OK, "data": data})


def _subscriptions(app: App) -> list[dict[str, Any]]:
    """The sandbox plan (contract §4.8): unlimited, documents consumed = bills issued so far."""
    consumed = sum(1 for bill in app.state.bills if bill.status == 1)
    return [
        {
            "name": "Plan Sandbox",
            "supported_document_types": ["Factura electrónica de venta", "Nota crédito"],
            "documents_quota": None,
            "documents_consumed": consumed,
            "documents_available": "Ilimitado",
            "days_until_expiration": 365,
            "activated_at": "2024-01-01 00:00:00",
            "expires_at": None,
            "has_expired": False,
            "is_active": True,
            "has_unlimited_quota": True,
        }
    ]


@_route("GET", "/v1/subscriptions")
def _subscription_list(app: App, _request: Request, _params: dict[str, str]) -> Response:
    return json_response(200, {"status": "OK", "message": _OK, "data": _subscriptions(app)})


@_route("GET", "/v1/subscriptions/current")
def _subscription_current(app: App, _request: Request, _params: dict[str, str]) -> Response:
    return json_response(200, {"status": "OK", "message": _OK, "data": _subscriptions(app)[0]})
