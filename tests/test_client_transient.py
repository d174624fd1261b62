"""How far a failed create got (``TransientError.request_sent``) and exact Decimal bodies on the wire."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.emulator import EmulatorServer
from daemon.errors import TransientError
from daemon.factus import FactusClient
from daemon.money import dumps_json
from tests.test_client_emulator import invoice, settings_for, state


@pytest.fixture(name="client")
def _client(emu: EmulatorServer, tmp_path: Path) -> Iterator[FactusClient]:
    with FactusClient.from_settings(settings_for(emu.url, tmp_path, max_retries=0)) as client:
        yield client


def test_lost_answer_is_marked_as_possibly_sent(client: FactusClient, emu: EmulatorServer) -> None:
    """A connection reset after the bill is stored raises TransientError with request_sent True."""
    client.tokens.ensure_fresh()
    emu.set_faults({"reset_after_store": 1})
    with pytest.raises(TransientError) as info:
        client.create_bill(invoice("TR-LOST-1"))
    assert info.value.request_sent is True
    assert [b["reference_code"] for b in state(emu.url)["bills"]] == ["TR-LOST-1"]


def test_refused_connection_is_marked_as_not_sent(tmp_path: Path) -> None:
    """A port nobody listens on raises TransientError with request_sent False."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = settings_for(f"http://127.0.0.1:{port}", tmp_path, max_retries=0)
    with FactusClient.from_settings(settings) as client, pytest.raises(TransientError) as info:
        client.create_bill(invoice("TR-NOWHERE-1"))
    assert info.value.request_sent is False


def test_server_error_answer_leaves_request_sent_unknown(client: FactusClient, emu: EmulatorServer) -> None:
    """A 5xx answer is an answer: request_sent is None and the status code is kept."""
    client.tokens.ensure_fresh()
    emu.set_faults({"fail_next": 1, "fail_statuses": [503]})
    with pytest.raises(TransientError) as info:
        client.create_bill(invoice("TR-503-1"))
    assert info.value.request_sent is None
    assert info.value.status_code == 503


def test_decimal_money_is_sent_exactly(client: FactusClient) -> None:
    """Decimal prices and rates reach Factus as exact JSON numbers and are priced correctly."""
    payload = invoice("TR-DEC-1")
    payload["items"][0]["price"] = Decimal("11900.10")
    payload["items"][0]["discount_rate"] = Decimal("0.00")
    out = client.create_bill(payload)
    assert out.kind == "validated", out
    assert out.total == Decimal("11900.10")


def test_dumps_json_writes_exact_numbers() -> None:
    """dumps_json keeps every digit of a Decimal and refuses non-finite numbers."""
    assert (
        dumps_json({"a": Decimal("0.10"), "b": [Decimal("1E+2"), None, "x"]})
        == '{"a": 0.10, "b": [100, null, "x"]}'
    )
    with pytest.raises(ValueError):
        dumps_json(Decimal("NaN"))
