"""``factus-daemon emulator`` as a real subprocess: URL on the first line, clean stop on signals."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", "emulator", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(proc: subprocess.Popen[str], timeout_s: float = 15) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, "the emulator printed nothing"
    return proc.stdout.readline().strip()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_prints_url_first_and_stops_cleanly(signum: signal.Signals) -> None:
    """Port 0 prints the real URL as the first line; SIGTERM/SIGINT exit 0."""
    proc = _start("--port", "0", "--rate-limit", "5", "--duplicate-policy", "conflict")
    try:
        url = _first_line(proc)
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        r = httpx.get(url + "/v1/unknown", timeout=5)
        assert r.status_code == 404
        state = httpx.get(url + "/__emulator__/state", timeout=5).json()
        assert state["rate_limit"]["limit"] == 5
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert "factus-emulator-secret" not in stderr and "sandbox2024%" not in stderr


def test_bad_option_is_a_config_error() -> None:
    """An invalid option value exits 2 with a one-line message."""
    proc = _start("--port", "0", "--fail-rate", "3")
    _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 2
    assert "fail_rate" in err and "Traceback" not in err


def _municipality_ids(url: str) -> set[int]:
    with httpx.Client(base_url=url, timeout=10) as http:
        token = http.post(
            "/oauth/token",
            data={
                "grant_type": "password",
                "client_id": "factus-emulator",
                "client_secret": "factus-emulator-secret",
                "username": "sandbox@factus.com.co",
                "password": "sandbox2024%",
            },
        ).json()["access_token"]
        rows = http.get("/v1/municipalities", headers={"Authorization": f"Bearer {token}"}).json()["data"]
    return {row["id"] for row in rows}


def _serve_and_read(*args: str, env: dict[str, str] | None = None) -> set[int]:
    proc = _start("--port", "0", *args, env=env)
    try:
        return _municipality_ids(_first_line(proc))
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_full_tables_come_from_a_tables_folder(tmp_path: Path) -> None:
    """--tables-dir (or $FACTUS_EMULATOR_TABLES) serves a full published table, ids by row order;
    --builtin-tables keeps the built-in subset; a folder without any table is a usage error."""
    rows = [
        {"code": f"{i:05d}", "name": f"M{i}", "department": {"code": "01", "name": "D"}}
        for i in range(1, 1123)
    ]
    (tmp_path / "municipalities.json").write_text(json.dumps({"municipalities": rows}), encoding="utf-8")
    assert _serve_and_read("--tables-dir", str(tmp_path)) == set(range(1, 1123))
    assert _serve_and_read(env={"FACTUS_EMULATOR_TABLES": str(tmp_path)}) == set(range(1, 1123))
    builtin = _serve_and_read("--tables-dir", str(tmp_path), "--builtin-tables")
    assert 980 in builtin and len(builtin) < 100
    proc = _start("--port", "0", "--tables-dir", str(tmp_path / "nothing"))
    _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 2 and "none of municipalities.json" in err
