"""Emulator downloads: the PDF is structurally valid and shows the bill, the XML is UBL 2.1."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorServer
from daemon.emulator.documents import text_pdf
from tests.conftest import login

NS = {
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}
TRICKY = 'Tornillo <M8> & "arandela" (x2) \\ Ñandú'


def _bill(reference: str) -> dict[str, Any]:
    item = {
        "code_reference": "SKU-1",
        "name": TRICKY,
        "quantity": 2,
        "discount_rate": 0,
        "price": 11900,
        "tax_rate": "19.00",
        "unit_measure_id": 70,
        "standard_code_id": 1,
        "is_excluded": 0,
        "tribute_id": 1,
    }
    return {
        "reference_code": reference,
        "observation": "Entrega <urgente> & frágil",
        "send_email": False,
        "customer": {
            "identification_document_id": 6,
            "identification": "900123456",
            "company": "Compañía (Prueba) S.A.S.",
            "email": "compras@example.com",
            "legal_organization_id": 1,
            "tribute_id": 18,
            "municipality_id": 980,
        },
        "items": [item, {**item, "code_reference": "SKU-2", "name": "Servicio técnico", "quantity": 1}],
    }


@pytest.fixture(name="created")
def _created(emu: EmulatorServer) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    with httpx.Client(base_url=emu.url, timeout=10) as http:
        login(http, emu)
        r = http.post("/v1/bills/validate", json=_bill("DOC-1"))
        assert r.status_code == 201
        yield http, r.json()["data"]["bill"]


def _check_pdf_structure(pdf: bytes) -> None:
    assert pdf.startswith(b"%PDF-1.4\n")
    assert pdf.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\n(\d+)\n%%EOF", pdf).group(1))  # type: ignore[union-attr]
    assert pdf[startxref:].startswith(b"xref\n0 ")
    header = re.match(rb"xref\n0 (\d+)\n", pdf[startxref:])
    assert header is not None
    count = int(header.group(1))
    entries = pdf[startxref + header.end() :].split(b"trailer")[0]
    rows = [entries[i : i + 20] for i in range(0, len(entries), 20)]
    assert len(rows) == count and rows[0] == b"0000000000 65535 f \n"
    for number, row in enumerate(rows[1:], start=1):
        offset = int(row[:10])
        assert pdf[offset:].startswith(f"{number} 0 obj".encode()), number
    for match in re.finditer(rb"<< /Length (\d+) >>\nstream\n", pdf):
        length = int(match.group(1))
        assert pdf[match.end() + length :].startswith(b"\nendstream")
    assert f"/Size {count}".encode() in pdf


def test_pdf_is_valid_and_shows_the_bill(created: tuple[httpx.Client, dict[str, Any]]) -> None:
    """The PDF has correct xref offsets and shows number, CUFE, customer, lines and totals."""
    http, bill = created
    data = http.get(f"/v1/bills/download-pdf/{bill['number']}").json()["data"]
    pdf = base64.b64decode(data["pdf_base_64_encoded"])
    _check_pdf_structure(pdf)
    for text in (
        bill["number"],
        bill["cufe"],
        "Compañía \\(Prueba\\) S.A.S.",
        "Servicio técnico",
        "Total: 35700.00",
    ):
        assert text.encode("cp1252") in pdf, text
    assert b"/BaseFont /Helvetica" in pdf


def test_long_pdf_spans_pages() -> None:
    """More lines than a page holds produce several pages, still with a valid xref."""
    pdf = text_pdf([f"línea {i}" for i in range(150)], title="t")
    _check_pdf_structure(pdf)
    assert b"/Count 3" in pdf


def test_pdf_lines_fit_the_page_and_letters_outside_winansi_keep_their_base() -> None:
    """Long text wraps at spaces within the page width (an amount is never split); Wałęsa prints as
    Walesa, not W?????; later pages say whose page they are."""
    long = "Descripción " + "válvula Ñuñoa 1000.00 " * 20
    pdf = text_pdf(["Cliente: Łukasz Wałęsa", long, *[f"línea {i}" for i in range(130)]], title="SETP1")
    _check_pdf_structure(pdf)
    assert b"(Cliente: Lukasz Walesa)" in pdf
    shown = re.findall(rb"\((.*?)\) Tj", pdf)
    assert all(len(text) <= 125 for text in shown)  # 515 pt of Helvetica 9 pt: 125 narrow letters at most
    assert not any(text.endswith(b"1000") or text.lstrip().startswith(b".00") for text in shown)
    assert b"(SETP1 - p\xe1gina 2 de 3)" in pdf and b"(SETP1 - p\xe1gina 3 de 3)" in pdf


def test_xml_is_ubl_invoice(created: tuple[httpx.Client, dict[str, Any]]) -> None:
    """The XML is well-formed UBL 2.1 with the CUFE as UUID, every line, totals and escaped text."""
    http, bill = created
    data = http.get(f"/v1/bills/download-xml/{bill['number']}").json()["data"]
    root = ET.fromstring(base64.b64decode(data["xml_base_64_encoded"]))
    assert root.tag == "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice"
    assert root.findtext("cbc:UBLVersionID", namespaces=NS) == "UBL 2.1"
    assert root.findtext("cbc:ID", namespaces=NS) == bill["number"]
    uuid = root.find("cbc:UUID", NS)
    assert uuid is not None and uuid.text == bill["cufe"] and uuid.get("schemeName") == "CUFE-SHA384"
    assert root.findtext("cbc:Note", namespaces=NS) == "Entrega <urgente> & frágil"
    lines = root.findall("cac:InvoiceLine", NS)
    assert len(lines) == 2
    assert lines[0].findtext("cac:Item/cbc:Description", namespaces=NS) == TRICKY
    assert lines[0].findtext("cbc:InvoicedQuantity", namespaces=NS) == "2"
    total = root.find("cac:LegalMonetaryTotal", NS)
    assert total is not None
    assert total.findtext("cbc:PayableAmount", namespaces=NS) == bill["total"] == "35700.00"
    assert total.findtext("cbc:TaxExclusiveAmount", namespaces=NS) == bill["taxable_amount"]
    assert root.findtext("cac:TaxTotal/cbc:TaxAmount", namespaces=NS) == bill["tax_amount"]
    customer = root.find("cac:AccountingCustomerParty/cac:Party/cac:PartyTaxScheme/cbc:CompanyID", NS)
    assert customer is not None and customer.text == "900123456" and customer.get("schemeID") == "8"


def test_xml_line_prices_add_up_and_withholdings_carry_base_and_rate(emu: EmulatorServer) -> None:
    """quantity × PriceAmount (net, per 1 unit) − the line allowance = LineExtensionAmount; every
    withholding subtotal shows its taxable base and percent."""
    bill = _bill("DOC-2")
    bill["items"][0].update(quantity=3, discount_rate=10, price=11900)
    bill["items"][0]["withholding_taxes"] = [
        {"code": "06", "withholding_tax_rate": "2.50"},
        {"code": "05", "withholding_tax_rate": "15.00"},
    ]
    with httpx.Client(base_url=emu.url, timeout=10) as http:
        login(http, emu)
        number = http.post("/v1/bills/validate", json=bill).json()["data"]["bill"]["number"]
        data = http.get(f"/v1/bills/download-xml/{number}").json()["data"]
    root = ET.fromstring(base64.b64decode(data["xml_base_64_encoded"]))
    for line in root.findall("cac:InvoiceLine", NS):
        quantity = Decimal(line.findtext("cbc:InvoicedQuantity", namespaces=NS) or "0")
        price = Decimal(line.findtext("cac:Price/cbc:PriceAmount", namespaces=NS) or "0")
        assert line.findtext("cac:Price/cbc:BaseQuantity", namespaces=NS) == "1"
        allowance = Decimal(line.findtext("cac:AllowanceCharge/cbc:Amount", namespaces=NS) or "0")
        extension = Decimal(line.findtext("cbc:LineExtensionAmount", namespaces=NS) or "0")
        assert abs(quantity * price - allowance - extension) <= Decimal("0.01") * quantity
    first = root.findall("cac:InvoiceLine", NS)[0]
    assert first.findtext("cac:Price/cbc:PriceAmount", namespaces=NS) == "10000.00"  # 11900 without IVA
    subtotals = {
        sub.findtext("cac:TaxCategory/cac:TaxScheme/cbc:ID", namespaces=NS): (
            sub.findtext("cbc:TaxableAmount", namespaces=NS),
            sub.findtext("cac:TaxCategory/cbc:Percent", namespaces=NS),
            sub.findtext("cbc:TaxAmount", namespaces=NS),
        )
        for sub in root.findall("cac:WithholdingTaxTotal/cac:TaxSubtotal", NS)
    }
    assert subtotals == {"06": ("27000.00", "2.50", "675.00"), "05": ("5130.00", "15.00", "769.50")}
