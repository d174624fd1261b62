"""Emulator edge cases found by QA: hostile inputs never answer 500 nor leave half-written state."""

from __future__ import annotations

import base64
import io
import socket
import xml.etree.ElementTree as ET
import zipfile
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorServer
from tests.conftest import minimal_bill
from tests.test_emulator_bills import rich_bill

_CENT = Decimal("0.01")


def _r2(value: Decimal) -> str:
    return f"{value.quantize(_CENT, rounding=ROUND_HALF_UP):.2f}"


def _nit_customer(identification: str, dv: int | None) -> dict[str, Any]:
    customer: dict[str, Any] = {
        "identification_document_id": 6,
        "identification": identification,
        "company": "Empresa X S.A.S.",
        "legal_organization_id": 1,
        "tribute_id": 18,
    }
    if dv is not None:
        customer["dv"] = dv
    return customer


def _untouched(emu: EmulatorServer, range_current: int) -> None:
    state = emu.snapshot()
    assert state["bills"] == [] and state["pending"] == []
    assert state["numbering_ranges"]["8"] == range_current


def charge(*, surcharge: bool, base: str, amount: str) -> dict[str, Any]:
    """A document-level allowance charge (concept 03)."""
    return {
        "concept_type": "03",
        "is_surcharge": surcharge,
        "reason": "r",
        "base_amount": base,
        "amount": amount,
    }


