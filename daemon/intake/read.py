"""``read_invoices``: one file in, planned Factus v1 invoices and located errors out.

Dispatches on the file extension to the CSV, XLSX or JSON reader, maps the table(s) with the
profile, validates, and guarantees the contract: a file that cannot be read at all raises
:class:`~daemon.errors.InputError` naming the file; every row-level problem is a
:class:`~daemon.intake.rows.RowError`; no other exception type escapes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from daemon.errors import DaemonError, InputError
from daemon.intake.csv import read_csv
from daemon.intake.fields import CANONICAL_HEADERS, FIELDS, Kind, canonical_of, normalise_header
from daemon.intake.filters import apply_filters
from daemon.intake.json import read_json
from daemon.intake.lookups import Lookups
from daemon.intake.mapper import Draft, Mapper, merged_defaults
from daemon.intake.profile import MappingProfile, select_profile
from daemon.intake.rows import Limits, RowError, Table, input_error
from daemon.intake.validate import IntakeResult, validate_drafts
from daemon.settings import Settings

__all__ = ["CSV_SUFFIXES", "JSON_SUFFIXES", "SUPPORTED_SUFFIXES", "XLSX_SUFFIXES", "read_invoices"]

log = structlog.get_logger()

CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
JSON_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson"})
SUPPORTED_SUFFIXES = CSV_SUFFIXES | XLSX_SUFFIXES | JSON_SUFFIXES


def read_invoices(
    path: Path,
    *,
    settings: Settings,
    profile: MappingProfile | None = None,
    lookups: Lookups,
    profiles: dict[str, MappingProfile] | None = None,
    limits: Limits | None = None,
) -> IntakeResult:
    """Read, map and validate one source file.

    Args:
        path: the CSV, XLSX or JSON file.
        settings: gives ``[defaults]``, ``paths.inbox`` (profile by folder) and the size limit.
        profile: an explicit profile; when None one is selected from ``profiles`` (folder, glob).
        lookups: municipality/unit/numbering-range tables.
        profiles: candidate profiles for automatic selection.
        limits: overrides of the hard input limits.

    Raises:
        InputError: the file cannot be read as a whole (its message names the file and reason).
    """
    if profile is None and profiles:
        profile = select_profile(path, inbox=settings.paths.inbox, profiles=profiles)
    if limits is None:
        limits = Limits(max_file_bytes=settings.watch.max_file_bytes)
    if profile is not None and profile.read.max_rows is not None:
        limits = dataclasses.replace(limits, max_rows=profile.read.max_rows)
    try:
        with _gc_paused():
            return _read(path, settings=settings, profile=profile, lookups=lookups, limits=limits)
    except DaemonError:
        raise
    except (MemoryError, RecursionError) as exc:
        raise input_error(path, f"is too large or too deeply nested to read ({type(exc).__name__})") from None
    except Exception as exc:  # the contract: nothing but InputError/RowErrors for any input
        log.exception("intake_unexpected_error", file=str(path))
        raise input_error(path, f"could not be read ({type(exc).__name__}: {exc})") from None


def header_test(profile: MappingProfile | None) -> Callable[[list[str]], int]:
    """Score a row as the header: how many known columns it names (the best row of the first
    :data:`~daemon.intake.rows.HEADER_SCAN` wins, report titles above it are skipped).

    Known columns are the canonical ones and the headers the profile maps; matching is tolerant
    (see :func:`~daemon.intake.fields.normalise_header`).
    """
    known = set(CANONICAL_HEADERS)
    if profile is not None:
        known.update(profile.columns)

    def score(cells: list[str]) -> int:
        return sum(1 for cell in cells if cell and normalise_header(cell) in known)

    return score


def _cells_allowed(profile: MappingProfile | None, allows: Callable[[Kind], bool]) -> Callable[[str], bool]:
    """A header -> "may this column hold such a cell" test: a column nobody reads may hold anything,
    a read one whatever its canonical column's kind ``allows``."""
    columns = profile.columns if profile is not None else {}

    def ok(header: str) -> bool:
        canonical = canonical_of(header, columns)
        return canonical is None or allows(FIELDS[canonical].kind)

    return ok


def _percent_ok(profile: MappingProfile | None) -> Callable[[str], bool]:
    """Whether a column may hold a percent-formatted cell: a rate, or a column nobody reads."""
    return _cells_allowed(profile, lambda kind: kind == "rate")


def _date_ok(profile: MappingProfile | None) -> Callable[[str], bool]:
    """Whether a column may hold a date cell: anything but identifiers and codes (``3-4`` or ``5/11``
    typed into a General cell becomes a date in Excel; read back as 2026-04-03 it would be a new id)."""
    return _cells_allowed(profile, lambda kind: kind not in ("ident", "code"))


