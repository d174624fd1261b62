"""Settings: secrets from the environment or ``.env``, everything else from one TOML file.

Precedence (highest first): ``FACTUS_*`` environment variables, ``.env`` in the working directory,
the TOML file (``--config PATH``, else ``config/factus-daemon.toml`` when it exists), built-in
defaults. Relative paths in the TOML file are resolved against the working directory. This is the
only module that reads the environment.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from daemon.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "FactusSettings",
    "PathsSettings",
    "SchedulerSettings",
    "Settings",
    "SubmitSettings",
    "WatchSettings",
    "load_settings",
]

DEFAULT_CONFIG_PATH = Path("config/factus-daemon.toml")
SANDBOX_URL = "https://api-sandbox.factus.com.co"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FactusSettings(_Section):
    """How to reach Factus. Credentials come from ``FACTUS_*`` variables, never from the TOML."""

    base_url: str = SANDBOX_URL
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    username: str = ""
    password: SecretStr = SecretStr("")
    timeout_s: float = 30.0
    validate_timeout_s: float = 60.0
    rate_limit: int = Field(80, ge=1, description="requests allowed per window (Factus: 80/min)")
    rate_window_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0, description="retries of idempotent calls on transient faults")
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    refresh_margin_s: float = 60.0
    token_cache: Path | None = Path("var/token.json")


class PathsSettings(_Section):
    """Folders and files the daemon owns."""

    inbox: Path = Path("inbox")
    outbox: Path = Path("outbox")
    archive: Path | None = None  # default: <outbox>/archive
    failed: Path | None = None  # default: <outbox>/failed
    state_dir: Path = Path("var")
    ledger: Path | None = None  # default: <state_dir>/ledger.sqlite3
    lookup_cache: Path | None = None  # default: <state_dir>/lookups.json
    profiles: Path = Path("config/profiles")

    @property
    def archive_dir(self) -> Path:
        """Where processed source files are archived (date sub-folders)."""
        return self.archive or self.outbox / "archive"

    @property
    def failed_dir(self) -> Path:
        """Where unreadable source files are moved with their ``.reason.json``."""
        return self.failed or self.outbox / "failed"

    @property
    def ledger_path(self) -> Path:
        """The SQLite ledger file."""
        return self.ledger or self.state_dir / "ledger.sqlite3"

    @property
    def lookup_cache_path(self) -> Path:
        """The on-disk cache of Factus lookups (municipalities, units, ranges...)."""
        return self.lookup_cache or self.state_dir / "lookups.json"


class WatchSettings(_Section):
    """How the inbox is watched."""

    stable_s: float = Field(2.0, ge=0, description="size+mtime unchanged over this interval = ready")
    rescan_s: float = Field(10.0, gt=0)
    polling: bool = False  # use the polling observer (network shares)
    done_marker: bool = False  # when true a file is ready only once <name>.done exists
    max_file_bytes: int = 256 * 1024 * 1024


class SubmitSettings(_Section):
    """How invoices are submitted."""

    concurrency: int = Field(4, ge=1, le=64)
    max_attempts: int = Field(5, ge=1)
    shutdown_timeout_s: float = 30.0
    outage_after: int = Field(6, ge=1)
    """Failures in a row with no answer from Factus after which invoices are left pending at once."""
    outage_hold_s: float = Field(30.0, ge=0)
    """How long after the latest such failure that lasts (then the scheduler tries again)."""


class SchedulerSettings(_Section):
    """Periodic jobs (APScheduler 3.x)."""

    token_check_s: float = 30.0
    retry_pending_s: float = 60.0
    lookup_refresh_h: float = 24.0
    archive_retention_days: int | None = None  # None: never purge


class Settings(_Section):
    """Everything the daemon needs, built once by the CLI and passed down."""

    factus: FactusSettings = FactusSettings()
    paths: PathsSettings = PathsSettings()
    watch: WatchSettings = WatchSettings()
    submit: SubmitSettings = SubmitSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    defaults: dict[str, Any] = Field(default_factory=dict, description="canonical column -> value")
    log_level: str = "info"


class _FactusEnv(BaseSettings):
    """The ``FACTUS_*`` variables (environment first, then ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix="FACTUS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    base_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None


def load_settings(config_path: Path | None = None, *, env_file: Path | None = None) -> Settings:
    """Build :class:`Settings` from the TOML file and the ``FACTUS_*`` environment.

    Args:
        config_path: explicit TOML path; when None, ``config/factus-daemon.toml`` is used if present.
        env_file: a ``.env`` file to read instead of ``./.env``.

    Raises:
        ConfigError: the file is missing (when given explicitly), is not TOML, or has a bad value.
    """
    data: dict[str, Any] = {}
    path = config_path
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    factus = dict(data.get("factus", {}))
    for secret in ("client_secret", "password"):
        if secret in factus:
            raise ConfigError(
                f"{path}: [factus].{secret} must not be in the TOML file; "
                f"set FACTUS_{secret.upper()} in the environment or .env"
            )
    env = _FactusEnv(_env_file=env_file or ".env")
    for key, value in env.model_dump(exclude_none=True).items():
        factus[key] = value
    data["factus"] = factus
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid settings in {path or 'defaults'}: {problems}") from None
