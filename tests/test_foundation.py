"""Settings precedence, atomic writes, safe names, money helpers and secret redaction."""

from __future__ import annotations

import io
import json
import os
import stat
from decimal import Decimal
from pathlib import Path

import pytest
import structlog

from daemon.errors import ConfigError
from daemon.fsutil import TMP_SUFFIX, atomic_write_bytes, atomic_write_text, safe_name
from daemon.log import configure_logging, redact, register_secret
from daemon.money import decimal_places, fmt2, nit_check_digit, round2, to_decimal
from daemon.settings import load_settings

FACTUS_VARS = (
    "FACTUS_BASE_URL",
    "FACTUS_CLIENT_ID",
    "FACTUS_CLIENT_SECRET",
    "FACTUS_USERNAME",
    "FACTUS_PASSWORD",
)


@pytest.fixture(name="clean_env")
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in FACTUS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


class TestSettings:
    def test_defaults_without_files(self, clean_env: Path) -> None:
        """With no TOML and no environment the sandbox URL and built-in defaults apply."""
        s = load_settings()
        assert s.factus.base_url == "https://api-sandbox.factus.com.co"
        assert s.submit.concurrency == 4
        assert s.watch.stable_s == 2.0
        assert s.paths.ledger_path == Path("var/ledger.sqlite3")
        assert s.paths.archive_dir == Path("outbox/archive")

    def test_toml_then_dotenv_then_environment(
        self, clean_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Environment beats .env, which beats the TOML file, which beats defaults."""
        cfg = clean_env / "c.toml"
        cfg.write_text('[factus]\nbase_url = "http://toml"\nrate_limit = 7\n[paths]\ninbox = "in2"\n')
        assert load_settings(cfg).factus.base_url == "http://toml"
        (clean_env / ".env").write_text("FACTUS_BASE_URL=http://dotenv\nFACTUS_PASSWORD=pw-from-dotenv\n")
        s = load_settings(cfg)
        assert s.factus.base_url == "http://dotenv"
        assert s.factus.password.get_secret_value() == "pw-from-dotenv"
        assert s.factus.rate_limit == 7
        assert s.paths.inbox == Path("in2")
        monkeypatch.setenv("FACTUS_BASE_URL", "http://env")
        assert load_settings(cfg).factus.base_url == "http://env"

    def test_secret_in_toml_is_refused(self, clean_env: Path) -> None:
        """A password written into the TOML file is a configuration error naming the variable to use."""
        cfg = clean_env / "c.toml"
        cfg.write_text('[factus]\npassword = "hunter2"\n')
        with pytest.raises(ConfigError, match="FACTUS_PASSWORD") as info:
            load_settings(cfg)
        assert "hunter2" not in str(info.value)

    def test_bad_values_name_the_key(self, clean_env: Path) -> None:
        """An invalid value is reported with its dotted key; unknown keys are refused."""
        cfg = clean_env / "c.toml"
        cfg.write_text("[submit]\nconcurrency = 0\n")
        with pytest.raises(ConfigError, match=r"submit\.concurrency"):
            load_settings(cfg)
        cfg.write_text("[watch]\nstabel_s = 1\n")
        with pytest.raises(ConfigError, match="stabel_s"):
            load_settings(cfg)

    def test_missing_and_broken_files(self, clean_env: Path) -> None:
        """A missing or non-TOML config file is a ConfigError, not a traceback."""
        with pytest.raises(ConfigError, match="not found"):
            load_settings(clean_env / "nope.toml")
        bad = clean_env / "bad.toml"
        bad.write_text("[factus\n")
        with pytest.raises(ConfigError, match="not valid TOML"):
            load_settings(bad)

    def test_secrets_are_not_printed(self, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The settings repr masks the client secret and the password."""
        monkeypatch.setenv("FACTUS_CLIENT_SECRET", "s3cr3t-value")
        monkeypatch.setenv("FACTUS_PASSWORD", "p4ssw0rd-value")
        text = repr(load_settings()) + str(load_settings().model_dump())
        assert "s3cr3t-value" not in text
        assert "p4ssw0rd-value" not in text

    def test_shipped_example_config_loads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """config/factus-daemon.toml in the repository is valid."""
        for var in FACTUS_VARS:
            monkeypatch.delenv(var, raising=False)
        root = Path(__file__).resolve().parents[1]
        s = load_settings(root / "config" / "factus-daemon.toml", env_file=root / "nonexistent.env")
        assert s.defaults["numbering_range_id"] == 8


class TestAtomicWrites:
    def test_write_replaces_whole_file_and_leaves_no_temp(self, tmp_path: Path) -> None:
        """An atomic write creates folders, replaces content and leaves no temp file."""
        target = tmp_path / "a" / "b" / "report.json"
        atomic_write_text(target, "one")
        atomic_write_text(target, "two")
        assert target.read_text() == "two"
        assert [p.name for p in target.parent.iterdir()] == ["report.json"]

    def test_mode_is_applied(self, tmp_path: Path) -> None:
        """The requested permission bits are set on the final file (0600 for secrets)."""
        target = tmp_path / "token.json"
        atomic_write_bytes(target, b"{}", mode=0o600)
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o600

    def test_failed_write_keeps_old_content(self, tmp_path: Path) -> None:
        """When writing fails the previous file is intact and the temp file is removed."""
        target = tmp_path / "r.txt"
        atomic_write_text(target, "old")

        with pytest.raises(TypeError):
            atomic_write_bytes(target, "not-bytes")  # type: ignore[arg-type]
        assert target.read_text() == "old"
        assert not list(tmp_path.glob(f"*{TMP_SUFFIX}"))

    @pytest.mark.parametrize(
        "raw",
        ["../../etc/passwd", "/abs/path", "..", "CON", "nul.txt", "a/b\\c", "x" * 500, "", "\x00\n"],
    )
    def test_safe_name_never_escapes(self, raw: str, tmp_path: Path) -> None:
        """Sanitised names stay one component inside the folder, short and non-reserved."""
        name = safe_name(raw)
        assert name and "/" not in name and "\\" not in name and name not in {".", ".."}
        assert len(name) <= 120
        assert name.split(".")[0].upper() not in {"CON", "NUL", "PRN", "AUX"}
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()


class TestMoney:
    @pytest.mark.parametrize(
        ("nit", "dv"),
        [
            ("900825759", 7),
            ("901724254", 1),
            ("123456789", 6),
            ("900123456", 8),
            ("860069804", 2),
            ("800197268", 4),
        ],
    )
    def test_nit_check_digit(self, nit: str, dv: int) -> None:
        """The DIAN mod-11 check digit matches published NITs."""
        assert nit_check_digit(nit) == dv

    def test_nit_check_digit_rejects_non_digits(self) -> None:
        """A NIT with letters or a hyphen is refused rather than guessed."""
        with pytest.raises(ValueError):
            nit_check_digit("900123456-8")

    def test_rounding_and_formatting(self) -> None:
        """Cents round half up and format with two decimals."""
        assert round2(Decimal("10.005")) == Decimal("10.01")
        assert fmt2(Decimal("90000")) == "90000.00"
        assert decimal_places(Decimal("1.50")) == 1
        assert decimal_places(Decimal("1.555")) == 3

    def test_to_decimal(self) -> None:
        """Numbers convert exactly; floats go through their shortest repr; junk is refused."""
        assert to_decimal("11900") == Decimal("11900")
        assert to_decimal(0.1) == Decimal("0.1")
        for bad in ("abc", "NaN", "Infinity", True):
            with pytest.raises(ValueError):
                to_decimal(bad)


class TestRedaction:
    def test_registered_secrets_and_bearer_tokens_are_masked(self) -> None:
        """redact() masks registered values and any bearer token."""
        register_secret("very-secret-value-123")
        text = redact("secret=very-secret-value-123 Authorization: Bearer abc.def.ghi")
        assert "very-secret-value-123" not in text
        assert "abc.def.ghi" not in text

    def test_credentials_inside_a_url_are_masked(self) -> None:
        """A base URL written http://user:password@host never shows its user-info; e-mails stay."""
        text = redact("factus=http://probe:P4ssw0rd-UNIQ@127.0.0.1:8958/v1 to=ana@example.com")
        assert "P4ssw0rd-UNIQ" not in text and "probe" not in text
        assert "http://***@127.0.0.1:8958/v1" in text and "ana@example.com" in text

    def test_log_entries_are_redacted(self) -> None:
        """A log line never shows a registered secret, a secret-named key or an exception's secret."""
        register_secret("tok-0123456789")
        out = io.StringIO()
        configure_logging("debug", json=True, stream=out)
        log = structlog.get_logger()
        log.info("evt", note="token is tok-0123456789", refresh_token="whatever", nested={"password": "x1"})
        try:
            raise RuntimeError("failed with tok-0123456789")
        except RuntimeError:
            log.exception("boom")
        text = out.getvalue()
        assert "tok-0123456789" not in text
        assert "whatever" not in text
        assert '"x1"' not in text
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines[0]["event"] == "evt"
        assert "RuntimeError" in lines[1]["exception"]
