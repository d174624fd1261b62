"""Mapping and validation of canonical rows: exact payloads, every rule and where its error points."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.errors import InputError
from daemon.intake import IntakeResult, Lookups, MappingProfile, RowError, dumps_payload, read_invoices
from daemon.money import nit_check_digit
from daemon.settings import Settings

BASE: dict[str, str] = {
    "reference_code": "R-1",
    "customer.identification_document_id": "6",
    "customer.identification": "900123456",
    "customer.dv": "8",
    "customer.company": "Enigma S.A.S.",
    "customer.names": "",
    "customer.email": "facturas@example.com",
    "customer.municipality_code": "68679",
    "payment_form": "1",
    "payment_due_date": "",
    "item.code_reference": "SKU-1",
    "item.name": "Producto",
    "item.quantity": "1",
    "item.price": "11900",
    "item.tax_rate": "19.00",
}


def line(**changes: str) -> dict[str, str]:
    """A valid canonical line with some cells changed (keys use __ for dots)."""
    out = dict(BASE)
    for key, value in changes.items():
        out[key.replace("__", ".")] = value
    return out


def write_csv(
    path: Path, rows: list[dict[str, str]], *, delimiter: str = ",", encoding: str = "utf-8"
) -> Path:
    """Write dict rows (union of keys as header, in first-seen order) as CSV."""
    headers: list[str] = []
    for row in rows:
        headers += [k for k in row if k not in headers]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([row.get(h, "") for h in headers])
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def read(path: Path, *, settings: Settings | None = None, **kw: Any) -> IntakeResult:
    """read_invoices with default settings and the built-in lookups."""
    return read_invoices(
        path, settings=settings or Settings(), lookups=kw.pop("lookups", Lookups.builtin()), **kw
    )


def _k(*parts: dict[str, str]) -> dict[str, str]:
    """Canonical column names as ``line()`` keyword names (dots written as __)."""
    return {k.replace(".", "__"): v for part in parts for k, v in part.items()}


def only_error(result: IntakeResult) -> RowError:
    """The single error of a result."""
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


def check(tmp_path: Path, rows: list[dict[str, str]], **kw: Any) -> IntakeResult:
    """Write rows to a CSV and read it."""
    return read(write_csv(tmp_path / "in.csv", rows), **kw)


class TestPayload:
    def test_full_payload_matches_factus_v1_exactly(self, tmp_path: Path) -> None:
        """A credit sale with discount and withholding becomes the exact v1 body."""
        rows = [
            line(
                payment_form="2",
                payment_due_date="2026-12-31",
                payment_method_code="47",
                observation="Pedido 1",
                item__discount_rate="20",
                item__withholding__06="7.00",
                item__price="50000",
                item__note="Noviembre",
            ),
            line(
                payment_form="2",
                payment_due_date="2026-12-31",
                payment_method_code="47",
                observation="Pedido 1",
                item__code_reference="SKU-2",
                item__name="Otro",
                item__quantity="2",
                item__price="11900.50",
                item__tax_rate="5",
                item__unit_measure_code="KGM",
            ),
        ]
        result = check(tmp_path, rows)
        assert result.errors == []
        [inv] = result.invoices
        assert inv.reference_code == "R-1" and inv.rows == [2, 3]
        assert json.loads(inv.payload_json()) == {
            "numbering_range_id": 8,
            "reference_code": "R-1",
            "document": "01",
            "operation_type": "10",
            "payment_form": "2",
            "payment_due_date": "2026-12-31",
            "payment_method_code": "47",
            "send_email": False,
            "observation": "Pedido 1",
            "customer": {
                "identification_document_id": 6,
                "identification": "900123456",
                "dv": "8",
                "company": "Enigma S.A.S.",
                "email": "facturas@example.com",
                "legal_organization_id": 1,
                "tribute_id": 21,
                "municipality_id": 980,
            },
            "items": [
                {
                    "code_reference": "SKU-1",
                    "name": "Producto",
                    "quantity": 1,
                    "discount_rate": 20,
                    "price": 50000,
                    "tax_rate": "19.00",
                    "unit_measure_id": 70,
                    "standard_code_id": 1,
                    "is_excluded": 0,
                    "tribute_id": 1,
                    "withholding_taxes": [{"code": "06", "withholding_tax_rate": 7}],
                    "note": "Noviembre",
                },
                {
                    "code_reference": "SKU-2",
                    "name": "Otro",
                    "quantity": 2,
                    "discount_rate": 0,
                    "price": 11900.5,
                    "tax_rate": "5.00",
                    "unit_measure_id": 414,
                    "standard_code_id": 1,
                    "is_excluded": 0,
                    "tribute_id": 1,
                },
            ],
        }

    def test_money_stays_decimal_and_serialises_exactly(self, tmp_path: Path) -> None:
        """Prices and rates are Decimal in the payload and written as exact JSON numbers."""
        result = check(tmp_path, [line(item__price="0.10", item__withholding__05="15.00")])
        item = result.invoices[0].payload["items"][0]
        assert item["price"] == Decimal("0.10") and isinstance(item["price"], Decimal)
        text = dumps_payload(result.invoices[0].payload)
        assert '"price": 0.10' in text and '"withholding_tax_rate": 15.00' in text

    def test_rows_group_by_reference_in_file_order(self, tmp_path: Path) -> None:
        """Rows sharing a reference form one invoice even when not adjacent; order is first appearance."""
        rows = [
            line(reference_code="B"),
            line(reference_code="A"),
            line(reference_code="B", item__name="Dos"),
        ]
        result = check(tmp_path, rows)
        assert [(i.reference_code, i.rows) for i in result.invoices] == [("B", [2, 4]), ("A", [3])]
        assert [it["name"] for it in result.invoices[0].payload["items"]] == ["Producto", "Dos"]

    def test_blank_header_values_on_continuation_rows_are_accepted(self, tmp_path: Path) -> None:
        """Invoice and customer cells may be left blank on later rows of the same invoice."""
        second = {k: "" for k in BASE} | {
            "reference_code": "R-1",
            "item.code_reference": "S2",
            "item.name": "N",
            "item.quantity": "1",
            "item.price": "100",
            "item.tax_rate": "0",
        }
        result = check(tmp_path, [line(), second])
        assert result.errors == [] and len(result.invoices[0].payload["items"]) == 2

    def test_leading_zeros_and_text_identifiers_are_kept(self, tmp_path: Path) -> None:
        """Product codes and phones keep their leading zeros."""
        result = check(tmp_path, [line(item__code_reference="000123", customer__phone="0317778899")])
        payload = result.invoices[0].payload
        assert payload["items"][0]["code_reference"] == "000123"
        assert payload["customer"]["phone"] == "0317778899"

    def test_float_looking_identifier_is_repaired_with_a_warning(self, tmp_path: Path) -> None:
        """An id exported as a float (900123456.0) is read as 900123456 and the user is told."""
        result = check(tmp_path, [line(customer__identification="900123456.0")])
        assert result.invoices[0].payload["customer"]["identification"] == "900123456"
        assert any("900123456.0" in w for w in result.warnings)

    def test_scientific_notation_identifier_is_an_error(self, tmp_path: Path) -> None:
        """An id in scientific notation lost digits and is reported at its cell."""
        err = only_error(check(tmp_path, [line(customer__identification="9.00123E+08")]))
        assert (err.row, err.column, err.value) == (2, "customer.identification", "9.00123E+08")
        assert "scientific notation" in err.message

    def test_formula_looking_text_is_kept_as_data(self, tmp_path: Path) -> None:
        """A name like =HYPERLINK(...) is plain data for the payload (reports neutralise it)."""
        name = '=HYPERLINK("http://evil.example","clic")'
        result = check(tmp_path, [line(item__name=name)])
        assert result.invoices[0].payload["items"][0]["name"] == name

    def test_nit_check_digit_is_computed_when_missing(self, tmp_path: Path) -> None:
        """A NIT customer without DV gets the DIAN check digit."""
        result = check(tmp_path, [line(customer__dv="", customer__identification="901724254")])
        assert result.invoices[0].payload["customer"]["dv"] == str(nit_check_digit("901724254"))

    @pytest.mark.parametrize("ident", ["900123456-8", "900.123.456-8", "900 123 456"])
    def test_nit_with_dots_or_glued_dv_is_split(self, tmp_path: Path, ident: str) -> None:
        """A NIT written 900.123.456-8 becomes identification 900123456 and DV 8."""
        result = check(tmp_path, [line(customer__identification=ident, customer__dv="")])
        customer = result.invoices[0].payload["customer"]
        assert (customer["identification"], customer["dv"]) == ("900123456", "8")

    def test_dv_is_dropped_for_non_nit_customers(self, tmp_path: Path) -> None:
        """A DV cell on a CC customer is not sent (Factus takes a DV for NIT only)."""
        row = line(
            customer__identification_document_id="3",
            customer__identification="1399991",
            customer__dv="5",
            customer__company="",
            customer__names="Ana",
        )
        customer = check(tmp_path, [row]).invoices[0].payload["customer"]
        assert "dv" not in customer and customer["legal_organization_id"] == 2

    def test_legal_organization_is_derived_from_the_document_type(self, tmp_path: Path) -> None:
        """Without a column, NIT customers are legal entities (1) and others natural persons (2)."""
        result = check(tmp_path, [line()])
        assert result.invoices[0].payload["customer"]["legal_organization_id"] == 1

    def test_excluded_item_without_tax_rate_gets_zero(self, tmp_path: Path) -> None:
        """An excluded item with a blank tax rate is sent with tax_rate 0.00."""
        result = check(
            tmp_path, [line(item__is_excluded="1", item__tax_rate=""), line(item__code_reference="B")]
        )
        items = result.invoices[0].payload["items"]
        assert (items[0]["tax_rate"], items[0]["is_excluded"]) == ("0.00", 1)

    def test_unpadded_withholding_header(self, tmp_path: Path) -> None:
        """A header item.withholding.6 means code 06."""
        row = line()
        row["item.withholding.6"] = "3.50"
        taxes = check(tmp_path, [row]).invoices[0].payload["items"][0]["withholding_taxes"]
        assert taxes == [{"code": "06", "withholding_tax_rate": Decimal("3.50")}]

    def test_unknown_withholding_code_column_is_a_file_error(self, tmp_path: Path) -> None:
        """A withholding column with a code outside 05/06/07 is refused for the whole file."""
        with pytest.raises(InputError, match=r"item\.withholding\.99.*allowed: 05, 06, 07"):
            check(tmp_path, [line(item__withholding__99="1")])

    def test_zero_or_blank_withholding_is_not_sent(self, tmp_path: Path) -> None:
        """Withholding columns that are blank or 0 add no withholding entry."""
        result = check(
            tmp_path, [line(item__withholding__06="0"), line(item__withholding__06="", item__name="b")]
        )
        assert all("withholding_taxes" not in i for i in result.invoices[0].payload["items"])

    def test_excel_serial_date_in_csv(self, tmp_path: Path) -> None:
        """A date column holding an Excel serial (45657) is read as 2024-12-31."""
        result = check(tmp_path, [line(payment_form="2", payment_due_date="45657")])
        assert result.invoices[0].payload["payment_due_date"] == "2024-12-31"

    def test_day_first_dates_without_profile(self, tmp_path: Path) -> None:
        """Without a date_format, 31/12/2026 (day first, as in Colombia) is accepted."""
        result = check(tmp_path, [line(payment_form="2", payment_due_date="31/12/2026")])
        assert result.invoices[0].payload["payment_due_date"] == "2026-12-31"


class TestRules:
    @pytest.mark.parametrize(
        ("changes", "column", "value", "fragment"),
        [
            ({"item__price": "10.555"}, "item.price", "10.555", "at most 2 decimal places"),
            ({"item__price": "-5"}, "item.price", "-5", "at least 0"),
            ({"item__price": "12,5"}, "item.price", "12,5", "not a number"),
            ({"item__quantity": "1.5"}, "item.quantity", "1.5", "whole number"),
            ({"item__quantity": "0"}, "item.quantity", "0", "greater than 0"),
            ({"item__discount_rate": "120"}, "item.discount_rate", "120", "at most 100"),
            ({"item__discount_rate": "2.125"}, "item.discount_rate", "2.125", "2 decimal places"),
            ({"item__tax_rate": "19.001"}, "item.tax_rate", "19.001", "2 decimal places"),
            ({"item__withholding__06": "2.505"}, "item.withholding.06", "2.505", "2 decimal places"),
            ({"item__name": ""}, "item.name", "", "is required"),
            ({"item__code_reference": ""}, "item.code_reference", "", "is required"),
            ({"payment_form": "3"}, "payment_form", "3", "one of '1' or '2'"),
            ({"payment_method_code": "99"}, "payment_method_code", "99", "not a known payment method"),
            (
                {"customer__identification_document_id": "12"},
                "customer.identification_document_id",
                "12",
                "not a known identification document id",
            ),
            (
                {"customer__identification_document_id": "CC"},
                "customer.identification_document_id",
                "CC",
                "whole number",
            ),
            (
                {"customer__email": "facturas.example.com"},
                "customer.email",
                "facturas.example.com",
                "not a valid e-mail",
            ),
            ({"observation": "x" * 251}, "observation", "x" * 251, "at most 250 characters"),
            ({"customer__dv": "3"}, "customer.dv", "3", "expected check digit is 8"),
            ({"customer__dv": "12"}, "customer.dv", "12", "single digit"),
            (
                {"customer__identification": "90012345X"},
                "customer.identification",
                "90012345X",
                "digits only",
            ),
            ({"customer__company": ""}, "customer.company", "", "required for a legal entity"),
            (
                {"customer__municipality_code": "99999"},
                "customer.municipality_code",
                "99999",
                "not a known DIVIPOLA",
            ),
            (
                {"customer__municipality_code": "Bogota"},
                "customer.municipality_code",
                "Bogota",
                "not a DIVIPOLA municipality code",
            ),
            ({"item__unit_measure_code": "XYZ"}, "item.unit_measure_code", "XYZ", "not a known unit"),
            ({"item__unit_measure_id": "5000"}, "item.unit_measure_id", "5000", "not a known Factus unit"),
            (
                {"customer__municipality_id": "5000", "customer__municipality_code": ""},
                "customer.municipality_id",
                "5000",
                "not a known Factus municipality",
            ),
            ({"numbering_range_id": "99"}, "numbering_range_id", "99", "not a known bill numbering range"),
            ({"payment_form": "2"}, "payment_due_date", "", "required when payment_form is 2"),
            (
                {"payment_form": "2", "payment_due_date": "31/02/2026"},
                "payment_due_date",
                "31/02/2026",
                "not a date",
            ),
            ({"send_email": "maybe"}, "send_email", "maybe", "yes/no"),
            ({"item__is_excluded": "1"}, "item.tax_rate", "19.00", "must be 0 for an item excluded"),
            ({"item__is_excluded": "2"}, "item.is_excluded", "2", "yes/no"),
            ({"item__tax_rate": "0.19"}, "item.tax_rate", "0.19", "looks like a fraction"),
            ({"item__standard_code_id": "9"}, "item.standard_code_id", "9", "not a known standard code"),
            ({"item__tribute_id": "99"}, "item.tribute_id", "99", "not a known product tribute"),
            ({"customer__tribute_id": "1"}, "customer.tribute_id", "1", "not a known customer tribute"),
            ({"document": "02"}, "document", "02", "one of '01' or '03'"),
            ({"operation_type": "13"}, "operation_type", "13", "one of '10', '11' or '12'"),
            (
                {"billing_period__start_date": "2026-11-30", "billing_period__end_date": "2026-11-01"},
                "billing_period.end_date",
                "2026-11-01",
                "before billing_period.start_date",
            ),
        ],
    )
    def test_rule_reports_row_column_and_value(
        self, tmp_path: Path, changes: dict[str, str], column: str | None, value: str | None, fragment: str
    ) -> None:
        """Each broken cell is one error at its row, header and value, and blocks only its invoice."""
        result = check(tmp_path, [line(reference_code="OK-1"), line(reference_code="BAD-1", **changes)])
        assert [i.reference_code for i in result.invoices] == ["OK-1"]
        err = only_error(result)
        assert (err.file, err.row, err.column, err.value) == ("in.csv", 3, column, value)
        assert fragment in err.message, err.message
        assert err.reference_code == "BAD-1"

    def test_natural_person_needs_names(self, tmp_path: Path) -> None:
        """legal_organization_id 2 without names is an error on the names column."""
        row = line(
            customer__identification_document_id="3",
            customer__identification="1399991",
            customer__company="",
            customer__names="",
            customer__dv="",
        )
        err = only_error(check(tmp_path, [row]))
        assert (err.row, err.column) == (2, "customer.names") and "natural person" in err.message

    def test_a_field_without_column_reports_no_column(self, tmp_path: Path) -> None:
        """A rule on a field the file has no column for names the field and leaves column empty."""
        row = line(
            customer__identification_document_id="3", customer__identification="1399991", customer__dv=""
        )
        del row["customer.names"]
        err = only_error(check(tmp_path, [row]))
        assert (err.row, err.column, err.value) == (2, None, None)
        assert err.message.startswith("customer.names is required")

    def test_a_missing_due_date_points_at_the_credit_sale_cell(self, tmp_path: Path) -> None:
        """No payment_due_date column: the error sits on the payment_form cell that says 2."""
        rows = [line(payment_form=""), line(payment_form="2", item__code_reference="B")]
        for row in rows:
            del row["payment_due_date"]
        err = only_error(check(tmp_path, rows))
        assert (err.row, err.column, err.value) == (3, "payment_form", "2")
        assert err.message.startswith("payment_due_date is required")

    def test_an_amount_shaped_like_a_thousands_group_is_refused(self, tmp_path: Path) -> None:
        """11.900 and $ 1.000 mean 11900 and 1000 to a Colombian: refused, not sent as 11.9; zeros past
        the cents of 11900.0000 are simply dropped."""
        rows = [
            line(reference_code="Q-0", item__price="11.900"),
            line(reference_code="Q-1", item__price="$ 1.000"),
            line(reference_code="Q-2", item__price="11900.0000", item__tax_rate="19.000"),
            line(reference_code="Q-3", item__price="0.500"),
        ]
        result = check(tmp_path, rows)
        assert [(e.row, e.column, e.value) for e in result.errors] == [
            (2, "item.price", "11.900"),
            (3, "item.price", "$ 1.000"),
        ]
        assert "if it means 11900" in result.errors[0].message
        prices = {i.reference_code: dumps_payload(i.payload) for i in result.invoices}
        assert '"price": 11900.00' in prices["Q-2"] and '"tax_rate": "19.00"' in prices["Q-2"]
        assert '"price": 0.50' in prices["Q-3"]

    def test_amounts_beyond_what_factus_takes_are_cell_errors(self, tmp_path: Path) -> None:
        """A 40-digit price or quantity is an error at its cell (Factus's bounds), never a crash."""
        rows = [
            line(reference_code="H-1", item__price="9" * 40),
            line(reference_code="H-2", item__quantity="9" * 40),
            line(reference_code="H-3", item__price="999999999999.99"),
        ]
        result = check(tmp_path, rows)
        assert [i.reference_code for i in result.invoices] == ["H-3"]
        assert [(e.row, e.column) for e in result.errors] == [(2, "item.price"), (3, "item.quantity")]
        assert "at most 999999999999.99" in result.errors[0].message

    def test_control_characters_are_refused_at_their_cell(self, tmp_path: Path) -> None:
        """A vertical tab or a BEL in a name would make the invoice XML unreadable: refused at the cell."""
        rows = [
            line(reference_code="C-1", customer__names="Ana\x0bMaría"),
            line(reference_code="C-2", item__name="Caja\x07"),
            line(reference_code="C-3", customer__address="Calle 1\nApto 2"),  # a line break is fine
        ]
        result = check(tmp_path, rows)
        assert [i.reference_code for i in result.invoices] == ["C-3"]
        assert [(e.row, e.column) for e in result.errors] == [(2, "customer.names"), (3, "item.name")]
        assert "U+000B" in result.errors[0].message

    def test_reference_code_in_scientific_notation_is_refused(self, tmp_path: Path) -> None:
        """1.23457E+11 could be 123456789012 or 123456789013: every such row is an error, none merged."""
        rows = [
            line(reference_code="1.23457E+11"),
            line(reference_code="1.23457E+11"),
            line(reference_code="R-2"),
        ]
        result = check(tmp_path, rows)
        assert [i.reference_code for i in result.invoices] == ["R-2"]
        assert [(e.row, e.column, e.value) for e in result.errors] == [
            (2, "reference_code", "1.23457E+11"),
            (3, "reference_code", "1.23457E+11"),
        ]
        assert "scientific notation" in result.errors[0].message

    def test_float_looking_reference_code_is_repaired(self, tmp_path: Path) -> None:
        """1001.0 (a number exported as float) is invoice 1001, as an XLSX number cell would be."""
        result = check(tmp_path, [line(reference_code="1001.0"), line(reference_code="1001")])
        assert [(i.reference_code, i.rows) for i in result.invoices] == [("1001", [2, 3])]
        assert any("'1001.0'" in w for w in result.warnings)

    def test_same_nit_with_and_without_dv_agrees(self, tmp_path: Path) -> None:
        """900123456 on one row and 900.123.456-8 on the next are the same customer; a wrong DV is not."""
        rows = [line(customer__dv=""), line(customer__identification="900.123.456-8", customer__dv="")]
        result = check(tmp_path, rows)
        assert result.errors == []
        assert result.invoices[0].payload["customer"]["dv"] == "8"
        rows = [line(customer__dv=""), line(customer__identification="900123456-7", customer__dv="")]
        err = only_error(check(tmp_path, rows))
        assert (err.row, err.column, err.value) == (3, "customer.identification", "900123456-7")

    def test_dv_after_a_space_is_a_dv(self, tmp_path: Path) -> None:
        """900123456 7 is NIT 900123456 with DV 7 (wrong: 8), never the ten-digit NIT 9001234567."""
        err = only_error(check(tmp_path, [line(customer__identification="900123456 7", customer__dv="")]))
        assert (err.row, err.column, err.value) == (2, "customer.identification", "900123456 7")
        assert "check digit of NIT 900123456 is 8" in err.message
        ok = check(tmp_path, [line(customer__identification="900123456 8", customer__dv="")])
        assert ok.invoices[0].payload["customer"]["identification"] == "900123456"

    def test_mandate_identification_follows_the_customer_rules(self, tmp_path: Path) -> None:
        """Mandate ids: a NIT loses dots and DV (checked), a cédula is digits, a missing one is located."""
        base = {"operation_type": "11", "item.scheme_id": "1"}
        rows = [
            line(
                reference_code="M-1",
                **_k(
                    base,
                    {
                        "item.mandate.identification_document_id": "6",
                        "item.mandate.identification": "900.123.456-8",
                    },
                ),
            ),
            line(
                reference_code="M-2",
                **_k(
                    base,
                    {
                        "item.mandate.identification_document_id": "6",
                        "item.mandate.identification": "900123456-7",
                    },
                ),
            ),
            line(
                reference_code="M-3",
                **_k(
                    base,
                    {"item.mandate.identification_document_id": "3", "item.mandate.identification": "ABC.12"},
                ),
            ),
            line(
                reference_code="M-4",
                **_k(
                    base, {"item.mandate.identification_document_id": "", "item.mandate.identification": ""}
                ),
            ),
        ]
        result = check(tmp_path, rows)
        assert [i.payload["items"][0]["mandate"] for i in result.invoices] == [
            {"identification_document_id": 6, "identification": "900123456"}
        ]
        located = [(e.row, e.column, e.value) for e in result.errors]
        assert located == [
            (3, "item.mandate.identification", "900123456-7"),
            (4, "item.mandate.identification", "ABC.12"),
            (5, "item.mandate.identification_document_id", ""),
        ]

    def test_every_disagreeing_row_is_an_error(self, tmp_path: Path) -> None:
        """Invoice and customer values must agree across rows; each disagreeing row is reported."""
        rows = [line(), line(customer__email="otro@example.com"), line(customer__municipality_code="05001")]
        result = check(tmp_path, rows)
        assert result.invoices == []
        assert [(e.row, e.column, e.value) for e in result.errors] == [
            (3, "customer.email", "otro@example.com"),
            (4, "customer.municipality_code", "05001"),
        ]
        assert "differs from 'facturas@example.com' in row 2" in result.errors[0].message

    def test_equivalent_spellings_agree(self, tmp_path: Path) -> None:
        """Values equal after parsing (8 and 8.0 as a range id) do not conflict."""
        result = check(tmp_path, [line(numbering_range_id="8"), line(numbering_range_id="8.0")])
        assert result.errors == []

    def test_several_errors_in_one_row_are_all_reported(self, tmp_path: Path) -> None:
        """Independent broken cells of one row are each reported."""
        result = check(tmp_path, [line(item__price="1.234", item__quantity="x", customer__dv="1")])
        assert {e.column for e in result.errors} == {"item.price", "item.quantity", "customer.dv"}

    def test_row_without_reference_holds_back_the_invoice_above(self, tmp_path: Path) -> None:
        """A line with a blank reference_code right under invoice R-1 is most likely one of its lines:
        R-1 is held back (not issued short of a line); other invoices go on; blank rows are skipped."""
        blank = {k: "" for k in BASE}
        rows = [line(), line(reference_code=""), blank, line(reference_code="R-2")]
        result = check(tmp_path, rows)
        err = only_error(result)
        assert (err.row, err.column, err.reference_code) == (3, "reference_code", "R-1")
        assert "held back" in err.message
        assert [i.reference_code for i in result.invoices] == ["R-2"]

    def test_row_without_reference_above_every_invoice_is_a_loose_error(self, tmp_path: Path) -> None:
        """With no invoice above it, the row's error belongs to no invoice and the others go on."""
        result = check(tmp_path, [line(reference_code=""), line()])
        err = only_error(result)
        assert (err.row, err.column, err.reference_code) == (2, "reference_code", None)
        assert [i.reference_code for i in result.invoices] == ["R-1"]

    def test_missing_required_columns_is_one_file_error(self, tmp_path: Path) -> None:
        """Missing required columns raise one InputError listing what is missing and what was found."""
        row = line()
        del row["item.price"], row["item.tax_rate"]
        with pytest.raises(InputError) as info:
            check(tmp_path, [row])
        text = str(info.value)
        assert text.startswith("in.csv: missing required column(s)")
        assert "item.price" in text and "item.tax_rate" in text and "'item.name'" in text

    def test_unknown_column_is_a_warning(self, tmp_path: Path) -> None:
        """A column that maps to nothing is ignored with a warning."""
        result = check(tmp_path, [line(Vendedor="Juan")])
        assert result.errors == [] and any("'Vendedor'" in w for w in result.warnings)

    def test_two_columns_for_one_field_is_a_file_error(self, tmp_path: Path) -> None:
        """Two headers mapping to the same canonical column are refused."""
        path = tmp_path / "dup.csv"
        text = ",".join(BASE) + ",ITEM.NAME\n" + ",".join(BASE.values()) + ",x\n"
        path.write_text(text)
        with pytest.raises(InputError, match=r"both map to item\.name"):
            read(path)


class TestDefaults:
    def test_settings_override_builtins_and_profile_overrides_settings(self, tmp_path: Path) -> None:
        """Precedence is built-in < settings [defaults] < profile [defaults]."""
        path = write_csv(tmp_path / "in.csv", [line()])
        settings = Settings(
            defaults={"numbering_range_id": 8, "payment_method_code": "47", "send_email": True}
        )
        plain = read(path, settings=settings).invoices[0].payload
        assert (plain["payment_method_code"], plain["send_email"]) == ("47", True)
        profile = MappingProfile.from_dict(
            {"profile": {"name": "p"}, "defaults": {"payment_method_code": "48"}}
        )
        with_profile = read(path, settings=settings, profile=profile).invoices[0].payload
        assert with_profile["payment_method_code"] == "48"

    def test_blank_cell_takes_the_default(self, tmp_path: Path) -> None:
        """A present but blank cell is filled by the default, like a missing column."""
        result = check(tmp_path, [line(item__unit_measure_id="", item__discount_rate="")])
        item = result.invoices[0].payload["items"][0]
        assert (item["unit_measure_id"], item["discount_rate"]) == (70, 0)

    def test_bad_default_is_reported_with_its_source(self, tmp_path: Path) -> None:
        """A default that fails validation names the default and where it came from."""
        settings = Settings(defaults={"payment_form": "7"})
        err = only_error(read(write_csv(tmp_path / "in.csv", [line(payment_form="")]), settings=settings))
        assert (err.row, err.column, err.value) == (2, "payment_form", "7")
        assert err.message.startswith("payment_form (default from settings)")

    def test_partial_establishment_reports_each_missing_field(self, tmp_path: Path) -> None:
        """An establishment with only a name lacks its other required fields, each reported."""
        result = check(tmp_path, [line(establishment__name="Sede")])
        assert [e.message for e in result.errors] == [
            f"establishment.{f} is required" for f in ("address", "phone_number", "email", "municipality_id")
        ]
        assert {(e.row, e.column) for e in result.errors} == {(2, None)}

    def test_unknown_settings_default_is_a_warning(self, tmp_path: Path) -> None:
        """A settings default for an unknown column is ignored with a warning."""
        result = read(write_csv(tmp_path / "in.csv", [line()]), settings=Settings(defaults={"colour": "red"}))
        assert result.errors == [] and any("'colour'" in w for w in result.warnings)


class TestProfileMapping:
    PROFILE = MappingProfile.from_dict(
        {
            "profile": {"name": "acme"},
            "read": {"decimal": ",", "thousands": ".", "date_format": "%d/%m/%Y"},
            "transform": {"prices_include_tax": False},
            "columns": {
                "Factura": "reference_code",
                "Tipo Documento": "customer.identification_document_id",
                "NIT / Cédula": "customer.identification",
                "Razón Social": "customer.company",
                "Nombre": "customer.names",
                "Forma de pago": "payment_form",
                "Vence": "payment_due_date",
                "Código": "item.code_reference",
                "Descripción": "item.name",
                "Cantidad": "item.quantity",
                "Valor unitario": "item.price",
                "IVA": "item.tax_rate",
            },
            "values": {
                "customer.identification_document_id": {"CC": 3, "NIT": 6},
                "payment_form": {"Contado": "1", "Crédito": "2"},
                "item.tax_rate": {"0,19": "19.00"},
            },
        }
    )

    def rows(self, **changes: str) -> list[dict[str, str]]:
        """One Spanish-header row with some cells changed."""
        row = {
            "Factura ": "A-1",
            "tipo documento": "nit",
            "NIT / CEDULA": "900.123.456-8",
            "Razon social": "Enigma",
            "Nombre": "",
            "Forma de Pago": "Crédito",
            "Vence": "31/12/2026",
            "Código": "007",
            "Descripción": "Café",
            "Cantidad": "3",
            "Valor unitario": "1.000,00",
            "IVA": "0,19",
        }
        row.update(changes)
        return [row]

    def test_headers_match_ignoring_spaces_case_and_accents(self, tmp_path: Path) -> None:
        """Headers and value-map keys match after trimming, case folding and accent removal."""
        result = read(write_csv(tmp_path / "acme.csv", self.rows(), delimiter=";"), profile=self.PROFILE)
        assert result.errors == [] and result.profile == "acme"
        payload = result.invoices[0].payload
        assert payload["payment_form"] == "2" and payload["payment_due_date"] == "2026-12-31"
        assert payload["customer"]["identification_document_id"] == 6
        assert payload["items"][0]["code_reference"] == "007"

    def test_net_prices_are_grossed_up_by_the_tax_rate(self, tmp_path: Path) -> None:
        """prices_include_tax = false turns a net 1.000,00 at 19 % into the v1 price 1190.00."""
        result = read(write_csv(tmp_path / "acme.csv", self.rows(), delimiter=";"), profile=self.PROFILE)
        assert result.invoices[0].payload["items"][0]["price"] == Decimal("1190.00")

    def test_errors_name_the_header_as_written_in_the_file(self, tmp_path: Path) -> None:
        """An error points at the file's own header text, not the canonical name."""
        rows = self.rows(**{"Cantidad": "2,5", "NIT / CEDULA": "900123456", "Vence": "2026/31/12"})
        result = read(write_csv(tmp_path / "acme.csv", rows, delimiter=";"), profile=self.PROFILE)
        got = {(e.row, e.column, e.value) for e in result.errors}
        assert got == {(2, "Cantidad", "2,5"), (2, "Vence", "2026/31/12")}
        assert any("format %d/%m/%Y" in e.message for e in result.errors)


CUSTOMERS = st.sampled_from(
    [
        {
            "customer.identification_document_id": "6",
            "customer.identification": "900123456",
            "customer.company": "Enigma S.A.S.",
            "customer.names": "",
        },
        {
            "customer.identification_document_id": "3",
            "customer.identification": "222222222222",
            "customer.company": "",
            "customer.names": "Consumidor final",
        },
    ]
)
MONEY = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)
RATE = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)
ITEM = st.fixed_dictionaries(
    {
        "item.code_reference": st.from_regex(r"[A-Z0-9-]{1,12}", fullmatch=True),
        "item.name": st.text(
            st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=30
        )
        .map(str.strip)
        .filter(bool),
        "item.quantity": st.integers(1, 10_000),
        "item.price": MONEY,
        "item.discount_rate": RATE,
        "item.tax_rate": st.sampled_from([Decimal("0.00"), Decimal("5.00"), Decimal("19.00")]),
    }
)
INVOICES = st.lists(st.tuples(CUSTOMERS, st.lists(ITEM, min_size=1, max_size=4)), min_size=1, max_size=5)


