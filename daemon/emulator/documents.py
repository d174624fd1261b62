"""The files a bill downloads as: a small hand-written PDF 1.4, a UBL 2.1 Invoice XML and the DIAN
``AttachedDocument`` container (the XML of the e-mail ZIP) wrapping that invoice.

The PDF uses the built-in Helvetica font with WinAnsi encoding and uncompressed content streams, so
any reader opens it and its text (number, CUFE, customer, lines, totals) can be found in the bytes.
The XML is a DIAN-flavoured UBL 2.1 ``Invoice`` carrying the CUFE as ``cbc:UUID``, every line and
the ``LegalMonetaryTotal``; all user text is escaped. Neither is signed.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from daemon import catalog
from daemon.emulator.render import customer_name, timestamp
from daemon.emulator.state import COMPANY, DIAN_ENVIRONMENT, QR_BASE, Bill, NumberingRange
from daemon.emulator.tables import Tables
from daemon.money import fmt2, round2

__all__ = ["email_zip", "file_name", "render_attached_document", "render_pdf", "render_xml", "text_pdf"]

_LINES_PER_PAGE = 60
_FONT_SIZE = 9
_LEADING = 12


def file_name(bill: Bill, prefix: str = "fv") -> str:
    """DIAN file name: ``fv`` + NIT (10 digits) + ``000`` + 2-digit year + 8-digit sequence."""
    return f"{prefix}{COMPANY['nit'].zfill(10)}000{bill.created_at:%y}{bill.id:08d}"


# Helvetica advance widths (1/1000 em, its AFM) for printable ASCII; other characters count as 600.
_WIDTHS = dict(
    zip(
        map(chr, range(32, 127)),
        (
            278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
            556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
            1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
            667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
            333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
            556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
        ),
        strict=True,
    )
)  # fmt: skip
_TEXT_WIDTH = 515.0  # A4 (595 pt) less 40 pt margins
_EXTRA_LETTERS = str.maketrans({"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i"})


def _winansi(text: str) -> bytes:
    """``text`` in the font's WinAnsi (cp1252) encoding: a letter it lacks is written as its base
    letter (Wałęsa -> Walesa), never as '?' when one exists; control characters are left out."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", ch.translate(_EXTRA_LETTERS))
            plain = "".join(c for c in base if not unicodedata.combining(c))
            out += plain.encode("cp1252", errors="replace") if plain else b"?"
    return bytes(b for b in out if b >= 0x20)


def _pdf_string(text: str) -> bytes:
    raw = _winansi(text)
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _width(text: str) -> float:
    return sum(_WIDTHS.get(c, 600) for c in text) * _FONT_SIZE / 1000


def _wrap(line: str, limit: float = _TEXT_WIDTH) -> Iterable[str]:
    """Split ``line`` at spaces so each piece fits the page width (a word longer than a line is cut);
    continuation pieces are indented. Linear in the line's length."""
    indent = "    "
    space, indent_w = _width(" "), _width(indent)
    current, used = "", 0.0
    for word in line.split(" "):
        word_w = _width(word)
        if current and current != indent and used + space + word_w > limit:
            yield current
            current, used = indent, indent_w
        if current and current != indent:
            current, used = f"{current} {word}", used + space + word_w
        else:
            current, used = current + word, used + word_w
        while used > limit:  # one word wider than a line: cut it where the line is full
            total, cut = indent_w if current.startswith(indent) else 0.0, 0
            start = len(indent) if current.startswith(indent) else 0
            for cut in range(start, len(current)):
                total += _WIDTHS.get(current[cut], 600) * _FONT_SIZE / 1000
                if total > limit:
                    break
            cut = max(cut, start + 1)
            yield current[:cut]
            current = indent + current[cut:]
            used = _width(current)
    yield current


