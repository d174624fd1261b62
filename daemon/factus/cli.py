"""CLI commands for the Factus operations a user needs by hand: ``auth``, ``invoice`` and ``lookup``.

Read commands print aligned tables by default and JSON with ``--json``. Failures are
:class:`~daemon.errors.DaemonError` subclasses that ``daemon.cli.main`` turns into one line on stderr
and the exit code listed in each command's help. No command ever prints a token or a secret.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.errors import ConflictError, DaemonError
from daemon.factus.client import FactusClient, PathSegmentError, check_segment
from daemon.factus.models import BillPage, DownloadedFile, TokenInfo
from daemon.factus.tokens import check_credentials
from daemon.fsutil import atomic_write_bytes, safe_name
from daemon.log import redact
from daemon.settings import Settings, load_settings

__all__ = ["EXIT_CODES", "register"]

EXIT_CODES = """\
exit codes:
  0  ok
  2  usage or configuration error (e.g. a FACTUS_* credential is not set)
  3  Factus unreachable or rate limited: try again later
  4  Factus API error
  5  authentication refused: check FACTUS_CLIENT_ID/SECRET and FACTUS_USERNAME/PASSWORD
  6  not found (bill, reference code or route)
  7  conflict: a pending bill blocks the account
  8  request refused by validation (details in the message)"""

Handler = Callable[[argparse.Namespace], int]


class UsageError(DaemonError):
    """A command-line value that cannot be used (exit 2, like argparse's own usage errors)."""

    exit_code = 2


class OutputError(DaemonError):
    """The downloaded file could not be written (disk full, permissions...)."""


Column = tuple[str, str]  # (key in the row, header)


# -- shared plumbing ----------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    check_credentials(settings.factus)
    return settings


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[FactusClient]:
    client = FactusClient.from_settings(_settings(args).factus)
    try:
        yield client
    finally:
        client.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=_json_default))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        for key in ("name", "code", "number"):
            if key in value:
                return _cell(value[key])
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    text = str(value)
    return " ".join(text.split())  # no newlines or tabs inside a table cell


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, max_width: int = 48) -> str:
    """Render rows as a plain aligned table (numbers right-aligned, long cells truncated)."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in line] for line in cells]
    headers = [header for _, header in columns]
    widths = [max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(headers)]
    numeric = [
        bool(cells) and all(_is_number(line[i]) or not line[i] for line in cells) for i in range(len(columns))
    ]

    def render(line: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if is_num else cell.ljust(width)
            for cell, width, is_num in zip(line, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [render(headers), render(["-" * w for w in widths])]
    out.extend(render(line) for line in cells)
    return "\n".join(out)


def _is_number(text: str) -> bool:
    """Amounts and ids; codes with a leading zero ("01", "05001") stay text."""
    if len(text) > 1 and text.startswith("0") and not text.startswith("0."):
        return False
    try:
        return Decimal(text).is_finite()
    except ArithmeticError:
        return False


def _print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, empty: str) -> None:
    if not rows:
        print(empty)
        return
    print(format_table(rows, columns))


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).astimezone().isoformat(timespec="seconds")


def _has_rejection(errors: Any) -> bool:
    """True when DIAN ``errors`` (a list of strings or a rule -> message map) hold a "Rechazo"."""
    if isinstance(errors, Mapping):
        entries: list[Any] = [f"{k} {v}" for k, v in errors.items()]
    elif isinstance(errors, list | tuple):
        entries = list(errors)
    elif errors:
        entries = [errors]
    else:
        entries = []
    return any("rechazo" in _cell(entry).casefold() for entry in entries)


def _status_text(value: Any, errors: Any = None) -> str:
    """validated / pending (waiting for DIAN) / rejected (status 0 with a "Rechazo" rule, §5.3)."""
    text = {1: "validated", 0: "pending", "1": "validated", "0": "pending"}.get(value, _cell(value))
    if text == "pending" and _has_rejection(errors):
        return "rejected"
    return text


def _bill_number(value: str) -> str:
    """A NUMBER argument that can be sent in a path, else a usage error (exit 2)."""
    try:
        return check_segment(value, what="bill number", allow_slash=False)
    except PathSegmentError as exc:
        raise UsageError(f"{exc}: give a bill number such as SETP990000001") from None


def _reference(value: str) -> str:
    """A REFERENCE_CODE argument that can be sent in a path, else a usage error (exit 2)."""
    try:
        return check_segment(value, what="reference code")
    except PathSegmentError as exc:
        raise UsageError(str(exc)) from None


# -- auth ---------------------------------------------------------------------------------------


def _report_token(
    args: argparse.Namespace, client: FactusClient, token: TokenInfo, verb: str, grant: str = "password"
) -> int:
    remaining = max(0, round(token.expires_at - time.time()))
    if args.json:
        _print_json(
            {
                "base_url": redact(client.base_url),
                "username": client.settings.username,
                "grant": grant,
                "expires_at": _when(token.expires_at),
                "expires_in_s": remaining,
                "cached": str(client.settings.token_cache) if client.settings.token_cache else None,
            }
        )
    else:
        print(
            f"{verb} {redact(client.base_url)} as {client.settings.username}; "
            f"the access token expires at {_when(token.expires_at)} "
            f"(in {remaining // 60} min {remaining % 60} s)"
        )
    return 0


def _auth_login(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _report_token(args, client, client.tokens.login(), "signed in to")


def _auth_refresh(args: argparse.Namespace) -> int:
    with _client(args) as client:
        had_refresh = client.tokens.token is not None and bool(client.tokens.token.refresh_token)
        refreshes = client.tokens.refreshes
        token = client.tokens.refresh()
        if client.tokens.refreshes > refreshes:
            return _report_token(args, client, token, "token refreshed for", "refresh_token")
        # TokenManager.refresh falls back to the password grant: say so instead of "refreshed"
        why = "the refresh token was refused" if had_refresh else "no refresh token was cached"
        return _report_token(args, client, token, f"{why}; signed in again to", "password")


# -- invoice ------------------------------------------------------------------------------------

_BILL_COLUMNS: list[Column] = [
    ("number", "NUMBER"),
    ("reference_code", "REFERENCE"),
    ("status_text", "STATUS"),
    ("identification", "CUSTOMER ID"),
    ("customer", "CUSTOMER"),
    ("total", "TOTAL"),
    ("created_at", "CREATED"),
]


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def _exact_reference_page(client: FactusClient, args: argparse.Namespace) -> BillPage:
    """Every bill whose reference code is exactly ``--reference-code`` (all server pages).

    The server's ``filter[reference_code]`` may match partially (CLI-1 also finds CLI-10), so
    equality is checked here (contract §2.1, §6.3); the matches are shown as one page.
    """
    wanted: str = args.reference_code
    items = [
        item
        for item in client.iter_bills(reference_code=wanted, number=args.number, status=args.status)
        if str(item.get("reference_code")) == wanted
    ]
    return BillPage(items=items, total=len(items), current_page=1, last_page=1, per_page=max(1, len(items)))


def _invoice_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.reference_code is not None:
            if args.page != 1:
                _note("--page is ignored with --reference-code: every match is shown")
            page = _exact_reference_page(client, args)
        else:
            page = client.list_bills(number=args.number, status=args.status, page=args.page)
    if args.json:
        _print_json(page.model_dump())
        return 0
    rows = [
        {
            **item,
            "status_text": _status_text(item.get("status"), item.get("errors")),
            "customer": item.get("names") or item.get("company") or item.get("trade_name"),
        }
        for item in page.items
    ]
    if not rows and page.total > 0 and page.current_page > page.last_page:
        # bills match, the requested page is just beyond them: "no bills match" would be wrong
        print(f"page {page.current_page} is past the last page ({page.last_page}); {page.total} bills match")
        return 0
    _print_table(rows, _BILL_COLUMNS, empty="no bills match")
    if rows:
        plural = "" if page.total == 1 else "s"
        print(f"page {page.current_page} of {page.last_page} ({page.total} bill{plural})")
    return 0


def _invoice_show(args: argparse.Namespace) -> int:
    number = _bill_number(args.number)
    with _client(args) as client:
        data = client.show_bill(number)
    if args.json:
        _print_json(data)
        return 0
    bill: Mapping[str, Any] = data["bill"] if isinstance(data.get("bill"), Mapping) else data
    customer: Mapping[str, Any] = data["customer"] if isinstance(data.get("customer"), Mapping) else {}
    fields = [
        ("number", bill.get("number")),
        ("reference code", bill.get("reference_code")),
        ("status", _status_text(bill.get("status"), bill.get("errors"))),
        (
            "customer",
            customer.get("names") or customer.get("company") or customer.get("graphic_representation_name"),
        ),
        ("identification", customer.get("identification")),
        ("validated", bill.get("validated")),
        ("taxable amount", bill.get("taxable_amount")),
        ("tax amount", bill.get("tax_amount")),
        ("surcharge amount", bill.get("surcharge_amount")),
        ("discount amount", bill.get("discount_amount")),
        ("total", bill.get("total")),
        ("cufe", bill.get("cufe")),
        ("qr", bill.get("qr")),
    ]
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        print(f"{label.ljust(width)}  {_cell(value)}")
    errors = bill.get("errors")
    if errors:
        print("DIAN messages:")
        for entry in errors if isinstance(errors, list) else [errors]:
            print(f"  - {_cell(entry)}")
    items = data.get("items")
    if isinstance(items, list) and items:
        print()
        columns: list[Column] = [
            ("code_reference", "CODE"),
            ("name", "ITEM"),
            ("quantity", "QTY"),
            ("price", "PRICE"),
            ("tax_rate", "TAX %"),
            ("total", "TOTAL"),
        ]
        print(format_table([i for i in items if isinstance(i, Mapping)], columns))
    _print_allowances_and_withholdings(data)
    return 0


def _print_allowances_and_withholdings(data: Mapping[str, Any]) -> None:
    """Document surcharges/discounts (part of the total) and withholdings (reported, not deducted)."""
    charges = [c for c in data.get("allowance_charges") or [] if isinstance(c, Mapping)]
    if charges:
        rows = [{**c, "kind": "surcharge" if c.get("is_surcharge") else "discount"} for c in charges]
        print()
        columns: list[Column] = [
            ("kind", "SURCHARGE/DISCOUNT"),
            ("reason", "REASON"),
            ("base_amount", "BASE"),
            ("percentage", "%"),
            ("amount", "AMOUNT"),
        ]
        print(format_table(rows, columns))
    held = [w for w in data.get("withholding_taxes") or [] if isinstance(w, Mapping)]
    if held:
        print()
        print("withholdings (reported, not deducted from the total):")
        print(format_table(held, [("tribute_code", "CODE"), ("name", "WITHHOLDING"), ("value", "VALUE")]))


def _output_folder(folder: Path) -> Path:
    """The ``--output`` folder, created (with missing parents) when absent; usage error otherwise."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {folder} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--output {folder} cannot be created: {exc.strerror or exc}") from None
    return folder


