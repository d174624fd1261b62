"""``factus-daemon validate PATH... [--profile NAME] [--json]``: the intake as a dry run.

Reads, maps and validates each file exactly as the daemon would, and prints the planned Factus v1
payloads and every error at its row and column. No side effects: no API call, no file move, no
cache write (lookups come from the on-disk cache, else the built-in tables).
Exit codes: 0 every file valid, 1 any error, 2 usage error (unknown profile, missing path).
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from daemon.errors import InputError
from daemon.intake.lookups import Lookups
from daemon.intake.models import dumps_payload
from daemon.intake.profile import MappingProfile, load_profiles
from daemon.intake.read import SUPPORTED_SUFFIXES, read_invoices
from daemon.intake.rows import RowError
from daemon.intake.validate import IntakeResult, PlannedInvoice
from daemon.money import fmt2, round2
from daemon.settings import load_settings

__all__ = ["register", "run_validate"]

_HUNDRED = Decimal(100)
_DESCRIPTION = """\
Dry run: read, map and validate each file exactly as the daemon would, and print the planned
Factus v1 payloads and every error at its row and column. No side effects: no API call, no file
move, no cache write (lookups come from the on-disk cache, else the built-in tables).

exit codes: 0 every file valid, 1 any error, 2 usage error (unknown profile, missing path)"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register ``validate``."""
    parser = sub.add_parser(
        "validate",
        help="dry run: read, map and validate export files without submitting anything",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="CSV/XLSX/JSON files or folders")
    parser.add_argument(
        "--profile", default=None, help="mapping profile name (default: by folder or file name)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run_validate)


def _expand(paths: list[Path]) -> tuple[list[Path], list[str]]:
    files: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and p.suffix.lower() in SUPPORTED_SUFFIXES
                and not p.name.startswith((".", "~$"))
            )
            if not found:
                problems.append(f"{path}: folder holds no CSV, XLSX or JSON file")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file")
    return files, problems


def run_validate(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Handler of ``validate``; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    settings = load_settings(args.config)
    profiles = load_profiles(settings.paths.profiles)
    explicit: MappingProfile | None = None
    if args.profile is not None:
        explicit = profiles.get(args.profile)
        if explicit is None:
            known = ", ".join(sorted(profiles)) or "none"
            print(
                f"factus-daemon validate: error: unknown profile {args.profile!r} "
                f"(profiles in {settings.paths.profiles}: {known})",
                file=err,
            )
            return 2
    files, problems = _expand(list(args.paths))
    if problems:
        for problem in problems:
            print(f"factus-daemon validate: error: {problem}", file=err)
        return 2
    lookups = Lookups.load(settings.paths.lookup_cache_path, source=None)
    results: list[tuple[Path, IntakeResult | None, str | None]] = []
    for path in files:
        try:
            result = read_invoices(
                path, settings=settings, profile=explicit, lookups=lookups, profiles=profiles
            )
            results.append((path, result, None))
        except InputError as exc:
            results.append((path, None, str(exc)))
    if args.json:
        out.write(
            dumps_payload(_json_doc(results, explicit, profiles, settings.paths.inbox), indent=2) + "\n"
        )
    else:
        _human(results, lookups, out)
    failed = any(r is None or r.errors for _, r, _ in results)
    return 1 if failed else 0


def _json_doc(
    results: list[tuple[Path, IntakeResult | None, str | None]],
    explicit: MappingProfile | None,
    profiles: dict[str, MappingProfile],
    inbox: Path,
) -> dict[str, Any]:
    from daemon.intake.profile import select_profile

    files: list[dict[str, Any]] = []
    for path, result, failure in results:
        if result is None:
            chosen = explicit or select_profile(path, inbox=inbox, profiles=profiles)
            files.append(
                {
                    "path": str(path),
                    "profile": chosen.name if chosen else None,
                    "invoices": [],
                    "errors": [{"row": None, "column": None, "value": None, "message": failure}],
                    "warnings": [],
                }
            )
            continue
        files.append(
            {
                "path": str(path),
                "profile": result.profile,
                "invoices": [
                    {"reference_code": inv.reference_code, "rows": inv.rows, "payload": inv.payload}
                    for inv in result.invoices
                ],
                "errors": [_error_dict(e) for e in result.errors],
                "warnings": result.warnings,
            }
        )
    return {"files": files}


def _error_dict(error: RowError) -> dict[str, Any]:
    out = error.to_dict()
    del out["file"]
    return out


def invoice_total(payload: dict[str, Any]) -> Decimal:
    """The v1 total of a payload: Σ price × quantity × (1 − discount_rate/100) (prices include tax)."""
    total = Decimal(0)
    for item in payload.get("items", []):
        price = Decimal(item["price"])
        quantity = Decimal(item["quantity"])
        discount = Decimal(item.get("discount_rate", 0))
        total += price * quantity * (1 - discount / _HUNDRED)
    return round2(total)


def _describe(inv: PlannedInvoice) -> str:
    customer = inv.payload.get("customer", {})
    who = customer.get("company") or customer.get("names") or ""
    ident = customer.get("identification", "")
    if customer.get("dv"):
        ident = f"{ident}-{customer['dv']}"
    rows = ",".join(str(r) for r in inv.rows)
    items = len(inv.payload.get("items", []))
    return (
        f"  {inv.reference_code}  rows {rows}  {items} item(s)  total {fmt2(invoice_total(inv.payload))}"
        f"  customer {ident} {who}".rstrip()
    )


def _human(
    results: list[tuple[Path, IntakeResult | None, str | None]], lookups: Lookups, out: TextIO
) -> None:
    total_ok = total_err = 0
    for path, result, failure in results:
        if result is None:
            print(f"{path}: UNREADABLE: {failure}", file=out)
            total_err += 1
            continue
        profile = result.profile or "canonical layout"
        status = "OK" if result.ok else f"{len(result.errors)} error(s)"
        print(f"{path} [{profile}]: {len(result.invoices)} valid invoice(s), {status}", file=out)
        for inv in result.invoices:
            print(_describe(inv), file=out)
        for error in result.errors:
            print(f"  ERROR {_error_line(error)}", file=out)
        for warning in result.warnings:
            print(f"  warning: {warning}", file=out)
        total_ok += len(result.invoices)
        total_err += len(result.errors)
    note = "" if lookups.origin != "builtin" else " (lookups: built-in tables; no cache yet)"
    print(f"{len(results)} file(s): {total_ok} valid invoice(s), {total_err} error(s){note}", file=out)


def _error_line(error: RowError) -> str:
    parts = []
    if error.sheet:
        parts.append(f"sheet {error.sheet!r}")
    if error.row is not None:
        parts.append(f"row {error.row}")
    if error.column is not None:
        parts.append(f"column {error.column!r}")
    if error.value is not None:
        value = error.value if len(error.value) <= 60 else error.value[:59] + "…"
        parts.append(f"value {value!r}")
    where = ", ".join(parts)
    return f"{where}: {error.message}" if where else error.message
