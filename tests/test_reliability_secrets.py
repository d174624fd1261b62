"""Secrets and permissions: a full debug-level run under auth faults never leaks a credential or token.

The emulator records every access and refresh token it hands out; the test then greps the daemon's
log, every report, reason file, PDF/XML, the ledger (with its WAL), the lookup cache and the output
of ``status --json`` for each of them, plus the client secret, the password and a wrong password
tried on the way. Only the token cache may hold tokens, and it, the ledger and the instance lock are
created owner-only (0600) even under a permissive umask.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_support import Rig, assert_once, csv_file
from service_support import invoice_rows

from daemon.emulator import EmulatorConfig, EmulatorServer

pytestmark = pytest.mark.slow

WRONG_PASSWORD = "Wr0ng-Passw0rd-for-the-leak-test"


def needles(secret: str) -> list[str]:
    """The secret itself and, for long tokens, a distinctive slice (a truncated leak counts too)."""
    out = [secret]
    if len(secret) > 64:
        tail = secret.rsplit(".", 1)[-1]  # a JWT's signature part; the whole refresh token otherwise
        out.append(tail[len(tail) // 2 : len(tail) // 2 + 24])
    return out


def haystacks(rig: Rig, extra: dict[str, bytes]) -> dict[str, bytes]:
    """Every file the daemon wrote except the token cache, plus captured outputs."""
    found: dict[str, bytes] = dict(extra)
    token_cache = (rig.var / "token.json").resolve()
    for path in rig.root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.resolve() != token_cache:
            found[str(path.relative_to(rig.root))] = path.read_bytes()
    return found


@pytest.fixture(name="server")
def _server() -> Iterator[EmulatorServer]:
    """Tokens that live 2 s, so the run goes through many logins and refreshes."""
    config = EmulatorConfig(port=0, rate_limit=100_000, duplicate_policy="create-duplicate", token_ttl_s=2)
    with EmulatorServer(config) as server:
        yield server


def test_no_secret_or_token_leaks_anywhere(tmp_path: Path, server: EmulatorServer) -> None:
    """Under 5xx, refused refreshes, revoked tokens, a wrong password, a rejection, an invalid row and
    a junk file, with the log at debug level, no secret or issued token appears in any output."""
    rig = Rig(
        tmp_path / "ws",
        server,
        factus={"rate_limit": 2000, "refresh_margin_s": 1.0, "validate_timeout_s": 1.0},
        scheduler={"retry_pending_s": 0.5, "token_check_s": 0.5},
        submit={"max_attempts": 6},
    )
    server.set_faults({"fail_rate": 0.2, "reject_refresh": 3, "reject_references": ["SC-REJ"]})
    rig.drop("sc-first.csv", ["SC-1", "SC-2"])
    wrong = dict(rig.env, FACTUS_PASSWORD=WRONG_PASSWORD)
    proc = rig.spawn("--once", "--no-progress", log_level="debug", env=wrong)
    assert proc.wait(timeout=60) == 3, rig.log_tail()  # auth refused: work waits, nothing fails
    assert rig.failed_files() == [] and list((rig.inbox / ".processing").rglob("sc-first.csv"))

    stop = threading.Event()

    def expire() -> None:
        while not stop.wait(0.6):
            server.set_faults({"expire_tokens": True})

    expirer = threading.Thread(target=expire, daemon=True)
    expirer.start()
    try:
        rig.start(log_level="debug")
        rig.drop_text(
            "sc-mixed.csv",
            csv_file(invoice_rows("SC-3") + invoice_rows("SC-REJ") + invoice_rows("SC-BAD", price="x")),
        )
        rig.drop_bytes("sc-junk.xlsx", b"PK\x03\x04 broken")
        for n in range(4):
            rig.drop(f"sc-more-{n}.csv", [f"SC-M{n}-{i}" for i in range(2)])
            stop.wait(0.7)
        rig.wait_settled(7, timeout_s=90)
        assert rig.alive(), rig.log_tail()
        assert rig.stop() == 0, rig.log_tail()
    finally:
        stop.set()
        expirer.join()
        rig.cleanup()
    assert_once(server, ["SC-1", "SC-2", "SC-3", *[f"SC-M{n}-{i}" for n in range(4) for i in range(2)]])
    argv = [sys.executable, "-m", "daemon", "--config", str(rig.config), "--log-level", "debug"]
    status = subprocess.run(
        [*argv, "status", "--json"],
        cwd=rig.root,
        env=rig.env,
        capture_output=True,
        timeout=60,
        check=True,
    )

    tokens = server.issued_tokens()
    assert len(tokens) >= 6, f"only {len(tokens) // 2} logins/refreshes happened"
    secrets = {
        "client secret": server.config.client_secret,
        "password": server.config.password,
        "wrong password": WRONG_PASSWORD,
        **{f"token #{n}": token for n, token in enumerate(tokens)},
    }
    log = rig.log()
    assert '"level": "debug"' in log and "factus_refresh_refused" in log and "Bearer" not in log
    places = haystacks(rig, {"status --json": status.stdout + status.stderr})
    assert any(name.endswith(".reason.json") for name in places) and any("ledger" in n for n in places)
    leaks = [
        (what, where)
        for what, secret in secrets.items()
        for needle in needles(secret)
        for where, data in places.items()
        if needle.encode() in data
    ]
    assert leaks == [], f"secrets found: {leaks[:10]}"
    cache = (rig.var / "token.json").read_text()
    assert any(token in cache for token in tokens), "the token cache should hold the live token"


def test_token_cache_ledger_and_lock_are_owner_only(tmp_path: Path, server: EmulatorServer) -> None:
    """Created under umask 000, the token cache, the ledger (and its WAL files) and the instance lock
    are mode 0600 and the state folder is 0700."""
    rig = Rig(tmp_path / "ws", server)
    rig.drop("perm.csv", ["PM-1"])
    old = os.umask(0)
    try:
        proc = subprocess.Popen(
            rig.command("--once", "--no-progress"), cwd=rig.root, env=rig.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, umask=0,
        )  # fmt: skip
        assert proc.wait(timeout=60) == 0
    finally:
        os.umask(old)
    assert_once(server, ["PM-1"])
    private = [rig.var / "token.json", rig.var / "ledger.sqlite3", rig.var / "ledger.sqlite3.lock"]
    private += [p for p in (rig.var / "ledger.sqlite3-wal", rig.var / "ledger.sqlite3-shm") if p.exists()]
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in private}
    assert modes == dict.fromkeys(modes, "0o600"), modes
    assert oct(stat.S_IMODE(rig.var.stat().st_mode)) == "0o700"
