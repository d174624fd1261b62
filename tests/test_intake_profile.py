"""Mapping profiles: loading and checking, selection, the shipped profiles and the shipped samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from daemon.errors import ConfigError
from daemon.intake import Lookups, MappingProfile, load_profiles, read_invoices, select_profile
from daemon.intake.profile import load_profile
from daemon.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "config" / "profiles"
SAMPLES = ROOT / "config" / "samples"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".csv", ".xlsx", ".json", ".jsonl"})


def write_profile(directory: Path, name: str, text: str) -> Path:
    """Write a profile file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestLoading:
    def test_full_profile_parses(self, tmp_path: Path) -> None:
        """Every section of the issue's example is read, keys normalised for tolerant matching."""
        path = write_profile(
            tmp_path,
            "acme",
            """
[profile]
name = "acme"
match = ["acme_*.csv"]
[read]
encoding = "cp1252"
delimiter = ";"
decimal = ","
thousands = "."
date_format = "%d/%m/%Y"
sheet = "Facturas"
[columns]
"Factura " = "reference_code"
[defaults]
"numbering_range_id" = 8
[values."customer.identification_document_id"]
"CC" = 3
"NIT" = 6
""",
        )
        profile = load_profile(path)
        assert profile.name == "acme" and profile.match == ("acme_*.csv",)
        assert (profile.read.encoding, profile.read.delimiter, profile.read.decimal) == ("cp1252", ";", ",")
        assert profile.columns == {"factura": "reference_code"}
        assert profile.values["customer.identification_document_id"] == {"cc": 3, "nit": 6}
        assert profile.source == path

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("[profile\nname=", "not valid TOML"),
            ('[profile]\nname = "x"\n[extra]\n', "unknown section"),
            (
                '[profile]\nname = "x"\n[columns]\n"A" = "item.colour"\n',
                "unknown canonical column 'item.colour'",
            ),
            ('[profile]\nname = "x"\n[read]\ndelimiter = ":"\n', "delimiter must be one of"),
            ('[profile]\nname = "x"\n[read]\nencoding = "klingon"\n', "not a known codec"),
            ('[profile]\nname = "x"\n[read]\ndecimal = ","\nthousands = ","\n', "must differ"),
            ('[profile]\nname = "x"\n[read]\ndate_format = "dd/mm/yyyy"\n', "no strftime directive"),
            ('[profile]\nname = "x"\n[read]\nheader_row = 0\n', "positive integer"),
            (
                '[profile]\nname = "x"\n[defaults]\n"item.tax_rate" = 19.0\n',
                "string, an integer or a boolean",
            ),
            ('[profile]\nname = "x"\n[values]\n"payment_form" = "1"\n', "must be a table"),
            ('[profile]\nname = "x"\n[read]\nsheets = "a"\n', "unknown key(s) in [read]"),
        ],
    )
    def test_bad_profile_is_a_config_error_naming_the_file(
        self, tmp_path: Path, text: str, reason: str
    ) -> None:
        """A broken profile raises ConfigError with the file path and the reason."""
        path = write_profile(tmp_path, "bad", text)
        with pytest.raises(ConfigError) as info:
            load_profiles(tmp_path)
        assert str(path) in str(info.value) and reason in str(info.value)

    def test_duplicate_names_are_refused(self, tmp_path: Path) -> None:
        """Two files declaring the same profile name are a ConfigError."""
        write_profile(tmp_path, "a", '[profile]\nname = "same"\n')
        write_profile(tmp_path, "b", '[profile]\nname = "same"\n')
        with pytest.raises(ConfigError, match="already used"):
            load_profiles(tmp_path)

    def test_name_defaults_to_the_file_stem_and_missing_folder_is_empty(self, tmp_path: Path) -> None:
        """A profile without a name is named after its file; a missing folder has no profiles."""
        write_profile(tmp_path / "p", "stem", "[read]\ndecimal = ','\n")
        assert list(load_profiles(tmp_path / "p")) == ["stem"]
        assert load_profiles(tmp_path / "nowhere") == {}


