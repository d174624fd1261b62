"""``factus-daemon emulator``: run the Factus emulator in the foreground.

The first line on stdout is the base URL (``http://127.0.0.1:8910``; the real port when ``--port 0``),
flushed at once so a parent process can read it; SIGTERM and SIGINT stop it cleanly with exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from daemon.emulator.config import DUPLICATE_POLICIES, EmulatorConfig
from daemon.emulator.server import serve
from daemon.emulator.tables import Tables
from daemon.errors import ConfigError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register the ``emulator`` command."""
    defaults = EmulatorConfig()
    p = sub.add_parser(
        "emulator",
        help="run the offline Factus v1 emulator (prints its URL first)",
        description="Run a local HTTP server that behaves like the Factus v1 sandbox. "
        "Its base URL is the first line printed; stop it with Ctrl-C or SIGTERM.",
    )
    p.add_argument("--host", default=defaults.host, help=f"interface to bind (default {defaults.host})")
    p.add_argument(
        "--port",
        type=int,
        default=defaults.port,
        help=f"TCP port, 0 = any free port (default {defaults.port})",
    )
    p.add_argument(
        "--token-ttl-s", type=int, default=defaults.token_ttl_s, help="access token lifetime in seconds"
    )
    p.add_argument("--rate-limit", type=int, default=defaults.rate_limit, help="requests allowed per window")
    p.add_argument(
        "--rate-window-s", type=float, default=defaults.rate_window_s, help="rate-limit window in seconds"
    )
    p.add_argument(
        "--latency-ms", type=int, default=defaults.latency_ms, help="latency added to every API call"
    )
    p.add_argument(
        "--fail-rate", type=float, default=defaults.fail_rate, help="probability of a 500/502/503 answer"
    )
    p.add_argument(
        "--duplicate-policy",
        choices=DUPLICATE_POLICIES,
        default=defaults.duplicate_policy,
        help="what re-submitting an already validated reference code does",
    )
    p.add_argument("--client-id", default=defaults.client_id, help="OAuth client id accepted")
    p.add_argument("--client-secret", default=defaults.client_secret, help="OAuth client secret accepted")
    p.add_argument("--username", default=defaults.username, help="account e-mail accepted")
    p.add_argument("--password", default=defaults.password, help="account password accepted")
    p.add_argument("--municipalities-file", type=Path, default=None, help="full DIAN municipalities JSON")
    p.add_argument("--units-file", type=Path, default=None, help="full DIAN unit-measures JSON")
    p.add_argument("--countries-file", type=Path, default=None, help="full countries JSON")
    p.add_argument(
        "--tables-dir",
        type=Path,
        default=None,
        help="folder with the full DIAN tables (municipalities.json, unit-measures.json, countries.json); "
        f"default: ${TABLES_ENV}, else a shared/data folder beside this checkout when there is one",
    )
    p.add_argument(
        "--builtin-tables", action="store_true", help="serve the built-in subset even when full tables exist"
    )
    p.set_defaults(handler=_run)


TABLES_ENV = "FACTUS_EMULATOR_TABLES"
_TABLE_FILES = {
    "municipalities": "municipalities.json",
    "units": "unit-measures.json",
    "countries": "countries.json",
}


def table_files(tables_dir: Path | None = None) -> dict[str, Path]:
    """The full DIAN tables to serve: from ``tables_dir``, ``$FACTUS_EMULATOR_TABLES``, or the
    ``shared/data`` folder that sits beside a source checkout (the published Factus tables, whose
    row order gives the Factus ids: San Gil 980, unit 94 = 70, Colombia 46). Empty when none exists:
    the built-in subset is served then.
    """
    if tables_dir is None:
        env = os.environ.get(TABLES_ENV)
        if env:
            tables_dir = Path(env)
        else:
            beside = Path(__file__).resolve().parents[3] / "shared" / "data"
            if not beside.is_dir():
                return {}
            tables_dir = beside
    return {name: tables_dir / file for name, file in _TABLE_FILES.items() if (tables_dir / file).is_file()}


def _run(args: argparse.Namespace) -> int:
    found = {} if args.builtin_tables else table_files(args.tables_dir)
    if args.tables_dir is not None and not args.builtin_tables and not found:
        raise ConfigError(
            f"--tables-dir {args.tables_dir}: none of {', '.join(_TABLE_FILES.values())} is there"
        )
    try:
        config = EmulatorConfig(
            host=args.host,
            port=args.port,
            token_ttl_s=args.token_ttl_s,
            rate_limit=args.rate_limit,
            rate_window_s=args.rate_window_s,
            latency_ms=args.latency_ms,
            fail_rate=args.fail_rate,
            duplicate_policy=args.duplicate_policy,
            client_id=args.client_id,
            client_secret=args.client_secret,
            username=args.username,
            password=args.password,
            municipalities_file=args.municipalities_file or found.get("municipalities"),
            units_file=args.units_file or found.get("units"),
            countries_file=args.countries_file or found.get("countries"),
        )
    except ValueError as exc:
        raise ConfigError(f"invalid emulator option: {exc}") from None
    tables = {
        "municipalities": config.municipalities_file,
        "units": config.units_file,
        "countries": config.countries_file,
    }
    for name, path in tables.items():
        if path is None:
            continue
        try:
            Tables.load(**{f"{name}_file": path})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"cannot read the {name} table {path}: {exc}; expected JSON with one top-level key "
                'holding a list of {"code": ..., "name": ...} rows'
            ) from None

    def ready(url: str) -> None:
        print(url, flush=True)

    try:
        return serve(config, ready=ready)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    finally:
        sys.stdout.flush()
