"""FactusClient against the running emulator over real sockets: every operation, tokens and faults."""

from __future__ import annotations

import json
import stat
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from daemon.emulator import EmulatorConfig, EmulatorServer
from daemon.errors import ApiValidationError, AuthError, ConflictError, NotFoundError, TransientError
from daemon.factus import FactusClient, RateLimiter
from daemon.settings import FactusSettings
from tests.conftest import minimal_bill

DEFAULTS = EmulatorConfig()


def invoice(reference: str, **changes: Any) -> dict[str, Any]:
    """The minimal v1 invoice of the contract with another reference code."""
    payload = minimal_bill(reference)
    payload.update(changes)
    return payload


def nit_customer(dv: str) -> dict[str, Any]:
    """A legal-entity customer with NIT 900123456 (correct DV 8)."""
    return {
        "identification_document_id": 6,
        "identification": "900123456",
        "dv": dv,
        "company": "Enigma S.A.S.",
        "legal_organization_id": 1,
        "tribute_id": 18,
        "municipality_id": 980,
    }


def settings_for(url: str, tmp_path: Path, **overrides: Any) -> FactusSettings:
    """Client settings pointed at an emulator with its default credentials."""
    values: dict[str, Any] = {
        "base_url": url,
        "client_id": DEFAULTS.client_id,
        "client_secret": SecretStr(DEFAULTS.client_secret),
        "username": DEFAULTS.username,
        "password": SecretStr(DEFAULTS.password),
        "token_cache": tmp_path / "var" / "token.json",
        "backoff_base_s": 0.01,
        "backoff_max_s": 5.0,
        "timeout_s": 10.0,
    }
    values.update(overrides)
    return FactusSettings(**values)


def state(url: str) -> dict[str, Any]:
    """The emulator's control-state document."""
    answer = httpx.get(f"{url}/__emulator__/state", timeout=5).json()
    assert isinstance(answer, dict)
    return answer


def route_count(url: str, route: str) -> int:
    """How many requests the emulator counted on one route (``"POST /oauth/token"``)."""
    return int(state(url)["requests"]["by_route"].get(route, 0))


@pytest.fixture(name="url")
def _url(emu: EmulatorServer) -> str:
    return emu.url


@pytest.fixture(name="client")
def _client(url: str, tmp_path: Path) -> Iterator[FactusClient]:
    with FactusClient.from_settings(settings_for(url, tmp_path)) as client:
        yield client