def text_pdf(lines: Iterable[str], *, title: str = "") -> bytes:
    """A valid PDF 1.4 (A4 pages, Helvetica 9 pt) showing ``lines``; correct xref offsets."""
    wrapped = [part for line in lines for part in _wrap(line)] or [""]
    pages = [wrapped[i : i + _LINES_PER_PAGE] for i in range(0, len(wrapped), _LINES_PER_PAGE)]
    n_pages = len(pages)
    for i, page_lines in enumerate(pages[1:], start=2):  # a later page says whose page it is
        page_lines[:0] = [f"{title} - página {i} de {n_pages}".strip(" -"), ""]
    # 1 catalog, 2 pages, 3 font, 4 info, then (page, content) pairs
    page_ids = [5 + 2 * i for i in range(n_pages)]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join(f"{p} 0 R".encode() for p in page_ids) + b"] /Count "
        + str(n_pages).encode() + b" >>",
        b"<< /Type /Font /Subtype /Type1 /Name /F1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Title " + _pdf_string(title) + b" /Producer (factus-daemon emulator) >>",
    ]  # fmt: skip
    for i, page_lines in enumerate(pages):
        ops = [b"BT", f"/F1 {_FONT_SIZE} Tf".encode(), f"{_LEADING} TL".encode(), b"40 800 Td"]
        for text in page_lines:
            ops.append(_pdf_string(text) + b" Tj T*")
        ops.append(b"ET")
        stream = b"\n".join(ops)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents " + f"{page_ids[i] + 1} 0 R".encode() + b" >>"
        )
        objects.append(
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode()
    out += b"0000000000 65535 f \n"
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 4 0 R >>\n".encode()
    out += f"startxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def render_pdf(bill: Bill, tables: Tables) -> bytes:
    """The graphic representation of a bill: number, CUFE, customer, lines and totals."""
    payload = bill.payload
    customer = payload["customer"]
    doc_code, doc_name = catalog.IDENTIFICATION_DOCUMENTS.get(
        customer["identification_document_id"], ("", "")
    )
    ident = customer["identification"] + (f"-{customer['dv']}" if customer.get("dv") is not None else "")
    totals = bill.totals
    lines = [
        f"{COMPANY['company']}  NIT {COMPANY['nit']}-{COMPANY['dv']}",
        f"{COMPANY['direction']} - {COMPANY['municipality']} - {COMPANY['email']}",
        "",
        f"Factura electrónica de venta No. {bill.number}",
        f"Fecha de emisión: {timestamp(bill.created_at)}    Referencia: {bill.reference_code}",
        f"Estado: {'Validada por la DIAN' if bill.status == 1 else 'Pendiente de validación'}",
        f"Forma de pago: {catalog.PAYMENT_FORMS.get(payload['payment_form'], '')}    "
        f"Medio de pago: {catalog.PAYMENT_METHODS.get(payload['payment_method_code'], '')}",
        "",
        f"Cliente: {customer_name(customer)}",
        f"{doc_name} ({doc_code}): {ident}",
        f"Dirección: {customer.get('address') or '-'}    Correo: {customer.get('email') or '-'}",
        "",
        "Código | Descripción | Cantidad | Precio | Desc. % | Impuesto % | Base | Impuesto | Total",
    ]
    for item, line in zip(payload["items"], totals.lines, strict=True):
        lines.append(
            f"{item['code_reference']} | {item['name']} | {item['quantity']} | {fmt2(item['price'])} | "
            f"{fmt2(item['discount_rate'])} | {fmt2(item['tax_rate'])} | {fmt2(line.taxable_amount)} | "
            f"{fmt2(line.tax_amount)} | {fmt2(line.total)}"
        )
        if item.get("note"):
            lines.append(f"    Nota: {item['note']}")
    lines += [
        "",
        f"Valor bruto: {fmt2(totals.gross_value)}",
        f"Base gravable: {fmt2(totals.taxable_amount)}",
        f"Impuestos: {fmt2(totals.tax_amount)}",
        f"Recargos: {fmt2(totals.surcharge_amount)}",
        f"Descuentos: {fmt2(totals.discount_amount)}",
        f"Total: {fmt2(totals.total)}",
    ]
    for code, value in sorted(totals.withholdings.items()):
        lines.append(f"Retención {catalog.WITHHOLDING_CODES.get(code, code)}: {fmt2(value)}")
    if payload.get("observation"):
        lines += ["", f"Observación: {payload['observation']}"]
    lines += ["", "CUFE:", bill.cufe, "", "Consulta QR:", QR_BASE, f"    {bill.cufe}"]
    return text_pdf(lines, title=bill.number)


# Characters XML 1.0 cannot carry at all (not even escaped): control characters other than tab, line
# feed and carriage return, lone surrogates and U+FFFE/U+FFFF. A name with a vertical tab is stored
# as sent; its XML simply leaves the character out instead of becoming unreadable.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class _Xml:
    """A tiny writer for namespaced XML with escaping of text and attributes."""

    def __init__(self) -> None:
        self.parts: list[str] = ['<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n']

    def open(self, tag: str, **attrs: str) -> None:
        self.parts.append(f"<{tag}{self._attrs(attrs)}>")

    def close(self, tag: str) -> None:
        self.parts.append(f"</{tag}>")

    def leaf(self, tag: str, text: Any, **attrs: str) -> None:
        if text is None:
            return
        value = fmt2(text) if isinstance(text, Decimal) else _XML_INVALID.sub("", str(text))
        self.parts.append(f"<{tag}{self._attrs(attrs)}>{escape(value)}</{tag}>")

    def cdata(self, tag: str, text: str) -> None:
        """An element whose text is one CDATA section (how DIAN embeds whole XML documents)."""
        safe = text.replace("]]>", "]]]]><![CDATA[>")  # a CDATA section cannot contain its end marker
        self.parts.append(f"<{tag}><![CDATA[{safe}]]></{tag}>")

    @staticmethod
    def _attrs(attrs: dict[str, str]) -> str:
        return "".join(
            f" {k.replace('__', ':')}={quoteattr(_XML_INVALID.sub('', str(v)))}" for k, v in attrs.items()
        )

    def text(self) -> str:
        return "".join(self.parts)


_NAMESPACES = {
    "xmlns": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "xmlns__cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "xmlns__cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "xmlns__ext": "urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2",
    "xmlns__sts": "dian:gov:co:facturaelectronica:Structures-2-1",
    "xmlns__ds": "http://www.w3.org/2000/09/xmldsig#",
}
_COP = {"currencyID": "COP"}


def _party(
    x: _Xml,
    role: str,
    *,
    name: str,
    ident: str,
    dv: Any,
    scheme: str,
    address: str | None,
    email: str | None,
    municipality: dict[str, Any] | None,
    org_code: str,
    tax: tuple[str, str],
) -> None:
    x.open(role)
    x.leaf("cbc:AdditionalAccountID", org_code)
    x.open("cac:Party")
    x.open("cac:PartyName")
    x.leaf("cbc:Name", name)
    x.close("cac:PartyName")
    x.open("cac:PhysicalLocation")
    x.open("cac:Address")
    if municipality is not None:
        x.leaf("cbc:ID", municipality["code"])
        x.leaf("cbc:CityName", municipality["name"])
        x.leaf("cbc:CountrySubentity", municipality["department"])
        x.leaf("cbc:CountrySubentityCode", municipality["department_code"])
    x.open("cac:AddressLine")
    x.leaf("cbc:Line", address or "")
    x.close("cac:AddressLine")
    x.open("cac:Country")
    x.leaf("cbc:IdentificationCode", "CO")
    x.close("cac:Country")
    x.close("cac:Address")
    x.close("cac:PhysicalLocation")
    attrs = _party_tax_scheme(x, name=name, ident=ident, dv=dv, scheme=scheme, tax=tax)
    x.open("cac:PartyLegalEntity")
    x.leaf("cbc:RegistrationName", name)
    x.leaf("cbc:CompanyID", ident, **attrs)
    x.close("cac:PartyLegalEntity")
    if email:
        x.open("cac:Contact")
        x.leaf("cbc:ElectronicMail", email)
        x.close("cac:Contact")
    x.close("cac:Party")
    x.close(role)


def render_xml(bill: Bill, tables: Tables, rng: NumberingRange) -> bytes:
    """The bill as DIAN UBL 2.1 ``Invoice`` XML (UTF-8)."""
    payload = bill.payload
    customer = payload["customer"]
    totals = bill.totals
    x = _Xml()
    x.open("Invoice", **_NAMESPACES)
    x.open("ext:UBLExtensions")
    x.open("ext:UBLExtension")
    x.open("ext:ExtensionContent")
    x.open("sts:DianExtensions")
    x.open("sts:InvoiceControl")
    x.leaf("sts:InvoiceAuthorization", rng.resolution_number)
    x.open("sts:AuthorizationPeriod")
    x.leaf("cbc:StartDate", rng.start_date.isoformat())
    x.leaf("cbc:EndDate", rng.end_date.isoformat())
    x.close("sts:AuthorizationPeriod")
    x.open("sts:AuthorizedInvoices")
    x.leaf("sts:Prefix", rng.prefix)
    x.leaf("sts:From", rng.from_)
    x.leaf("sts:To", rng.to)
    x.close("sts:AuthorizedInvoices")
    x.close("sts:InvoiceControl")
    x.leaf("sts:QRCode", QR_BASE + bill.cufe)
    x.close("sts:DianExtensions")
    x.close("ext:ExtensionContent")
    x.close("ext:UBLExtension")
    x.close("ext:UBLExtensions")
    x.leaf("cbc:UBLVersionID", "UBL 2.1")
    x.leaf("cbc:CustomizationID", payload["operation_type"])
    x.leaf("cbc:ProfileID", "DIAN 2.1: Factura Electrónica de Venta")
    x.leaf("cbc:ProfileExecutionID", DIAN_ENVIRONMENT)
    x.leaf("cbc:ID", bill.number)
    x.leaf("cbc:UUID", bill.cufe, schemeID=DIAN_ENVIRONMENT, schemeName="CUFE-SHA384")
    x.leaf("cbc:IssueDate", bill.created_at.strftime("%Y-%m-%d"))
    x.leaf("cbc:IssueTime", bill.created_at.strftime("%H:%M:%S-05:00"))
    if payload.get("payment_due_date"):
        x.leaf("cbc:DueDate", payload["payment_due_date"])
    x.leaf("cbc:InvoiceTypeCode", payload["document"])
    x.leaf("cbc:Note", payload.get("observation"))
    x.leaf("cbc:DocumentCurrencyCode", "COP")
    x.leaf("cbc:LineCountNumeric", len(payload["items"]))
    period = payload.get("billing_period")
    if period:
        x.open("cac:InvoicePeriod")
        x.leaf("cbc:StartDate", period["start_date"])
        x.leaf("cbc:StartTime", period.get("start_time"))
        x.leaf("cbc:EndDate", period["end_date"])
        x.leaf("cbc:EndTime", period.get("end_time"))
        x.close("cac:InvoicePeriod")
    order = payload.get("order_reference")
    if order:
        x.open("cac:OrderReference")
        x.leaf("cbc:ID", order["reference_code"])
        x.leaf("cbc:IssueDate", order.get("issue_date"))
        x.close("cac:OrderReference")
    company_municipality = next(
        (row for row in tables.municipalities.values() if row["name"] == COMPANY["municipality"]), None
    )
    _party(
        x,
        "cac:AccountingSupplierParty",
        name=COMPANY["company"],
        ident=COMPANY["nit"],
        dv=COMPANY["dv"],
        scheme="31",
        address=COMPANY["direction"],
        email=COMPANY["email"],
        municipality=company_municipality,
        org_code="1",
        tax=("01", "IVA"),
    )
    doc_code = catalog.IDENTIFICATION_DOCUMENTS.get(customer["identification_document_id"], ("", ""))[0]
    _party(
        x,
        "cac:AccountingCustomerParty",
        name=customer_name(customer),
        ident=customer["identification"],
        dv=customer.get("dv"),
        scheme=doc_code,
        address=customer.get("address"),
        email=customer.get("email"),
        municipality=tables.municipalities.get(customer.get("municipality_id") or 0),
        org_code=str(customer["legal_organization_id"]),
        tax=catalog.CUSTOMER_TRIBUTES.get(customer["tribute_id"], ("ZZ", "No aplica")),
    )
    x.open("cac:PaymentMeans")
    x.leaf("cbc:ID", payload["payment_form"])
    x.leaf("cbc:PaymentMeansCode", payload["payment_method_code"])
    x.leaf("cbc:PaymentDueDate", payload.get("payment_due_date") or bill.created_at.strftime("%Y-%m-%d"))
    x.close("cac:PaymentMeans")
    for index, (charge, computed) in enumerate(
        zip(payload["allowance_charges"], totals.allowances, strict=True), 1
    ):
        x.open("cac:AllowanceCharge")
        x.leaf("cbc:ID", index)
        x.leaf("cbc:ChargeIndicator", "true" if computed.is_surcharge else "false")
        x.leaf("cbc:AllowanceChargeReasonCode", charge["concept_type"])
        x.leaf("cbc:AllowanceChargeReason", charge["reason"])
        x.leaf("cbc:MultiplierFactorNumeric", computed.percentage)
        x.leaf("cbc:Amount", computed.amount, **_COP)
        x.leaf("cbc:BaseAmount", computed.base_amount, **_COP)
        x.close("cac:AllowanceCharge")
    by_code: dict[str, list[tuple[Decimal, Decimal, Decimal]]] = {}
    for (code, rate), (base, tax) in sorted(totals.taxes.items()):
        by_code.setdefault(code, []).append((rate, base, tax))
    for code, groups in by_code.items():
        x.open("cac:TaxTotal")
        x.leaf("cbc:TaxAmount", sum((g[2] for g in groups), Decimal(0)), **_COP)
        for rate, base, tax in groups:
            _tax_subtotal(x, code, rate, base, tax)
        x.close("cac:TaxTotal")
    # per withholding: its base (the IVA for ReteIVA, else the line value) and amount, by rate
    held: dict[str, dict[Decimal, tuple[Decimal, Decimal]]] = {}
    for line in totals.lines:
        for w in line.withholdings:
            base = line.tax_amount if w.code == "05" else line.gross_value
            prior = held.setdefault(w.code, {}).get(w.rate, (Decimal(0), Decimal(0)))
            held[w.code][w.rate] = (prior[0] + base, prior[1] + w.value)
    for code, value in sorted(totals.withholdings.items()):
        x.open("cac:WithholdingTaxTotal")
        x.leaf("cbc:TaxAmount", value, **_COP)
        for rate, (base, amount) in sorted(held.get(code, {}).items()):
            _tax_subtotal(x, code, rate, base, amount, name=catalog.WITHHOLDING_CODES.get(code, ""))
        x.close("cac:WithholdingTaxTotal")
    line_sum = totals.gross_value  # UBL: Σ line values, excluded lines included
    x.open("cac:LegalMonetaryTotal")
    x.leaf("cbc:LineExtensionAmount", line_sum, **_COP)
    x.leaf("cbc:TaxExclusiveAmount", totals.taxable_amount, **_COP)
    x.leaf("cbc:TaxInclusiveAmount", line_sum + totals.tax_amount, **_COP)
    x.leaf("cbc:AllowanceTotalAmount", totals.discount_amount, **_COP)
    x.leaf("cbc:ChargeTotalAmount", totals.surcharge_amount, **_COP)
    x.leaf("cbc:PayableAmount", totals.total, **_COP)
    x.close("cac:LegalMonetaryTotal")
    for index, (item, line) in enumerate(zip(payload["items"], totals.lines, strict=True), 1):
        unit = tables.units.get(item["unit_measure_id"], {"code": "94"})
        x.open("cac:InvoiceLine")
        x.leaf("cbc:ID", index)
        x.leaf("cbc:Note", item.get("note"))
        x.leaf("cbc:InvoicedQuantity", item["quantity"], unitCode=str(unit["code"]))
        x.leaf("cbc:LineExtensionAmount", line.gross_value, **_COP)
        if line.discount:
            x.open("cac:AllowanceCharge")
            x.leaf("cbc:ID", 1)
            x.leaf("cbc:ChargeIndicator", "false")
            x.leaf("cbc:MultiplierFactorNumeric", item["discount_rate"])
            x.leaf("cbc:Amount", line.discount, **_COP)
            x.leaf("cbc:BaseAmount", line.gross_value + line.discount, **_COP)
            x.close("cac:AllowanceCharge")
        if not line.is_excluded:
            x.open("cac:TaxTotal")
            x.leaf("cbc:TaxAmount", line.tax_amount, **_COP)
            _tax_subtotal(x, line.tax_code, line.tax_rate, line.taxable_amount, line.tax_amount)
            x.close("cac:TaxTotal")
        x.open("cac:Item")
        x.leaf("cbc:Description", item["name"])
        x.open("cac:StandardItemIdentification")
        std_code = catalog.STANDARD_CODES.get(item["standard_code_id"], ("999", ""))[0]
        x.leaf("cbc:ID", item["code_reference"], schemeID=std_code)
        x.close("cac:StandardItemIdentification")
        x.close("cac:Item")
        # UBL: the net unit price, so quantity × PriceAmount − allowances = LineExtensionAmount
        # (Factus's v1 price includes the tax; the line amounts here are net of it)
        x.open("cac:Price")
        x.leaf("cbc:PriceAmount", round2((line.gross_value + line.discount) / item["quantity"]), **_COP)
        x.leaf("cbc:BaseQuantity", 1, unitCode=str(unit["code"]))
        x.close("cac:Price")
        x.close("cac:InvoiceLine")
    x.close("Invoice")
    return x.text().encode("utf-8")


def _tax_subtotal(
    x: _Xml, code: str, rate: Decimal, base: Decimal, tax: Decimal, *, name: str | None = None
) -> None:
    """One ``cac:TaxSubtotal``: a tax (named from the product tributes) or a withholding (``name``)."""
    if name is None:
        name = next((n for c, n, _d in catalog.PRODUCT_TRIBUTES.values() if c == code), code)
    x.open("cac:TaxSubtotal")
    x.leaf("cbc:TaxableAmount", base, **_COP)
    x.leaf("cbc:TaxAmount", tax, **_COP)
    x.open("cac:TaxCategory")
    x.leaf("cbc:Percent", rate)
    x.open("cac:TaxScheme")
    x.leaf("cbc:ID", code)
    x.leaf("cbc:Name", name)
    x.close("cac:TaxScheme")
    x.close("cac:TaxCategory")
    x.close("cac:TaxSubtotal")


_ATTACHED_NAMESPACES = {
    **_NAMESPACES,
    "xmlns": "urn:oasis:names:specification:ubl:schema:xsd:AttachedDocument-2",
}
_DIAN_NAME = "Unidad Especial Dirección de Impuestos y Aduanas Nacionales"


def _tax_party(
    x: _Xml, role: str, *, name: str, ident: str, dv: Any, scheme: str, tax: tuple[str, str]
) -> None:
    x.open(role)
    _party_tax_scheme(x, name=name, ident=ident, dv=dv, scheme=scheme, tax=tax)
    x.close(role)


def _party_tax_scheme(
    x: _Xml, *, name: str, ident: str, dv: Any, scheme: str, tax: tuple[str, str]
) -> dict[str, str]:
    """Write a ``cac:PartyTaxScheme``; return the ``cbc:CompanyID`` attributes it used."""
    x.open("cac:PartyTaxScheme")
    x.leaf("cbc:RegistrationName", name)
    attrs = {"schemeAgencyID": "195", "schemeName": scheme}
    if dv is not None:
        attrs["schemeID"] = str(dv)
    x.leaf("cbc:CompanyID", ident, **attrs)
    x.open("cac:TaxScheme")
    x.leaf("cbc:ID", tax[0])
    x.leaf("cbc:Name", tax[1])
    x.close("cac:TaxScheme")
    x.close("cac:PartyTaxScheme")
    return attrs


def _application_response(bill: Bill) -> str:
    """DIAN's answer to the invoice (ApplicationResponse, code 02 = validated), embedded in the container."""
    validated = bill.validated_at or bill.created_at
    x = _Xml()
    x.open(
        "ApplicationResponse",
        **{**_NAMESPACES, "xmlns": "urn:oasis:names:specification:ubl:schema:xsd:ApplicationResponse-2"},
    )
    x.leaf("cbc:UBLVersionID", "UBL 2.1")
    x.leaf("cbc:CustomizationID", "1")
    x.leaf("cbc:ProfileID", "DIAN 2.1")
    x.leaf("cbc:ProfileExecutionID", DIAN_ENVIRONMENT)
    x.leaf("cbc:ID", bill.id)
    x.leaf("cbc:IssueDate", validated.strftime("%Y-%m-%d"))
    x.leaf("cbc:IssueTime", validated.strftime("%H:%M:%S-05:00"))
    x.open("cac:DocumentResponse")
    x.open("cac:Response")
    x.leaf("cbc:ResponseCode", "02")
    x.leaf("cbc:Description", "Documento validado por la DIAN")
    x.close("cac:Response")
    x.open("cac:DocumentReference")
    x.leaf("cbc:ID", bill.number)
    x.leaf("cbc:UUID", bill.cufe, schemeName="CUFE-SHA384")
    x.close("cac:DocumentReference")
    x.close("cac:DocumentResponse")
    x.close("ApplicationResponse")
    return x.text()


def render_attached_document(bill: Bill, tables: Tables, rng: NumberingRange) -> bytes:
    """The DIAN ``AttachedDocument`` container Factus e-mails (contract §2.1, §4.5).

    It wraps the UBL Invoice (in ``cac:Attachment/.../cbc:Description`` as a CDATA section) and
    DIAN's ApplicationResponse with the validation result, as the DIAN technical annex describes.
    """
    customer = bill.payload["customer"]
    invoice = render_xml(bill, tables, rng).decode("utf-8")
    validated = bill.validated_at or bill.created_at
    x = _Xml()
    x.open("AttachedDocument", **_ATTACHED_NAMESPACES)
    x.leaf("cbc:UBLVersionID", "UBL 2.1")
    x.leaf("cbc:CustomizationID", "Documentos adjuntos")
    x.leaf("cbc:ProfileID", "Factura Electrónica de Venta")
    x.leaf("cbc:ProfileExecutionID", DIAN_ENVIRONMENT)
    x.leaf("cbc:ID", bill.id)
    x.leaf("cbc:IssueDate", validated.strftime("%Y-%m-%d"))
    x.leaf("cbc:IssueTime", validated.strftime("%H:%M:%S-05:00"))
    x.leaf("cbc:DocumentType", "Contenedor de Factura Electrónica")
    x.leaf("cbc:ParentDocumentID", bill.number)
    _tax_party(
        x,
        "cac:SenderParty",
        name=COMPANY["company"],
        ident=COMPANY["nit"],
        dv=COMPANY["dv"],
        scheme="31",
        tax=("01", "IVA"),
    )
    _tax_party(
        x,
        "cac:ReceiverParty",
        name=customer_name(customer),
        ident=customer["identification"],
        dv=customer.get("dv"),
        scheme=catalog.IDENTIFICATION_DOCUMENTS.get(customer["identification_document_id"], ("", ""))[0],
        tax=catalog.CUSTOMER_TRIBUTES.get(customer["tribute_id"], ("ZZ", "No aplica")),
    )
    x.open("cac:Attachment")
    x.open("cac:ExternalReference")
    x.leaf("cbc:MimeCode", "text/xml")
    x.leaf("cbc:EncodingCode", "UTF-8")
    x.cdata("cbc:Description", invoice)
    x.close("cac:ExternalReference")
    x.close("cac:Attachment")
    x.open("cac:ParentDocumentLineReference")
    x.leaf("cbc:LineID", 1)
    x.open("cac:DocumentReference")
    x.leaf("cbc:ID", bill.number)
    x.leaf("cbc:UUID", bill.cufe, schemeName="CUFE-SHA384")
    x.leaf("cbc:IssueDate", bill.created_at.strftime("%Y-%m-%d"))
    x.leaf("cbc:DocumentType", "ApplicationResponse")
    x.open("cac:Attachment")
    x.open("cac:ExternalReference")
    x.leaf("cbc:MimeCode", "text/xml")
    x.leaf("cbc:EncodingCode", "UTF-8")
    x.cdata("cbc:Description", _application_response(bill))
    x.close("cac:ExternalReference")
    x.close("cac:Attachment")
    x.open("cac:ResultOfVerification")
    x.leaf("cbc:ValidatorID", _DIAN_NAME)
    x.leaf("cbc:ValidationResultCode", "02")
    x.leaf("cbc:ValidationDate", validated.strftime("%Y-%m-%d"))
    x.leaf("cbc:ValidationTime", validated.strftime("%H:%M:%S-05:00"))
    x.close("cac:ResultOfVerification")
    x.close("cac:DocumentReference")
    x.close("cac:ParentDocumentLineReference")
    x.close("AttachedDocument")
    return x.text().encode("utf-8")


def email_zip(bill: Bill, tables: Tables, rng: NumberingRange) -> bytes:
    """The ZIP Factus e-mails (contract §2.1): the PDF and the AttachedDocument XML of the bill."""
    name = file_name(bill)
    attached = file_name(bill, prefix="ad")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.pdf", render_pdf(bill, tables))
        archive.writestr(f"{attached}.xml", render_attached_document(bill, tables, rng))
    return buffer.getvalue()
