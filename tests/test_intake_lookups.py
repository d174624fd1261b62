"""Lookups: built-in fallback, the on-disk cache, daily refresh from a source, full DIAN tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.intake import Lookups

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class FakeSource:
    """A stand-in for FactusClient's lookup methods that counts calls."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def municipalities(self) -> list[dict[str, Any]]:
        self.calls += 1
        if self.fail:
            raise OSError("network down")
        return [
            {"id": 980, "code": "68679", "name": "San Gil"},
            {"id": 7, "code": "91430", "name": "La Victoria"},
        ]

    def measurement_units(self) -> list[dict[str, Any]]:
        return [{"id": 70, "code": "94", "name": "unidad"}, {"id": 414, "code": "kgm", "name": "kilogramo"}]

    def numbering_ranges(self) -> list[dict[str, Any]]:
        return [
            {"id": 4, "document": "Factura de Venta", "is_active": 1},
            {"id": 5, "document": "Nota Crédito", "is_active": 1},
            {"id": 6, "document": "Factura de Venta", "is_active": 0},
        ]


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TestBuiltin:
    def test_no_cache_no_source_gives_builtin_tables(self, tmp_path: Path) -> None:
        """Offline with no cache the built-in tables and range 8 are used, and nothing is written."""
        lookups = Lookups.load(tmp_path / "lookups.json")
        assert lookups.origin == "builtin" and lookups.numbering_ranges == frozenset({8})
        assert lookups.municipality_id("11001") == 169 and lookups.unit_id("kgm") == 414
        assert not (tmp_path / "lookups.json").exists()

    def test_divipola_normalisation(self) -> None:
        """A DANE code that lost its zero (5001) or has 8 digits (11001000) still resolves."""
        lookups = Lookups.builtin()
        assert lookups.municipality_id("5001") == 80 and lookups.municipality_id("11001000") == 169
        assert lookups.municipality_id("99999") is None

    def test_builtin_accepts_ids_inside_the_published_tables(self) -> None:
        """With the subset tables an id is known when it lies in the published table's range."""
        lookups = Lookups.builtin()
        assert lookups.knows_municipality_id(1122) and not lookups.knows_municipality_id(1123)
        assert lookups.knows_unit_id(70) and not lookups.knows_unit_id(5000)


class TestCache:
    def test_refresh_writes_the_cache_and_filters_bill_ranges(self, tmp_path: Path) -> None:
        """A fetch stores the tables; only active bill ranges count as known."""
        cache = tmp_path / "var" / "lookups.json"
        lookups = Lookups.load(cache, source=FakeSource(), clock=Clock())
        assert lookups.origin == "api" and lookups.complete
        assert lookups.numbering_ranges == frozenset({4})
        assert lookups.unit_id("KGM") == 414 and not lookups.knows_municipality_id(80)
        saved = json.loads(cache.read_text())
        assert saved["municipalities"]["68679"] == 980 and saved["fetched_at"] == 1_000_000.0

    def test_fresh_cache_is_used_without_calling_the_source(self, tmp_path: Path) -> None:
        """A cache younger than max_age is read as is."""
        cache = tmp_path / "lookups.json"
        clock = Clock()
        Lookups.load(cache, source=FakeSource(), clock=clock)
        source = FakeSource()
        clock.now += 3600
        lookups = Lookups.load(cache, source=source, clock=clock)
        assert lookups.origin == "cache" and source.calls == 0

    def test_stale_cache_is_refreshed(self, tmp_path: Path) -> None:
        """A cache older than 24 h is refreshed from the source."""
        cache = tmp_path / "lookups.json"
        clock = Clock()
        Lookups.load(cache, source=FakeSource(), clock=clock)
        source = FakeSource()
        clock.now += 86_401
        assert Lookups.load(cache, source=source, clock=clock).origin == "api" and source.calls == 1

    def test_failed_refresh_keeps_the_stale_cache(self, tmp_path: Path) -> None:
        """When the source fails the stale cache is still used (the dry run works offline)."""
        cache = tmp_path / "lookups.json"
        clock = Clock()
        Lookups.load(cache, source=FakeSource(), clock=clock)
        clock.now += 10 * 86_400
        lookups = Lookups.load(cache, source=FakeSource(fail=True), clock=clock)
        assert lookups.origin == "cache" and lookups.numbering_ranges == frozenset({4})

    def test_failed_first_fetch_falls_back_to_builtin(self, tmp_path: Path) -> None:
        """With no cache and a failing source the built-in tables are used."""
        lookups = Lookups.load(tmp_path / "lookups.json", source=FakeSource(fail=True))
        assert lookups.origin == "builtin"

    @pytest.mark.parametrize("content", ["{broken", '{"version": 99}', '{"version": 1, "units": []}'])
    def test_corrupt_cache_is_ignored(self, tmp_path: Path, content: str) -> None:
        """An unreadable or foreign cache file is treated as absent."""
        cache = tmp_path / "lookups.json"
        cache.write_text(content)
        assert Lookups.load(cache).origin == "builtin"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared DIAN tables not available")
class TestDianTables:
    def test_full_tables_number_rows_like_factus(self) -> None:
        """Loaded from the published tables, ids equal the built-in ones and every code resolves."""
        lookups = Lookups.from_dian_tables(
            municipalities=SHARED_DATA / "municipalities.json", units=SHARED_DATA / "unit-measures.json"
        )
        builtin = Lookups.builtin()
        assert lookups.complete
        for code, mid in builtin.municipalities.items():
            assert lookups.municipality_id(code) == mid
        for code, uid in builtin.units.items():
            assert lookups.unit_id(code) == uid
        assert len(lookups.municipalities) == 1122
