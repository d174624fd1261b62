"""Emulator v1 bill endpoints and lookups: envelopes, totals, validation, pagination and filters."""

from __future__ import annotations

import base64
import io
import json
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorConfig, EmulatorServer
from tests.conftest import login, minimal_bill


def rich_bill(reference: str = "BATCH-2025-000002") -> dict[str, Any]:
    """The contract's §3.6 richer invoice (credit sale, NIT customer, withholdings, tip)."""
    return {
        "document": "01",
        "numbering_range_id": 4,
        "reference_code": reference,
        "observation": "Pedido web 7781",
        "operation_type": "10",
        "payment_form": "2",
        "payment_due_date": "2025-12-31",
        "payment_method_code": "47",
        "send_email": False,
        "order_reference": {"reference_code": "OC-7781", "issue_date": "2025-11-28"},
        "billing_period": {
            "start_date": "2025-11-01",
            "start_time": "00:00:00",
            "end_date": "2025-11-30",
            "end_time": "23:59:59",
        },
        "establishment": {
            "name": "Sede Centro",
            "address": "calle 10 # 3-13",
            "phone_number": "0987654321",
            "email": "sede@example.com",
            "municipality_id": 980,
        },
        "customer": {
            "identification_document_id": 6,
            "identification": "900123456",
            "dv": "8",
            "company": "Enigma S.A.S.",
            "trade_name": "Enigma",
            "address": "calle 1 # 2-68",
            "email": "facturas@example.com",
            "phone": "1234567890",
            "legal_organization_id": 1,
            "tribute_id": 18,
            "municipality_id": 980,
        },
        "items": [
            {
                "code_reference": "12345",
                "name": "Servicio de consultoría",
                "note": "Noviembre",
                "quantity": 1,
                "discount_rate": 20,
                "price": 50000,
                "tax_rate": "19.00",
                "unit_measure_id": 70,
                "standard_code_id": 1,
                "is_excluded": 0,
                "tribute_id": 1,
                "withholding_taxes": [
                    {"code": "06", "withholding_tax_rate": 7.00},
                    {"code": "05", "withholding_tax_rate": 15.00},
                ],
            },
            {
                "code_reference": "54321",
                "name": "Producto 5%",
                "quantity": 1,
                "discount_rate": 0,
                "price": 50000,
                "tax_rate": "5.00",
                "unit_measure_id": 70,
                "standard_code_id": 1,
                "is_excluded": 0,
                "tribute_id": 1,
                "withholding_taxes": [],
            },
        ],
        "allowance_charges": [
            {
                "concept_type": "03",
                "is_surcharge": True,
                "reason": "Propina",
                "base_amount": "90000.00",
                "amount": "9000.00",
            }
        ],
    }