class TestSelection:
    PROFILES: ClassVar[dict[str, MappingProfile]] = {
        "acme": MappingProfile.from_dict({"profile": {"name": "acme", "match": ["ACME_*.csv"]}}),
        "zeta": MappingProfile.from_dict({"profile": {"name": "zeta", "match": ["*.csv"]}}),
    }

    def test_inbox_folder_wins(self, tmp_path: Path) -> None:
        """A file in inbox/<name>/ uses profile <name> whatever its name."""
        inbox = tmp_path / "inbox"
        chosen = select_profile(inbox / "zeta" / "acme_1.csv", inbox=inbox, profiles=self.PROFILES)
        assert chosen is not None and chosen.name == "zeta"

    def test_globs_are_case_insensitive_and_in_name_order(self, tmp_path: Path) -> None:
        """Globs match the file name case-insensitively; the first profile by name wins."""
        chosen = select_profile(tmp_path / "acme_2026.CSV", inbox=tmp_path, profiles=self.PROFILES)
        assert chosen is not None and chosen.name == "acme"
        assert select_profile(tmp_path / "x.json", inbox=None, profiles=self.PROFILES) is None


class TestShipped:
    def test_shipped_profiles_load(self) -> None:
        """Every profile in config/profiles is valid."""
        profiles = load_profiles(PROFILES)
        assert {"erp_ventas_es", "odoo_account_move"} <= set(profiles)

    @pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.name)
    def test_every_sample_validates_without_errors(self, sample: Path) -> None:
        """Each shipped sample produces invoices and zero errors with the shipped profiles."""
        profiles = load_profiles(PROFILES)
        result = read_invoices(sample, settings=Settings(), lookups=Lookups.builtin(), profiles=profiles)
        assert result.errors == [], [str(e) for e in result.errors]
        assert result.invoices

    def test_samples_use_distinct_reference_codes(self) -> None:
        """No reference code appears in two samples (the demo submits them all)."""
        profiles = load_profiles(PROFILES)
        seen: list[str] = []
        for sample in SAMPLE_FILES:
            result = read_invoices(sample, settings=Settings(), lookups=Lookups.builtin(), profiles=profiles)
            seen += [i.reference_code for i in result.invoices]
        assert len(seen) == len(set(seen)) >= 12

    def test_samples_cover_the_required_cases(self) -> None:
        """Samples hold a NIT with DV, a final consumer, credit, discount, exclusion and withholding."""
        profiles = load_profiles(PROFILES)
        payloads: list[dict[str, Any]] = []
        for sample in SAMPLE_FILES:
            result = read_invoices(sample, settings=Settings(), lookups=Lookups.builtin(), profiles=profiles)
            payloads += [json.loads(i.payload_json()) for i in result.invoices]
        items = [it for p in payloads for it in p["items"]]
        assert any(
            p["customer"].get("dv") and p["customer"]["identification_document_id"] == 6 for p in payloads
        )
        assert any(p["customer"]["identification"] == "222222222222" for p in payloads)
        assert any(p["payment_form"] == "2" and p.get("payment_due_date") for p in payloads)
        assert any(it["discount_rate"] > 0 for it in items)
        assert any(it["is_excluded"] == 1 for it in items)
        assert any(it.get("withholding_taxes") for it in items)

    def test_erp_sample_is_cp1252_semicolon_decimal_comma(self) -> None:
        """The ERP-style sample really is cp1252 with ';' and decimal commas."""
        raw = (SAMPLES / "erp_ventas.csv").read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        text = raw.decode("cp1252")
        assert text.splitlines()[0].count(";") > 10 and "5.000,00" in text

    def test_odoo_profile_reads_an_odoo_export(self, tmp_path: Path) -> None:
        """An Odoo import-compatible export (blank continuation rows, vat with DV, integer DANE code) maps."""
        path = tmp_path / "Journal Entry (account.move).csv"
        path.write_text(
            '"name","invoice_date_due","partner_id","partner_id/commercial_company_name","partner_id/is_company",'
            '"partner_id/l10n_latam_identification_type_id","partner_id/vat","partner_id/email",'
            '"partner_id/city_id/l10n_co_edi_code","invoice_line_ids/product_id/default_code",'
            '"invoice_line_ids/name","invoice_line_ids/quantity","invoice_line_ids/price_unit",'
            '"invoice_line_ids/discount","invoice_line_ids/tax_ids"\n'
            '"FEV/2026/00012","2026-12-30","Enigma S.A.S.","Enigma S.A.S.","True","NIT","900123456-8",'
            '"f@example.com","5001","FURN_7777","[FURN_7777] Office Chair","2.00","100000.00","10.0",'
            '"IVA Ventas 19%"\n'
            '"","","","","","","","","","FURN_8888","[FURN_8888] Desk","1.00","250000.00","0.0",'
            '"IVA Ventas 5%"\n'
            '"","","","","","","","","","","Entregar antes de las 10am","0.0","0.0","0.0",""\n',  # a note
            encoding="utf-8",
        )
        profiles = load_profiles(PROFILES)
        result = read_invoices(path, settings=Settings(), lookups=Lookups.builtin(), profiles=profiles)
        assert result.profile == "odoo_account_move" and result.errors == []
        assert any("rows 4" in w for w in result.warnings)  # the note line is skipped, not an error
        payload = json.loads(result.invoices[0].payload_json())
        assert payload["customer"]["identification"] == "900123456" and payload["customer"]["dv"] == "8"
        assert payload["customer"]["municipality_id"] == 80
        assert [(i["price"], i["tax_rate"], i["quantity"]) for i in payload["items"]] == [
            (119000, "19.00", 2),
            (262500, "5.00", 1),
        ]

    def test_odoo_vat_with_the_dv_as_last_digit_is_split_and_checked(self, tmp_path: Path) -> None:
        """Odoo's vat 8600029644 is NIT 860002964 with DV 4 (nit_dv_in_last_digit), never a ten-digit
        NIT with a DV computed by us; a wrong last digit is reported at the cell."""
        head = (
            '"name","partner_id","partner_id/commercial_company_name","partner_id/is_company",'
            '"partner_id/l10n_latam_identification_type_id","partner_id/vat",'
            '"invoice_line_ids/product_id/default_code","invoice_line_ids/name","invoice_line_ids/quantity",'
            '"invoice_line_ids/price_unit","invoice_line_ids/tax_ids"\n'
        )
        line = '"{ref}","Papel","Papel","True","NIT","{vat}","P1","Papel","1.0","1000.0","IVA Ventas 19%"\n'
        path = tmp_path / "vat (account.move).csv"
        path.write_text(
            head + line.format(ref="INV/64", vat="8600029644") + line.format(ref="INV/66", vat="8600029645"),
            encoding="utf-8",
        )
        result = read_invoices(
            path, settings=Settings(), lookups=Lookups.builtin(), profiles=load_profiles(PROFILES)
        )
        customer = json.loads(result.invoices[0].payload_json())["customer"]
        assert (customer["identification"], customer["dv"]) == ("860002964", "4")
        (error,) = result.errors
        assert (error.row, error.column, error.value) == (3, "partner_id/vat", "8600029645")


