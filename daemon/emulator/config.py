"""Configuration of the Factus emulator: one frozen value object, built by the CLI or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["DUPLICATE_POLICIES", "DuplicatePolicy", "EmulatorConfig"]

DuplicatePolicy = Literal["return-existing", "conflict", "create-duplicate"]
DUPLICATE_POLICIES: tuple[DuplicatePolicy, ...] = ("return-existing", "conflict", "create-duplicate")


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator listens and behaves.

    Attributes:
        host: interface to bind (loopback by default).
        port: TCP port; 0 picks a free ephemeral port (read it back from ``EmulatorServer.url``).
        token_ttl_s: lifetime of access tokens (``expires_in``); Factus docs show 3600 and 600.
        rate_limit: business requests allowed per window and per user (Factus: 80 per minute).
        rate_window_s: length of the fixed rate-limit window.
        latency_ms: baseline latency added to every API request (a fault can change it at run time).
        fail_rate: baseline probability that an API request answers 500/502/503.
        duplicate_policy: what a create with an already *validated* reference code does:
            ``return-existing`` (200 with the existing bill), ``conflict`` (409) or
            ``create-duplicate`` (a new bill with a new number: the worst case).
        client_id, client_secret, username, password: the only credentials ``/oauth/token`` accepts.
        municipalities_file, units_file, countries_file: full DIAN tables in the published JSON shape
            (read with :func:`daemon.catalog.load_table`); None uses the built-in subset.
        delete_validated_status: HTTP status of deleting a validated bill (409 or 422; undocumented).
        refresh_revokes_access: a refresh grant revokes the access token it replaces (Passport does).
        numbering_range_aliases: extra ``numbering_range_id`` values accepted for a range; the
            official examples use id 4 for the sandbox bill range, which is id 8 here.
    """

    host: str = "127.0.0.1"
    port: int = 8910
    token_ttl_s: int = 3600
    rate_limit: int = 80
    rate_window_s: float = 60.0
    latency_ms: int = 0
    fail_rate: float = 0.0
    duplicate_policy: DuplicatePolicy = "return-existing"
    client_id: str = "factus-emulator"
    client_secret: str = "factus-emulator-secret"  # noqa: S105 - public emulator default
    username: str = "sandbox@factus.com.co"
    password: str = "sandbox2024%"  # noqa: S105 - the public sandbox login
    municipalities_file: Path | None = None
    units_file: Path | None = None
    countries_file: Path | None = None
    delete_validated_status: int = 409
    refresh_revokes_access: bool = True
    numbering_range_aliases: dict[int, int] = field(default_factory=lambda: {4: 8})

    def __post_init__(self) -> None:
        if self.duplicate_policy not in DUPLICATE_POLICIES:
            raise ValueError(
                f"duplicate_policy must be one of {', '.join(DUPLICATE_POLICIES)}, "
                f"got {self.duplicate_policy!r}"
            )
        if self.rate_limit < 1 or self.rate_window_s <= 0:
            raise ValueError("rate_limit must be >= 1 and rate_window_s > 0")
        if self.token_ttl_s < 1:
            raise ValueError("token_ttl_s must be >= 1")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if self.delete_validated_status not in (409, 422):
            raise ValueError("delete_validated_status must be 409 or 422")
