"""Factus lookups (municipalities, units, numbering ranges), cached on disk so a dry run works offline.

The cache is one JSON file (``settings.paths.lookup_cache_path``) written atomically. It is refreshed
from a *source* — any object with the client methods ``municipalities()``,
``measurement_units()`` and ``numbering_ranges()`` — when older than ``max_age_s``. With no cache and
no reachable source the built-in tables of :mod:`daemon.catalog` are used (a subset of municipalities
and units, numbering range 8); the full DIAN tables can be loaded from JSON files instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from daemon.catalog import MUNICIPALITIES, UNITS, load_table
from daemon.errors import ConfigError
from daemon.fsutil import atomic_write_text

__all__ = ["BUILTIN_MUNICIPALITY_COUNT", "BUILTIN_UNIT_COUNT", "LookupSource", "Lookups"]

log = structlog.get_logger()

CACHE_VERSION = 1
BUILTIN_MUNICIPALITY_COUNT = 1122
"""Rows of the published DIVIPOLA table: Factus municipality ids are 1..1122."""
BUILTIN_UNIT_COUNT = 1093
"""Rows of the published unit table: Factus unit ids are 1..1093."""
BILL_RANGE_DOCUMENTS = frozenset({"21", "factura de venta", "factura electronica de venta"})


class LookupSource(Protocol):
    """What :meth:`Lookups.refresh` needs: the three Factus lookup calls of the client."""

    def municipalities(self) -> Any:
        """Return ``[{id, code, name, department}, ...]``."""

    def measurement_units(self) -> Any:
        """Return ``[{id, code, name}, ...]``."""

    def numbering_ranges(self) -> Any:
        """Return ``[{id, document, is_active, ...}, ...]``."""


@dataclass(slots=True)
class Lookups:
    """Code -> Factus id tables and the known numbering ranges.

    Attributes:
        municipalities: DIVIPOLA code (5 digits) -> Factus municipality id.
        units: unit code (upper case) -> Factus unit id.
        numbering_ranges: ids of the account's bill numbering ranges.
        complete: True when the tables are the full Factus/DIAN tables; with the built-in subset an
            id is accepted when it is inside the published table's range.
        origin: ``builtin``, ``cache``, ``api`` or ``file``.
        fetched_at: epoch seconds of the last successful fetch (None: never).
        cache_path: where :meth:`refresh` writes.
    """

    municipalities: dict[str, int]
    units: dict[str, int]
    numbering_ranges: frozenset[int]
    complete: bool = False
    origin: str = "builtin"
    fetched_at: float | None = None
    cache_path: Path | None = None
    _municipality_ids: frozenset[int] = field(default=frozenset(), repr=False)
    _unit_ids: frozenset[int] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        self._municipality_ids = frozenset(self.municipalities.values())
        self._unit_ids = frozenset(self.units.values())

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def builtin(cls, *, cache_path: Path | None = None) -> Lookups:
        """The offline tables of :mod:`daemon.catalog` plus numbering range 8."""
        return cls(
            municipalities={m.code: m.id for m in MUNICIPALITIES},
            units={u.code.upper(): u.id for u in UNITS},
            numbering_ranges=frozenset({8}),
            complete=False,
            origin="builtin",
            cache_path=cache_path,
        )

    @classmethod
    def from_dian_tables(
        cls,
        *,
        municipalities: Path | None = None,
        units: Path | None = None,
        numbering_ranges: Iterable[int] = (8,),
    ) -> Lookups:
        """Build lookups from the published DIAN JSON tables (ids = 1-based row positions).

        Raises:
            ConfigError: a table file is unreadable or not in the published shape.
        """
        base = cls.builtin()
        munis = base.municipalities
        unit_map = base.units
        try:
            if municipalities is not None:
                munis = {str(r["code"]).zfill(5): int(r["id"]) for r in load_table(municipalities)}
            if units is not None:
                unit_map = {str(r["code"]).upper(): int(r["id"]) for r in load_table(units)}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot load DIAN table: {exc}") from None
        return cls(
            municipalities=munis,
            units=unit_map,
            numbering_ranges=frozenset(numbering_ranges),
            complete=municipalities is not None and units is not None,
            origin="file",
        )

    @classmethod
    def load(
        cls,
        cache_path: Path,
        *,
        source: LookupSource | None = None,
        max_age_s: float = 86_400,
        clock: Callable[[], float] = time.time,
    ) -> Lookups:
        """Return the cached lookups, refreshed from ``source`` when missing or stale.

        Never raises for a network or cache problem: a failed refresh keeps the stale cache, and
        with no usable cache the built-in tables are returned (both are logged).
        """
        cached = cls._read_cache(cache_path)
        if cached is not None:
            age = clock() - (cached.fetched_at or 0.0)
            if source is None or age <= max_age_s:
                return cached
            try:
                return cached.refresh(source, clock=clock)
            except Exception as exc:  # a failed refresh must never stop the daemon
                log.warning("lookups_refresh_failed", error=repr(exc), using="stale_cache")
                return cached
        fallback = cls.builtin(cache_path=cache_path)
        if source is None:
            return fallback
        try:
            return fallback.refresh(source, clock=clock)
        except Exception as exc:  # offline: built-in tables still allow a dry run
            log.warning("lookups_refresh_failed", error=repr(exc), using="builtin")
            return fallback

    @classmethod
    def _read_cache(cls, cache_path: Path) -> Lookups | None:
        try:
            raw = json.loads(cache_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("lookups_cache_unreadable", path=str(cache_path), error=repr(exc))
            return None
        try:
            if raw.get("version") != CACHE_VERSION:
                raise ValueError(f"cache version {raw.get('version')!r}")
            return cls(
                municipalities={str(k): int(v) for k, v in raw["municipalities"].items()},
                units={str(k).upper(): int(v) for k, v in raw["units"].items()},
                numbering_ranges=frozenset(int(i) for i in raw["numbering_ranges"]),
                complete=bool(raw.get("complete", True)),
                origin="cache",
                fetched_at=float(raw["fetched_at"]),
                cache_path=cache_path,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("lookups_cache_unreadable", path=str(cache_path), error=repr(exc))
            return None

    # -- refresh --------------------------------------------------------------------------------

    def refresh(self, source: LookupSource, *, clock: Callable[[], float] = time.time) -> Lookups:
        """Fetch the three tables from ``source``, update in place and rewrite the cache.

        A table the source returns empty keeps its current content. Exceptions of the source
        propagate (the caller decides whether stale data is acceptable).
        """
        munis = {
            str(_get(m, "code")).zfill(5): int(_get(m, "id"))
            for m in _rows(source.municipalities())
            if _get(m, "code") is not None and _get(m, "id") is not None
        }
        units = {
            str(_get(u, "code")).upper(): int(_get(u, "id"))
            for u in _rows(source.measurement_units())
            if _get(u, "code") is not None and _get(u, "id") is not None
        }
        ranges = _bill_ranges(_rows(source.numbering_ranges()))
        if munis:
            self.municipalities = munis
        if units:
            self.units = units
        if ranges:
            self.numbering_ranges = frozenset(ranges)
        self.complete = bool(munis and units)
        self.origin = "api"
        self.fetched_at = clock()
        self.__post_init__()
        if self.cache_path is not None:
            self.save(self.cache_path)
        return self

    def save(self, cache_path: Path) -> None:
        """Write the cache file atomically."""
        data = {
            "version": CACHE_VERSION,
            "fetched_at": self.fetched_at or 0.0,
            "complete": self.complete,
            "municipalities": self.municipalities,
            "units": self.units,
            "numbering_ranges": sorted(self.numbering_ranges),
        }
        atomic_write_text(cache_path, json.dumps(data, ensure_ascii=False, sort_keys=True))
        self.cache_path = cache_path

    # -- queries --------------------------------------------------------------------------------

    def municipality_id(self, code: str) -> int | None:
        """Factus id of a DIVIPOLA code (``5001`` is read as ``05001``; 8-digit codes use the first 5)."""
        code = code.strip()
        if code.isdigit():
            if len(code) == 8:
                code = code[:5]
            elif len(code) == 4:
                code = code.zfill(5)
        return self.municipalities.get(code)

    def unit_id(self, code: str) -> int | None:
        """Factus id of a unit code (``94``, ``KGM``; case-insensitive)."""
        return self.units.get(code.strip().upper())

    def knows_municipality_id(self, municipality_id: int) -> bool:
        """True when the id exists (full tables) or lies inside the published table (built-in)."""
        if municipality_id in self._municipality_ids:
            return True
        return not self.complete and 1 <= municipality_id <= BUILTIN_MUNICIPALITY_COUNT

    def knows_unit_id(self, unit_id: int) -> bool:
        """True when the id exists (full tables) or lies inside the published table (built-in)."""
        if unit_id in self._unit_ids:
            return True
        return not self.complete and 1 <= unit_id <= BUILTIN_UNIT_COUNT

    def knows_numbering_range(self, range_id: int) -> bool:
        """True when ``range_id`` is one of the account's bill ranges."""
        return range_id in self.numbering_ranges


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _rows(result: Any) -> list[Any]:
    if isinstance(result, dict):
        data = result.get("data", result)
        if isinstance(data, dict):
            data = data.get("data", [])
        result = data
    return list(result or [])


def _bill_ranges(rows: list[Any]) -> set[int]:
    ids: set[int] = set()
    every: set[int] = set()
    for r in rows:
        rid = _get(r, "id")
        if rid is None:
            continue
        active = _get(r, "is_active")
        if active is not None and str(active).strip().lower() in ("0", "false"):
            continue
        every.add(int(rid))
        document = str(_get(r, "document") or _get(r, "document_name") or "").strip().lower()
        document = document.replace("ó", "o")
        if document in BILL_RANGE_DOCUMENTS:
            ids.add(int(rid))
    return ids or every
