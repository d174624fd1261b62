"""Emulator OAuth: both grants, Passport-shaped refusals, token expiry and the auth faults."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from daemon.emulator import EmulatorConfig, EmulatorServer


def _creds(server: EmulatorServer, **overrides: str) -> dict[str, str]:
    cfg = server.config
    data = {
        "grant_type": "password",
        "client_id": cfg.client_id,
        "client_secret": cfg.client_secret,
        "username": cfg.username,
        "password": cfg.password,
    }
    data.update(overrides)
    return data


@pytest.fixture(name="http")
def _http(emu: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=10, headers={"Accept": "application/json"}) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestPasswordGrant:
    def test_form_login_returns_jwt(self, http: httpx.Client, emu: EmulatorServer) -> None:
        """A form-encoded password grant answers 200 with a JWT access token and a def50200 refresh."""
        r = http.post("/oauth/token", data=_creds(emu))
        assert r.status_code == 200
        body = r.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert body["refresh_token"].startswith("def50200")
        _header, claims, signature = body["access_token"].split(".")
        decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        assert decoded["aud"] == emu.config.client_id
        assert decoded["exp"] - decoded["iat"] == 3600
        assert signature
        assert http.get("/v1/municipalities", headers=_bearer(body["access_token"])).status_code == 200

    def test_json_and_multipart_bodies_are_accepted(self, http: httpx.Client, emu: EmulatorServer) -> None:
        """The token endpoint also parses JSON and multipart/form-data bodies."""
        assert http.post("/oauth/token", json=_creds(emu)).status_code == 200
        files = {key: (None, value) for key, value in _creds(emu).items()}
        assert http.post("/oauth/token", files=files).status_code == 200

    def test_client_credentials_in_basic_auth(self, http: httpx.Client, emu: EmulatorServer) -> None:
        """The client id and secret may come in an HTTP Basic header instead of the body."""
        data = {k: v for k, v in _creds(emu).items() if k not in ("client_id", "client_secret")}
        auth = (emu.config.client_id, emu.config.client_secret)
        assert http.post("/oauth/token", data=data, auth=auth).status_code == 200
        assert http.post("/oauth/token", data=data, auth=("x", "y")).status_code == 401

    def test_wrong_password_is_invalid_grant_400(self, http: httpx.Client, emu: EmulatorServer) -> None:
        """Wrong user credentials answer 400 invalid_grant like Passport."""
        r = http.post("/oauth/token", data=_creds(emu, password="nope"))
        assert r.status_code == 400
        assert r.json() == {
            "error": "invalid_grant",
            "error_description": "The user credentials were incorrect.",
            "message": "The user credentials were incorrect.",
        }

    def test_wrong_client_secret_is_invalid_client_401(self, http: httpx.Client, emu: EmulatorServer) -> None:
        """A wrong client secret answers 401 invalid_client."""
        r = http.post("/oauth/token", data=_creds(emu, client_secret="bad"))
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_client"
        assert r.json()["message"] == "Client authentication failed"

    def test_unsupported_grant_and_missing_fields(self, http: httpx.Client, emu: EmulatorServer) -> None:
        """An unknown grant type and a missing username both answer 400 with an OAuth error code."""
        r = http.post("/oauth/token", data=_creds(emu, grant_type="client_credentials"))
        assert (r.status_code, r.json()["error"]) == (400, "unsupported_grant_type")
        r = http.post("/oauth/token", data=_creds(emu, username=""))
        assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
        r = http.post("/oauth/token", data=_creds(emu, grant_type="refresh_token"))  # no refresh_token
        assert (r.status_code, r.json()["hint"]) == (400, "Check the `refresh_token` parameter")

    def test_business_call_without_token_is_401(self, http: httpx.Client) -> None:
        """Missing or unknown bearer tokens answer 401 Unauthenticated."""
        r = http.get("/v1/bills")
        assert (r.status_code, r.json()) == (401, {"message": "Unauthenticated."})
        r = http.get("/v1/bills", headers=_bearer("not-a-token"))
        assert r.status_code == 401


class TestRefreshGrant:
    def test_refresh_rotates_and_old_refresh_token_dies(
        self, http: httpx.Client, emu: EmulatorServer
    ) -> None:
        """A refresh grant issues a new pair; the used refresh token and its access token stop working."""
        first = http.post("/oauth/token", data=_creds(emu)).json()
        refresh = {
            "grant_type": "refresh_token",
            "client_id": emu.config.client_id,
            "client_secret": emu.config.client_secret,
            "refresh_token": first["refresh_token"],
        }
        r = http.post("/oauth/token", data=refresh)
        assert r.status_code == 200
        second = r.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert http.get("/v1/bills", headers=_bearer(second["access_token"])).status_code == 200
        assert http.get("/v1/bills", headers=_bearer(first["access_token"])).status_code == 401
        again = http.post("/oauth/token", data=refresh)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        assert again.json()["message"] == "The refresh token is invalid."

    def test_reject_refresh_fault(self, http: httpx.Client, emu: EmulatorServer) -> None:
        """With ``reject_refresh`` the refresh grant fails while the password grant still works."""
        tokens = http.post("/oauth/token", data=_creds(emu)).json()
        emu.set_faults({"reject_refresh": True})
        refresh = {
            "grant_type": "refresh_token",
            "client_id": emu.config.client_id,
            "client_secret": emu.config.client_secret,
            "refresh_token": tokens["refresh_token"],
        }
        assert http.post("/oauth/token", data=refresh).status_code == 400
        assert http.post("/oauth/token", data=_creds(emu)).status_code == 200
        emu.set_faults({"reject_refresh": None})
        assert http.post("/oauth/token", data=refresh).status_code == 200


class TestExpiry:
    def test_access_token_expires_after_ttl(self) -> None:
        """With token_ttl_s=1 a token answers 401 a second later and a refresh brings access back."""
        with (
            EmulatorServer(EmulatorConfig(port=0, token_ttl_s=1)) as server,
            httpx.Client(base_url=server.url, timeout=10) as http,
        ):
            tokens = http.post("/oauth/token", data=_creds(server)).json()
            assert tokens["expires_in"] == 1
            assert http.get("/v1/countries", headers=_bearer(tokens["access_token"])).status_code == 200
            time.sleep(1.1)
            r = http.get("/v1/countries", headers=_bearer(tokens["access_token"]))
            assert (r.status_code, r.json()) == (401, {"message": "Unauthenticated."})
            refreshed = http.post(
                "/oauth/token",
                data={
                    "grant_type": "refresh_token",
                    "client_id": server.config.client_id,
                    "client_secret": server.config.client_secret,
                    "refresh_token": tokens["refresh_token"],
                },
            )
            assert refreshed.status_code == 200
            assert (
                http.get("/v1/countries", headers=_bearer(refreshed.json()["access_token"])).status_code
                == 200
            )

    def test_expire_tokens_fault_invalidates_every_token(
        self, http: httpx.Client, emu: EmulatorServer
    ) -> None:
        """``expire_tokens`` makes every issued access token answer 401 at once."""
        a = http.post("/oauth/token", data=_creds(emu)).json()["access_token"]
        b = http.post("/oauth/token", data=_creds(emu)).json()["access_token"]
        r = http.post("/__emulator__/faults", json={"expire_tokens": True})
        assert r.status_code == 200
        assert r.json()["expired_tokens"] == 2
        assert http.get("/v1/bills", headers=_bearer(a)).status_code == 401
        assert http.get("/v1/bills", headers=_bearer(b)).status_code == 401

    def test_custom_credentials_are_enforced(self) -> None:
        """Configured credentials replace the defaults."""
        cfg = EmulatorConfig(
            port=0, client_id="cid", client_secret="csecret", username="u@x.co", password="pw"
        )
        with EmulatorServer(cfg) as server, httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.post("/oauth/token", data=_creds(server)).status_code == 200
            default = EmulatorConfig()
            r = http.post("/oauth/token", data=_creds(server, client_id=default.client_id))
            assert r.status_code == 401
