"""Mapping profiles: how one ERP's export is read and mapped to the canonical layout.

A profile is ``config/profiles/<name>.toml``::

    [profile]   name, match (file-name globs)
    [read]      encoding, delimiter, decimal, thousands, date_format, sheet, items_sheet,
                header_row (a row number, or "auto": the default), max_rows, fill_down
    [transform] prices_include_tax (false: item prices are net and are grossed up by tax_rate),
                nit_dv_in_last_digit (true: a NIT written without a dash ends with its DV, as
                Odoo's ``vat`` does: 8600029644 is NIT 860002964, DV 4)
    [filter]    "header in the file" = which rows to keep (see :mod:`daemon.intake.filters`)
    [columns]   "header in the file" = "canonical column"
    [defaults]  "canonical column" = value            (when the column is missing or blank)
    [values."canonical column"]  "value in the file" = value   (value maps)
                "value in the file" = { "canonical" = value, ... }   (sets several columns: "IVA
                Excluido" = { "item.tax_rate" = "0.00", "item.is_excluded" = 1 })
    [split]     "canonical column" = "separator"   (a cell lists several values, each mapped:
                "IVA Ventas 19%,RteFte -2.50% Ventas" -> tax rate and withholding 06)

Headers and value-map keys match after trimming, case folding and accent removal. A profile is
chosen explicitly, by the ``inbox/<name>/`` folder a file sits in, or by its ``match`` globs.
"""

from __future__ import annotations

import codecs
import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError
from daemon.intake.csv import DELIMITERS
from daemon.intake.fields import FIELDS, normalise_header
from daemon.intake.filters import RowFilter, parse_filter

__all__ = ["MappingProfile", "ReadOptions", "load_profile", "load_profiles", "select_profile"]