def _create(api: httpx.Client, payload: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/v1/bills/validate", json=payload)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


class TestValidate:
    def test_minimal_example_envelope_and_totals(self, api: httpx.Client) -> None:
        """The §3.5 example validates with 201, taxable 10000.00, tax 1900.00 and total 11900.00."""
        r = api.post("/v1/bills/validate", json=minimal_bill())
        assert r.status_code == 201
        body = r.json()
        assert body["status"] == "Created"
        assert body["message"] == (
            "Documento con el código de referencia BATCH-2025-000001 registrado y validado con éxito"
        )
        bill = body["data"]["bill"]
        assert (bill["taxable_amount"], bill["tax_amount"], bill["total"]) == (
            "10000.00",
            "1900.00",
            "11900.00",
        )
        assert bill["gross_value"] == "10000.00"
        assert bill["status"] == 1
        assert bill["number"] == "SETP990000001"
        assert len(bill["cufe"]) == 96 and int(bill["cufe"], 16) >= 0
        assert bill["qr"].endswith("documentkey=" + bill["cufe"])
        assert bill["qr_image"].startswith("data:image/png;base64, ")
        assert any("CAK55" in e and "Notificación" in e for e in bill["errors"])
        data = body["data"]
        assert set(data) >= {
            "company",
            "establishment",
            "customer",
            "numbering_range",
            "billing_period",
            "bill",
            "items",
            "allowance_charges",
            "withholding_taxes",
            "credit_notes",
            "debit_notes",
        }
        assert data["billing_period"] == []
        assert data["numbering_range"]["prefix"] == "SETP"
        assert data["customer"]["municipality"] == {"id": 980, "code": "68679", "name": "San Gil"}
        assert data["establishment"]["municipality_id"]["department"] == {
            "id": 28,
            "code": "68",
            "name": "Santander",
        }
        item = data["items"][0]
        assert item["total"] == 11900
        assert (item["taxable_amount"], item["tax_amount"], item["price"]) == (
            "10000.00",
            "1900.00",
            "11900.00",
        )
        assert item["unit_measure"] == {"id": 70, "code": "94", "name": "unidad"}
        assert r.headers["X-RateLimit-Limit"] == "100000"

    def test_rich_example_totals(self, api: httpx.Client) -> None:
        """The §3.6 example: discounts, two tax rates, withholdings and a 10 % tip are computed exactly."""
        data = _create(api, rich_bill())
        bill = data["bill"]
        assert bill["taxable_amount"] == "81232.50"
        assert bill["gross_value"] == "81232.50"
        assert bill["tax_amount"] == "8767.50"
        assert bill["surcharge_amount"] == "9000.00"
        assert bill["discount_amount"] == "0.00"
        assert bill["total"] == "99000.00"
        assert bill["payment_form"] == {"code": "2", "name": "Pago a crédito"}
        assert bill["payment_due_date"] == "2025-12-31"
        first, second = data["items"]
        assert first["total"] == 40000
        assert (first["taxable_amount"], first["tax_amount"], first["discount"]) == (
            "33613.45",
            "6386.55",
            "8403.36",
        )
        held = {w["tribute_code"]: (w["value"], w["rates"][0]["rate"]) for w in first["withholding_taxes"]}
        assert held == {"06": ("2352.94", "7.00"), "05": ("957.98", "15.00")}
        assert (second["taxable_amount"], second["tax_amount"], second["total"]) == (
            "47619.05",
            "2380.95",
            50000,
        )
        assert data["allowance_charges"][0]["percentage"] == "10.00"
        assert data["allowance_charges"][0]["concept_type"]["code"] == "03"
        assert {w["tribute_code"]: w["value"] for w in data["withholding_taxes"]} == {
            "05": "957.98",
            "06": "2352.94",
        }
        assert data["customer"]["dv"] == "8"
        assert data["establishment"]["name"] == "Sede Centro"
        assert data["billing_period"]["end_date"] == "2025-11-30"
        assert data["bill"]["order_reference"]["reference_code"] == "OC-7781"

    def test_discount_excluded_item_and_document_discount(self, api: httpx.Client) -> None:
        """An item discount, an IVA-excluded item and a document-level discount follow §3.4."""
        payload = minimal_bill("DISC-1")
        payload["items"] = [
            {**payload["items"][0], "quantity": 3, "price": 10000, "discount_rate": 10},
            {
                **payload["items"][0],
                "code_reference": "EXC",
                "quantity": 2,
                "price": "5000.00",
                "tax_rate": "0.00",
                "is_excluded": 1,
            },
        ]
        payload["allowance_charges"] = [
            {
                "concept_type": "03",
                "is_surcharge": False,
                "reason": "Pronto pago",
                "base_amount": 37000,
                "amount": 1000,
            }
        ]
        data = _create(api, payload)
        taxed, excluded = data["items"]
        assert (taxed["total"], taxed["taxable_amount"], taxed["tax_amount"]) == (
            27000,
            "22689.08",
            "4310.92",
        )
        assert taxed["discount"] == "2521.01"
        assert (excluded["total"], excluded["taxable_amount"], excluded["tax_amount"]) == (
            10000,
            "0.00",
            "0.00",
        )
        assert excluded["gross_value"] == "10000.00"
        bill = data["bill"]
        # the document gross_value sums the item gross values (the excluded line adds its 10000.00)
        assert (bill["taxable_amount"], bill["gross_value"], bill["tax_amount"]) == (
            "22689.08",
            "32689.08",
            "4310.92",
        )
        assert (bill["discount_amount"], bill["total"]) == ("1000.00", "36000.00")
        assert data["allowance_charges"][0]["percentage"] == "2.70"

    def test_numeric_strings_and_doc_range_alias_are_accepted(self, api: httpx.Client) -> None:
        """Numeric strings validate like numbers, and range id 4 of the official examples maps to range 8."""
        payload = minimal_bill("STR-1")
        payload["numbering_range_id"] = "4"
        item = payload["items"][0]
        item.update(quantity="2", unit_measure_id="70", tribute_id="1", standard_code_id="1", price="5950.50")
        payload["customer"]["identification_document_id"] = "3"
        data = _create(api, payload)
        assert data["bill"]["number"].startswith("SETP")
        assert data["bill"]["total"] == "11901.00"

    def test_numbering_range_may_be_omitted_and_current_advances(self, api: httpx.Client) -> None:
        """Without numbering_range_id the single active bill range is used and its ``current`` advances."""
        before = api.get("/v1/numbering-ranges/8").json()["data"]["current"]
        payload = minimal_bill("NORANGE-1")
        del payload["numbering_range_id"]
        assert _create(api, payload)["bill"]["number"] == f"SETP{before}"
        assert api.get("/v1/numbering-ranges/8").json()["data"]["current"] == before + 1

    def test_exhausted_range_is_refused(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """When the range has no consecutive left the create answers 422 and stores nothing."""
        with emu.state.lock:
            emu.state.ranges[8].current = emu.state.ranges[8].to + 1
        r = api.post("/v1/bills/validate", json=minimal_bill("FULL-1"))
        assert r.status_code == 422
        assert "numbering_range_id" in r.json()["data"]["errors"]
        assert emu.snapshot()["bills"] == []

    def test_nit_without_dv_gets_computed_dv(self, api: httpx.Client) -> None:
        """A NIT customer without ``dv`` is validated with the DIAN check digit filled in."""
        payload = rich_bill("NODV-1")
        del payload["customer"]["dv"]
        data = _create(api, payload)
        assert data["customer"]["dv"] == "8"
        assert data["bill"]["status"] == 1


class TestFieldValidation:
    def test_empty_body_lists_required_fields(self, api: httpx.Client) -> None:
        """An empty body answers 422 in the Factus shape with Laravel's Spanish required messages."""
        r = api.post("/v1/bills/validate", json={})
        assert r.status_code == 422
        body = r.json()
        assert body["status"] == "Validation error"
        errors = body["data"]["errors"]
        assert errors["reference_code"] == ["El campo código de referencia es obligatorio."]
        assert "customer" in errors and "items" in errors
        assert body["message"].startswith("El campo código de referencia es obligatorio. (y ")

    def test_field_rules(self, api: httpx.Client) -> None:
        """Types, decimals, integer quantity, unknown ids, conditional and length rules are enforced."""
        payload = minimal_bill("RULES-1")
        payload["payment_form"] = "2"
        payload["observation"] = "x" * 251
        payload["numbering_range_id"] = 7  # inactive, expired range
        payload["customer"].update(identification="", municipality_id=99999, email="not-an-email")
        payload["items"][0].update(
            quantity=1.5, price="10.555", unit_measure_id=424242, tribute_id="abc", is_excluded=None
        )
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 422
        errors = r.json()["data"]["errors"]
        assert errors["customer.identification"] == ["El campo identificación es obligatorio."]
        assert errors["payment_due_date"] == [
            "El campo fecha de vencimiento del pago es obligatorio cuando forma de pago es 2."
        ]
        assert errors["observation"] == ["El campo observación no debe ser mayor que 250 caracteres."]
        assert errors["numbering_range_id"] == ["El rango de numeración seleccionado no es válido."]
        assert errors["customer.municipality_id"] == ["El municipio seleccionado no es válido."]
        assert errors["customer.email"] == ["El campo correo electrónico no es un correo válido."]
        assert errors["items.0.quantity"] == ["El campo cantidad debe ser un número entero."]
        assert errors["items.0.price"] == ["El campo precio debe tener entre 0 y 2 cifras decimales."]
        assert errors["items.0.unit_measure_id"] == ["El unidad de medida seleccionado no es válido."]
        assert errors["items.0.tribute_id"] == ["El campo tributo debe ser un número entero."]
        assert errors["items.0.is_excluded"] == ["El campo excluido de IVA es obligatorio."]

    def test_invalid_json_is_a_validation_error(self, api: httpx.Client) -> None:
        """A body that is not JSON answers 422 (Laravel sees no input) and stores nothing."""
        r = api.post("/v1/bills/validate", content=b"{nope", headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        assert api.get("/v1/bills").json()["data"]["pagination"]["total"] == 0


class TestReads:
    def test_list_pagination_and_links(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """Lists are newest first, 10 per page, with Laravel links and ``per_page``/``filter[per_page]``."""
        for i in range(23):
            _create(api, minimal_bill(f"PAGE-{i:02d}"))
        first = api.get("/v1/bills").json()
        assert first["status"] == "OK" and first["message"] == "Solicitud exitosa"
        page = first["data"]["pagination"]
        assert (page["total"], page["per_page"], page["current_page"], page["last_page"]) == (23, 10, 1, 3)
        assert (page["from"], page["to"]) == (1, 10)
        assert first["data"]["data"][0]["reference_code"] == "PAGE-22"
        links = page["links"]
        assert links[0] == {"url": None, "label": "&laquo; Anterior", "active": False}
        assert links[-1]["label"] == "Siguiente &raquo;" and links[-1]["url"].endswith("page=2")
        assert [link["label"] for link in links[1:-1]] == [1, 2, 3]
        assert links[1]["active"] is True and links[1]["url"].startswith(emu.url + "/v1/bills?")
        third = api.get("/v1/bills", params={"page": 3}).json()["data"]
        assert len(third["data"]) == 3 and third["pagination"]["links"][-1]["url"] is None
        beyond = api.get("/v1/bills", params={"page": 9}).json()["data"]
        assert beyond["data"] == [] and beyond["pagination"]["from"] is None
        assert len(api.get("/v1/bills", params={"per_page": 20}).json()["data"]["data"]) == 20
        five = api.get("/v1/bills", params={"filter[per_page]": 5}).json()["data"]["pagination"]
        assert (five["per_page"], five["last_page"]) == (5, 5)

    def test_long_pagination_has_ellipsis(self, api: httpx.Client) -> None:
        """With many pages the links window shows ``...`` gaps like Laravel's UrlWindow."""
        for i in range(15):
            _create(api, minimal_bill(f"LONG-{i:02d}"))
        links = api.get("/v1/bills", params={"per_page": 1, "page": 8}).json()["data"]["pagination"]["links"]
        labels = [link["label"] for link in links[1:-1]]
        assert labels == [1, 2, "...", 5, 6, 7, 8, 9, 10, 11, "...", 14, 15]

    def test_filters(self, api: httpx.Client) -> None:
        """identification, names (accent-insensitive), number, prefix, reference_code and status filter."""
        _create(api, minimal_bill("FILT-A"))
        other = rich_bill("FILT-B")
        other["customer"]["company"] = "Compañía Ñandú S.A.S."
        _create(api, other)

        def refs(**params: Any) -> list[str]:
            rows = api.get("/v1/bills", params=params).json()["data"]["data"]
            return [row["reference_code"] for row in rows]

        assert refs(**{"filter[identification]": "900123456"}) == ["FILT-B"]
        assert refs(**{"filter[names]": "nandu"}) == ["FILT-B"]
        assert refs(**{"filter[number]": "SETP990000001"}) == ["FILT-A"]
        assert refs(**{"filter[prefix]": "SETP"}) == ["FILT-B", "FILT-A"]
        assert refs(**{"filter[prefix]": "NOPE"}) == []
        assert refs(**{"filter[reference_code]": "FILT-A"}) == ["FILT-A"]
        assert refs(**{"filter[reference_code]": "FILT"}) == ["FILT-B", "FILT-A"]
        assert refs(**{"filter[status]": "1"}) == ["FILT-B", "FILT-A"]
        assert refs(**{"filter[status]": "0"}) == []
        row = api.get("/v1/bills", params={"filter[reference_code]": "FILT-B"}).json()["data"]["data"][0]
        assert row["total"] == "99000.00" and row["status"] == 1 and row["payment_form"]["code"] == "2"
        assert row["graphic_representation_name"] == "Compañía Ñandú S.A.S."

    def test_show_and_unknown_number(self, api: httpx.Client) -> None:
        """Show returns the full document; an unknown number answers 404."""
        number = _create(api, minimal_bill("SHOW-1"))["bill"]["number"]
        r = api.get(f"/v1/bills/show/{number}")
        assert r.status_code == 200
        assert r.json()["status"] == "OK"
        assert r.json()["data"]["bill"]["reference_code"] == "SHOW-1"
        assert api.get("/v1/bills/show/SETP1").status_code == 404

    def test_downloads_and_email(self, api: httpx.Client) -> None:
        """PDF/XML downloads carry base64 files named fv+NIT10+000+yy+seq; e-mail content is a ZIP."""
        data = _create(api, minimal_bill("DL-1"))
        number = data["bill"]["number"]
        pdf = api.get(f"/v1/bills/download-pdf/{number}").json()["data"]
        assert pdf["file_name"].startswith("fv0900825759000") and len(pdf["file_name"]) == 25
        assert pdf["file_name"].endswith("00000001")
        assert base64.b64decode(pdf["pdf_base_64_encoded"]).startswith(b"%PDF-")
        xml = api.get(f"/v1/bills/download-xml/{number}").json()["data"]
        assert xml["file_name"] == pdf["file_name"]
        assert base64.b64decode(xml["xml_base_64_encoded"]).startswith(b"<?xml")
        content = api.get(f"/v1/bills/{number}/email-content").json()["data"]
        assert content["subject"] == f"900825759;FACTUS EMULADOR S.A.S.;{number};01;FACTUS EMULADOR S.A.S."
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(content["attached_document"]))) as archive:
            # the PDF and the AttachedDocument (DIAN names it "ad" + the same NIT/year/sequence)
            assert sorted(archive.namelist()) == sorted(
                [pdf["file_name"] + ".pdf", "ad" + pdf["file_name"][2:] + ".xml"]
            )
        sent = api.post(f"/v1/bills/send-email/{number}", json={"email": "cliente@example.com"})
        assert sent.json() == {"status": "OK", "message": "Factura enviada al cliente con éxito"}
        bad = api.post(f"/v1/bills/send-email/{number}", json={})
        assert bad.status_code == 422 and "email" in bad.json()["data"]["errors"]
        assert api.get("/v1/bills/download-pdf/NOPE1").status_code == 404

    def test_delete_by_reference(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """Unknown references answer 404 and validated ones cannot be deleted (409)."""
        r = api.delete("/v1/bills/destroy/reference/NOPE-1")
        assert r.status_code == 404
        assert r.json()["message"] == "No se encontró el documento con código de referencia NOPE-1"
        _create(api, minimal_bill("VAL-1"))
        r = api.delete("/v1/bills/destroy/reference/VAL-1")
        assert r.status_code == 409
        assert r.json()["message"] == "Documento con código de referencia VAL-1 se encuentra validado"

    def test_radian_events_only_for_credit_bills(self, api: httpx.Client) -> None:
        """RADIAN events can be emitted on payment_form 2 bills only, once per type, and are listed."""
        credit = _create(api, rich_bill("EV-1"))["bill"]["number"]
        cash = _create(api, minimal_bill("EV-2"))["bill"]["number"]
        assert api.get(f"/v1/bills/{credit}/radian/events").json()["data"] == []
        person = {
            "identification_document_code": "13",
            "identification": "1399991",
            "first_name": "Ana",
            "last_name": "Gil",
        }
        r = api.post(f"/v1/bills/radian/events/update/{credit}/030", json=person)
        assert r.status_code == 200
        event = r.json()["data"][0]
        assert event["event_code"] == "030" and len(event["cude"]) == 96
        assert event["event_name"] == "Acuse de recibo de Factura Electrónica de Venta"
        assert api.post(f"/v1/bills/radian/events/update/{credit}/030", json=person).status_code == 422
        assert api.post(f"/v1/bills/radian/events/update/{cash}/030", json=person).status_code == 422
        claim = api.post(f"/v1/bills/radian/events/update/{credit}/031", json=person)
        assert claim.status_code == 422 and "claim_concept_code" in claim.json()["data"]["errors"]
        listed = api.get(f"/v1/bills/{credit}/radian/events").json()["data"]
        assert [e["event_code"] for e in listed] == ["030"]


class TestLookups:
    def test_numbering_ranges(self, api: httpx.Client) -> None:
        """Ranges list (document name, filters, pagination) and show (document code + name)."""
        body = api.get("/v1/numbering-ranges").json()
        rows = {row["id"]: row for row in body["data"]["data"]}
        sandbox = rows[8]
        assert (sandbox["prefix"], sandbox["from"], sandbox["to"]) == ("SETP", 990000000, 995000000)
        assert sandbox["document"] == "Factura de Venta" and sandbox["is_active"] == 1
        assert sandbox["start_date"] == "2019-01-19"
        active = api.get("/v1/numbering-ranges", params={"filter[document]": "21", "filter[is_active]": "1"})
        assert [row["id"] for row in active.json()["data"]["data"]] == [8]
        shown = api.get("/v1/numbering-ranges/8").json()["data"]
        assert (shown["document"], shown["document_name"]) == ("21", "Factura de Venta")
        assert api.get("/v1/numbering-ranges/999").status_code == 404
        assert api.post("/v1/numbering-ranges", json={}).status_code == 403

    @pytest.mark.parametrize(
        ("path", "query", "expected"),
        [
            ("/v1/municipalities", {"name": "bogota"}, ("11001", "Bogotá, D.c.")),
            ("/v1/municipalities", {"filter[name]": "SAN GIL"}, ("68679", "San Gil")),
            ("/v1/countries", {"filter[name]": "espana"}, ("ES", "España")),
            ("/v1/measurement-units", {"name": "kilogr"}, ("KGM", "kilogramo")),
            ("/v1/tributes/products", {"name": "IVA"}, ("01", "IVA")),
        ],
    )
    def test_name_filters(
        self, api: httpx.Client, path: str, query: dict[str, str], expected: tuple[str, str]
    ) -> None:
        """Lookup name filters match partially and without accents."""
        body = api.get(path, params=query).json()
        assert body["status"] == "OK"
        assert expected in [(row["code"], row["name"]) for row in body["data"]]

    def test_municipality_shape_and_full_table(self, api: httpx.Client) -> None:
        """Municipalities carry id, DIVIPOLA code, name and the department as a plain string."""
        rows = api.get("/v1/municipalities").json()["data"]
        assert {"id": 980, "code": "68679", "name": "San Gil", "department": "Santander"} in rows
        assert len(rows) >= 33

    def test_acquirer(self, api: httpx.Client) -> None:
        """The DIAN test identities resolve; others answer 404; missing parameters 422."""
        r = api.get(
            "/v1/dian/acquirer", params={"identification_document_id": 3, "identification_number": "1399995"}
        )
        assert r.json()["data"]["name"] == "Nombre Cédula de ciudadanía 5"
        r = api.get(
            "/v1/dian/acquirer", params={"identification_document_id": 3, "identification_number": "5"}
        )
        assert r.status_code == 404
        assert api.get("/v1/dian/acquirer").status_code == 422

    def test_company_and_subscriptions(self, api: httpx.Client) -> None:
        """§4.8 reads: the company and the sandbox subscription, which counts validated bills."""
        assert api.get("/v1/company").json()["data"]["nit"]
        assert api.post("/v1/bills/validate", json=minimal_bill("SUB-1")).status_code == 201
        plans = api.get("/v1/subscriptions").json()["data"]
        assert plans[0]["documents_consumed"] == 1 and plans[0]["documents_available"] == "Ilimitado"
        current = api.get("/v1/subscriptions/current").json()["data"]
        assert current["is_active"] is True and current["has_unlimited_quota"] is True
        assert httpx.get(f"{api.base_url}/v1/subscriptions").status_code == 401  # no token

    def test_unknown_route_and_method(self, api: httpx.Client) -> None:
        """Unknown routes answer 404 JSON, a wrong method 405."""
        r = api.get("/v1/nothing-here")
        assert r.status_code == 404 and "could not be found" in r.json()["message"]
        assert api.get("/v1/bills/validate").status_code == 405
        r = api.options("/v1/bills/validate")
        assert r.status_code == 405 and r.json()["message"]

    def test_a_burst_of_simultaneous_connections_is_served(
        self, api: httpx.Client, emu: EmulatorServer
    ) -> None:
        """48 clients connecting at the same instant all get answers (no reset from a short backlog)."""
        barrier = threading.Barrier(48)

        def post(i: int) -> int:
            with httpx.Client(base_url=emu.url, timeout=30, headers=dict(api.headers)) as c:
                barrier.wait()
                return c.post("/v1/bills/validate", json=minimal_bill(f"BURST-{i}")).status_code

        with ThreadPoolExecutor(48) as pool:
            codes = list(pool.map(post, range(48)))
        assert codes == [201] * 48


def test_full_dian_tables_can_be_loaded(tmp_path: Path) -> None:
    """With the published municipality table, ids follow its row order (San Gil stays 980)."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "municipalities.json"
    if not shared.is_file():
        rows = [
            {"code": f"{i:05d}", "name": f"M{i}", "department": {"code": "01", "name": "D"}}
            for i in range(1, 980)
        ]
        rows.append({"code": "68679", "name": "San Gil", "department": {"code": "68", "name": "Santander"}})
        shared = tmp_path / "municipalities.json"
        shared.write_text(json.dumps({"municipalities": rows}), encoding="utf-8")
    with (
        EmulatorServer(EmulatorConfig(port=0, municipalities_file=shared)) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        login(http, server)
        found = http.get("/v1/municipalities", params={"name": "san gil"}).json()["data"]
        assert {"id": 980, "code": "68679", "name": "San Gil", "department": "Santander"} in found