class TestMapperProperty:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(invoices=INVOICES, delimiter=st.sampled_from([",", ";", "\t", "|"]), comma=st.booleans())
    def test_generated_invoices_round_trip(
        self,
        tmp_path: Path,
        invoices: list[tuple[dict[str, str], list[dict[str, Any]]]],
        delimiter: str,
        comma: bool,
    ) -> None:
        """Any valid invoices written in any dialect (decimal point or comma) map back to the same values."""
        rows: list[dict[str, str]] = []
        for n, (customer, items) in enumerate(invoices):
            for item in items:
                row = {"reference_code": f"P-{n}", **customer}
                for key, value in item.items():
                    text = str(value)
                    if comma and isinstance(value, Decimal):
                        text = f"{value:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
                    row[key] = text
                rows.append(row)
        profile = MappingProfile.from_dict(
            {"profile": {"name": "p"}, "read": {"decimal": ",", "thousands": "."}}
            if comma
            else {"profile": {"name": "p"}}
        )
        path = write_csv(tmp_path / "prop.csv", rows, delimiter=delimiter)
        result = read(path, profile=profile)
        assert result.errors == []
        assert [i.reference_code for i in result.invoices] == [f"P-{n}" for n in range(len(invoices))]
        for inv, (customer, items) in zip(result.invoices, invoices, strict=True):
            assert inv.payload["customer"]["identification"] == customer["customer.identification"]
            for got, want in zip(inv.payload["items"], items, strict=True):
                assert got["name"] == want["item.name"]
                assert got["code_reference"] == want["item.code_reference"]
                assert got["quantity"] == want["item.quantity"]
                assert got["price"] == want["item.price"]
                assert got["discount_rate"] == want["item.discount_rate"]
                assert got["tax_rate"] == f"{want['item.tax_rate']:.2f}"
