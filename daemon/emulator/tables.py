"""Reference tables the emulator serves and validates against (built-in subset or full DIAN files).

Rows are kept in the exact shape the v1 lookup endpoints return (``{id, code, name, ...}``) plus a
folded name for the accent-insensitive ``name`` filter.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon import catalog

__all__ = ["Tables", "fold"]


def fold(text: str) -> str:
    """Lower-case and strip accents, so ``"Bogotá"`` matches ``"bogota"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def _filter(rows: Iterable[dict[str, Any]], name: str | None) -> list[dict[str, Any]]:
    if not name or not name.strip():
        return list(rows)
    needle = fold(name)
    return [row for row in rows if needle in fold(str(row["name"]))]


@dataclass(frozen=True, slots=True)
class Tables:
    """Municipalities, units, countries and product tributes keyed by their Factus v1 id."""

    municipalities: dict[int, dict[str, Any]]
    units: dict[int, dict[str, Any]]
    countries: dict[int, dict[str, Any]]
    tributes: dict[int, dict[str, Any]]

    @classmethod
    def load(
        cls,
        *,
        municipalities_file: Path | None = None,
        units_file: Path | None = None,
        countries_file: Path | None = None,
    ) -> Tables:
        """Build the tables from the given DIAN JSON files, or from :mod:`daemon.catalog`."""
        if municipalities_file is not None:
            municipalities: dict[int, dict[str, Any]] = {}
            for row in catalog.load_table(municipalities_file):
                dept = row.get("department")
                dept_name = dept.get("name", "") if isinstance(dept, dict) else str(dept or "")
                dept_code = dept.get("code", "") if isinstance(dept, dict) else ""
                municipalities[row["id"]] = {
                    "id": row["id"],
                    "code": str(row["code"]),
                    "name": str(row["name"]),
                    "department": dept_name,
                    "department_code": str(dept_code),
                }
        else:
            municipalities = {
                m.id: {
                    "id": m.id,
                    "code": m.code,
                    "name": m.name,
                    "department": m.department,
                    "department_code": m.department_code,
                }
                for m in catalog.MUNICIPALITIES
            }
        departments: dict[str, int] = {}
        for mid in sorted(municipalities):
            row = municipalities[mid]
            row["department_id"] = departments.setdefault(row["department"], len(departments) + 1)
        if units_file is not None:
            units = {
                row["id"]: {"id": row["id"], "code": str(row["code"]), "name": str(row["name"])}
                for row in catalog.load_table(units_file)
            }
        else:
            units = {u.id: {"id": u.id, "code": u.code, "name": u.name} for u in catalog.UNITS}
        if countries_file is not None:
            countries = {
                row["id"]: {"id": row["id"], "code": str(row["code"]), "name": str(row["name"])}
                for row in catalog.load_table(countries_file)
            }
        else:
            countries = {c.id: {"id": c.id, "code": c.code, "name": c.name} for c in catalog.COUNTRIES}
        tributes = {
            tid: {"id": tid, "code": code, "name": name, "description": description}
            for tid, (code, name, description) in catalog.PRODUCT_TRIBUTES.items()
        }
        return cls(municipalities=municipalities, units=units, countries=countries, tributes=tributes)

    def municipality_rows(self, name: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/municipalities`` rows: ``{id, code, name, department}``."""
        rows = (
            {k: v for k, v in row.items() if k not in ("department_code", "department_id")}
            for row in self.municipalities.values()
        )
        return _filter(rows, name)

    def unit_rows(self, name: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/measurement-units`` rows: ``{id, code, name}``."""
        return _filter((dict(r) for r in self.units.values()), name)

    def country_rows(self, name: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/countries`` rows: ``{id, code, name}``."""
        return _filter((dict(r) for r in self.countries.values()), name)

    def tribute_rows(self, name: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/tributes/products`` rows: ``{id, code, name, description}``."""
        return _filter((dict(r) for r in self.tributes.values()), name)
