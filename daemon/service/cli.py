"""CLI commands of the service: ``run``, ``status`` and ``retry``.

``run`` watches the inbox until SIGTERM/SIGINT; ``run --once`` processes what is there and exits
0 (all validated or nothing to do), 1 (rejected/invalid invoice or failed file) or 3 (work left
pending: Factus unreachable). ``--emulator`` starts the embedded Factus emulator in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from daemon.errors import ConfigError
from daemon.log import configure_logging
from daemon.service import crash
from daemon.service.ledger import RetryRefusedError, SqliteLedger
from daemon.settings import Settings, load_settings

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register ``run``, ``status`` and ``retry``."""
    run = sub.add_parser(
        "run",
        help="watch the inbox and submit every invoice (until SIGTERM), or once with --once",
        description="Watch the inbox, submit every invoice to Factus exactly once, write PDF/XML, reports.",
        epilog="exit codes (--once): 0 every invoice validated (or nothing to do), 1 an invoice rejected or "
        "invalid or a file unreadable (wins when both apply), 2 usage or configuration error, "
        "3 work left pending (Factus unreachable, credentials refused, files still being written)",
    )
    run.add_argument("--once", action="store_true", help="process what the inbox holds now, then exit 0/1/3")
    run.add_argument("--inbox", type=Path, default=None, help="watched folder (overrides [paths].inbox)")
    run.add_argument("--outbox", type=Path, default=None, help="output folder (overrides [paths].outbox)")
    run.add_argument(
        "--emulator", action="store_true", help="start the embedded Factus emulator and use it (demo, tests)"
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar for --once (default: on when stderr is a terminal)",
    )
    run.add_argument("--crash-at", default=None, help=argparse.SUPPRESS)
    run.set_defaults(handler=_run)

    status = sub.add_parser(
        "status",
        help="ledger counts by state, oldest pending invoice, last activity",
        description="Show the ledger: files and invoices by state, oldest pending invoice, last activity.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)

    retry = sub.add_parser(
        "retry",
        help="retry failed files, pending invoices or given reference codes",
        description=(
            "Put work back in line. With a daemon running it picks the work up by itself; otherwise "
            "this command processes it now (like run --once) and returns its exit code."
        ),
        epilog="exit codes: those of run --once, and for REFERENCE_CODE: 6 not in the ledger, 7 already "
        "validated (never sent again), 1 invalid in its file (correct the rows and drop the file again)",
    )
    group = retry.add_mutually_exclusive_group(required=True)
    group.add_argument("--failed", action="store_true", help="move failed files back into the inbox")
    group.add_argument("--pending", action="store_true", help="make every pending invoice due now")
    group.add_argument(
        "references", nargs="*", default=[], metavar="REFERENCE_CODE", help="invoices to retry"
    )
    retry.set_defaults(handler=_retry)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    paths: dict[str, Any] = {}
    if getattr(args, "inbox", None) is not None:
        paths["inbox"] = args.inbox
    if getattr(args, "outbox", None) is not None:
        paths["outbox"] = args.outbox
    if paths:
        settings = settings.model_copy(update={"paths": settings.paths.model_copy(update=paths)})
    if getattr(args, "log_level", None) is None and settings.log_level.lower() != "info":
        configure_logging(settings.log_level, json=getattr(args, "log_json", None))
    return settings


def _with_emulator(settings: Settings) -> tuple[Settings, Any]:
    from daemon.emulator.cli import table_files
    from daemon.emulator.config import EmulatorConfig
    from daemon.emulator.server import EmulatorServer

    tables = table_files()  # the full DIAN tables when they are at hand, else the built-in subset
    config = EmulatorConfig(
        port=0,
        municipalities_file=tables.get("municipalities"),
        units_file=tables.get("units"),
        countries_file=tables.get("countries"),
    )
    server = EmulatorServer(config)
    server.start()
    factus = settings.factus.model_copy(
        update={
            "base_url": server.url,
            "client_id": config.client_id,
            "client_secret": SecretStr(config.client_secret),
            "username": config.username,
            "password": SecretStr(config.password),
        }
    )
    print(f"factus-daemon: embedded Factus emulator at {server.url}", file=sys.stderr)
    return settings.model_copy(update={"factus": factus}), server


def _run(args: argparse.Namespace) -> int:
    from daemon.service.runner import Daemon

    if args.crash_at:
        crash.arm(args.crash_at)
    settings = _settings(args)
    server = None
    if args.emulator:
        settings, server = _with_emulator(settings)
    progress = args.progress if args.progress is not None else (args.once and sys.stderr.isatty())
    if progress and not args.once:
        raise ConfigError("--progress is only available with --once")
    if progress and args.log_level is None:
        configure_logging("warning", json=args.log_json)
    daemon = Daemon(settings, progress_stream=sys.stderr if progress else None)
    try:
        code = daemon.run_once() if args.once else daemon.run()
    finally:
        if server is not None:
            server.stop()
    if not daemon.drained:
        # Requests still in flight past shutdown_timeout_s: the ledger already says where each
        # invoice stands, so leave without waiting for their threads.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = settings.paths.ledger_path
    if not path.exists():
        info: dict[str, Any] = {
            "ledger": str(path),
            "files": {},
            "duplicate_files": 0,
            "invoices": {},
            "oldest_pending": None,
            "last_activity": None,
        }  # the keys of SqliteLedger.stats(): one shape whether or not a ledger exists yet
    else:
        ledger = SqliteLedger(path, readonly=True)
        try:
            info = ledger.stats()
        finally:
            ledger.close()
        info.pop("checked_at", None)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"ledger:        {info['ledger']}{'' if path.exists() else ' (not created yet)'}")
    print(f"files:         {_counts(info['files'])}")
    if info.get("duplicate_files"):
        print(f"  duplicates:  {info['duplicate_files']}")
    print(f"invoices:      {_counts(info['invoices'])}")
    oldest = info.get("oldest_pending")
    if oldest:
        print(
            f"oldest pending: {oldest['reference_code']} since {oldest['created_at']} "
            f"({oldest['attempts']} attempts, last: {oldest['last_outcome'] or 'not sent yet'})"
        )
    else:
        print("oldest pending: none")
    print(f"last activity: {info.get('last_activity') or 'never'}")
    return 0


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def _retry(args: argparse.Namespace) -> int:
    from daemon.service.files import FileStore
    from daemon.service.runner import Daemon, InstanceLock

    settings = _settings(args)
    path = settings.paths.ledger_path
    if not path.exists():
        if args.failed or args.pending:
            print(f"nothing to retry: no ledger at {path} yet (nothing was processed)")
            return 0
        raise RetryRefusedError(f"no ledger at {path}: nothing was processed yet", exit_code=6)
    ledger = SqliteLedger(path)
    try:
        if args.failed:
            store = FileStore(settings.paths.inbox, settings.paths.archive_dir, settings.paths.failed_dir)
            moved = 0
            for file in ledger.files("failed"):
                final = Path(file.final_path or "")
                if not file.final_path or not os.path.lexists(final):
                    continue
                try:
                    rel = Path(file.original_path).relative_to(settings.paths.inbox)
                except ValueError:
                    rel = Path(file.name)
                target = store.restore_failed(final, rel)
                ledger.update_file(file.id, final_path=None, reason=f"{file.reason} (retried: {target})")
                print(f"back in the inbox: {target}")
                moved += 1
            print(f"{moved} failed file(s) moved back into the inbox")
        elif args.pending:
            ledger.due_now()
            print("every pending invoice is due now")
        else:
            for ref in args.references:
                inv = ledger.reset_for_retry(ref)
                print(f"{ref}: {inv.state}, due now")
    finally:
        ledger.close()
    lock = InstanceLock(path.with_name(path.name + ".lock"))
    if not lock.acquire():
        print("a running daemon will pick this up within its retry interval")
        return 0
    lock.release()
    daemon = Daemon(settings)
    return daemon.run_once()
