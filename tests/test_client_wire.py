"""FactusClient wire-format edge cases on httpx.MockTransport: odd bodies, statuses and classification."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from daemon.errors import (
    ApiValidationError,
    AuthError,
    ConflictError,
    FactusError,
    NotFoundError,
    TransientError,
)
from daemon.factus import FactusClient, RateLimiter, classify_bill_response
from daemon.factus.client import PathSegmentError
from daemon.settings import FactusSettings

SECRET = "wire-client-secret"
PASSWORD = "wire-password"
Route = Callable[[httpx.Request], httpx.Response]


class FakeFactus:
    """Scripted Factus: token endpoint plus per-(method, path) queues of responses."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[httpx.Response | Route]] = {}
        self.requests: list[httpx.Request] = []
        self.tokens_issued = 0
        self.token_status = 200

    def on(self, method: str, path: str, *responses: httpx.Response | Route) -> None:
        self.routes.setdefault((method, path), []).extend(responses)

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path == path)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/oauth/token":
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"message": "mantenimiento"})
            self.tokens_issued += 1
            n = self.tokens_issued
            return httpx.Response(
                200,
                json={
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "access_token": f"wire-access-{n}",
                    "refresh_token": f"wire-refresh-{n}",
                },
            )
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, json={"message": f"no route {request.url.path}"})
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        return item(request) if callable(item) else item


def ok(data: Any, status: int = 200, message: str = "Solicitud exitosa") -> httpx.Response:
    return httpx.Response(status, json={"status": "OK", "message": message, "data": data})


@pytest.fixture(name="fake")
def _fake() -> FakeFactus:
    return FakeFactus()


@pytest.fixture(name="client")
def _client(fake: FakeFactus) -> Iterator[FactusClient]:
    settings = FactusSettings(
        base_url="http://factus.test/",
        client_id="cid",
        client_secret=SecretStr(SECRET),
        username="u@example.com",
        password=SecretStr(PASSWORD),
        token_cache=None,
        max_retries=3,
        backoff_base_s=0.01,
    )
    slept: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(fake)) as http:
        client = FactusClient(settings, http=http, rate_limiter=RateLimiter(1000, 1.0), sleep=slept.append)
        yield client
        client.close()


def bill_body(status: int, errors: list[str] | None = None, http_status: int = 201) -> httpx.Response:
    return httpx.Response(
        http_status,
        json={
            "status": "Created",
            "message": "Documento con el código de referencia R-1 registrado y validado con éxito",
            "data": {
                "bill": {
                    "id": 77,
                    "number": "SETP990000001",
                    "reference_code": "R-1",
                    "status": status,
                    "cufe": "c" * 96,
                    "qr": "https://catalogo-vpfe-hab.dian.gov.co/document/searchqr?documentkey=x",
                    "total": "11900.00",
                    "errors": errors or [],
                }
            },
        },
    )