def _save_download(
    args: argparse.Namespace, fetch: Callable[[FactusClient, str], DownloadedFile], kind: str
) -> int:
    number = _bill_number(args.number)
    folder = _output_folder(args.output)  # checked before anything is downloaded
    with _client(args) as client:
        try:
            download = fetch(client, number)
        except ConflictError as exc:  # Factus: "no ha sido validado"
            raise ConflictError(
                f"{exc.message} (its {kind.upper()} exists once DIAN validates the bill: see `invoice "
                f"show {number}`; a pending bill is resent by the daemon or removed with `invoice delete`)",
                status_code=exc.status_code,
                body=exc.body,
            ) from None
    name = safe_name(download.file_name, default=f"{safe_name(number)}.{kind}")
    if Path(name).suffix.lower() != f".{kind}":  # whatever Factus named it, a PDF ends in .pdf
        name = f"{name}.{kind}"
    target = folder / name
    try:
        atomic_write_bytes(target, download.content)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    if args.json:
        _print_json({"path": str(target), "file_name": download.file_name, "bytes": len(download.content)})
    else:
        print(target)
    return 0


def _invoice_pdf(args: argparse.Namespace) -> int:
    return _save_download(args, lambda client, number: client.download_pdf(number), "pdf")


def _invoice_xml(args: argparse.Namespace) -> int:
    return _save_download(args, lambda client, number: client.download_xml(number), "xml")