class TestOperations:
    def test_create_validated_and_read_back(self, client: FactusClient, url: str) -> None:
        """A valid invoice is validated; list, find, show and the state agree on it."""
        out = client.create_bill(invoice("EMU-OK-1"))
        assert out.kind == "validated", out
        assert out.http_status == 201 and out.status == 1
        assert out.number is not None and out.number.startswith("SETP")
        assert out.cufe is not None and len(out.cufe) == 96
        assert out.qr is not None and out.cufe in out.qr
        assert out.total == Decimal("11900.00")
        assert isinstance(out.bill_id, int)

        found = client.find_bill("EMU-OK-1")
        assert found is not None and found["number"] == out.number
        assert client.find_bill("EMU-OK") is None  # the server filter may be partial; ours is exact

        page = client.list_bills(reference_code="EMU-OK-1")
        assert page.total >= 1 and page.items[0]["reference_code"] == "EMU-OK-1"
        assert client.list_bills(number=out.number).items[0]["number"] == out.number
        assert client.list_bills(status=1).total >= 1

        shown = client.show_bill(out.number)
        assert shown["bill"]["cufe"] == out.cufe
        assert shown["bill"]["total"] == "11900.00"
        assert shown["bill"]["taxable_amount"] == "10000.00"
        assert {b["reference_code"] for b in state(url)["bills"]} == {"EMU-OK-1"}

    def test_downloads_email_and_events(self, client: FactusClient) -> None:
        """PDF and XML downloads decode to real documents; e-mail and RADIAN events work."""
        out = client.create_bill(
            invoice("EMU-DOCS-1", payment_form="2", payment_due_date="2030-12-31", payment_method_code="47")
        )
        assert out.kind == "validated" and out.number and out.cufe
        pdf = client.download_pdf(out.number)
        assert pdf.file_name.endswith(".pdf") and pdf.content.startswith(b"%PDF")
        xml = client.download_xml(out.number)
        assert xml.file_name.endswith(".xml")
        root = ET.fromstring(xml.content)
        assert out.cufe.encode() in xml.content and root.tag.endswith("Invoice")

        content = client.email_content(out.number)
        assert out.number in content.subject and content.attachment.startswith(b"PK")
        assert "enviada" in client.send_email(out.number, "cliente@example.com")

        assert client.radian_events(out.number) == []
        person = {
            "identification_document_code": "13",
            "identification": "1399991",
            "first_name": "Ana",
            "last_name": "Pérez",
        }
        events = client.emit_radian_event(out.number, "030", person)
        assert isinstance(events, list) and events[0]["event_code"] == "030"
        assert [e["event_code"] for e in client.radian_events(out.number)] == ["030"]

    def test_delete_pending_and_not_found(self, client: FactusClient, emu: EmulatorServer) -> None:
        """A DIAN-pending bill can be deleted by reference; an unknown reference is NotFoundError."""
        emu.set_faults({"dian_timeout": 1})
        out = client.create_bill(invoice("EMU-DEL-1"))
        assert out.kind == "dian_pending" and out.status == 0 and not out.rules
        assert "eliminado" in client.delete_bill("EMU-DEL-1")
        assert client.find_bill("EMU-DEL-1") is None
        with pytest.raises(NotFoundError, match="EMU-DEL-1"):
            client.delete_bill("EMU-DEL-1")

    def test_delete_validated_is_refused(self, client: FactusClient) -> None:
        """A validated bill cannot be deleted (409 or 422, both refusals)."""
        assert client.create_bill(invoice("EMU-DEL-2")).kind == "validated"
        with pytest.raises((ConflictError, ApiValidationError)) as info:
            client.delete_bill("EMU-DEL-2")
        assert "validado" in str(info.value)

    def test_dian_timeout_then_resend_validates(self, client: FactusClient, emu: EmulatorServer) -> None:
        """A DIAN time-out is dian_pending; resending the same payload validates the same bill."""
        emu.set_faults({"dian_timeout_references": ["EMU-TO-1"]})
        first = client.create_bill(invoice("EMU-TO-1"))
        assert first.kind == "dian_pending"
        second = client.create_bill(invoice("EMU-TO-1"))
        assert second.kind == "validated" and second.number == first.number

    def test_wrong_dv_rejected_blocks_then_delete_unblocks(self, client: FactusClient) -> None:
        """FAK24 is a rejection; it blocks later creates with 409 until deleted by reference."""
        bad = client.create_bill(invoice("EMU-DV-1", customer=nit_customer("3")))
        assert bad.kind == "rejected" and bad.http_status == 422
        assert list(bad.rules) == ["FAK24"] and "Rechazo" in bad.rules["FAK24"]
        blocked = client.create_bill(invoice("EMU-DV-2"))
        assert blocked.kind == "conflict" and blocked.http_status == 409
        assert "pendiente" in blocked.message
        client.delete_bill("EMU-DV-1")
        assert client.create_bill(invoice("EMU-DV-2", customer=nit_customer("8"))).kind == "validated"

    def test_rejected_by_dian_rule_fault(self, client: FactusClient, emu: EmulatorServer) -> None:
        """A DIAN rejection fault yields a rejected outcome with its rule."""
        emu.set_faults({"reject_references": {"EMU-REJ-1": "FAJ43b"}})
        out = client.create_bill(invoice("EMU-REJ-1"))
        assert out.kind == "rejected" and "FAJ43b" in out.rules

    def test_field_errors_are_invalid_and_not_retried(self, client: FactusClient, url: str) -> None:
        """A payload with field errors is invalid (422) after exactly one POST."""
        payload = invoice("EMU-BAD-1")
        del payload["items"][0]["name"]
        payload["customer"]["identification"] = ""
        out = client.create_bill(payload)
        assert out.kind == "invalid" and out.http_status == 422
        assert any("items.0.name" in key for key in out.field_errors)
        assert route_count(url, "POST /v1/bills/validate") == 1

    def test_lookups(self, client: FactusClient) -> None:
        """Every lookup answers with the seeded tables."""
        ranges = client.numbering_ranges()
        assert any(r["id"] == 8 and r["prefix"] == "SETP" for r in ranges)
        assert client.numbering_range(8)["prefix"] == "SETP"
        assert client.numbering_ranges(is_active=True)
        san_gil = client.municipalities("San Gil")
        assert [(m["id"], m["code"]) for m in san_gil] == [(980, "68679")]
        assert any(m["code"] == "11001" for m in client.municipalities("bogota"))
        assert len(client.municipalities()) > 30
        assert any(t["id"] == 1 and t["code"] == "01" for t in client.tributes())
        assert any(u["id"] == 70 and u["code"] == "94" for u in client.measurement_units())
        assert any(c["id"] == 46 and c["code"] == "CO" for c in client.countries("colombia"))
        acquirer = client.acquirer(3, "1399991")
        assert acquirer["name"]
        with pytest.raises(NotFoundError):
            client.numbering_range(999_999)