class TestClassification:
    def test_validated_keeps_notifications(self, fake: FakeFactus, client: FactusClient) -> None:
        """Status 1 is validated even with DIAN notifications, which are kept for audit."""
        fake.on(
            "POST", "/v1/bills/validate", bill_body(1, ["Regla: FAJ43b, Notificación: Nombre no coincide"])
        )
        out = client.create_bill({"reference_code": "R-1"})
        assert out.kind == "validated" and out.ok
        assert out.number == "SETP990000001" and out.bill_id == 77 and out.status == 1
        assert out.total == Decimal("11900.00")
        assert out.notifications == ["Regla: FAJ43b, Notificación: Nombre no coincide"]
        assert out.rules == {}
        assert out.data["bill"]["cufe"] == "c" * 96

    def test_status_zero_with_rechazo_is_rejected(self, fake: FakeFactus, client: FactusClient) -> None:
        """Status 0 with a Rechazo entry is a DIAN rejection keyed by rule."""
        fake.on(
            "POST",
            "/v1/bills/validate",
            bill_body(
                0, ["Regla: FAK24, Rechazo: No está informado el DV del NIT", "Regla: CAK55, Notificación: x"]
            ),
        )
        out = client.create_bill({"reference_code": "R-1"})
        assert out.kind == "rejected"
        assert out.rules == {"FAK24": "Regla: FAK24, Rechazo: No está informado el DV del NIT"}
        assert out.notifications == ["Regla: CAK55, Notificación: x"]

    def test_status_zero_without_rechazo_is_dian_pending(
        self, fake: FakeFactus, client: FactusClient
    ) -> None:
        """Status 0 and only notifications means DIAN did not answer: resend later."""
        fake.on("POST", "/v1/bills/validate", bill_body(0, ["Regla: RUT01, Notificación: y"]))
        assert client.create_bill({"reference_code": "R-1"}).kind == "dian_pending"

    def test_422_rule_map_is_rejected(self, fake: FakeFactus, client: FactusClient) -> None:
        """A 422 whose data.errors values carry Rechazo is a rejection, not a field error."""
        fake.on(
            "POST",
            "/v1/bills/validate",
            httpx.Response(
                422,
                json={
                    "status": "Validation error",
                    "message": "El documento contiene errores de validación",
                    "data": {
                        "message": "El documento contiene errores de validación",
                        "errors": {"FAK24": "Regla: FAK24, Rechazo: No está informado el DV del NIT"},
                    },
                },
            ),
        )
        out = client.create_bill({"reference_code": "R-9"})
        assert out.kind == "rejected" and out.http_status == 422
        assert out.reference_code == "R-9"
        assert out.rules == {"FAK24": "Regla: FAK24, Rechazo: No está informado el DV del NIT"}
        assert out.message == "El documento contiene errores de validación"

    def test_422_rule_without_prefix_gets_its_key(self) -> None:
        """A rule map value lacking 'Regla:' is still keyed by its map key."""
        body = {"errors": {"FAJ43b": ["Rechazo: nombre"]}}
        out = classify_bill_response(422, body)
        assert out is not None and out.kind == "rejected"
        assert list(out.rules) == ["FAJ43b"]

    @pytest.mark.parametrize(
        "body",
        [
            {
                "status": "Validation error",
                "message": "m",
                "data": {"errors": {"reference_code": ["obligatorio"]}},
            },
            {
                "message": "El campo es obligatorio. (and 1 more error)",
                "errors": {"reference_code": ["obligatorio"]},
            },
        ],
        ids=["factus-shape", "laravel-shape"],
    )
    def test_422_field_errors_are_invalid(self, fake: FakeFactus, client: FactusClient, body: Any) -> None:
        """Field errors are read from data.errors, then errors, and mean invalid input."""
        fake.on("POST", "/v1/bills/validate", httpx.Response(422, json=body))
        out = client.create_bill({"reference_code": "R-1"})
        assert out.kind == "invalid"
        assert out.field_errors == {"reference_code": ["obligatorio"]}

    @pytest.mark.parametrize(
        "body",
        [
            {"status": "Conflict", "errors": [{"code": 409, "message": "Se encontró una factura pendiente"}]},
            {"message": "Se encontró una factura pendiente"},
            {
                "status": "Conflict",
                "message": "Se encontró una factura pendiente",
                "errors": [
                    {"code": 409, "message": "Se encontró una factura pendiente", "api_version": "v1"}
                ],
            },
        ],
    )
    def test_409_is_conflict(self, fake: FakeFactus, client: FactusClient, body: Any) -> None:
        """Every documented 409 shape is a conflict with the Spanish message."""
        fake.on("POST", "/v1/bills/validate", httpx.Response(409, json=body))
        out = client.create_bill({"reference_code": "R-1"})
        assert out.kind == "conflict"
        assert out.message == "Se encontró una factura pendiente"

    def test_flat_v2_like_bill_shape(self) -> None:
        """A flat data object with is_validated and totals.total is understood too."""
        body = {"data": {"number": "N1", "is_validated": True, "totals": {"total": "5.00"}, "errors": {}}}
        out = classify_bill_response(201, body, reference_code="R")
        assert out is not None and out.kind == "validated" and out.total == Decimal("5.00")

    def test_garbage_total_is_none(self) -> None:
        """An unparseable total does not break classification."""
        body = {"data": {"bill": {"number": "N1", "status": "1", "total": "n/a"}}}
        out = classify_bill_response(200, body)
        assert out is not None and out.kind == "validated" and out.total is None and out.status == 1