def _invoice_email(args: argparse.Namespace) -> int:
    number = _bill_number(args.number)
    with _client(args) as client:
        message = client.send_email(number, args.to)
    if args.json:
        _print_json({"number": args.number, "email": args.to, "message": message})
    else:
        print(message)
    return 0


def _invoice_events(args: argparse.Namespace) -> int:
    number = _bill_number(args.number)
    with _client(args) as client:
        events = client.radian_events(number)
    if args.json:
        _print_json(events)
        return 0
    columns: list[Column] = [
        ("event_code", "CODE"),
        ("event_name", "EVENT"),
        ("effective_date", "DATE"),
        ("effective_time", "TIME"),
        ("number", "NUMBER"),
    ]
    _print_table(events, columns, empty=f"no RADIAN events for {args.number}")
    return 0


def _invoice_delete(args: argparse.Namespace) -> int:
    reference = _reference(args.reference_code)
    with _client(args) as client:
        try:
            message = client.delete_bill(reference)
        except ConflictError as exc:
            if "validad" not in exc.message.lower():
                raise
            raise ConflictError(
                f"{exc.message} (a validated bill cannot be deleted; correct it with a credit note)",
                status_code=exc.status_code,
                body=exc.body,
            ) from None
    if args.json:
        _print_json({"reference_code": args.reference_code, "message": message})
    else:
        print(message)
    return 0