class TestTokens:
    def test_cache_0600_reused_by_second_client(self, url: str, tmp_path: Path) -> None:
        """A second client (a cron run) reuses the cached token: no new login on the server."""
        settings = settings_for(url, tmp_path)
        with FactusClient.from_settings(settings) as first:
            first.countries()
        assert settings.token_cache is not None
        assert stat.S_IMODE(settings.token_cache.stat().st_mode) == 0o600
        assert route_count(url, "POST /oauth/token") == 1
        with FactusClient.from_settings(settings) as second:
            second.countries()
            assert second.tokens.logins == 0
        assert route_count(url, "POST /oauth/token") == 1

    def test_cached_token_unknown_to_server_recovers(
        self, url: str, tmp_path: Path, emu: EmulatorServer
    ) -> None:
        """A cached token the server forgot (restart) gets one 401, a refused refresh, then a login."""
        settings = settings_for(url, tmp_path)
        with FactusClient.from_settings(settings) as first:
            first.countries()
        emu.reset()
        with FactusClient.from_settings(settings) as second:
            assert second.countries()
            assert (second.tokens.logins, second.tokens.refreshes) == (1, 0)
        snap = emu.snapshot()["requests"]
        assert snap["by_status"].get("401") == 1
        assert snap["by_route"]["POST /oauth/token"] == 2  # refused refresh + login

    def test_expired_tokens_mid_run_reauth_once(
        self, client: FactusClient, emu: EmulatorServer, url: str
    ) -> None:
        """When the server expires every token, the next call gets one 401, re-authenticates and succeeds."""
        with capture_logs() as logs:
            client.countries()
            first = client.tokens.token
            emu.set_faults({"expire_tokens": True})
            before = state(url)["requests"]["by_status"].get("401", 0)
            assert client.create_bill(invoice("EMU-EXP-1")).kind == "validated"
        after = state(url)["requests"]
        assert after["by_status"].get("401", 0) - before == 1
        assert after["by_route"]["POST /v1/bills/validate"] == 2
        second = client.tokens.token
        assert first is not None and second is not None and second.access_token != first.access_token
        assert any(e["event"] == "factus_reauthenticate" for e in logs)
        dump = json.dumps(logs, default=str)
        for secret in (DEFAULTS.client_secret, DEFAULTS.password, first.access_token, second.access_token):
            assert secret not in dump
        for refresh in (first.refresh_token, second.refresh_token):
            assert refresh and refresh not in dump

    def test_rejected_refresh_falls_back_to_login(
        self, url: str, tmp_path: Path, emu: EmulatorServer
    ) -> None:
        """A refused refresh grant falls back to the password grant and the call succeeds."""
        wall = [time.time()]
        settings = settings_for(url, tmp_path, token_cache=None)
        with FactusClient(settings, clock=lambda: wall[0]) as client:
            client.countries()
            emu.set_faults({"reject_refresh": True})
            wall[0] += 10 * 3600  # past our view of expiry: renew proactively
            client.countries()
            assert client.tokens.logins == 2 and client.tokens.refreshes == 0
        assert route_count(url, "POST /oauth/token") == 3  # login, refused refresh, login

    def test_proactive_refresh_uses_refresh_grant(self, url: str, tmp_path: Path) -> None:
        """Near expiry by the wall clock the client refreshes before the server would refuse."""
        wall = [time.time()]
        settings = settings_for(url, tmp_path, token_cache=None)
        with FactusClient(settings, clock=lambda: wall[0]) as client:
            client.countries()
            wall[0] += DEFAULTS.token_ttl_s - 30
            client.countries()
            assert (client.tokens.logins, client.tokens.refreshes) == (1, 1)

    def test_short_lived_tokens_over_a_run(self, tmp_path: Path) -> None:
        """With a 1 s token lifetime on the server a run of calls keeps working through renewals."""
        config = EmulatorConfig(port=0, token_ttl_s=1)
        server = EmulatorServer(config).start()
        try:
            settings = settings_for(server.url, tmp_path, token_cache=None, refresh_margin_s=0.3)
            with FactusClient.from_settings(settings) as client:
                deadline = time.monotonic() + 1.6
                calls = 0
                while time.monotonic() < deadline:
                    client.countries()
                    calls += 1
                    time.sleep(0.1)
                assert calls >= 10
                assert client.tokens.refreshes + client.tokens.logins >= 2
        finally:
            server.stop()

    def test_wrong_password_is_auth_error(self, url: str, tmp_path: Path) -> None:
        """Wrong credentials raise AuthError and never put the password in the message."""
        settings = settings_for(url, tmp_path, password=SecretStr("definitely-wrong-pw"))
        with FactusClient.from_settings(settings) as client, pytest.raises(AuthError) as info:
            client.countries()
        assert "definitely-wrong-pw" not in str(info.value)

    def test_concurrent_calls_share_one_login(self, url: str, tmp_path: Path) -> None:
        """Eight threads starting at once perform a single password grant."""
        with FactusClient.from_settings(settings_for(url, tmp_path, token_cache=None)) as client:
            errors: list[BaseException] = []

            def work() -> None:
                try:
                    client.countries()
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=work) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=10)
            assert not errors
        assert route_count(url, "POST /oauth/token") == 1