class TestCreateBillFaults:
    @pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
    def test_transient_status_not_retried(self, fake: FakeFactus, client: FactusClient, status: int) -> None:
        """A transient status on validate raises TransientError after exactly one POST."""
        fake.on("POST", "/v1/bills/validate", httpx.Response(status, headers={"Retry-After": "0"}))
        with pytest.raises(TransientError) as info:
            client.create_bill({"reference_code": "R-1"})
        assert fake.count("POST", "/v1/bills/validate") == 1
        assert info.value.status_code == status
        assert info.value.retry_after_s == 0

    def test_transport_error_not_retried(self, fake: FakeFactus, client: FactusClient) -> None:
        """A dropped connection on validate raises TransientError after one attempt."""

        def drop(request: httpx.Request) -> httpx.Response:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )

        fake.on("POST", "/v1/bills/validate", drop)
        with pytest.raises(TransientError, match="cannot reach Factus"):
            client.create_bill({"reference_code": "R-1"})
        assert fake.count("POST", "/v1/bills/validate") == 1

    def test_read_timeout_not_retried(self, fake: FakeFactus, client: FactusClient) -> None:
        """A read timeout on validate is transient and not resent."""

        def slow(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("timed out", request=request)

        fake.on("POST", "/v1/bills/validate", slow)
        with pytest.raises(TransientError, match="did not answer in time"):
            client.create_bill({"reference_code": "R-1"})
        assert fake.count("POST", "/v1/bills/validate") == 1

    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(201, text="<html>proxy</html>"),
            httpx.Response(200, json={"status": "OK", "data": []}),
            httpx.Response(200, json=[1, 2]),
        ],
        ids=["html", "no-bill", "list"],
    )
    def test_unreadable_success_is_transient(
        self, fake: FakeFactus, client: FactusClient, response: httpx.Response
    ) -> None:
        """A 2xx without a bill is treated as unknown: reconcile by reference before resending."""
        fake.on("POST", "/v1/bills/validate", response)
        with pytest.raises(TransientError, match="reference code"):
            client.create_bill({"reference_code": "R-1"})

    def test_401_reauth_and_retry_once(self, fake: FakeFactus, client: FactusClient) -> None:
        """A 401 on validate re-authenticates and resends exactly once with the new token."""
        fake.on(
            "POST",
            "/v1/bills/validate",
            httpx.Response(401, json={"message": "Unauthenticated."}),
            bill_body(1),
        )
        assert client.create_bill({"reference_code": "R-1"}).kind == "validated"
        posts = [r for r in fake.requests if r.url.path == "/v1/bills/validate"]
        assert [r.headers["authorization"] for r in posts] == ["Bearer wire-access-1", "Bearer wire-access-2"]

    def test_401_twice_is_auth_error(self, fake: FakeFactus, client: FactusClient) -> None:
        """A second 401 after re-authenticating raises AuthError; two POSTs in total."""
        fake.on("POST", "/v1/bills/validate", httpx.Response(401, json={"message": "Unauthenticated."}))
        with pytest.raises(AuthError, match="Unauthenticated"):
            client.create_bill({"reference_code": "R-1"})
        assert fake.count("POST", "/v1/bills/validate") == 2

    def test_403_raises_api_validation_error(self, fake: FakeFactus, client: FactusClient) -> None:
        """A 403 (sandbox permission) is raised, with the generic errors[0].message."""
        body = {"status": "error", "errors": [{"code": 403, "message": "Forbidden endpoint", "detail": "d"}]}
        fake.on("POST", "/v1/bills/validate", httpx.Response(403, json=body))
        with pytest.raises(ApiValidationError, match="Forbidden endpoint"):
            client.create_bill({"reference_code": "R-1"})