class TestNitLength:
    @pytest.mark.parametrize("dv", [3, None])
    def test_nit_longer_than_check_digit_weights_is_a_field_error(
        self, api: httpx.Client, emu: EmulatorServer, dv: int | None
    ) -> None:
        """A 16-digit NIT answers 422 on customer.identification; nothing stored, no number used."""
        before = emu.snapshot()["numbering_ranges"]["8"]
        payload = minimal_bill("NIT-LONG")
        payload["customer"] = _nit_customer("1234567890123456", dv)
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["status"] == "Validation error"
        assert body["data"]["errors"]["customer.identification"] == [
            "El campo identificación debe tener entre 1 y 15 dígitos."
        ]
        _untouched(emu, before)
        # the account is not blocked: the next create validates
        assert api.post("/v1/bills/validate", json=minimal_bill("NEXT-1")).status_code == 201

    def test_fifteen_digit_nit_is_accepted(self, api: httpx.Client) -> None:
        """The longest NIT the DIAN check digit covers (15 digits) still validates."""
        payload = minimal_bill("NIT-15")
        payload["customer"] = _nit_customer("123456789012345", None)
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 201, r.text

    def test_exception_while_creating_leaves_no_state(
        self, api: httpx.Client, emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Any unexpected error during a create rolls back: no bill, no pending block, no number used."""
        from daemon.emulator import render

        before = emu.snapshot()["numbering_ranges"]["8"]

        def boom(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("render failed")

        monkeypatch.setattr(render, "bill_data", boom)
        r = api.post("/v1/bills/validate", json=minimal_bill("BOOM-1"))
        assert r.status_code == 500
        monkeypatch.undo()
        _untouched(emu, before)
        assert api.post("/v1/bills/validate", json=minimal_bill("BOOM-2")).status_code == 201


class TestHugeAmounts:
    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("quantity", 10**30, "El campo cantidad no debe ser mayor que 999999999."),
            ("price", "1" + "0" * 40, "El campo precio no debe ser mayor que 999999999999.99."),
            ("price", "1E+400", "El campo precio no debe ser mayor que 999999999999.99."),
        ],
    )
    def test_out_of_range_amounts_are_field_errors(
        self, api: httpx.Client, emu: EmulatorServer, field: str, value: Any, message: str
    ) -> None:
        """Amounts beyond the bounds answer 422 with a Spanish message; nothing is stored."""
        before = emu.snapshot()["numbering_ranges"]["8"]
        payload = minimal_bill("HUGE-1")
        payload["items"][0][field] = value
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 422, r.text
        assert r.json()["data"]["errors"][f"items.0.{field}"] == [message]
        _untouched(emu, before)

    def test_largest_allowed_amounts_compute_exactly(self, api: httpx.Client) -> None:
        """The maximum quantity times the maximum price is computed to the cent."""
        payload = minimal_bill("MAX-1")
        payload["items"][0].update(quantity=999999999, price="999999999999.99", discount_rate="33.33")
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 201, r.text
        line = Decimal("999999999999.99") * 999999999 * (1 - Decimal("33.33") / 100)
        taxable = (line / Decimal("1.19")).quantize(_CENT, rounding=ROUND_HALF_UP)
        assert r.json()["data"]["bill"]["taxable_amount"] == _r2(taxable)
        assert r.json()["data"]["bill"]["total"] == _r2(line)

    def test_allowance_amount_bounds(self, api: httpx.Client) -> None:
        """Document surcharges/discounts have the same upper bound as prices."""
        payload = minimal_bill("HUGE-AC")
        payload["allowance_charges"] = [charge(surcharge=True, base="1e30", amount="1e30")]
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 422
        errors = r.json()["data"]["errors"]
        assert "allowance_charges.0.base_amount" in errors and "allowance_charges.0.amount" in errors


class TestHostileBodies:
    def test_deeply_nested_json_is_malformed_not_500(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """100 000 nested arrays answer like malformed JSON (422, nothing stored)."""
        body = b"[" * 100_000 + b"]" * 100_000
        r = api.post("/v1/bills/validate", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        assert emu.snapshot()["bills"] == []

    def test_deeply_nested_faults_body_is_400(self, emu: EmulatorServer) -> None:
        """The control route answers 400 to a nested body too."""
        with httpx.Client(base_url=emu.url) as http:
            r = http.post("/__emulator__/faults", content=b"{" + b'"a":{' * 50_000 + b"}" * 50_001)
        assert r.status_code == 400

    def test_non_numeric_content_length_is_400(self, emu: EmulatorServer) -> None:
        """A Content-Length that is not a number is a bad request, not 'too large'."""
        host, port = emu.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/bills/validate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
                b"Connection: close\r\n\r\n"
            )
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:80]

    def test_head_behaves_like_get(self, api: httpx.Client) -> None:
        """HEAD on a GET route answers like GET, without a body."""
        r = api.head("/v1/bills")
        assert r.status_code == 200 and r.content == b""
        assert "X-RateLimit-Limit" in r.headers


class TestCustomerNames:
    def test_legal_entity_requires_company(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """legal_organization_id 1 without company is refused even when names is given."""
        payload = rich_bill("LEGAL-1")
        del payload["customer"]["company"]
        payload["customer"]["names"] = "Ana Pérez"
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 422
        assert r.json()["data"]["errors"]["customer.company"] == [
            "El campo razón social es obligatorio cuando tipo de organización es 1."
        ]
        assert emu.snapshot()["bills"] == []

    def test_natural_person_requires_names(self, api: httpx.Client) -> None:
        """legal_organization_id 2 without names is refused even when company is given."""
        payload = minimal_bill("NATURAL-1")
        del payload["customer"]["names"]
        payload["customer"]["company"] = "Tienda Ana"
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 422
        assert r.json()["data"]["errors"]["customer.names"] == [
            "El campo nombres es obligatorio cuando tipo de organización es 2."
        ]


class TestContractArithmetic:
    def test_line_taxable_uses_the_unrounded_line_amount(self, api: httpx.Client) -> None:
        """§3.4: taxable = round2(L / (1 + t)) with L unrounded (354.33 × 15 × 56.36 %, 19 %)."""
        payload = minimal_bill("ROUND-1")
        payload["items"][0].update(price="354.33", quantity=15, discount_rate="43.64")
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 201, r.text
        data = r.json()["data"]
        item, bill = data["items"][0], data["bill"]
        assert (item["taxable_amount"], item["tax_amount"], item["total"]) == ("2517.23", "478.28", 2995.51)
        assert (bill["taxable_amount"], bill["tax_amount"], bill["total"]) == ("2517.23", "478.28", "2995.51")

    def test_minimal_worked_example(self, api: httpx.Client) -> None:
        """§3.5: taxable 10000.00, tax 1900.00, total 11900.00."""
        bill = api.post("/v1/bills/validate", json=minimal_bill("EX-35")).json()["data"]["bill"]
        assert (bill["taxable_amount"], bill["tax_amount"], bill["total"]) == (
            "10000.00",
            "1900.00",
            "11900.00",
        )
        assert bill["gross_value"] == "10000.00"

    def test_rich_worked_example(self, api: httpx.Client) -> None:
        """§3.6 (and §3.4): tip percentage 10 %, surcharge base = Σ item totals, echoed withholding rates."""
        data = api.post("/v1/bills/validate", json=rich_bill("EX-36")).json()["data"]
        bill = data["bill"]
        assert (bill["gross_value"], bill["taxable_amount"], bill["tax_amount"]) == (
            "81232.50",
            "81232.50",
            "8767.50",
        )
        assert (bill["surcharge_amount"], bill["discount_amount"], bill["total"]) == (
            "9000.00",
            "0.00",
            "99000.00",
        )
        assert sum(Decimal(str(i["total"])) for i in data["items"]) == Decimal("90000")
        assert data["allowance_charges"][0]["percentage"] == "10.00"
        rates = {w["tribute_code"]: w["rates"][0]["rate"] for w in data["items"][0]["withholding_taxes"]}
        assert rates == {"06": "7.00", "05": "15.00"}

    def test_document_gross_value_counts_excluded_lines(self, api: httpx.Client) -> None:
        """Document gross_value = Σ item gross_value: an excluded line adds its L while taxable adds 0.00.

        As the official v1 support-document example shows (excluded items: gross_value 90000.00,
        taxable_amount 0.00) and as the XML's LineExtensionAmount counts it.
        """
        payload = rich_bill("EXCL-1")
        payload["items"].append(
            {
                **payload["items"][1],
                "code_reference": "EX",
                "price": 5000,
                "quantity": 2,
                "tax_rate": "0.00",
                "is_excluded": 1,
            }
        )
        payload["allowance_charges"][0]["base_amount"] = "100000.00"
        data = api.post("/v1/bills/validate", json=payload).json()["data"]
        bill = data["bill"]
        assert data["items"][2]["gross_value"] == "10000.00"
        assert (bill["gross_value"], bill["taxable_amount"]) == ("91232.50", "81232.50")
        assert bill["total"] == "109000.00"
        xml = api.get(f"/v1/bills/download-xml/{bill['number']}").json()["data"]["xml_base_64_encoded"]
        assert b'<cbc:LineExtensionAmount currencyID="COP">91232.50<' in base64.b64decode(xml)

    def test_official_support_document_items_as_a_bill(self, api: httpx.Client) -> None:
        """The official support-document example's excluded items: ReteRenta 3.5 % of the line's 40000."""
        payload = minimal_bill("EXCL-DOC")
        base = payload["items"][0]
        payload["items"] = [
            {
                **base,
                "price": 50000,
                "discount_rate": 20,
                "is_excluded": 1,
                "tax_rate": "0.00",
                "withholding_taxes": [{"code": "06", "withholding_tax_rate": "3.50"}],
            },
            {**base, "code_reference": "B", "price": 50000, "is_excluded": 1, "tax_rate": "0.00"},
        ]
        data = api.post("/v1/bills/validate", json=payload).json()["data"]
        bill = data["bill"]
        assert (bill["gross_value"], bill["taxable_amount"], bill["tax_amount"]) == (
            "90000.00",
            "0.00",
            "0.00",
        )
        assert data["items"][0]["withholding_taxes"][0]["value"] == "1400.00"
        assert data["withholding_taxes"] == [{"tribute_code": "06", "name": "ReteRenta", "value": "1400.00"}]

    def test_zero_rate_line_ending_in_half_a_cent_has_no_negative_tax(self, api: httpx.Client) -> None:
        """0 % IVA, L = 0.505: taxable 0.51, tax 0.00, total 0.51 (never −0.01)."""
        payload = minimal_bill("ZERO-HALF")
        payload["items"][0].update(price="1.01", discount_rate=50, tax_rate="0.00")
        payload["items"].append(
            {**payload["items"][0], "code_reference": "Z2", "price": "15189.80", "discount_rate": "12.50"}
        )
        data = api.post("/v1/bills/validate", json=payload).json()["data"]
        first, second = data["items"]
        assert (first["taxable_amount"], first["tax_amount"], first["total"]) == ("0.51", "0.00", 0.51)
        assert second["tax_amount"] == "0.00"
        assert data["bill"]["tax_amount"] == "0.00"

    def test_discounts_beyond_the_invoice_total_are_refused(self, api: httpx.Client) -> None:
        """A document discount larger than the invoice would make a negative total: 422, nothing stored."""
        payload = minimal_bill("NEG-TOTAL")
        payload["allowance_charges"] = [charge(surcharge=False, base="11900", amount="20000.00")]
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 422, r.text
        assert "allowance_charges" in r.json()["data"]["errors"]
        assert (
            api.get("/v1/bills", params={"filter[reference_code]": "NEG-TOTAL"}).json()["data"]["data"] == []
        )

    def test_control_characters_never_make_the_xml_unreadable(self, api: httpx.Client) -> None:
        """A name sent with a vertical tab is stored as sent; its UBL XML leaves the character out."""
        payload = minimal_bill("CTRL-1")
        payload["customer"]["names"] = "Ana\x0bMaría"
        payload["items"][0]["name"] = "Caja\x01grande"
        bill = api.post("/v1/bills/validate", json=payload).json()["data"]["bill"]
        xml = api.get(f"/v1/bills/download-xml/{bill['number']}").json()["data"]["xml_base_64_encoded"]
        root = ET.fromstring(base64.b64decode(xml))  # well-formed
        texts = "".join(root.itertext())
        assert "AnaMaría" in texts and "Cajagrande" in texts

    def test_null_array_elements_are_field_errors(self, api: httpx.Client) -> None:
        """A null item or allowance charge answers 422 naming its fields, never a 500."""
        payload = minimal_bill("NULL-EL")
        payload["items"].append(None)
        payload["allowance_charges"] = [None]
        r = api.post("/v1/bills/validate", json=payload)
        assert r.status_code == 422, r.text
        errors = r.json()["data"]["errors"]
        assert "items.1.name" in errors and "allowance_charges.0.amount" in errors


class TestEmailAttachment:
    def test_zip_holds_pdf_and_attached_document_wrapping_the_invoice(self, api: httpx.Client) -> None:
        """§2.1: the e-mail ZIP carries the PDF and an AttachedDocument with the invoice in CDATA."""
        data = api.post("/v1/bills/validate", json=rich_bill("MAIL-1")).json()["data"]
        number, cufe = data["bill"]["number"], data["bill"]["cufe"]
        content = api.get(f"/v1/bills/{number}/email-content").json()["data"]
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(content["attached_document"])))
        names = archive.namelist()
        assert sorted(n.rsplit(".", 1)[1] for n in names) == ["pdf", "xml"]
        xml = archive.read(next(n for n in names if n.endswith(".xml")))
        root = ET.fromstring(xml)
        assert root.tag == "{urn:oasis:names:specification:ubl:schema:xsd:AttachedDocument-2}AttachedDocument"
        ns = {
            "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
            "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
        }
        assert root.findtext("cbc:ParentDocumentID", namespaces=ns) == number
        embedded = root.findtext("cac:Attachment/cac:ExternalReference/cbc:Description", namespaces=ns)
        assert embedded is not None and b"<![CDATA[" in xml
        invoice = ET.fromstring(embedded.encode("utf-8"))
        assert invoice.tag == "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice"
        assert invoice.findtext("cbc:UUID", namespaces=ns) == cufe
        reference = root.find("cac:ParentDocumentLineReference/cac:DocumentReference", ns)
        assert reference is not None and reference.findtext("cbc:UUID", namespaces=ns) == cufe
        # the plain download still gives the Invoice itself
        raw = base64.b64decode(
            api.get(f"/v1/bills/download-xml/{number}").json()["data"]["xml_base_64_encoded"]
        )
        assert ET.fromstring(raw).tag.endswith("}Invoice")
