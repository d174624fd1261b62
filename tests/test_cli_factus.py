"""The auth, invoice and lookup commands end to end against the emulator, via daemon.cli.main."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from daemon.cli import main
from daemon.emulator import EmulatorServer
from daemon.factus import FactusClient
from daemon.factus.cli import format_table
from daemon.settings import load_settings
from tests.conftest import minimal_bill

REPO = Path(__file__).resolve().parents[1]
FACTUS_VARS = (
    "FACTUS_BASE_URL",
    "FACTUS_CLIENT_ID",
    "FACTUS_CLIENT_SECRET",
    "FACTUS_USERNAME",
    "FACTUS_PASSWORD",
)

INVOICE: dict[str, Any] = {
    **minimal_bill("CLI-0001"),
    "payment_form": "2",
    "payment_due_date": "2030-12-31",
    "payment_method_code": "47",
}
INVOICE["items"] = [{**INVOICE["items"][0], "quantity": 2}]


def _child_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a CLI subprocess: this one's, with ``env``'s Factus variables only."""
    child = {k: v for k, v in os.environ.items() if k not in FACTUS_VARS}
    child.update(env, PYTHONPATH=str(REPO))
    return child


def _daemon(cwd: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m daemon ARGV`` as a real process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class Run:
    """Runs the CLI in-process and remembers everything it printed.

    stdout/stderr go to buffers that are never closed: the in-process emulator's threads log through
    the configuration main() installs and may do so after the command returned.
    """

    def __init__(self) -> None:
        self.transcript: list[str] = []

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--log-level", "debug", *argv])
        structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
        self.transcript.extend([out.getvalue(), err.getvalue()])
        return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _quiet_structlog() -> Iterator[None]:
    # Logs emitted outside main() (setup helpers, the in-process emulator) must not reach stdout.
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.reset_defaults()


@pytest.fixture(name="env")
def _env(factus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # token cache var/token.json and no stray .env/config
    for key, value in factus_env.items():
        monkeypatch.setenv(key, value)
    return factus_env


@pytest.fixture(name="run")
def _run(env: dict[str, str]) -> Iterator[Run]:
    runner = Run()
    yield runner
    secrets = [env["FACTUS_CLIENT_SECRET"], env["FACTUS_PASSWORD"]]
    cache = Path("var/token.json")
    if cache.is_file():
        for entry in json.loads(cache.read_text())["entries"].values():
            secrets += [entry["access_token"], entry["refresh_token"]]
    text = "\n".join(runner.transcript)
    for secret in secrets:
        assert secret not in text, "a secret reached the CLI output"


def make_bill(reference: str, **changes: Any) -> str:
    """Create a bill through the client (settings from the environment) and return its number."""
    payload = copy.deepcopy(INVOICE)
    payload["reference_code"] = reference
    payload.update(changes)
    with FactusClient.from_settings(load_settings().factus) as client:
        out = client.create_bill(payload)
    assert out.number is not None
    return out.number


class TestAuth:
    def test_login_prints_expiry_and_caches_privately(self, run: Run, emu: EmulatorServer) -> None:
        """auth login prints the expiry (never the token) and leaves a 0600 cache."""
        code, out, _ = run("auth", "login")
        assert code == 0
        assert "expires at" in out and "sandbox@factus.com.co" in out
        assert stat.S_IMODE(Path("var/token.json").stat().st_mode) == 0o600
        code, out, _ = run("auth", "login", "--json")
        data = json.loads(out)
        assert data["expires_in_s"] > 3000 and set(data) >= {"base_url", "username", "expires_at"}

    def test_refresh_uses_refresh_grant(self, run: Run, emu: EmulatorServer) -> None:
        """auth refresh after a login renews with the refresh grant."""
        assert run("auth", "login")[0] == 0
        code, out, _ = run("auth", "refresh")
        assert code == 0 and "refreshed" in out
        assert emu.snapshot()["requests"]["by_route"]["POST /oauth/token"] == 2

    def test_missing_credential_names_variable(self, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        """A missing FACTUS_PASSWORD is a configuration error (exit 2) naming the variable."""
        monkeypatch.delenv("FACTUS_PASSWORD")
        code, _, err = run("auth", "login")
        assert code == 2
        assert "FACTUS_PASSWORD" in err and "Traceback" not in err

    def test_wrong_password_exit_5(self, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        """Refused credentials exit 5 with a one-line hint and no password echoed."""
        monkeypatch.setenv("FACTUS_PASSWORD", "not-the-password-xyz")
        code, out, err = run("auth", "login")
        assert code == 5
        assert "FACTUS_USERNAME and FACTUS_PASSWORD" in err
        assert "not-the-password-xyz" not in out + err

    def test_unreachable_exit_3(self, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """An unreachable Factus exits 3 after the configured retries."""
        (tmp_path / "c.toml").write_text("[factus]\nmax_retries = 0\ntimeout_s = 2\n")
        monkeypatch.setenv("FACTUS_BASE_URL", "http://127.0.0.1:9")
        code, _, err = run("--config", str(tmp_path / "c.toml"), "lookup", "countries")
        assert code == 3 and "cannot reach Factus" in err


class TestInvoice:
    def test_list_and_show(self, run: Run, emu: EmulatorServer) -> None:
        """invoice list shows an aligned table (or JSON) and invoice show the bill's details."""
        number = make_bill("CLI-LIST-1")
        code, out, _ = run("invoice", "list")
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["NUMBER", "REFERENCE", "STATUS"]
        assert number in out and "validated" in out and "page 1 of 1 (1 bill)" in out
        code, out, _ = run("invoice", "list", "--reference-code", "CLI-LIST-1", "--status", "1", "--json")
        page = json.loads(out)
        assert code == 0 and page["items"][0]["number"] == number and page["total"] == 1
        code, out, _ = run("invoice", "list", "--number", "NOPE1")
        assert code == 0 and "no bills match" in out
        code, out, _ = run("invoice", "show", number)
        assert code == 0 and "cufe" in out and "23800.00" in out and "SKU-001" in out
        code, out, _ = run("invoice", "show", number, "--json")
        assert json.loads(out)["bill"]["number"] == number

    def test_list_page_past_the_last_says_so(self, run: Run, emu: EmulatorServer) -> None:
        """--page beyond the last page says so instead of "no bills match" when bills exist."""
        for i in range(3):
            make_bill(f"CLI-PAST-{i}")
        code, out, _ = run("invoice", "list", "--page", "99")
        assert code == 0
        assert "no bills match" not in out
        assert "page 99 is past the last page (1); 3 bills match" in out
        code, out, _ = run("invoice", "list", "--status", "0", "--page", "99")
        assert code == 0 and "no bills match" in out

    def test_show_unknown_exit_6(self, run: Run, emu: EmulatorServer) -> None:
        """An unknown number exits 6 with the Factus message."""
        code, _, err = run("invoice", "show", "SETP1")
        last = err.strip().splitlines()[-1]
        assert code == 6 and last.startswith("factus-daemon: error: Factus answered 404")
        assert "Traceback" not in err

    def test_pdf_and_xml_written_atomically(self, run: Run, emu: EmulatorServer, tmp_path: Path) -> None:
        """invoice pdf/xml write the decoded file into -o DIR and print its path."""
        number = make_bill("CLI-DL-1")
        code, out, _ = run("invoice", "pdf", number, "-o", str(tmp_path / "docs"))
        path = Path(out.strip())
        assert code == 0 and path.parent == tmp_path / "docs" and path.suffix == ".pdf"
        assert path.read_bytes().startswith(b"%PDF")
        code, out, _ = run("invoice", "xml", number, "-o", str(tmp_path / "docs"), "--json")
        info = json.loads(out)
        assert code == 0 and Path(info["path"]).read_bytes().startswith(b"<?xml")
        assert not list((tmp_path / "docs").glob("*.fdtmp"))

    def test_pdf_of_pending_bill_fails_cleanly(self, run: Run, emu: EmulatorServer) -> None:
        """Downloading a bill DIAN has not validated is refused with a one-line error."""
        emu.set_faults({"dian_timeout": 1})
        number = make_bill("CLI-DL-2")
        code, _, err = run("invoice", "pdf", number)
        assert code == 7 and "no ha sido validado" in err and "exists once DIAN validates" in err

    def test_email_events_delete(self, run: Run, emu: EmulatorServer) -> None:
        """invoice email, events and delete work and report Factus's messages."""
        number = make_bill("CLI-MISC-1")
        code, out, _ = run("invoice", "email", number, "--to", "cliente@example.com")
        assert code == 0 and "enviada" in out
        code, out, _ = run("invoice", "events", number)
        assert code == 0 and f"no RADIAN events for {number}" in out
        code, out, _ = run("invoice", "events", number, "--json")
        assert json.loads(out) == []

        emu.set_faults({"dian_timeout": 1})
        make_bill("CLI-DEL-1")
        code, out, _ = run("invoice", "delete", "CLI-DEL-1")
        assert code == 0 and "eliminado" in out
        code, _, err = run("invoice", "delete", "CLI-DEL-1")
        assert code == 6 and "CLI-DEL-1" in err
        code, _, err = run("invoice", "delete", "CLI-MISC-1")
        assert code == 7 and "validado" in err and "credit note" in err

    def test_events_table(self, run: Run, emu: EmulatorServer) -> None:
        """RADIAN events recorded on a credit bill are listed in a table."""
        number = make_bill("CLI-EV-1")
        with FactusClient.from_settings(load_settings().factus) as client:
            client.emit_radian_event(
                number,
                "030",
                {
                    "identification_document_code": "13",
                    "identification": "1399991",
                    "first_name": "A",
                    "last_name": "B",
                },
            )
        code, out, _ = run("invoice", "events", number)
        assert code == 0 and out.splitlines()[0].split()[:2] == ["CODE", "EVENT"] and "030" in out


class TestLookup:
    @pytest.mark.parametrize(
        ("command", "name", "expected"),
        [
            ("municipalities", "San Gil", "68679"),
            ("tributes", "IVA", "01"),
            ("units", "unidad", "94"),
            ("countries", "Colombia", "CO"),
            ("numbering-ranges", "SETP", "SETP"),
        ],
    )
    def test_lookup_tables_and_json(
        self, run: Run, emu: EmulatorServer, command: str, name: str, expected: str
    ) -> None:
        """Each lookup prints a table by default and JSON with --json, filtered by --name."""
        code, out, _ = run("lookup", command, "--name", name)
        assert code == 0 and out.split()[0] == "ID" and expected in out
        code, out, _ = run("lookup", command, "--name", name, "--json")
        rows = json.loads(out)
        assert code == 0 and rows and any(expected in json.dumps(r) for r in rows)

    def test_lookup_no_match(self, run: Run, emu: EmulatorServer) -> None:
        """A name that matches nothing says so."""
        code, out, _ = run("lookup", "countries", "--name", "Atlantis")
        assert code == 0 and "no countries match" in out

    def test_acquirer(self, run: Run, emu: EmulatorServer) -> None:
        """lookup acquirer prints the DIAN name and e-mail."""
        code, out, _ = run("lookup", "acquirer", "--id-type", "3", "--number", "1399991")
        assert code == 0 and out.startswith("name ") and "email" in out
        code, out, _ = run("lookup", "acquirer", "--id-type", "3", "--number", "1399991", "--json")
        assert "name" in json.loads(out)

    def test_subprocess_municipalities_json(
        self, env: dict[str, str], tmp_path: Path, emu: EmulatorServer
    ) -> None:
        """`python -m daemon lookup municipalities --json` works as a real process, without secrets."""
        child_env = _child_env(env)
        proc = _daemon(tmp_path, child_env, "lookup", "municipalities", "--json")
        assert proc.returncode == 0, proc.stderr
        rows = json.loads(proc.stdout)
        assert any(r["id"] == 980 and r["code"] == "68679" for r in rows)
        for secret in (env["FACTUS_CLIENT_SECRET"], env["FACTUS_PASSWORD"]):
            assert secret not in proc.stdout + proc.stderr
        token = json.loads((tmp_path / "var" / "token.json").read_text())
        for entry in token["entries"].values():
            assert entry["access_token"] not in proc.stdout + proc.stderr

    def test_a_closed_pipe_or_a_bad_log_level_never_prints_a_traceback(
        self, env: dict[str, str], tmp_path: Path, emu: EmulatorServer
    ) -> None:
        """`... | head -1` ends quietly; `--log-level loud` is a usage error; credentials written into
        FACTUS_BASE_URL are never echoed."""
        child_env = _child_env(env)
        command = [sys.executable, "-m", "daemon", "lookup", "municipalities"]
        with subprocess.Popen(
            command, cwd=tmp_path, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()  # the reader is gone before the first line is written
            err = proc.stderr.read().decode()
            assert proc.wait(timeout=30) == 0 and "Traceback" not in err
        bad = _daemon(tmp_path, child_env, "--log-level", "loud", "status")
        assert bad.returncode == 2 and "invalid choice" in bad.stderr
        child_env["FACTUS_BASE_URL"] = emu.url.replace("http://", "http://probe:P4ss-UNIQ@")
        login = _daemon(tmp_path, child_env, "auth", "login", "--json")
        assert login.returncode == 0, login.stderr
        assert "P4ss-UNIQ" not in login.stdout + login.stderr and "***@" in login.stdout


class TestHelpAndFormatting:
    @pytest.mark.parametrize("group", ["auth", "invoice", "lookup"])
    def test_help_documents_exit_codes(self, group: str, capsys: pytest.CaptureFixture[str]) -> None:
        """Every command group's --help lists the exit codes."""
        with pytest.raises(SystemExit) as info:
            main([group, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "exit codes:" in out and "5  authentication refused" in out

    def test_table_alignment(self) -> None:
        """Numbers are right-aligned, text left-aligned, newlines flattened and long cells cut."""
        table = format_table(
            [{"a": "x\ny", "n": "5.00", "c": "05001"}, {"a": "long" * 20, "n": "123.45", "c": "11001"}],
            [("a", "A"), ("n", "N"), ("c", "CODE")],
        )
        lines = table.splitlines()
        assert lines[2].startswith("x y ")
        assert lines[2].endswith("  5.00  05001") and lines[3].endswith("123.45  11001")
        assert "…" in lines[3]


class TestHostileArguments:
    @pytest.mark.parametrize(
        "argv",
        [
            ("invoice", "delete", ""),
            ("invoice", "show", ""),
            ("invoice", "show", "   "),
            ("invoice", "pdf", ""),
            ("invoice", "xml", ""),
            ("invoice", "events", ""),
            ("invoice", "email", "", "--to", "a@example.com"),
            ("invoice", "show", ".."),
            ("invoice", "show", "."),
            ("invoice", "show", "SETP1/.."),
            ("invoice", "pdf", "../../v1/bills"),
            ("invoice", "delete", ".."),
        ],
    )
    def test_bad_path_values_are_usage_errors(
        self, run: Run, emu: EmulatorServer, argv: tuple[str, ...]
    ) -> None:
        """Empty, dot-only or slashed numbers/references exit 2 with one line and reach no route."""
        code, out, err = run(*argv)
        assert code == 2, (out, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert err.startswith("factus-daemon: error: ")
        routes = emu.snapshot()["requests"]["by_route"]
        assert not [r for r in routes if r != "POST /oauth/token"], routes

    def test_client_refuses_dot_segments(self, env: dict[str, str], emu: EmulatorServer) -> None:
        """The client never turns user input into another route."""
        with FactusClient.from_settings(load_settings().factus) as client:
            for bad in ("", ".", "..", "a/b", "a\\b"):
                with pytest.raises(ValueError):
                    client.show_bill(bad)
        assert emu.snapshot()["requests"]["total"] == 0

    def test_reference_with_slash_is_percent_encoded_for_delete(self, run: Run, emu: EmulatorServer) -> None:
        """A reference code may contain '/': delete sends it as one encoded segment."""
        emu.set_faults({"dian_timeout": 1})
        make_bill("REF/2025/1")
        code, out, err = run("invoice", "delete", "REF/2025/1")
        assert code == 0 and "eliminado" in out, err


class TestExactReference:
    def test_list_by_reference_is_exact(self, run: Run, emu: EmulatorServer) -> None:
        """--reference-code CLI-1 does not list CLI-10 or CLI-11 (the server filter is partial)."""
        for ref in ("CLI-1", "CLI-10", "CLI-11"):
            make_bill(ref)
        code, out, _ = run("invoice", "list", "--reference-code", "CLI-1")
        assert code == 0
        refs = [line.split()[1] for line in out.splitlines()[2:] if line.startswith("SETP")]
        assert refs == ["CLI-1"]
        code, out, _ = run("invoice", "list", "--reference-code", "CLI-1", "--json")
        page = json.loads(out)
        assert [i["reference_code"] for i in page["items"]] == ["CLI-1"] and page["total"] == 1
        code, out, _ = run("invoice", "list", "--reference-code", "CLI-")
        assert code == 0 and "no bills match" in out


class TestExitCodes:
    def test_output_is_an_existing_file_exit_2(self, run: Run, emu: EmulatorServer, tmp_path: Path) -> None:
        """-o pointing at a regular file is a usage error (exit 2)."""
        number = make_bill("CLI-O-1")
        target = tmp_path / "file.pdf"
        target.write_bytes(b"x")
        code, _, err = run("invoice", "pdf", number, "-o", str(target))
        assert code == 2 and "not a folder" in err and "Traceback" not in err
        assert target.read_bytes() == b"x"

    def test_output_folder_is_created_or_fails_cleanly(
        self, run: Run, emu: EmulatorServer, tmp_path: Path
    ) -> None:
        """Missing output folders are created; a folder that cannot be created exits 2 cleanly."""
        number = make_bill("CLI-O-2")
        code, out, _ = run("invoice", "xml", number, "-o", str(tmp_path / "a" / "b"))
        assert code == 0 and Path(out.strip()).parent == tmp_path / "a" / "b"
        (tmp_path / "blocker").write_bytes(b"x")
        code, _, err = run("invoice", "xml", number, "-o", str(tmp_path / "blocker" / "sub"))
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1

    @pytest.mark.parametrize(
        "url",
        [
            "not-a-url",
            "ftp://127.0.0.1/x",
            "http://",
            "http:///v1",
            " http://127.0.0.1:8910",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:8910/v1",
        ],
    )
    def test_bad_base_url_is_configuration_error(
        self, run: Run, monkeypatch: pytest.MonkeyPatch, emu: EmulatorServer, url: str
    ) -> None:
        """A FACTUS_BASE_URL that is not an http(s) URL exits 2 at once (no retries) naming the variable."""
        monkeypatch.setenv("FACTUS_BASE_URL", url)
        code, _, err = run("auth", "login")
        assert code == 2 and "FACTUS_BASE_URL" in err and "Traceback" not in err


class TestDisplay:
    def _rejected_number(self, emu: EmulatorServer) -> str:
        emu.set_faults({"reject_references": {"CLI-REJ": "FAK24"}})
        with FactusClient.from_settings(load_settings().factus) as client:
            payload = copy.deepcopy(INVOICE)
            payload["reference_code"] = "CLI-REJ"
            assert client.create_bill(payload).kind == "rejected"
        number: str = emu.snapshot()["pending"][0]["number"]
        return number

    def test_rejected_bill_is_labelled_rejected(self, run: Run, emu: EmulatorServer) -> None:
        """A DIAN-rejected bill (status 0 + Rechazo) shows as rejected, a DIAN-pending one as pending."""
        number = self._rejected_number(emu)
        code, out, _ = run("invoice", "list")
        row = next(line for line in out.splitlines() if line.startswith(number))
        assert code == 0 and "rejected" in row.split()
        code, out, _ = run("invoice", "show", number)
        assert code == 0
        assert [line.split()[1] for line in out.splitlines() if line.startswith("status")] == ["rejected"]
        run("invoice", "delete", "CLI-REJ")
        emu.set_faults({"dian_timeout": 1})
        pending = make_bill("CLI-PEND")
        code, out, _ = run("invoice", "list")
        assert "pending" in next(line for line in out.splitlines() if line.startswith(pending)).split()

    def test_show_lists_surcharges_and_withholdings(self, run: Run, emu: EmulatorServer) -> None:
        """invoice show prints the document surcharges and withholdings, so the lines add up to the total."""
        payload = copy.deepcopy(INVOICE)
        payload["items"][0]["withholding_taxes"] = [{"code": "06", "withholding_tax_rate": "4.00"}]
        number = make_bill(
            "CLI-SHOW-AC",
            items=payload["items"],
            allowance_charges=[
                {
                    "concept_type": "03",
                    "is_surcharge": True,
                    "reason": "Propina",
                    "base_amount": "23800.00",
                    "amount": "2380.00",
                }
            ],
        )
        code, out, _ = run("invoice", "show", number)
        assert code == 0
        assert "surcharge amount" in out and "2380.00" in out and "Propina" in out
        assert "withholdings" in out.lower() and "800.00" in out  # 4 % of 20000.00
        assert "26180.00" in out

    def test_refresh_refused_says_it_signed_in_again(self, run: Run, emu: EmulatorServer) -> None:
        """auth refresh tells the truth when the refresh grant was refused and it fell back to login."""
        assert run("auth", "login")[0] == 0
        emu.set_faults({"reject_refresh": 1})
        code, out, _ = run("auth", "refresh")
        assert code == 0
        assert "token refreshed" not in out and "signed in again" in out
        code, out, _ = run("auth", "refresh", "--json")
        assert code == 0 and json.loads(out)["grant"] == "refresh_token"