class TestReads:
    def test_get_5xx_retried_with_backoff(self, fake: FakeFactus, client: FactusClient) -> None:
        """GET retries 5xx (and honours Retry-After) until it succeeds."""
        fake.on(
            "GET",
            "/v1/bills/show/SETP1",
            httpx.Response(500),
            httpx.Response(503, headers={"Retry-After": "0"}),
            ok({"bill": {"number": "SETP1"}}),
        )
        assert client.show_bill("SETP1")["bill"]["number"] == "SETP1"
        assert fake.count("GET", "/v1/bills/show/SETP1") == 3

    def test_get_gives_up_after_max_retries(self, fake: FakeFactus, client: FactusClient) -> None:
        """After max_retries retries the last TransientError is raised."""
        fake.on("GET", "/v1/bills/show/SETP1", httpx.Response(502))
        with pytest.raises(TransientError):
            client.show_bill("SETP1")
        assert fake.count("GET", "/v1/bills/show/SETP1") == 4

    def test_get_422_not_retried(self, fake: FakeFactus, client: FactusClient) -> None:
        """A 422 on a read is raised at once with its error map."""
        fake.on(
            "GET",
            "/v1/bills",
            httpx.Response(422, json={"message": "bad", "errors": {"page": ["debe ser entero"]}}),
        )
        with pytest.raises(ApiValidationError) as info:
            client.list_bills()
        assert info.value.errors == {"page": ["debe ser entero"]}
        assert fake.count("GET", "/v1/bills") == 1

    def test_get_404_is_not_found(self, fake: FakeFactus, client: FactusClient) -> None:
        """404 raises NotFoundError with the server message."""
        with pytest.raises(NotFoundError, match="no route"):
            client.show_bill("NOPE1")

    def test_path_segments_are_encoded(self, fake: FakeFactus, client: FactusClient) -> None:
        """A number with slashes or dot segments is refused; a reference code's slashes are encoded."""
        for bad in ("../../oauth/token", "..", ".", "SETP1\\..", "SETP\n1"):
            with pytest.raises(PathSegmentError):
                client.show_bill(bad)
        assert fake.requests == []
        with pytest.raises(NotFoundError):
            client.delete_bill("../../oauth/token")
        raw = fake.requests[-1].url.raw_path.decode()
        assert raw == "/v1/bills/destroy/reference/..%2F..%2Foauth%2Ftoken"
        with pytest.raises(PathSegmentError):
            client.delete_bill("..")

    def test_empty_segment_refused(self, client: FactusClient) -> None:
        """An empty number is refused before any request."""
        with pytest.raises(ValueError, match="empty"):
            client.show_bill(" ")

    def test_redirects_are_not_followed(self, fake: FakeFactus, client: FactusClient) -> None:
        """A redirect to another host is never followed (only base_url is contacted)."""
        fake.on("GET", "/v1/bills/show/X1", httpx.Response(302, headers={"Location": "http://evil.test/"}))
        with pytest.raises(FactusError):
            client.show_bill("X1")
        assert {r.url.host for r in fake.requests} == {"factus.test"}

    def test_list_params_and_pagination(self, fake: FakeFactus, client: FactusClient) -> None:
        """Filters go out as filter[...]; the pagination object is read."""
        fake.on(
            "GET",
            "/v1/bills",
            ok(
                {
                    "data": [{"number": "SETP1", "reference_code": "A"}],
                    "pagination": {"total": 21, "per_page": 10, "current_page": 2, "last_page": 3},
                }
            ),
        )
        page = client.list_bills(reference_code="A", status=1, number="SETP1", page=2, per_page=10)
        params = dict(fake.requests[-1].url.params)
        assert params == {
            "page": "2",
            "filter[reference_code]": "A",
            "filter[number]": "SETP1",
            "filter[status]": "1",
            "per_page": "10",
        }
        assert (page.total, page.current_page, page.last_page, page.per_page) == (21, 2, 3, 10)

    def test_list_flat_laravel_paginator(self, fake: FakeFactus, client: FactusClient) -> None:
        """A flat Laravel paginator (no pagination object) is understood."""
        fake.on(
            "GET",
            "/v1/bills",
            ok({"data": [], "total": 0, "current_page": 1, "last_page": 1, "per_page": 10}),
        )
        page = client.list_bills()
        assert page.items == [] and page.total == 0 and page.last_page == 1

    def test_find_bill_exact_match_across_pages(self, fake: FakeFactus, client: FactusClient) -> None:
        """find_bill walks every page and only accepts an exact reference_code."""

        def pages(request: httpx.Request) -> httpx.Response:
            page = int(request.url.params["page"])
            data = {
                1: [{"reference_code": "INV-10", "number": "S1"}, {"reference_code": None, "number": "S0"}],
                2: [{"reference_code": "INV-1", "number": "S2", "status": 0}],
                3: [{"reference_code": "INV-1", "number": "S3", "status": 1}],
            }[page]
            return ok({"data": data, "pagination": {"total": 4, "current_page": page, "last_page": 3}})

        fake.on("GET", "/v1/bills", pages)
        found = client.find_bill("INV-1")
        assert found is not None and found["number"] == "S3"
        assert fake.count("GET", "/v1/bills") == 3
        assert client.find_bill("INV-2") is None

    def test_downloads_decode_base64(self, fake: FakeFactus, client: FactusClient) -> None:
        """PDF and XML downloads are decoded and get their extension."""
        pdf = b"%PDF-1.4 fake"
        xml = b"<?xml version='1.0'?><Invoice/>"
        fake.on(
            "GET",
            "/v1/bills/download-pdf/S1",
            ok(
                {
                    "file_name": "fv0900825759000240000001",
                    "pdf_base_64_encoded": base64.b64encode(pdf).decode(),
                }
            ),
        )
        fake.on(
            "GET",
            "/v1/bills/download-xml/S1",
            ok(
                {
                    "file_name": "fv0900825759000240000001",
                    "xml_base_64_encoded": base64.b64encode(xml).decode(),
                }
            ),
        )
        got = client.download_pdf("S1")
        assert (got.file_name, got.content) == ("fv0900825759000240000001.pdf", pdf)
        got = client.download_xml("S1")
        assert (got.file_name, got.content) == ("fv0900825759000240000001.xml", xml)

    def test_download_xml_in_pdf_field_and_missing_name(self, fake: FakeFactus, client: FactusClient) -> None:
        """XML sent in pdf_base_64_encoded (a docs mistake) and a missing file_name still work."""
        fake.on(
            "GET",
            "/v1/bills/download-xml/S1",
            ok({"pdf_base_64_encoded": base64.b64encode(b"<a/>").decode()}),
        )
        got = client.download_xml("S1")
        assert (got.file_name, got.content) == ("S1.xml", b"<a/>")

    def test_download_bad_base64(self, fake: FakeFactus, client: FactusClient) -> None:
        """Invalid base64 raises a FactusError naming the document."""
        fake.on("GET", "/v1/bills/download-pdf/S1", ok({"file_name": "f", "pdf_base_64_encoded": "***"}))
        with pytest.raises(FactusError, match="invalid base64"):
            client.download_pdf("S1")

    def test_email_content_and_send(self, fake: FakeFactus, client: FactusClient) -> None:
        """email_content decodes the ZIP; send_email posts the address once and returns the message."""
        fake.on(
            "GET",
            "/v1/bills/S1/email-content",
            ok(
                {
                    "subject": "9008;ACME;S1;01;ACME",
                    "attached_document": base64.b64encode(b"PK\x03\x04").decode(),
                }
            ),
        )
        fake.on(
            "POST",
            "/v1/bills/send-email/S1",
            httpx.Response(200, json={"status": "OK", "message": "Factura enviada al cliente con éxito"}),
        )
        content = client.email_content("S1")
        assert content.subject.endswith(";01;ACME") and content.attachment == b"PK\x03\x04"
        assert client.send_email("S1", "a@example.com") == "Factura enviada al cliente con éxito"
        assert json.loads(fake.requests[-1].content) == {"email": "a@example.com"}

    def test_send_email_not_retried(self, fake: FakeFactus, client: FactusClient) -> None:
        """send-email is not idempotent, so a 503 is not retried."""
        fake.on("POST", "/v1/bills/send-email/S1", httpx.Response(503))
        with pytest.raises(TransientError):
            client.send_email("S1", "a@example.com")
        assert fake.count("POST", "/v1/bills/send-email/S1") == 1

    def test_delete_retries_transient_and_treats_404_as_done(
        self, fake: FakeFactus, client: FactusClient
    ) -> None:
        """A DELETE whose response was lost is retried; a 404 on the retry means it is gone."""
        path = "/v1/bills/destroy/reference/R-1"
        fake.on("DELETE", path, httpx.Response(502), httpx.Response(404, json={"message": "No se encontró"}))
        assert "already gone" in client.delete_bill("R-1")
        assert fake.count("DELETE", path) == 2

    def test_delete_404_first_time_is_not_found(self, fake: FakeFactus, client: FactusClient) -> None:
        """Deleting an unknown reference raises NotFoundError."""
        with pytest.raises(NotFoundError):
            client.delete_bill("R-404")

    def test_delete_validated_conflict(self, fake: FakeFactus, client: FactusClient) -> None:
        """A 409 on delete surfaces as ConflictError, not retried."""
        path = "/v1/bills/destroy/reference/R-1"
        fake.on("DELETE", path, httpx.Response(409, json={"message": "se encuentra validado"}))
        with pytest.raises(ConflictError, match="validado"):
            client.delete_bill("R-1")
        assert fake.count("DELETE", path) == 1

    def test_lookups_filter_and_shapes(self, fake: FakeFactus, client: FactusClient) -> None:
        """Lookups accept list or paginated data and filter by name ignoring case and accents."""
        fake.on(
            "GET",
            "/v1/municipalities",
            ok(
                [
                    {"id": 169, "code": "11001", "name": "Bogotá, D.c."},
                    {"id": 80, "code": "05001", "name": "Medellín"},
                ]
            ),
        )
        fake.on("GET", "/v1/countries", ok({"data": [{"id": 46, "code": "CO", "name": "Colombia"}]}))
        assert [m["id"] for m in client.municipalities("BOGOTA")] == [169]
        assert fake.requests[-1].url.params["name"] == "BOGOTA"
        assert client.countries()[0]["code"] == "CO"

    def test_numbering_ranges_all_pages(self, fake: FakeFactus, client: FactusClient) -> None:
        """numbering_ranges walks every page and sends the filters."""

        def pages(request: httpx.Request) -> httpx.Response:
            page = int(request.url.params["page"])
            return ok({"data": [{"id": page}], "pagination": {"current_page": page, "last_page": 2}})

        fake.on("GET", "/v1/numbering-ranges", pages)
        assert [r["id"] for r in client.numbering_ranges(document="21", is_active=True)] == [1, 2]
        assert fake.requests[-1].url.params["filter[is_active]"] == "1"

    def test_acquirer_and_events(self, fake: FakeFactus, client: FactusClient) -> None:
        """The acquirer lookup returns its object; events return a list (empty when data is null)."""
        fake.on("GET", "/v1/dian/acquirer", ok({"name": "Nombre", "email": "x@y.co"}))
        fake.on("GET", "/v1/bills/S1/radian/events", ok(None))
        assert client.acquirer(3, "1399991") == {"name": "Nombre", "email": "x@y.co"}
        params = dict(fake.requests[-1].url.params)
        assert params == {"identification_document_id": "3", "identification_number": "1399991"}
        assert client.radian_events("S1") == []