def _filter(file: str, tables: list[Table], profile: MappingProfile | None, warnings: list[str]) -> None:
    if profile is not None and profile.filters:
        warnings.extend(
            apply_filters(file, tables, profile.filters, profile.columns, fill_down=profile.read.fill_down)
        )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a file is read.

    Reading creates hundreds of thousands of small acyclic objects; the collector's repeated full
    passes over them cost about 40 % of the run. Reference counting still frees everything.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read(
    path: Path, *, settings: Settings, profile: MappingProfile | None, lookups: Lookups, limits: Limits
) -> IntakeResult:
    suffix = path.suffix.lower()
    warnings: list[str] = []
    defaults = merged_defaults(settings.defaults, profile, warnings)
    read = profile.read if profile else None
    mappers: list[Mapper] = []
    file = path.name
    broken: list[tuple[int, str, str | None]] = []
    flat_mapper: Mapper | None = None

    def mapper(head: Table, items: Table | None = None, **kw: object) -> Mapper:
        return Mapper(
            file=file,
            head_table=head,
            item_table=items or head,
            profile=profile,
            defaults=defaults,
            lookups=lookups,
            **kw,  # type: ignore[arg-type]
        )

    header_row = read.header_row if read else None
    is_header = header_test(profile)
    if suffix in CSV_SUFFIXES:
        table = read_csv(
            path,
            encoding=read.encoding if read else None,
            delimiter=read.delimiter if read else ("\t" if suffix == ".tsv" else None),
            header_row=header_row,
            is_header=is_header,
            limits=limits,
        )
        warnings.extend(table.warnings)
        _filter(file, [table], profile, warnings)
        mappers.append(mapper(table))
    elif suffix in XLSX_SUFFIXES:
        from daemon.intake.xlsx import read_xlsx

        book = read_xlsx(
            path,
            sheet=read.sheet if read else None,
            items_sheet=read.items_sheet if read else None,
            header_row=header_row,
            is_header=is_header,
            decimal=read.decimal if read else ".",
            percent_ok=_percent_ok(profile),
            date_ok=_date_ok(profile),
            limits=limits,
        )
        warnings.extend(book.warnings)
        _filter(file, [book.head] + ([book.items] if book.items else []), profile, warnings)
        mappers.append(mapper(book.head, book.items))
    elif suffix in JSON_SUFFIXES:
        content = read_json(path, limits=limits, decimal=read.decimal if read else ".")
        if content.native is not None:
            mappers.append(mapper(content.native, native=True, extras=content.extras))
        if content.flat is not None:
            _filter(file, [content.flat], profile, warnings)
            flat_mapper = mapper(content.flat)
            mappers.append(flat_mapper)
        broken = content.broken
    else:
        raise input_error(
            path,
            f"has an unsupported extension {suffix or '(none)'!r}; "
            f"expected one of {sorted(SUPPORTED_SUFFIXES)}",
        )
    drafts: list[Draft] = []
    errors: list[RowError] = []
    for m in mappers:
        found, loose = m.drafts()
        drafts.extend(found)
        errors.extend(loose)
        warnings.extend(m.warnings)
    if broken:
        errors.extend(_hold_back(file, broken, drafts, flat_mapper))
    planned, invalid, invalid_rows = validate_drafts(drafts, lookups=lookups)
    errors.extend(invalid)
    errors.sort(key=lambda e: (e.sheet or "", e.row or 0))
    if not drafts and not errors:
        raise InputError(f"{file}: holds no invoice rows (only a header)")
    return IntakeResult(
        path=path,
        profile=profile.name if profile else None,
        invoices=planned,
        errors=errors,
        warnings=warnings,
        invalid_rows=invalid_rows,
    )


def _hold_back(
    file: str, broken: list[tuple[int, str, str | None]], drafts: list[Draft], flat: Mapper | None
) -> list[RowError]:
    """Errors for JSON elements that are not objects; the invoices they may belong to are held back.

    A native invoice is a whole object, so a broken neighbour harms nothing. A flat row may be a
    line of an invoice spread over several rows: the invoice it names (its ``reference_code`` is
    still legible in a broken JSON line), else the flat invoice just above it, is not issued
    without it.
    """
    loose: list[RowError] = []
    flat_drafts = [d for d in drafts if d.mapper is flat] if flat is not None else []
    for number, message, reference in broken:
        owner: Draft | None = None
        if reference is not None:
            owner = next((d for d in flat_drafts if d.reference_code == reference), None)
        elif flat_drafts:
            above = [d for d in flat_drafts if d.rows and min(d.rows) < number]
            owner = max(above, key=lambda d: max(r for r in d.rows if r < number), default=None)
        if owner is None:
            loose.append(RowError(file, number, None, None, message))
        else:
            owner.errors.append(
                RowError(
                    file,
                    number,
                    None,
                    None,
                    f"{message}; invoice {owner.reference_code!r} is held back so that it is not "
                    "issued without this row",
                    reference_code=owner.reference_code,
                )
            )
    return loose
