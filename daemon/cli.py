"""Command-line interface: ``factus-daemon <command>``.

Each area registers its own sub-commands (``register(subparsers)``); a command handler takes the
parsed arguments and returns the process exit code. Expected failures are :class:`DaemonError` and
become one readable line on stderr plus their ``exit_code``; nothing expected prints a traceback.

Exit codes: 0 ok · 1 failure (invalid/rejected input) · 2 usage or configuration error ·
3 Factus unreachable / work left pending · 4 Factus API error · 5 authentication refused ·
6 not found · 7 conflict (pending document) · 8 request refused by validation · 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from daemon import __version__, _early
from daemon.errors import DaemonError
from daemon.log import configure_logging, redact

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every sub-command registered."""
    from daemon.emulator import cli as emulator_cli
    from daemon.factus import cli as factus_cli
    from daemon.intake import cli as intake_cli
    from daemon.service import cli as service_cli

    parser = argparse.ArgumentParser(
        prog="factus-daemon",
        description="Unattended e-invoicing through Factus (DIAN, Colombia).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML settings file (default config/factus-daemon.toml)"
    )
    parser.add_argument(
        "--log-level",
        default=None,
        type=str.lower,
        choices=("debug", "info", "warning", "error"),
        help="debug, info, warning, error",
    )
    parser.add_argument(
        "--log-json", action="store_true", default=None, help="JSON log lines even on a terminal"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (service_cli, intake_cli, factus_cli, emulator_cli):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    if argv is None:  # the real process (not a test calling main([...])): see daemon._early
        _early.install()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        if argv is None:
            _early.release()
        raise
    if argv is None and args.command != "run":
        _early.release()  # only the daemon turns a start-up SIGTERM into a clean stop
    configure_logging(args.log_level or "info", json=args.log_json)
    handler: Handler = args.handler
    try:
        return handler(args)
    except DaemonError as exc:
        print(f"factus-daemon: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader has all it wanted
        _quiet_stdout()
        return 0
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRORS:
            raise
        _quiet_stdout()
        print(f"factus-daemon: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return 1


# Output that cannot be written (a full disk, a closed pipe): one line, never a traceback.
_OUTPUT_ERRORS = frozenset({errno.ENOSPC, errno.EPIPE, errno.EDQUOT, errno.EIO})


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail a second time."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
