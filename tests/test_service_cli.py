"""The ``run``, ``status`` and ``retry`` commands, called in-process through ``daemon.cli.main``."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from service_support import bills_by_reference, config_toml, reports, write_invoices

from daemon.cli import main
from daemon.emulator import EmulatorServer
from daemon.service.progress import Progress
from daemon.service.runner import Daemon


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """``main`` binds logging to the captured stderr of one test; unbind it afterwards."""
    yield
    structlog.reset_defaults()


@pytest.fixture(name="env")
def _env(factus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for key, value in factus_env.items():
        monkeypatch.setenv(key, value)
    yield factus_env


def test_run_once_with_inbox_and_outbox_overrides(
    tmp_path: Path, emu: EmulatorServer, env: dict[str, str]
) -> None:
    """``run --once --inbox --outbox`` processes that inbox into that outbox and exits 0."""
    config = config_toml(tmp_path)
    write_invoices(tmp_path / "drop" / "a.csv", ["CLI-1", "CLI-2"])
    code = main(
        ["--config", str(config), "run", "--once", "--no-progress", "--inbox", str(tmp_path / "drop"),
         "--outbox", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 0
    (report,) = reports(tmp_path / "out")
    assert report["summary"]["validated"] == 2
    assert set(bills_by_reference(emu)) == {"CLI-1", "CLI-2"}


def test_run_with_the_embedded_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``run --emulator --once`` needs no credentials and validates the inbox against its own emulator."""
    for var in (
        "FACTUS_BASE_URL",
        "FACTUS_CLIENT_ID",
        "FACTUS_CLIENT_SECRET",
        "FACTUS_USERNAME",
        "FACTUS_PASSWORD",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    config = config_toml(tmp_path)
    write_invoices(tmp_path / "inbox" / "demo.csv", ["EMB-1"])
    assert main(["--config", str(config), "run", "--emulator", "--once", "--no-progress"]) == 0
    (report,) = reports(tmp_path / "outbox")
    assert report["invoices"][0]["status"] == "validated"


def test_status_counts(
    tmp_path: Path, emu: EmulatorServer, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``status`` shows counts by state and ``status --json`` is machine-readable."""
    config = config_toml(tmp_path)
    assert main(["--config", str(config), "status"]) == 0
    assert "not created yet" in capsys.readouterr().out
    assert main(["--config", str(config), "status", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    write_invoices(tmp_path / "inbox" / "a.csv", ["ST-1", "ST-2"])
    assert main(["--config", str(config), "run", "--once", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "validated 2" in out and "archived 1" in out and "oldest pending: none" in out
    assert main(["--config", str(config), "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["invoices"] == {"validated": 2} and info["last_activity"]
    assert set(info) == set(before)  # one shape, ledger or not


def test_retry_failed_puts_files_back(tmp_path: Path, emu: EmulatorServer, env: dict[str, str]) -> None:
    """``retry --failed`` moves failed files back into the inbox and processes them again."""
    small = config_toml(tmp_path, watch={"max_file_bytes": 50})
    write_invoices(tmp_path / "inbox" / "big.csv", ["RF-1"])
    assert main(["--config", str(small), "run", "--once", "--no-progress"]) == 1
    assert (tmp_path / "outbox" / "failed" / "big.csv.reason.json").exists()
    config = config_toml(tmp_path)
    assert main(["--config", str(config), "retry", "--failed"]) == 0
    assert not (tmp_path / "outbox" / "failed" / "big.csv").exists()
    assert list((tmp_path / "outbox" / "failed" / "retried").iterdir())
    assert bills_by_reference(emu)["RF-1"][0]["status"] == 1


def test_retry_reference_after_a_rejection(tmp_path: Path, emu: EmulatorServer, env: dict[str, str]) -> None:
    """``retry REF`` resubmits a rejected invoice once the cause is gone and rewrites its report."""
    config = config_toml(tmp_path)
    emu.set_faults({"reject_references": ["RR-1"]})
    write_invoices(tmp_path / "inbox" / "a.csv", ["RR-1", "RR-2"])
    assert main(["--config", str(config), "run", "--once", "--no-progress"]) == 1
    emu.set_faults({"reject_references": None})
    assert main(["--config", str(config), "retry", "RR-1"]) == 0
    (report,) = reports(tmp_path / "outbox")
    assert [i["status"] for i in report["invoices"]] == ["validated", "validated"]
    assert report["invoices"][0]["pdf"]
    assert [b["status"] for b in bills_by_reference(emu)["RR-1"]] == [1]
    with pytest.raises(SystemExit):
        main(["--config", str(config), "retry"])
    assert main(["--config", str(config), "retry", "RR-2"]) == 7  # validated: never sent again
    assert main(["--config", str(config), "retry", "NOPE-1"]) == 6  # not in the ledger


def test_retry_before_anything_was_processed(tmp_path: Path, env: dict[str, str]) -> None:
    """No ledger yet: --pending and --failed have nothing to do (exit 0); a reference is not found (6)."""
    config = config_toml(tmp_path)
    assert main(["--config", str(config), "retry", "--pending"]) == 0
    assert main(["--config", str(config), "retry", "--failed"]) == 0
    assert main(["--config", str(config), "retry", "R-1"]) == 6


def test_retry_of_an_invalid_invoice_says_to_fix_the_file(
    tmp_path: Path, emu: EmulatorServer, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid invoice was never sent: ``retry REF`` says which file and rows to correct."""
    config = config_toml(tmp_path)
    write_invoices(tmp_path / "inbox" / "a.csv", ["IV-1", "IV-2"], price="12,5,0")
    assert main(["--config", str(config), "run", "--once", "--no-progress"]) == 1
    capsys.readouterr()
    assert main(["--config", str(config), "retry", "IV-2"]) == 1
    err = capsys.readouterr().err
    assert "IV-2 was invalid in a.csv (rows 3)" in err and "drop the file again" in err


def test_retry_pending_after_an_outage(
    tmp_path: Path, emu: EmulatorServer, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``retry --pending`` finishes invoices left pending while Factus was unreachable."""
    config = config_toml(tmp_path, submit={"max_attempts": 1})
    write_invoices(tmp_path / "inbox" / "a.csv", ["RP-1"])
    monkeypatch.setenv("FACTUS_BASE_URL", "http://127.0.0.1:9")
    assert main(["--config", str(config), "run", "--once", "--no-progress"]) == 3
    monkeypatch.setenv("FACTUS_BASE_URL", emu.url)
    assert main(["--config", str(config), "retry", "--pending"]) == 0
    assert bills_by_reference(emu)["RP-1"][0]["status"] == 1


def test_second_daemon_on_the_same_ledger_is_refused(
    tmp_path: Path, emu: EmulatorServer, env: dict[str, str]
) -> None:
    """One daemon per ledger and per inbox: a second one, even with its own ledger, does not start."""
    config = config_toml(tmp_path)
    from daemon.settings import load_settings

    first = Daemon(load_settings(config))
    first.start(watch=False)
    try:
        assert main(["--config", str(config), "run", "--once", "--no-progress"]) == 1
        other = tmp_path / "other"
        other.mkdir()
        same_inbox = config_toml(other, paths={"inbox": str(tmp_path / "inbox")})
        assert main(["--config", str(same_inbox), "run", "--once", "--no-progress"]) == 1
        assert not (other / "var" / "ledger.sqlite3").exists()
    finally:
        first.shutdown()


def test_hidden_crash_option_and_bad_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--crash-at`` is not advertised, and an unknown point is a usage error (exit 2)."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "crash" not in capsys.readouterr().out
    assert main(["--config", str(config_toml(tmp_path)), "run", "--once", "--crash-at", "nowhere"]) == 2


def test_progress_bar_renders_in_place() -> None:
    """The progress bar redraws one line with counts and ends it on the final update."""
    stream = io.StringIO()
    clock = iter(range(100)).__next__
    bar = Progress(stream, width=10, clock=lambda: float(clock()))
    bar.update(files_done=1, files_total=4, invoices={"validated": 3, "pending": 1})
    bar.update(files_done=4, files_total=4, invoices={"validated": 7, "rejected": 1}, final=True)
    text = stream.getvalue()
    assert text.startswith("\r[##--------] 1/4 files | validated 3 pending 1")
    assert text.endswith("[##########] 4/4 files | validated 7 rejected 1\n")


def test_missing_credentials_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without FACTUS_* credentials ``run`` exits 2 and names the missing variables."""
    monkeypatch.chdir(tmp_path)
    for var in ("FACTUS_CLIENT_ID", "FACTUS_CLIENT_SECRET", "FACTUS_USERNAME", "FACTUS_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    assert main(["--config", str(config_toml(tmp_path)), "run", "--once", "--no-progress"]) == 2
    assert "FACTUS_CLIENT_SECRET" in capsys.readouterr().err


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (Linux: SigCgt of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("after_s", [0.0, 0.05, 0.15, 0.4])
def test_sigterm_while_the_daemon_is_starting_is_a_clean_stop(
    tmp_path: Path, emu: EmulatorServer, after_s: float
) -> None:
    """A supervisor's SIGTERM that arrives while ``run`` is still importing or starting ends it with
    exit 0 (it was killed by the signal, exit -15, until the handler was set only once the daemon
    ran). Timed from the moment the program handles SIGTERM, which ``python -m daemon`` sets before
    its imports: before that only the interpreter itself runs and nothing can catch a signal."""
    import signal
    import subprocess
    import time

    from service_support import daemon_env

    config = config_toml(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "--config", str(config), "run"],
        cwd=tmp_path,
        env=daemon_env(emu),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while not _catches(proc.pid, signal.SIGTERM):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.001)
    time.sleep(after_s)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]


def test_sigterm_while_another_command_starts_still_ends_it(tmp_path: Path) -> None:
    """Only the daemon turns a start-up SIGTERM into a clean stop; a dry run still ends on it."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "validate", str(tmp_path / "none.csv")],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) in (143, -15, 2)
