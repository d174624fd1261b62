"""OAuth tokens for Factus: password and refresh grants, a 0600 file cache and single-flight renewal.

The access token is renewed ``refresh_margin_s`` before it expires by the wall clock (the margin is
capped at half the granted lifetime so very short-lived tokens stay usable). Concurrent callers share
one renewal. A refused refresh grant falls back to the password grant. Tokens are cached in
``settings.token_cache`` (JSON, mode 0600, written atomically), keyed by base URL, client id and
username, so a cron-style run reuses a valid token and a different account never picks it up. Every
token value is registered with :func:`daemon.log.register_secret` the moment it is known.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import structlog

from daemon.errors import ApiValidationError, AuthError, ConfigError, FactusError, TransientError
from daemon.factus import _wire
from daemon.factus.models import TokenInfo
from daemon.factus.ratelimit import PRIORITY_VALIDATE, RateLimiter
from daemon.factus.retry import RetryPolicy, call_with_retries
from daemon.fsutil import atomic_write_text
from daemon.log import register_secret
from daemon.settings import FactusSettings

__all__ = ["TOKEN_PATH", "TokenManager", "cache_key", "check_credentials"]

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a route, not a secret
_DEFAULT_LIFETIME_S = 3600.0
_CACHE_VERSION = 1
_log = structlog.get_logger(__name__)

_CREDENTIALS = (
    ("client_id", "FACTUS_CLIENT_ID"),
    ("client_secret", "FACTUS_CLIENT_SECRET"),
    ("username", "FACTUS_USERNAME"),
    ("password", "FACTUS_PASSWORD"),
)


def check_credentials(settings: FactusSettings, *, need_password: bool = True) -> None:
    """Raise :class:`ConfigError` naming every missing ``FACTUS_*`` credential variable."""
    missing = []
    for attr, var in _CREDENTIALS:
        if not need_password and attr in ("username", "password"):
            continue
        value = getattr(settings, attr)
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if not str(text).strip():
            missing.append(var)
    if missing:
        raise ConfigError(
            f"missing Factus credentials: set {', '.join(missing)} in the environment or .env "
            "(see .env.example)"
        )


def cache_key(settings: FactusSettings) -> str:
    """Identity of the account a cached token belongs to (no secret goes into it)."""
    raw = "\n".join((settings.base_url.rstrip("/"), settings.client_id, settings.username))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class TokenManager:
    """Obtains, caches and renews the Factus access token.

    Args:
        settings: the ``[factus]`` settings (credentials, margins, cache path).
        http: the HTTP client used for ``POST /oauth/token``.
        limiter: the shared rate limiter (token calls go first, priority 10).
        clock: wall-clock epoch seconds (expiry is compared against it).
        sleep: how retries wait.
        policy: retry policy for transient failures of the token endpoint.
    """

    def __init__(
        self,
        settings: FactusSettings,
        http: httpx.Client,
        *,
        limiter: RateLimiter,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._http = http
        self._limiter = limiter
        self._clock = clock
        self._sleep = sleep
        self._policy = policy or RetryPolicy(
            settings.max_retries, settings.backoff_base_s, settings.backoff_max_s
        )
        self._url = settings.base_url.rstrip("/") + TOKEN_PATH
        self._lock = threading.RLock()
        self._token: TokenInfo | None = None
        self._cache_path = settings.token_cache
        self._key = cache_key(settings)
        self.logins = 0
        """Password grants performed by this manager (observability and tests)."""
        self.refreshes = 0
        """Successful refresh grants performed by this manager."""
        self._down: tuple[float, TransientError] | None = None
        """When (monotonic) and how the last grant failed for a transient reason, until one succeeds."""
        self.down_hold_s = max(1.0, min(10.0, settings.backoff_max_s))
        """How long such a failure answers for Factus: callers meanwhile fail at once, so a batch
        does not spend a full retry cycle per invoice discovering, one by one, that Factus is down."""
        register_secret(settings.client_secret.get_secret_value())
        register_secret(settings.password.get_secret_value())
        with contextlib.suppress(Exception):
            self._token = self._load_cache()

    # -- public API ---------------------------------------------------------------------------

    @property
    def token(self) -> TokenInfo | None:
        """The current token pair, if any (cached or obtained)."""
        return self._token

    @property
    def expires_at(self) -> float | None:
        """Epoch seconds at which the current access token expires (None before the first login)."""
        token = self._token
        return token.expires_at if token else None

    def access_token(self) -> str:
        """A fresh access token (renewed first when close to expiry)."""
        return self.ensure_fresh().access_token

    def is_fresh(self, token: TokenInfo | None = None) -> bool:
        """True when ``token`` (default: the current one) is valid beyond the refresh margin."""
        token = token if token is not None else self._token
        if token is None:
            return False
        margin = min(self._settings.refresh_margin_s, token.lifetime_s / 2)
        return self._clock() < token.expires_at - margin

    def login(self) -> TokenInfo:
        """Password grant: sign in with the configured credentials.

        Raises:
            ConfigError: a credential setting is empty.
            AuthError: Factus refused the credentials.
            TransientError: Factus unreachable after the retries.
        """
        check_credentials(self._settings)
        form = {
            "grant_type": "password",
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret.get_secret_value(),
            "username": self._settings.username,
            "password": self._settings.password.get_secret_value(),
        }
        with self._lock:
            token = self._grant(form, previous_refresh=None, grant="password")
            self.logins += 1
            _log.info("factus_login", expires_at=round(token.expires_at, 3))
            return token

    def refresh(self) -> TokenInfo:
        """Refresh grant; falls back to :meth:`login` when there is no refresh token or it is refused."""
        with self._lock:
            current = self._token
            if current is None or not current.refresh_token:
                return self.login()
            check_credentials(self._settings, need_password=False)
            form = {
                "grant_type": "refresh_token",
                "client_id": self._settings.client_id,
                "client_secret": self._settings.client_secret.get_secret_value(),
                "refresh_token": current.refresh_token,
            }
            try:
                token = self._grant(form, previous_refresh=current.refresh_token, grant="refresh_token")
            except (AuthError, ApiValidationError) as exc:
                _log.info("factus_refresh_refused", status=exc.status_code, error=exc.message)
                return self.login()
            self.refreshes += 1
            _log.info("factus_refresh", expires_at=round(token.expires_at, 3))
            return token

    def ensure_fresh(self) -> TokenInfo:
        """Return a token valid beyond the margin, renewing it once for all concurrent callers.

        Raises:
            TransientError: Factus unreachable; for ``down_hold_s`` after a grant failed that way,
                at once, without a new grant.
        """
        token = self._token
        if token is not None and self.is_fresh(token):
            return token
        with self._lock:
            token = self._token
            if token is not None and self.is_fresh(token):
                return token  # another thread renewed it while we waited
            cached = self._load_cache_quietly()
            if cached is not None and self.is_fresh(cached):
                self._token = cached  # another process renewed it
                return cached
            if cached is not None and (token is None or cached.expires_at > token.expires_at):
                self._token = cached
            self._raise_if_down()
            return self._renew(self.refresh if self._token is not None else self.login)

    def reauthenticate(self, rejected_access_token: str | None) -> TokenInfo:
        """Renew after Factus answered 401 to ``rejected_access_token``.

        When another thread already replaced that token the newer one is returned without a new
        grant; otherwise refresh (falling back to login).
        """
        with self._lock:
            current = self._token
            if current is not None and current.access_token != rejected_access_token and self.is_fresh():
                return current
            self._raise_if_down()
            return self._renew(self.refresh)

    def _raise_if_down(self) -> None:
        down = self._down
        if down is None:
            return
        age = time.monotonic() - down[0]
        if age < self.down_hold_s:
            error = down[1]
            raise TransientError(
                f"{error.message} (seen {age:.1f} s ago; the next sign-in is tried in "
                f"{self.down_hold_s - age:.1f} s)",
                status_code=error.status_code,
                request_sent=False,
            )

    def _renew(self, grant: Callable[[], TokenInfo]) -> TokenInfo:
        try:
            token = grant()
        except TransientError as exc:
            self._down = (time.monotonic(), exc)
            raise
        self._down = None
        return token

    def forget(self) -> None:
        """Drop the in-memory token (the next call renews it; the cache file is left alone)."""
        with self._lock:
            self._token = None

    # -- internals ---------------------------------------------------------------------------

    def _grant(self, form: dict[str, str], *, previous_refresh: str | None, grant: str) -> TokenInfo:
        def once(attempt: int) -> httpx.Response:
            response = _wire.send(
                self._http,
                self._limiter,
                "POST",
                self._url,
                TOKEN_PATH,
                priority=PRIORITY_VALIDATE,
                attempt=attempt,
                headers={"Accept": "application/json"},
                data=form,
            )
            if response.status_code in _wire.TRANSIENT_STATUSES or response.status_code >= 500:
                raise _wire.error_for(response, _wire.decode_json(response), "POST", TOKEN_PATH)
            return response

        response = call_with_retries(once, policy=self._policy, sleep=self._sleep, what=f"POST {TOKEN_PATH}")
        body = _wire.decode_json(response)
        if response.status_code != 200:
            self._raise_grant_error(response, body, grant)
        token = self._parse(body, previous_refresh)
        self._token = token
        self._save_cache(token)
        return token

    def _raise_grant_error(self, response: httpx.Response, body: Any, grant: str) -> None:
        status = response.status_code
        message = _wire.message_of(body, response)
        code = body.get("error") if isinstance(body, dict) else None
        if grant == "refresh_token":
            hint = "the refresh token was refused"
        elif code == "invalid_client" or status == 401:
            hint = "check FACTUS_CLIENT_ID and FACTUS_CLIENT_SECRET"
        else:
            hint = "check FACTUS_USERNAME and FACTUS_PASSWORD"
        text = f"Factus refused the {grant} grant ({status}{f' {code}' if code else ''}: {message}); {hint}"
        if status in (400, 401, 403):
            raise AuthError(text, status_code=status, body=body)
        raise _wire.error_for(response, body, "POST", TOKEN_PATH)

    def _parse(self, body: Any, previous_refresh: str | None) -> TokenInfo:
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise FactusError("Factus token response has no access_token", status_code=200)
        access = body["access_token"]
        register_secret(access)
        refresh = body.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            refresh = previous_refresh
        register_secret(refresh)
        try:
            lifetime = float(body.get("expires_in", _DEFAULT_LIFETIME_S))
        except (TypeError, ValueError):
            lifetime = _DEFAULT_LIFETIME_S
        if not lifetime > 0:
            lifetime = _DEFAULT_LIFETIME_S
        token_type = body.get("token_type") if isinstance(body.get("token_type"), str) else "Bearer"
        return TokenInfo(
            access_token=access,
            refresh_token=refresh,
            expires_at=self._clock() + lifetime,
            lifetime_s=lifetime,
            token_type=str(token_type),
        )

    def _load_cache_quietly(self) -> TokenInfo | None:
        try:
            return self._load_cache()
        except Exception as exc:  # a broken cache only costs one login
            _log.warning(
                "factus_token_cache_unreadable", path=str(self._cache_path), error=type(exc).__name__
            )
            return None

    def _load_cache(self) -> TokenInfo | None:
        if self._cache_path is None or not self._cache_path.is_file():
            return None
        data = json.loads(self._cache_path.read_text(encoding="utf-8"))
        entry = data.get("entries", {}).get(self._key) if isinstance(data, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("access_token"), str):
            return None
        register_secret(entry["access_token"])
        refresh = entry.get("refresh_token") if isinstance(entry.get("refresh_token"), str) else None
        register_secret(refresh)
        return TokenInfo(
            access_token=entry["access_token"],
            refresh_token=refresh,
            expires_at=float(entry["expires_at"]),
            lifetime_s=float(entry.get("lifetime_s", _DEFAULT_LIFETIME_S)),
            token_type=str(entry.get("token_type", "Bearer")),
        )

    def _save_cache(self, token: TokenInfo) -> None:
        path = self._cache_path
        if path is None:
            return
        try:
            entries: dict[str, Any] = {}
            if path.is_file():
                with contextlib.suppress(ValueError, OSError):
                    old = json.loads(path.read_text(encoding="utf-8"))
                    if isinstance(old, dict) and isinstance(old.get("entries"), dict):
                        entries = {
                            k: v
                            for k, v in old["entries"].items()
                            if isinstance(v, dict) and float(v.get("expires_at", 0)) > self._clock() - 86400
                        }
            entries[self._key] = {
                "access_token": token.access_token,
                "refresh_token": token.refresh_token,
                "expires_at": token.expires_at,
                "lifetime_s": token.lifetime_s,
                "token_type": token.token_type,
            }
            _make_private_dir(path.parent)
            atomic_write_text(
                path, json.dumps({"version": _CACHE_VERSION, "entries": entries}, indent=1), mode=0o600
            )
        except (OSError, TypeError, ValueError) as exc:
            _log.warning("factus_token_cache_not_written", path=str(path), error=type(exc).__name__)


def _make_private_dir(path: Path) -> None:
    # The atomic write's temp file is created by os.open(..., 0o600) (mkstemp): private from byte one.
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
