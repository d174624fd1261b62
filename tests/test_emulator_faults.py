"""Emulator faults, rate limiting and control endpoints, observed over real sockets."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorConfig, EmulatorServer, FaultError, serve
from tests.conftest import login


def bill(reference: str) -> dict[str, Any]:
    """A small valid v1 bill."""
    return {
        "reference_code": reference,
        "send_email": False,
        "customer": {
            "identification_document_id": 3,
            "identification": "222222222222",
            "names": "Consumidor final",
            "legal_organization_id": 2,
            "tribute_id": 21,
        },
        "items": [
            {
                "code_reference": "SKU-1",
                "name": "Producto",
                "quantity": 1,
                "discount_rate": 0,
                "price": 1190,
                "tax_rate": "19.00",
                "unit_measure_id": 70,
                "standard_code_id": 1,
                "is_excluded": 0,
                "tribute_id": 1,
            }
        ],
    }


class TestRateLimit:
    def test_headers_then_429_with_retry_after(self) -> None:
        """Every business answer carries X-RateLimit-*; past the limit 429 + Retry-After, not counted."""
        with (
            EmulatorServer(EmulatorConfig(port=0, rate_limit=3, rate_window_s=60)) as server,
            httpx.Client(base_url=server.url, timeout=10) as http,
        ):
            login(http, server)
            remaining = [http.get("/v1/countries").headers["X-RateLimit-Remaining"] for _ in range(3)]
            assert remaining == ["2", "1", "0"]
            r = http.get("/v1/countries")
            assert r.status_code == 429
            assert r.json() == {"message": "Too Many Attempts."}
            assert 55 <= int(r.headers["Retry-After"]) <= 60
            assert r.headers["X-RateLimit-Limit"] == "3"
            assert r.headers["X-RateLimit-Remaining"] == "0"
            assert int(r.headers["X-RateLimit-Reset"]) >= time.time() + 50
            assert server.snapshot()["requests"]["429"] == 1
            assert http.get("/__emulator__/state").status_code == 200  # control is never limited

    def test_window_reopens(self) -> None:
        """After the window passes the budget is whole again."""
        with (
            EmulatorServer(EmulatorConfig(port=0, rate_limit=1, rate_window_s=0.3)) as server,
            httpx.Client(base_url=server.url, timeout=10) as http,
        ):
            login(http, server)
            assert http.get("/v1/countries").status_code == 200
            assert http.get("/v1/countries").status_code == 429
            time.sleep(0.35)
            assert http.get("/v1/countries").status_code == 200

    def test_burst_429(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """``burst_429`` answers the next N business requests with 429 and the chosen Retry-After."""
        emu.set_faults({"burst_429": 2, "retry_after_s": 3})
        for _ in range(2):
            r = api.get("/v1/bills")
            assert (r.status_code, r.headers["Retry-After"]) == (429, "3")
        assert api.get("/v1/bills").status_code == 200
        assert emu.snapshot()["faults"]["burst_429"] == 0


class TestFailures:
    def test_fail_next_cycles_statuses(self, api: httpx.Client) -> None:
        """``fail_next`` fails the next requests with 500, 502 (HTML body) and 503, then recovers."""
        api.post("/__emulator__/faults", json={"fail_next": 3})
        first, second, third = (api.get("/v1/bills") for _ in range(3))
        assert (first.status_code, first.json()) == (500, {"message": "Server Error"})
        assert second.status_code == 502 and second.headers["Content-Type"].startswith("text/html")
        assert third.status_code == 503
        assert api.get("/v1/bills").status_code == 200

    def test_fail_rate_and_null_restores_default(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """``fail_rate`` 1 fails every call with ``fail_statuses``; null restores the default."""
        emu.set_faults({"fail_rate": 1.0, "fail_statuses": [503]})
        assert api.post("/v1/bills/validate", json=bill("F-1")).status_code == 503
        assert emu.snapshot()["bills"] == []
        emu.set_faults({"fail_rate": None})
        assert api.post("/v1/bills/validate", json=bill("F-1")).status_code == 201

    def test_fractional_rates_set_over_http(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """Rates posted to the control endpoint as JSON fractions apply (they were refused as Decimal)."""
        body = {"fail_rate": 0.15, "reset_after_store_rate": 0.25, "latency_ms": 1.5}
        r = api.post("/__emulator__/faults", json=body)
        assert r.status_code == 200, r.text
        faults = emu.snapshot()["faults"]
        assert (faults["fail_rate"], faults["reset_after_store_rate"]) == (0.15, 0.25)
        assert api.post("/__emulator__/faults", json={"fail_rate": 1.5}).status_code == 400
        api.post(
            "/__emulator__/faults", json={"fail_rate": None, "reset_after_store_rate": None, "latency_ms": 0}
        )

    def test_fail_references(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """A reference in ``fail_references`` fails once with its status and stores nothing."""
        emu.set_faults({"fail_references": {"FR-1": 502}})
        assert api.post("/v1/bills/validate", json=bill("FR-2")).status_code == 201
        assert api.post("/v1/bills/validate", json=bill("FR-1")).status_code == 502
        assert [b["reference_code"] for b in emu.snapshot()["bills"]] == ["FR-2"]
        assert api.post("/v1/bills/validate", json=bill("FR-1")).status_code == 201

    def test_latency(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """``latency_ms`` delays answers by at least that much."""
        emu.set_faults({"latency_ms": 150, "latency_jitter_ms": 20})
        started = time.perf_counter()
        assert api.get("/v1/countries").status_code == 200
        assert time.perf_counter() - started >= 0.15

    def test_bad_fault_bodies_are_refused(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """Unknown keys and wrong types answer 400 (HTTP) or raise FaultError (API); nothing changes."""
        r = api.post("/__emulator__/faults", json={"fail_rat": 1})
        assert r.status_code == 400 and "fail_rat" in r.json()["message"]
        assert api.post("/__emulator__/faults", json={"fail_rate": 2}).status_code == 400
        with pytest.raises(FaultError):
            emu.set_faults({"burst_429": "many"})
        assert emu.snapshot()["faults"]["fail_rate"] == 0.0


class TestConnectionResets:
    def test_reset_before_store_leaves_nothing(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """``reset_before_store`` drops the connection with no answer and stores no bill."""
        emu.set_faults({"reset_before_store": 1})
        with pytest.raises(httpx.TransportError):
            api.post("/v1/bills/validate", json=bill("RB-1"))
        state = emu.snapshot()
        assert state["bills"] == []
        assert state["numbering_ranges"]["8"] == 990000001
        assert state["requests"]["by_status"]["reset"] == 1
        assert api.post("/v1/bills/validate", json=bill("RB-1")).status_code == 201

    def test_reset_after_store_loses_the_answer(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """``reset_after_store`` stores the bill, then resets: the client errs but the bill exists."""
        emu.set_faults({"reset_after_references": ["RA-1"]})
        assert api.post("/v1/bills/validate", json=bill("OTHER")).status_code == 201
        with pytest.raises(httpx.TransportError):
            api.post("/v1/bills/validate", json=bill("RA-1"))
        stored = {b["reference_code"]: b for b in emu.snapshot()["bills"]}
        assert stored["RA-1"]["status"] == 1
        found = api.get("/v1/bills", params={"filter[reference_code]": "RA-1"}).json()["data"]["data"]
        assert [row["number"] for row in found] == [stored["RA-1"]["number"]]

    def test_reset_rate(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """A reset probability of 1 drops every create until it is switched off."""
        emu.set_faults({"reset_after_store_rate": 1.0})
        for ref in ("RR-1", "RR-2"):
            with pytest.raises(httpx.TransportError):
                api.post("/v1/bills/validate", json=bill(ref))
        emu.set_faults({"reset_after_store_rate": 0})
        assert len(emu.snapshot()["bills"]) == 2


class TestControl:
    def test_state_document(self, api: httpx.Client) -> None:
        """``GET /__emulator__/state`` reports bills, pending, request counters and faults."""
        api.post("/v1/bills/validate", json=bill("ST-1"))
        api.get("/v1/bills/show/NOPE")
        state = httpx.get(str(api.base_url) + "/__emulator__/state", timeout=5).json()
        assert [(b["reference_code"], b["status"]) for b in state["bills"]] == [("ST-1", 1)]
        assert len(state["bills"][0]["cufe"]) == 96 and state["bills"][0]["number"] == "SETP990000001"
        assert state["pending"] == []
        requests = state["requests"]
        assert requests["validate"] == 1 and requests["total"] == 3
        assert requests["by_route"]["GET /v1/bills/show/{number}"] == 1
        assert requests["by_status"] == {"200": 1, "201": 1, "404": 1}
        assert set(state["faults"]) >= {"latency_ms", "fail_rate", "burst_429", "dian_timeout"}

    def test_reset_clears_bills_tokens_and_faults(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """``POST /__emulator__/reset`` forgets bills, tokens, counters and faults."""
        api.post("/v1/bills/validate", json=bill("RS-1"))
        api.post("/__emulator__/faults", json={"latency_ms": 5})
        assert api.post("/__emulator__/reset").status_code == 200
        state = emu.snapshot()
        assert state["bills"] == [] and state["requests"]["total"] == 0
        assert state["faults"]["latency_ms"] == 0
        assert api.get("/v1/bills").status_code == 401

    def test_faults_merge(self, emu: EmulatorServer) -> None:
        """Fault bodies merge: untouched keys keep their values, ``clear`` restores every default."""
        emu.set_faults({"latency_ms": 1, "dian_timeout": 2})
        active = emu.set_faults({"dian_timeout_references": {"A": 2}})
        assert (active["latency_ms"], active["dian_timeout"], active["dian_timeout_references"]) == (
            1,
            2,
            {"A": 2},
        )
        cleared = emu.set_faults({"clear": True, "burst_429": 1})
        assert (cleared["latency_ms"], cleared["dian_timeout"], cleared["burst_429"]) == (0, 0, 1)


def test_serve_blocks_until_stopped() -> None:
    """``serve`` announces its URL, answers, and returns 0 once the stop event is set."""
    stop = threading.Event()
    urls: list[str] = []
    result: list[int] = []
    ready = threading.Event()

    def announce(url: str) -> None:
        urls.append(url)
        ready.set()

    thread = threading.Thread(
        target=lambda: result.append(serve(EmulatorConfig(port=0), ready=announce, stop_event=stop))
    )
    thread.start()
    try:
        assert ready.wait(5)
        assert httpx.get(urls[0] + "/__emulator__/state", timeout=5).status_code == 200
    finally:
        stop.set()
        thread.join(timeout=5)
    assert result == [0]


def test_reset_is_a_tcp_rst(api: httpx.Client, emu: EmulatorServer) -> None:
    """A reset fault aborts the socket (RST, no bytes), as a crashed peer or proxy would."""
    emu.set_faults({"reset_before_store": 1})
    body = json.dumps(bill("RST-RAW")).encode()
    host, port = emu.url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/bills/validate HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {api.headers['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + body)
        with pytest.raises(ConnectionResetError):
            while sock.recv(4096):
                pass


def test_chunked_request_body(api: httpx.Client) -> None:
    """A chunked request body (no Content-Length) is read correctly on a keep-alive connection."""
    payload = json.dumps(bill("CHUNK-1")).encode()
    chunks = iter([payload[:10], payload[10:]])
    r = api.post("/v1/bills/validate", content=chunks, headers={"Content-Type": "application/json"})
    assert r.status_code == 201
    assert api.get("/v1/bills").json()["data"]["pagination"]["total"] == 1