_SECTIONS = {"profile", "read", "transform", "filter", "columns", "defaults", "values", "split"}
_READ_KEYS = {
    "encoding",
    "delimiter",
    "decimal",
    "thousands",
    "date_format",
    "sheet",
    "items_sheet",
    "header_row",
    "max_rows",
    "fill_down",
}


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How to read the file: text encoding, separators, date format, sheet, header position."""

    encoding: str | None = None
    delimiter: str | None = None
    decimal: str = "."
    thousands: str = ""
    date_format: str | None = None
    sheet: str | None = None
    items_sheet: str | None = None
    header_row: int | None = None
    """The spreadsheet row holding the header; None finds it (titles above it are skipped)."""
    max_rows: int | None = None
    fill_down: bool = False
    """A row with a blank reference_code continues the invoice above (Odoo-style exports)."""


@dataclass(frozen=True, slots=True)
class MappingProfile:
    """A parsed, checked mapping profile (see the module docstring for the TOML shape).

    ``columns`` and the keys of ``values`` maps are stored normalised (see
    :func:`~daemon.intake.fields.normalise_header`).
    """

    name: str
    match: tuple[str, ...] = ()
    read: ReadOptions = ReadOptions()
    columns: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Value maps; a target is a scalar for the column itself or a dict canonical column -> value."""
    split: dict[str, str] = field(default_factory=dict)
    """Canonical column -> the separator of the several values one of its cells may list."""
    prices_include_tax: bool = True
    nit_dv_in_last_digit: bool = False
    """A NIT without a dash carries its DV as its last digit (Odoo's ``vat``)."""
    filters: tuple[RowFilter, ...] = ()
    source: Path | None = None

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, source: Path | None = None, name: str | None = None
    ) -> MappingProfile:
        """Build and check a profile from parsed TOML.

        Raises:
            ConfigError: an unknown section or key, a bad value, or an unknown canonical column.
        """
        where = str(source) if source else "profile"

        def bad(reason: str) -> ConfigError:
            return ConfigError(f"{where}: {reason}")

        unknown = set(data) - _SECTIONS
        if unknown:
            raise bad(f"unknown section(s) {sorted(unknown)}; expected {sorted(_SECTIONS)}")
        head = _table(data, "profile", bad)
        extra = set(head) - {"name", "match"}
        if extra:
            raise bad(f"unknown key(s) in [profile]: {sorted(extra)}")
        pname = head.get("name", name)
        if not isinstance(pname, str) or not pname.strip():
            raise bad("[profile] name must be a non-empty string")
        match = head.get("match", [])
        if isinstance(match, str):
            match = [match]
        if not isinstance(match, list) or not all(isinstance(m, str) and m for m in match):
            raise bad("[profile] match must be a list of file-name globs")
        read = _read_options(_table(data, "read", bad), bad)
        transform = _table(data, "transform", bad)
        known = {"prices_include_tax", "nit_dv_in_last_digit"}
        if set(transform) - known:
            raise bad(f"unknown key(s) in [transform]: {sorted(set(transform) - known)}")
        include_tax = transform.get("prices_include_tax", True)
        dv_last = transform.get("nit_dv_in_last_digit", False)
        if not isinstance(include_tax, bool) or not isinstance(dv_last, bool):
            raise bad("[transform] prices_include_tax and nit_dv_in_last_digit must be true or false")
        filters = tuple(
            parse_filter(column, rule, bad) for column, rule in _table(data, "filter", bad).items()
        )
        columns: dict[str, str] = {}
        for header, canonical in _table(data, "columns", bad).items():
            if not isinstance(canonical, str) or not _known(canonical):
                raise bad(f"[columns] {header!r} maps to unknown canonical column {canonical!r}")
            key = normalise_header(header)
            if key in columns and columns[key] != canonical:
                raise bad(f"[columns] {header!r} is listed twice with different targets")
            columns[key] = canonical
        defaults: dict[str, Any] = {}
        for canonical, value in _table(data, "defaults", bad).items():
            if not _known(canonical):
                raise bad(f"[defaults] unknown canonical column {canonical!r}")
            if not isinstance(value, str | int | float | bool) or isinstance(value, float):
                raise bad(f"[defaults] {canonical!r} must be a string, an integer or a boolean")
            defaults[canonical] = value
        values: dict[str, dict[str, Any]] = {}
        for canonical, mapping in _table(data, "values", bad).items():
            if not _known(canonical):
                raise bad(f"[values] unknown canonical column {canonical!r}")
            if not isinstance(mapping, dict):
                raise bad(f'[values."{canonical}"] must be a table of "file value" = value')
            vm: dict[str, Any] = {}
            for key, value in mapping.items():
                if isinstance(value, dict):
                    value = _multi_target(canonical, key, value, bad)
                elif not isinstance(value, str | int | bool) or isinstance(value, float):
                    raise bad(
                        f'[values."{canonical}"] {key!r} must map to a string, integer, boolean or a '
                        "table of canonical columns"
                    )
                vm[normalise_header(key)] = value
            values[canonical] = vm
        split: dict[str, str] = {}
        for canonical, separator in _table(data, "split", bad).items():
            if not _known(canonical):
                raise bad(f"[split] unknown canonical column {canonical!r}")
            if not isinstance(separator, str) or not separator or len(separator) > 3 or separator.isspace():
                raise bad(f"[split] {canonical!r} must be a separator of 1 to 3 characters, e.g. ','")
            if separator in (read.decimal, read.thousands):
                raise bad(
                    f"[split] {canonical!r} separator {separator!r} is also this profile's decimal or "
                    "thousands separator: '5,5' would be two values; choose another (e.g. ';' or '|')"
                )
            split[canonical] = separator
        return cls(
            name=pname.strip(),
            match=tuple(match),
            read=read,
            columns=columns,
            defaults=defaults,
            values=values,
            split=split,
            prices_include_tax=include_tax,
            nit_dv_in_last_digit=dv_last,
            filters=filters,
            source=source,
        )


def _multi_target(canonical: str, key: str, targets: dict[str, Any], bad: Any) -> dict[str, Any]:
    """Check a value-map target that sets several canonical columns of the same level."""
    where = f'[values."{canonical}"] {key!r}'
    if not targets:
        raise bad(f"{where}: the table of columns is empty")
    level = FIELDS[canonical].level
    for name, value in targets.items():
        if not _known(name):
            raise bad(f"{where}: unknown canonical column {name!r}")
        if FIELDS[name].level != level:
            raise bad(f"{where}: {name!r} is not a {level}-level column like {canonical!r}")
        if not isinstance(value, str | int | bool) or isinstance(value, float):
            raise bad(f"{where}: {name!r} must be a string, integer or boolean")
    return dict(targets)


def _known(canonical: str) -> bool:
    return canonical in FIELDS