class TestMultiValueCells:
    def test_odoo_tax_list_sets_rate_withholding_and_exclusion(self, tmp_path: Path) -> None:
        """Odoo's tax_ids cell lists several taxes: each is mapped, to the rate, a withholding or the
        exclusion flag; an unknown tax in the list is an error at that cell."""
        path = tmp_path / "Facturas (account.move).csv"
        head = (
            '"name","partner_id","partner_id/l10n_latam_identification_type_id","partner_id/vat",'
            '"invoice_line_ids/product_id/default_code","invoice_line_ids/name","invoice_line_ids/quantity",'
            '"invoice_line_ids/price_unit","invoice_line_ids/tax_ids"\n'
        )
        path.write_text(
            head + '"FEV/1","Juan Pérez","Cédula de ciudadanía","1399991","SRV","Servicio","1","100000.00",'
            '"IVA Ventas 19%,RteFte -2.50% Ventas"\n'
            '"","","","","X","Excluido","1","5000.00","IVA Excluido"\n'
            '"FEV/2","Juan Pérez","Cédula de ciudadanía","1399991","SRV","Servicio","1","100.00",'
            '"IVA Ventas 19%,Impuesto raro"\n',
            encoding="utf-8",
        )
        result = read_invoices(
            path, settings=Settings(), lookups=Lookups.builtin(), profiles=load_profiles(PROFILES)
        )
        [error] = result.errors
        assert (error.row, error.column, error.reference_code) == (4, "invoice_line_ids/tax_ids", "FEV/2")
        assert "Impuesto raro" in error.message
        [invoice] = result.invoices
        items = json.loads(invoice.payload_json())["items"]
        assert (items[0]["price"], items[0]["tax_rate"], items[0]["is_excluded"]) == (119000, "19.00", 0)
        assert items[0]["withholding_taxes"] == [{"code": "06", "withholding_tax_rate": 2.5}]
        assert (items[1]["price"], items[1]["tax_rate"], items[1]["is_excluded"]) == (5000, "0.00", 1)

    @pytest.mark.parametrize(
        ("section", "match"),
        [
            ({"values": {"item.tax_rate": {"X": {"item.nope": 1}}}}, "unknown canonical column 'item.nope'"),
            ({"values": {"item.tax_rate": {"X": {"customer.email": "a"}}}}, "not a item-level column"),
            ({"values": {"item.tax_rate": {"X": {}}}}, "table of columns is empty"),
            ({"values": {"item.tax_rate": {"X": {"item.is_excluded": 1.5}}}}, "must be a string"),
            ({"split": {"item.tax_rate": ""}}, "separator of 1 to 3 characters"),
            ({"split": {"item.nope": ","}}, "unknown canonical column"),
        ],
    )
    def test_bad_multi_targets_and_splits_are_refused(self, section: dict[str, Any], match: str) -> None:
        """Each mistake in a several-column value map or a [split] is a configuration error."""
        with pytest.raises(ConfigError, match=match):
            MappingProfile.from_dict({"profile": {"name": "m"}, **section})

    def test_a_value_map_and_an_explicit_column_that_disagree_are_an_error(self, tmp_path: Path) -> None:
        """'IVA Excluido' sets is_excluded 1; an 'Excluido' column saying 0 on the same row is a
        conflict at the tax cell, not silently one or the other."""
        path = tmp_path / "m.csv"
        path.write_text(
            "ref;cc;nombre;cod;item;cant;precio;imp;excl\n"
            "M1;1399991;Ana;A;Uno;1;100;IVA Excluido;0\n"
            "M2;1399991;Ana;A;Uno;1;100;IVA Excluido;1\n",
            encoding="utf-8",
        )
        prof = MappingProfile.from_dict(
            {
                "profile": {"name": "m"},
                "columns": {
                    "ref": "reference_code",
                    "cc": "customer.identification",
                    "nombre": "customer.names",
                    "cod": "item.code_reference",
                    "item": "item.name",
                    "cant": "item.quantity",
                    "precio": "item.price",
                    "imp": "item.tax_rate",
                    "excl": "item.is_excluded",
                },
                "defaults": {"customer.identification_document_id": 3},
                "values": {
                    "item.tax_rate": {"IVA Excluido": {"item.tax_rate": "0.00", "item.is_excluded": 1}}
                },
            }
        )
        result = read_invoices(path, settings=Settings(), lookups=Lookups.builtin(), profile=prof)
        [error] = result.errors
        assert (error.row, error.column, error.reference_code) == (2, "imp", "M1")
        assert "is 1 by the value map of this cell, but 0 in its own column" in error.message
        assert [i.reference_code for i in result.invoices] == ["M2"]