class TestErrorsAndLogs:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            ({"errors": [{"message": "first"}], "data": {"message": "second"}, "message": "third"}, "first"),
            ({"data": {"message": "second"}, "message": "third"}, "second"),
            ({"message": "third", "error_description": "fourth"}, "third"),
            ({"error_description": "fourth", "error": "fifth"}, "fourth"),
            ({"error": "fifth"}, "fifth"),
            ({}, "Bad Request"),
        ],
    )
    def test_message_precedence(
        self, fake: FakeFactus, client: FactusClient, body: Any, expected: str
    ) -> None:
        """Messages: errors[0].message, data.message, message, error_description, error, reason."""
        fake.on("GET", "/v1/bills", httpx.Response(400, json=body))
        with pytest.raises(ApiValidationError) as info:
            client.list_bills()
        assert info.value.message.endswith(expected)

    def test_echoed_secret_is_masked(self, fake: FakeFactus, client: FactusClient) -> None:
        """A server message echoing our secret or token is masked in the raised error."""
        fake.on("GET", "/v1/bills", httpx.Response(400, json={"message": f"bad {SECRET} wire-access-1"}))
        with pytest.raises(ApiValidationError) as info:
            client.list_bills()
        assert SECRET not in str(info.value) and "wire-access-1" not in str(info.value)

    def test_request_log_has_no_token(self, fake: FakeFactus, client: FactusClient) -> None:
        """factus_request events carry method, path, status, timing and attempt, never a token."""
        fake.on("GET", "/v1/countries", ok([]))
        with capture_logs() as logs:
            client.countries()
        events = [e for e in logs if e["event"] == "factus_request"]
        assert {e["path"] for e in events} == {"/oauth/token", "/v1/countries"}
        for e in events:
            assert {"method", "path", "status", "elapsed_ms", "attempt"} <= set(e)
        dump = json.dumps(logs, default=str)
        for secret in (SECRET, PASSWORD, "wire-access-1", "wire-refresh-1"):
            assert secret not in dump

    def test_token_outage_is_not_retried_twice(self, fake: FakeFactus, client: FactusClient) -> None:
        """A token endpoint outage is retried once by the token manager, not again per business retry."""
        fake.token_status = 503
        fake.on("GET", "/v1/countries", ok([]))
        with pytest.raises(TransientError, match="503"):
            client.countries()
        assert fake.count("POST", "/oauth/token") == 4  # 1 + max_retries
        assert fake.count("GET", "/v1/countries") == 0

    @pytest.mark.parametrize(
        ("url", "loopback"),
        [
            ("http://127.0.0.1:8910", True),
            ("http://localhost:1", True),
            ("http://[::1]:2", True),
            ("https://api-sandbox.factus.com.co", False),
        ],
    )
    def test_proxies_only_for_remote_hosts(self, url: str, loopback: bool) -> None:
        """Proxy variables are trusted for the real Factus but never for a loopback emulator."""
        with FactusClient.from_settings(FactusSettings(base_url=url, token_cache=None)) as client:
            assert client._http.trust_env is not loopback

    def test_from_settings_owns_and_closes(self, tmp_path: Path) -> None:
        """A client built from settings owns its pool and works as a context manager."""
        settings = FactusSettings(base_url="http://127.0.0.1:9", token_cache=None)
        with FactusClient.from_settings(settings) as client:
            assert client.base_url == "http://127.0.0.1:9"
        assert client._http.is_closed