class TestFaults:
    def test_burst_429_honours_retry_after(self, client: FactusClient, emu: EmulatorServer, url: str) -> None:
        """A 429 with Retry-After makes the client wait that long, then succeed."""
        client.countries()
        emu.set_faults({"burst_429": 1, "retry_after_s": 1})
        start = time.monotonic()
        assert client.countries()
        assert time.monotonic() - start >= 0.9
        assert state(url)["requests"]["429"] == 1

    def test_5xx_retried_on_get(self, client: FactusClient, emu: EmulatorServer, url: str) -> None:
        """GETs survive a run of 500/502/503 answers."""
        client.countries()
        emu.set_faults({"fail_next": 3})
        assert client.countries()
        assert route_count(url, "GET /v1/countries") == 5

    def test_5xx_not_retried_on_validate(self, client: FactusClient, emu: EmulatorServer, url: str) -> None:
        """A 5xx on POST validate is raised as TransientError after a single POST."""
        client.countries()
        emu.set_faults({"fail_next": 1})
        with pytest.raises(TransientError):
            client.create_bill(invoice("EMU-5XX-1"))
        assert route_count(url, "POST /v1/bills/validate") == 1
        assert client.find_bill("EMU-5XX-1") is None

    def test_reset_after_store_then_reconcile(self, client: FactusClient, emu: EmulatorServer) -> None:
        """A connection reset after the bill was stored is transient; find_bill then finds it."""
        emu.set_faults({"reset_after_references": ["EMU-RST-1"]})
        with pytest.raises(TransientError):
            client.create_bill(invoice("EMU-RST-1"))
        found = client.find_bill("EMU-RST-1")
        assert found is not None and found["status"] == 1

    def test_reset_before_store_leaves_nothing(self, client: FactusClient, emu: EmulatorServer) -> None:
        """A connection reset before storing is transient and leaves no bill behind."""
        emu.set_faults({"reset_before_references": ["EMU-RST-2"]})
        with pytest.raises(TransientError):
            client.create_bill(invoice("EMU-RST-2"))
        assert client.find_bill("EMU-RST-2") is None

    def test_shared_limiter_paces_requests(self, url: str, tmp_path: Path) -> None:
        """Two clients sharing a 5-per-0.5 s limiter never exceed it (and the server never says 429)."""
        limiter = RateLimiter(5, 0.5)
        settings = settings_for(url, tmp_path, token_cache=None)
        with (
            FactusClient.from_settings(settings, rate_limiter=limiter) as a,
            FactusClient.from_settings(settings, rate_limiter=limiter) as b,
        ):
            start = time.monotonic()
            for _ in range(4):
                a.countries()
                b.countries()
            elapsed = time.monotonic() - start
        # 10 requests (8 + 2 logins) at 5 per 0.5 s need at least one full window of waiting.
        assert elapsed >= 0.5
        assert state(url)["requests"]["429"] == 0