# -- lookup -------------------------------------------------------------------------------------

_LOOKUP_COLUMNS: dict[str, list[Column]] = {
    "municipalities": [("id", "ID"), ("code", "CODE"), ("name", "NAME"), ("department", "DEPARTMENT")],
    "tributes": [("id", "ID"), ("code", "CODE"), ("name", "NAME"), ("description", "DESCRIPTION")],
    "units": [("id", "ID"), ("code", "CODE"), ("name", "NAME")],
    "countries": [("id", "ID"), ("code", "CODE"), ("name", "NAME")],
    "numbering-ranges": [
        ("id", "ID"),
        ("document", "DOCUMENT"),
        ("prefix", "PREFIX"),
        ("from", "FROM"),
        ("to", "TO"),
        ("current", "CURRENT"),
        ("resolution_number", "RESOLUTION"),
        ("end_date", "END"),
        ("is_active", "ACTIVE"),
    ],
}


def _fetch_lookup(client: FactusClient, what: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    if what == "numbering-ranges":
        active = None if args.active is None else args.active == "1"
        ranges = client.numbering_ranges(document=args.document, is_active=active)
        if args.name:
            wanted = args.name.casefold()
            ranges = [
                r
                for r in ranges
                if wanted
                in f"{r.get('document', '')} {r.get('document_name', '')} {r.get('prefix', '')}".casefold()
            ]
        return ranges
    fetchers: dict[str, Callable[[str | None], list[dict[str, Any]]]] = {
        "municipalities": client.municipalities,
        "tributes": client.tributes,
        "units": client.measurement_units,
        "countries": client.countries,
    }
    return fetchers[what](args.name)


def _lookup_handler(what: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        with _client(args) as client:
            rows = _fetch_lookup(client, what, args)
        if args.json:
            _print_json(rows)
        else:
            _print_table(rows, _LOOKUP_COLUMNS[what], empty=f"no {what.replace('-', ' ')} match")
        return 0

    return handler


def _lookup_acquirer(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = client.acquirer(args.id_type, args.number)
    if args.json:
        _print_json(data)
    else:
        print(f"name   {_cell(data.get('name'))}")
        print(f"email  {_cell(data.get('email'))}")
    return 0


# -- registration -------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _command(
    sub: argparse._SubParsersAction[Any], name: str, handler: Handler, help_text: str, *, read: bool = True
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text[:1].upper() + help_text[1:] + ".",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of a table" if read else "print JSON"
    )
    parser.set_defaults(handler=handler)
    return parser


def _group(
    sub: argparse._SubParsersAction[Any], name: str, help_text: str
) -> argparse._SubParsersAction[Any]:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text[:1].upper() + help_text[1:] + ".",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group: argparse._SubParsersAction[Any] = parser.add_subparsers(
        dest=f"{name}_command", metavar="COMMAND", required=True
    )
    return group


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register ``auth``, ``invoice`` and ``lookup`` with their sub-commands."""
    auth = _group(sub, "auth", "sign in to Factus and manage the cached token")
    _command(
        auth, "login", _auth_login, "sign in with the password grant and cache the token (prints expiry)"
    )
    _command(auth, "refresh", _auth_refresh, "refresh the cached token (signs in again if refused)")

    invoice = _group(sub, "invoice", "inspect, download, e-mail and delete bills in Factus")
    p = _command(invoice, "list", _invoice_list, "list bills, one page at a time, with optional filters")
    p.add_argument(
        "--reference-code", help="only the bills with exactly this reference code (all pages are searched)"
    )
    p.add_argument("--number", help="filter by bill number (prefix + consecutive)")
    p.add_argument("--status", type=int, choices=(0, 1), help="1 validated, 0 pending")
    p.add_argument("--page", type=_positive_int, default=1, help="page number (default 1)")
    p = _command(invoice, "show", _invoice_show, "show one bill")
    p.add_argument("number", metavar="NUMBER", help="bill number, e.g. SETP990000001")
    for kind, handler in (("pdf", _invoice_pdf), ("xml", _invoice_xml)):
        p = _command(invoice, kind, handler, f"download the {kind.upper()} of a bill and print its path")
        p.add_argument("number", metavar="NUMBER", help="bill number")
        p.add_argument(
            "-o",
            "--output",
            type=Path,
            default=Path("."),
            metavar="DIR",
            help="folder to write to, created if missing (default .)",
        )
    p = _command(invoice, "email", _invoice_email, "ask Factus to e-mail a bill", read=False)
    p.add_argument("number", metavar="NUMBER", help="bill number")
    p.add_argument("--to", required=True, metavar="ADDRESS", help="recipient e-mail address")
    p = _command(invoice, "events", _invoice_events, "list the RADIAN events of a bill")
    p.add_argument("number", metavar="NUMBER", help="bill number")
    p = _command(
        invoice,
        "delete",
        _invoice_delete,
        "delete a pending (not validated) bill by reference code",
        read=False,
    )
    p.add_argument("reference_code", metavar="REFERENCE_CODE", help="the bill's reference code")

    lookup = _group(sub, "lookup", "read Factus reference tables")
    for what, help_text in (
        ("numbering-ranges", "list numbering ranges"),
        ("municipalities", "list municipalities (Factus id, DIVIPOLA code)"),
        ("tributes", "list product tributes (taxes)"),
        ("units", "list units of measure"),
        ("countries", "list countries"),
    ):
        p = _command(lookup, what, _lookup_handler(what), help_text)
        p.add_argument("--name", metavar="TEXT", help="only entries whose name contains TEXT")
        if what == "numbering-ranges":
            p.add_argument(
                "--document", metavar="CODE", help="range document code (21 bills, 22 credit notes...)"
            )
            p.add_argument("--active", choices=("0", "1"), help="1 active ranges only, 0 inactive only")
    p = _command(lookup, "acquirer", _lookup_acquirer, "look up a customer registered at DIAN")
    p.add_argument(
        "--id-type", type=int, required=True, metavar="N", help="identification_document_id (3 = CC, 6 = NIT)"
    )
    p.add_argument("--number", required=True, metavar="X", help="identification number")
