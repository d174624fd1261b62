"""Adapter between the intake (``daemon.intake``) and the pipeline's ledger terms.

``read_invoices`` returns planned invoices plus row errors located at file/row/column; this module
turns them into :class:`~daemon.service.ledger.NewInvoice` rows (with a payload hash) and report
lines: an error with a row becomes an ``invalid`` line (one per reference code, else per row), an
error without a row becomes a ``file_errors`` entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from daemon.errors import InputError
from daemon.service.ledger import NewEntry, NewInvoice
from daemon.service.pipeline import IntakeOutcome, Reader, payload_hash
from daemon.settings import Settings

__all__ = ["intake_reader", "outcome_from_intake"]


def _error_dict(err: Any) -> dict[str, Any]:
    raw = err.to_dict() if hasattr(err, "to_dict") else dict(err) if isinstance(err, Mapping) else {}
    if not raw:
        raw = {"message": str(err)}
    message = str(raw.get("message") or "")
    sheet = raw.get("sheet")
    if sheet:
        message = f"[{sheet}] {message}"
    value = raw.get("value")
    return {
        "row": raw.get("row"),
        "column": raw.get("column"),
        "value": value,
        "message": message,
        "rule": raw.get("rule"),
        "_reference_code": raw.get("reference_code") or getattr(err, "reference_code", None),
    }


def outcome_from_intake(result: Any) -> IntakeOutcome:
    """Convert an ``IntakeResult`` into what the ledger records."""
    invoices: list[NewInvoice] = []
    for planned in getattr(result, "invoices", []) or []:
        payload = dict(planned.payload)
        rows = sorted({int(r) for r in (getattr(planned, "rows", None) or [])})
        invoices.append(
            NewInvoice(
                reference_code=str(planned.reference_code),
                rows=rows,
                payload=payload,
                payload_hash=payload_hash(payload),
            )
        )
    file_errors: list[dict[str, Any]] = []
    groups: dict[str, tuple[str | None, set[int], list[dict[str, Any]]]] = {}
    for err in getattr(result, "errors", []) or []:
        item = _error_dict(err)
        ref = item.pop("_reference_code")
        row = item.get("row")
        if row is None and ref is None:
            file_errors.append(item)
            continue
        key = f"ref:{ref}" if ref else f"row:{row}"
        group = groups.setdefault(key, (str(ref) if ref else None, set(), []))
        if isinstance(row, int):
            group[1].add(row)
        group[2].append(item)
    every_row: dict[str, list[int]] = getattr(result, "invalid_rows", None) or {}
    invalid = [
        NewEntry(reference_code=ref, rows=sorted(rows.union(every_row.get(ref or "", ()))), errors=errors)
        for ref, rows, errors in groups.values()
    ]
    warnings = [str(w) for w in _iter(getattr(result, "warnings", []))]
    profile = getattr(result, "profile", None)
    return IntakeOutcome(
        invoices=invoices,
        invalid=invalid,
        file_errors=file_errors,
        warnings=warnings,
        profile=str(profile) if profile else None,
    )


def _iter(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list | tuple) else []


class _Profiles:
    """The mapping profiles of ``paths.profiles``, reloaded when a profile file changes."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._signature: tuple[tuple[str, int], ...] | None = None
        self._profiles: dict[str, Any] = {}
        self.get()  # a broken profile stops the start (exit 2), not the first file

    def _sig(self) -> tuple[tuple[str, int], ...]:
        if not self._directory.is_dir():
            return ()
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self._directory.glob("*.toml")))

    def get(self) -> dict[str, Any]:
        from daemon.intake import load_profiles

        sig = self._sig()
        if sig != self._signature:
            self._profiles = load_profiles(self._directory)
            self._signature = sig
        return self._profiles


def intake_reader(settings: Settings, lookups: Callable[[], Any]) -> Reader:
    """A :data:`~daemon.service.pipeline.Reader` backed by :func:`daemon.intake.read_invoices`.

    A file from ``inbox/<profile>/`` uses that profile (an unknown folder name is an input error);
    a file from the inbox itself uses the profile whose ``match`` glob fits, else the canonical
    layout.

    Args:
        settings: the daemon settings (profiles folder, defaults, limits).
        lookups: returns the current lookups (refreshed daily by the scheduler).

    Raises:
        ConfigError: a mapping profile is invalid (at construction).
    """
    from daemon import intake

    profiles = _Profiles(settings.paths.profiles)

    def read(path: Path, profile: str | None) -> IntakeOutcome:
        known = profiles.get()
        chosen = None
        if profile is not None:
            chosen = known.get(profile)
            if chosen is None:
                names = ", ".join(sorted(known)) or "none"
                raise InputError(
                    f"{path.name}: folder {profile!r} of the inbox has no mapping profile "
                    f"{profile}.toml in {settings.paths.profiles} (known profiles: {names})"
                )
        else:
            chosen = intake.select_profile(path, inbox=None, profiles=known)
        result = intake.read_invoices(path, settings=settings, profile=chosen, lookups=lookups())
        return outcome_from_intake(result)

    return read