def _table(data: dict[str, Any], key: str, bad: Any) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise bad(f"[{key}] must be a table")
    return value


def _read_options(read: dict[str, Any], bad: Any) -> ReadOptions:
    extra = set(read) - _READ_KEYS
    if extra:
        raise bad(f"unknown key(s) in [read]: {sorted(extra)}; expected {sorted(_READ_KEYS)}")
    for key in ("encoding", "delimiter", "decimal", "thousands", "date_format", "sheet", "items_sheet"):
        if key in read and not isinstance(read[key], str):
            raise bad(f"[read] {key} must be a string")
    encoding = read.get("encoding")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise bad(f"[read] encoding {encoding!r} is not a known codec") from None
    delimiter = read.get("delimiter")
    if delimiter is not None:
        if delimiter in ("\\t", "tab", "TAB"):
            delimiter = "\t"
        if delimiter not in DELIMITERS:
            raise bad(f"[read] delimiter must be one of , ; | or a tab, got {delimiter!r}")
    decimal = read.get("decimal", ".")
    if decimal not in (".", ","):
        raise bad(f"[read] decimal must be '.' or ',', got {decimal!r}")
    thousands = read.get("thousands", "")
    if thousands not in ("", ".", ",", " ", "'", "\u00a0"):
        raise bad(f"[read] thousands must be '', '.', ',', ' ' or \"'\", got {thousands!r}")
    if thousands == decimal:
        raise bad("[read] thousands and decimal separators must differ")
    date_format = read.get("date_format")
    if date_format is not None and "%" not in date_format:
        raise bad(f"[read] date_format {date_format!r} has no strftime directive (e.g. '%d/%m/%Y')")
    fill_down = read.get("fill_down", False)
    if not isinstance(fill_down, bool):
        raise bad("[read] fill_down must be true or false")
    ints: dict[str, int | None] = {}
    for key in ("header_row", "max_rows"):
        value = read.get(key)
        if key == "header_row" and isinstance(value, str) and value.strip().casefold() == "auto":
            value = None
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            auto = ' or "auto"' if key == "header_row" else ""
            raise bad(f"[read] {key} must be a positive integer{auto}")
        ints[key] = value
    return ReadOptions(
        encoding=encoding,
        delimiter=delimiter,
        decimal=decimal,
        thousands=thousands,
        date_format=date_format,
        sheet=read.get("sheet"),
        items_sheet=read.get("items_sheet"),
        header_row=ints["header_row"],
        max_rows=ints["max_rows"],
        fill_down=fill_down,
    )


def load_profile(path: Path) -> MappingProfile:
    """Read one profile file.

    Raises:
        ConfigError: the file is unreadable, not TOML, or not a valid profile (names file and reason).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read mapping profile: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: mapping profile is not valid TOML: {exc}") from None
    return MappingProfile.from_dict(data, source=path, name=path.stem)


def load_profiles(directory: Path) -> dict[str, MappingProfile]:
    """Load every ``*.toml`` profile of a folder, keyed by profile name (missing folder: none).

    Raises:
        ConfigError: a profile is invalid, or two files declare the same name.
    """
    profiles: dict[str, MappingProfile] = {}
    if not directory.is_dir():
        return profiles
    for path in sorted(directory.glob("*.toml")):
        profile = load_profile(path)
        if profile.name in profiles:
            other = profiles[profile.name].source
            raise ConfigError(f"{path}: profile name {profile.name!r} is already used by {other}")
        profiles[profile.name] = profile
    return profiles


def select_profile(
    path: Path, *, inbox: Path | None, profiles: dict[str, MappingProfile]
) -> MappingProfile | None:
    """Choose the profile of a file: its ``inbox/<name>/`` folder first, then ``match`` globs.

    Globs are matched case-insensitively against the file name, profiles in name order; None means
    the canonical layout.
    """
    if inbox is not None:
        try:
            rel = path.resolve().relative_to(inbox.resolve())
        except (ValueError, OSError):
            rel = None
        if rel is not None and len(rel.parts) >= 2 and rel.parts[0] in profiles:
            return profiles[rel.parts[0]]
    name = path.name.casefold()
    for pname in sorted(profiles):
        profile = profiles[pname]
        if any(fnmatch.fnmatchcase(name, glob.casefold()) for glob in profile.match):
            return profile
    return None
