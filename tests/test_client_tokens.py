"""TokenManager: grants, wall-clock renewal, single flight, refresh fallback and the 0600 token cache."""

from __future__ import annotations

import itertools
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from daemon.errors import AuthError, ConfigError, TransientError
from daemon.factus.ratelimit import RateLimiter
from daemon.factus.tokens import TokenManager
from daemon.log import redact
from daemon.settings import FactusSettings

SECRET = "client-secret-for-tokens-test"
PASSWORD = "password-for-tokens-test"


class WallClock:
    """A settable wall clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeOAuth:
    """A tiny Passport-like /oauth/token endpoint."""

    def __init__(self, *, expires_in: int = 600) -> None:
        self.expires_in = expires_in
        self.grants: list[dict[str, str]] = []
        self.seq = itertools.count(1)
        self.refresh_status = 200
        self.omit_refresh_token = False
        self.fail_next: list[int] = []
        self.delay_s = 0.0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/oauth/token"
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        with self.lock:
            self.grants.append(form)
            n = next(self.seq)
            failing = self.fail_next.pop(0) if self.fail_next else None
        if self.delay_s:
            time.sleep(self.delay_s)
        if failing:
            return httpx.Response(
                failing, json={"message": "Service Unavailable"}, headers={"Retry-After": "0"}
            )
        if form["client_secret"] != SECRET:
            return httpx.Response(
                401, json={"error": "invalid_client", "error_description": "Client authentication failed"}
            )
        if form["grant_type"] == "password" and form["password"] != PASSWORD:
            return httpx.Response(
                400,
                json={
                    "error": "invalid_grant",
                    "error_description": "The user credentials were incorrect.",
                    "message": "The user credentials were incorrect.",
                },
            )
        if form["grant_type"] == "refresh_token" and self.refresh_status != 200:
            return httpx.Response(
                self.refresh_status,
                json={"error": "invalid_request", "message": "The refresh token is invalid."},
            )
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "access_token": f"access-token-{n:04d}",
        }
        if not self.omit_refresh_token:
            body["refresh_token"] = f"def50200refresh{n:04d}"
        return httpx.Response(200, json=body)

    def count(self, grant: str) -> int:
        return sum(1 for g in self.grants if g["grant_type"] == grant)


def make_settings(tmp_path: Path, **overrides: Any) -> FactusSettings:
    values: dict[str, Any] = {
        "base_url": "http://factus.test",
        "client_id": "cid",
        "client_secret": SecretStr(SECRET),
        "username": "user@example.com",
        "password": SecretStr(PASSWORD),
        "refresh_margin_s": 60.0,
        "backoff_base_s": 0.0,
        "token_cache": tmp_path / "state" / "token.json",
    }
    values.update(overrides)
    return FactusSettings(**values)


@pytest.fixture(name="oauth")
def _oauth() -> FakeOAuth:
    return FakeOAuth()


@pytest.fixture(name="http")
def _http(oauth: FakeOAuth) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(oauth)) as client:
        yield client


def manager(settings: FactusSettings, http: httpx.Client, clock: WallClock | None = None) -> TokenManager:
    return TokenManager(
        settings, http, limiter=RateLimiter(1000, 1.0), clock=clock or WallClock(), sleep=lambda s: None
    )


class TestGrants:
    def test_login_registers_secrets_and_caches_0600(self, tmp_path: Path, http: httpx.Client) -> None:
        """Login returns a token, masks its values everywhere and writes a private cache file."""
        settings = make_settings(tmp_path)
        tokens = manager(settings, http)
        info = tokens.login()
        assert info.access_token == "access-token-0001"
        assert tokens.expires_at == pytest.approx(1_700_000_600.0)
        for secret in (SECRET, PASSWORD, info.access_token, "def50200refresh0001"):
            assert secret not in redact(f"x {secret} y")
        assert "access-token" not in repr(info)
        cache = settings.token_cache
        assert cache is not None
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600
        assert json.loads(cache.read_text())["version"] == 1

    def test_cache_reused_by_a_second_manager(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """A second run with the same account uses the cached token without a new grant."""
        settings = make_settings(tmp_path)
        manager(settings, http).login()
        again = manager(settings, http)
        assert again.access_token() == "access-token-0001"
        assert len(oauth.grants) == 1

    def test_cache_not_used_by_another_account(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """A different username (or base URL) never picks up the cached token."""
        manager(make_settings(tmp_path), http).login()
        other = manager(make_settings(tmp_path, username="other@example.com"), http)
        assert other.access_token() == "access-token-0002"
        assert oauth.count("password") == 2
        entries = json.loads((tmp_path / "state" / "token.json").read_text())["entries"]
        assert len(entries) == 2

    def test_corrupt_cache_costs_one_login(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """An unreadable cache file is ignored and replaced."""
        settings = make_settings(tmp_path)
        assert settings.token_cache is not None
        settings.token_cache.parent.mkdir(parents=True)
        settings.token_cache.write_text("{not json")
        assert manager(settings, http).access_token() == "access-token-0001"
        assert oauth.count("password") == 1

    def test_wrong_password_is_auth_error_without_secret(self, tmp_path: Path, http: httpx.Client) -> None:
        """Refused credentials raise AuthError naming the variables to check, never their values."""
        settings = make_settings(tmp_path, password=SecretStr("wrong-password-value"))
        with pytest.raises(AuthError) as info:
            manager(settings, http).login()
        assert "FACTUS_USERNAME and FACTUS_PASSWORD" in str(info.value)
        assert "wrong-password-value" not in str(info.value)
        assert info.value.exit_code == 5

    def test_wrong_client_secret_names_client_variables(self, tmp_path: Path, http: httpx.Client) -> None:
        """invalid_client points at FACTUS_CLIENT_ID and FACTUS_CLIENT_SECRET."""
        settings = make_settings(tmp_path, client_secret=SecretStr("nope-nope"))
        with pytest.raises(AuthError, match="FACTUS_CLIENT_ID and FACTUS_CLIENT_SECRET"):
            manager(settings, http).login()

    def test_missing_credentials_is_config_error(self, tmp_path: Path, http: httpx.Client) -> None:
        """An empty credential setting names the FACTUS_* variable to set."""
        settings = make_settings(tmp_path, password=SecretStr(""), client_id="")
        with pytest.raises(ConfigError, match="FACTUS_CLIENT_ID, FACTUS_PASSWORD"):
            manager(settings, http).login()

    def test_transient_token_failure_is_retried(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """A 503 from /oauth/token is retried with backoff."""
        oauth.fail_next = [503, 502]
        assert manager(make_settings(tmp_path), http).login().access_token == "access-token-0003"

    def test_transient_token_failure_exhausts(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """When /oauth/token keeps failing the last TransientError is raised."""
        oauth.fail_next = [503] * 10
        with pytest.raises(TransientError):
            manager(make_settings(tmp_path, max_retries=2), http).login()
        assert len(oauth.grants) == 3


class TestRenewal:
    def test_refresh_within_margin_by_wall_clock(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """ensure_fresh keeps the token until margin seconds before expiry, then refreshes."""
        clock = WallClock()
        tokens = manager(make_settings(tmp_path), http, clock)
        tokens.login()
        clock.now += 600 - 61
        assert tokens.access_token() == "access-token-0001"
        clock.now += 2
        assert tokens.access_token() == "access-token-0002"
        assert oauth.grants[-1]["grant_type"] == "refresh_token"
        assert oauth.grants[-1]["refresh_token"] == "def50200refresh0001"

    def test_margin_capped_for_short_tokens(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """A token shorter-lived than the margin is still used for half its life."""
        oauth.expires_in = 2
        clock = WallClock()
        tokens = manager(make_settings(tmp_path), http, clock)
        tokens.login()
        clock.now += 0.9
        assert tokens.access_token() == "access-token-0001"
        clock.now += 0.2
        assert tokens.access_token() == "access-token-0002"

    def test_refresh_keeps_previous_refresh_token(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """A refresh answer without refresh_token keeps the previous one."""
        tokens = manager(make_settings(tmp_path), http)
        tokens.login()
        oauth.omit_refresh_token = True
        tokens.refresh()
        token = tokens.token
        assert token is not None
        assert token.access_token == "access-token-0002"
        assert token.refresh_token == "def50200refresh0001"

    @pytest.mark.parametrize("status", [400, 401])
    def test_refused_refresh_falls_back_to_login(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth, status: int
    ) -> None:
        """A refresh grant refused with 400 or 401 falls back to the password grant."""
        tokens = manager(make_settings(tmp_path), http)
        tokens.login()
        oauth.refresh_status = status
        assert tokens.refresh().access_token == "access-token-0003"
        assert [g["grant_type"] for g in oauth.grants] == ["password", "refresh_token", "password"]

    def test_refresh_without_token_logs_in(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """refresh() with nothing to refresh performs a login."""
        manager(make_settings(tmp_path, token_cache=None), http).refresh()
        assert oauth.count("password") == 1

    def test_single_flight_under_threads(self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth) -> None:
        """Many threads finding the token stale trigger exactly one refresh grant."""
        clock = WallClock()
        tokens = manager(make_settings(tmp_path), http, clock)
        tokens.login()
        clock.now += 599
        oauth.delay_s = 0.05
        results: list[str] = []
        barrier = threading.Barrier(8)

        def worker() -> None:
            barrier.wait(timeout=5)
            results.append(tokens.access_token())

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=5)
        assert results == ["access-token-0002"] * 8
        assert oauth.count("refresh_token") == 1

    def test_reauthenticate_skips_when_already_replaced(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """A 401 on an old token does not renew again when another thread already did."""
        tokens = manager(make_settings(tmp_path), http)
        tokens.login()
        tokens.refresh()
        assert tokens.reauthenticate("access-token-0001").access_token == "access-token-0002"
        assert len(oauth.grants) == 2
        assert tokens.reauthenticate("access-token-0002").access_token == "access-token-0003"

    def test_stale_cache_refreshed_from_other_process(
        self, tmp_path: Path, http: httpx.Client, oauth: FakeOAuth
    ) -> None:
        """A newer token written by another process is adopted instead of refreshing again."""
        clock = WallClock()
        settings = make_settings(tmp_path)
        first = manager(settings, http, clock)
        first.login()
        second = manager(settings, http, clock)
        clock.now += 590
        assert first.access_token() == "access-token-0002"  # refreshes and rewrites the cache
        assert second.access_token() == "access-token-0002"  # reads it, no third grant
        assert len(oauth.grants) == 2
