"""Shared fixtures: one Factus emulator per test session on a real loopback socket.

* ``emulator`` (session): the running :class:`~daemon.emulator.EmulatorServer` (port 0, a rate limit
  high enough never to interfere: 100000 per 60 s, tokens valid 3600 s). Do not change its state
  without going through ``emu``.
* ``emu`` (function): the same server, reset first (no bills, no tokens, no faults, fresh counters).
  Use it in every test that talks to the emulator; set faults with ``emu.set_faults({...})`` and read
  what happened with ``emu.snapshot()``.
* ``factus_env`` (function): the ``FACTUS_*`` variables pointing at the emulator, as a dict (pass it
  to ``monkeypatch.setenv`` or to a subprocess ``env``).
* ``api`` (function): a plain httpx client on ``emu``, signed in with the password grant, for tests
  that drive the v1 contract by hand; ``login(http, server)`` signs any client in.
* ``minimal_bill(reference)``: the contract's §3.5 minimal v1 invoice, a fresh dict each call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorConfig, EmulatorServer

EMULATOR_CONFIG = EmulatorConfig(port=0, rate_limit=100_000, rate_window_s=60.0, token_ttl_s=3600)


def emulator_env(server: EmulatorServer) -> dict[str, str]:
    """``FACTUS_*`` settings for a running emulator."""
    cfg = server.config
    return {
        "FACTUS_BASE_URL": server.url,
        "FACTUS_CLIENT_ID": cfg.client_id,
        "FACTUS_CLIENT_SECRET": cfg.client_secret,
        "FACTUS_USERNAME": cfg.username,
        "FACTUS_PASSWORD": cfg.password,
    }


@pytest.fixture(scope="session", name="emulator")
def _emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EMULATOR_CONFIG) as server:
        yield server


@pytest.fixture(name="emu")
def _emu(emulator: EmulatorServer) -> EmulatorServer:
    emulator.reset()
    return emulator


@pytest.fixture(name="factus_env")
def _factus_env(emu: EmulatorServer) -> dict[str, str]:
    return emulator_env(emu)


def login(http: httpx.Client, server: EmulatorServer) -> None:
    """Sign ``http`` in to ``server`` with the password grant (sets its bearer header)."""
    cfg = server.config
    token = http.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": cfg.client_id,
            "client_secret": cfg.client_secret,
            "username": cfg.username,
            "password": cfg.password,
        },
    ).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"


@pytest.fixture(name="api")
def _api(emu: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=10, headers={"Accept": "application/json"}) as http:
        login(http, emu)
        yield http


def minimal_bill(reference: str = "BATCH-2025-000001") -> dict[str, Any]:
    """The contract's §3.5 minimal invoice."""
    return {
        "reference_code": reference,
        "numbering_range_id": 8,
        "payment_form": "1",
        "payment_method_code": "10",
        "send_email": False,
        "customer": {
            "identification_document_id": 3,
            "identification": "222222222222",
            "names": "Consumidor final",
            "legal_organization_id": 2,
            "tribute_id": 21,
            "municipality_id": 980,
        },
        "items": [
            {
                "code_reference": "SKU-001",
                "name": "Producto de prueba",
                "quantity": 1,
                "discount_rate": 0,
                "price": 11900,
                "tax_rate": "19.00",
                "unit_measure_id": 70,
                "standard_code_id": 1,
                "is_excluded": 0,
                "tribute_id": 1,
            }
        ],
    }
