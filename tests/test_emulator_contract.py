"""Second QA pass: small mismatches between the emulator and the v1 contract / official D1 example."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorServer
from tests.conftest import minimal_bill


def _create(api: httpx.Client, payload: dict[str, Any]) -> httpx.Response:
    return api.post("/v1/bills/validate", json=payload)


def _surcharge(base: str, amount: str) -> dict[str, Any]:
    return {
        "concept_type": "03",
        "is_surcharge": True,
        "reason": "Propina",
        "base_amount": base,
        "amount": amount,
    }


def _acquirer(api: httpx.Client, doc_id: int, number: str) -> httpx.Response:
    params = {"identification_document_id": doc_id, "identification_number": number}
    return api.get("/v1/dian/acquirer", params=params)


class TestCustomerEcho:
    def test_non_nit_customer_dv_is_null(self, api: httpx.Client) -> None:
        """D1 example: a CC customer sent with dv "3" comes back with "dv": null (create and show)."""
        payload = minimal_bill("DV-CC")
        payload["customer"]["dv"] = "3"
        r = _create(api, payload)
        assert r.status_code == 201, r.text
        data = r.json()["data"]
        assert data["customer"]["dv"] is None
        shown = api.get(f"/v1/bills/show/{data['bill']['number']}").json()["data"]
        assert shown["customer"]["dv"] is None

    def test_nit_customer_keeps_sent_dv(self, api: httpx.Client) -> None:
        """A NIT customer keeps the (correct) dv it was sent."""
        payload = minimal_bill("DV-NIT")
        payload["customer"] = {
            "identification_document_id": 6,
            "identification": "900123456",
            "dv": "8",
            "company": "Enigma S.A.S.",
            "legal_organization_id": 1,
            "tribute_id": 18,
        }
        r = _create(api, payload)
        assert r.status_code == 201, r.text
        assert r.json()["data"]["customer"]["dv"] == "8"

    def test_empty_optional_texts_are_echoed_as_sent(self, api: httpx.Client) -> None:
        """D1 example: company "" and trade_name "" are echoed as ""; absent ones stay null."""
        payload = minimal_bill("EMPTY-TEXT")
        payload["customer"].update(company="", trade_name="", address="", phone="", email="")
        r = _create(api, payload)
        assert r.status_code == 201, r.text
        customer = r.json()["data"]["customer"]
        assert customer["company"] == "" and customer["trade_name"] == ""
        assert customer["address"] == "" and customer["phone"] == "" and customer["email"] == ""
        assert customer["graphic_representation_name"] == "Consumidor final"
        r = _create(api, minimal_bill("ABSENT-TEXT"))
        customer = r.json()["data"]["customer"]
        assert customer["company"] is None and customer["trade_name"] is None

    @pytest.mark.parametrize("company", ["", "   "])
    def test_blank_company_still_missing_for_legal_entity(
        self, api: httpx.Client, emu: EmulatorServer, company: str
    ) -> None:
        """Echoing "" does not make a blank company satisfy the legal-entity requirement."""
        payload = minimal_bill("BLANK-CO")
        payload["customer"].update(company=company, legal_organization_id=1)
        r = _create(api, payload)
        assert r.status_code == 422
        assert r.json()["data"]["errors"]["customer.company"] == [
            "El campo razón social es obligatorio cuando tipo de organización es 1."
        ]
        assert emu.snapshot()["bills"] == []


class TestIdentificationDigits:
    @pytest.mark.parametrize("doc_id", [1, 2, 3, 4, 5, 9, 11])
    def test_letters_in_a_numeric_document_are_refused(
        self, api: httpx.Client, emu: EmulatorServer, doc_id: int
    ) -> None:
        """§3.1 identification is digits only: CC "ABC123" answers 422, nothing stored."""
        payload = minimal_bill(f"LETTERS-{doc_id}")
        payload["customer"].update(identification_document_id=doc_id, identification="ABC123")
        r = _create(api, payload)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["status"] == "Validation error"
        assert body["data"]["errors"]["customer.identification"] == [
            "El formato del campo identificación es inválido."
        ]
        assert emu.snapshot()["bills"] == []

    @pytest.mark.parametrize("doc_id", [7, 8, 10])
    def test_foreign_documents_may_hold_letters(self, api: httpx.Client, doc_id: int) -> None:
        """Passports, foreign ids and foreign tax numbers are issued abroad and may hold letters."""
        payload = minimal_bill(f"FOREIGN-{doc_id}")
        payload["customer"].update(identification_document_id=doc_id, identification="AB123456")
        r = _create(api, payload)
        assert r.status_code == 201, r.text
        assert r.json()["data"]["customer"]["identification"] == "AB123456"


class TestAllowanceBase:
    @pytest.mark.parametrize(("base", "amount"), [("0", "10"), ("0.00", "0"), ("-1", "10")])
    def test_base_amount_must_be_positive(
        self, api: httpx.Client, emu: EmulatorServer, base: str, amount: str
    ) -> None:
        """§3.4 percentage = amount / base_amount × 100, so a zero base is a field error."""
        payload = minimal_bill("AC-BASE0")
        payload["allowance_charges"] = [_surcharge(base, amount)]
        r = _create(api, payload)
        assert r.status_code == 422, r.text
        assert r.json()["data"]["errors"]["allowance_charges.0.base_amount"] == [
            "El campo base debe ser mayor que 0."
        ]
        assert emu.snapshot()["bills"] == []

    def test_positive_base_computes_percentage(self, api: httpx.Client) -> None:
        payload = minimal_bill("AC-BASE-OK")
        payload["allowance_charges"] = [_surcharge("0.01", "0.01")]
        r = _create(api, payload)
        assert r.status_code == 201, r.text
        assert r.json()["data"]["allowance_charges"][0]["percentage"] == "100.00"


class TestAcquirer:
    @pytest.mark.parametrize(
        ("doc_id", "number", "name"),
        [
            (3, "1399991", "Nombre Cédula de ciudadanía 1"),
            (3, "1399999", "Nombre Cédula de ciudadanía 9"),
            (3, "13999910", "Nombre Cédula de ciudadanía 10"),
            (1, "1199991", "Nombre Registro civil 1"),
            (2, "12999910", "Nombre Tarjeta de identidad 10"),
        ],
    )
    def test_documented_test_identities_resolve(
        self, api: httpx.Client, doc_id: int, number: str, name: str
    ) -> None:
        r = _acquirer(api, doc_id, number)
        assert r.status_code == 200 and r.json()["data"]["name"] == name

    @pytest.mark.parametrize(
        ("doc_id", "number"),
        [(3, "1399990"), (3, "13999911"), (3, "13999900"), (1, "1199990"), (3, "1199991"), (6, "3199991")],
    )
    def test_other_identities_are_not_found(self, api: httpx.Client, doc_id: int, number: str) -> None:
        """§2.7 lists 1399991…1399999 and 13999910 (per type prefix); 1399990 is not a test identity."""
        r = _acquirer(api, doc_id, number)
        assert r.status_code == 404, r.text
        assert r.json() == {
            "status": "Not Found",
            "message": f"No se encontró información del adquiriente con identificación {number}",
        }
