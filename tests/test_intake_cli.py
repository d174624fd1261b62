"""``factus-daemon validate``: exit codes, JSON shape, human output and the absence of side effects."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from daemon.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "config" / "samples"
GOOD = (
    "reference_code,customer.identification_document_id,customer.identification,customer.company,"
    "item.code_reference,item.name,item.quantity,item.price,item.tax_rate\n"
    "C-1,6,900123456,Enigma,SKU,Producto,1,11900,19.00\n"
)
BAD_ROW = "C-2,6,900123456,Enigma,SKU,Producto,1.5,11900,19.00\n"


@pytest.fixture(name="workdir")
def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory with a config pointing every path inside it, and the shipped profiles."""
    shutil.copytree(ROOT / "config" / "profiles", tmp_path / "profiles")
    (tmp_path / "settings.toml").write_text(
        '[paths]\ninbox = "inbox"\noutbox = "outbox"\nstate_dir = "var"\nprofiles = "profiles"\n'
        "[defaults]\nnumbering_range_id = 8\n",
        encoding="utf-8",
    )
    for var in (
        "FACTUS_BASE_URL",
        "FACTUS_CLIENT_ID",
        "FACTUS_CLIENT_SECRET",
        "FACTUS_USERNAME",
        "FACTUS_PASSWORD",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    structlog.reset_defaults()  # main() bound logging to this test's captured stderr


def tree(root: Path) -> dict[str, int]:
    """Every file under root with its modification time."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def run(*args: str) -> int:
    """Run the CLI with the work directory's config."""
    return main(["--config", "settings.toml", "validate", *args])


class TestValidate:
    def test_samples_are_valid_exit_0_and_nothing_is_written(
        self, workdir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """All shipped samples validate (exit 0) and the run creates, moves or changes no file."""
        shutil.copytree(SAMPLES, workdir / "inbox")
        before = tree(workdir)
        assert run("inbox") == 0
        assert tree(workdir) == before
        out = capsys.readouterr().out
        assert "0 error(s)" in out and "ERP-1001" in out and "built-in tables" in out

    def test_json_shape(self, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--json prints each file's path, profile, invoices (reference, rows, payload), errors, warnings."""
        (workdir / "a.csv").write_text(GOOD + BAD_ROW)
        assert run("a.csv", "--json") == 1
        doc = json.loads(capsys.readouterr().out)
        [entry] = doc["files"]
        assert entry["path"] == "a.csv" and entry["profile"] is None and entry["warnings"] == []
        [inv] = entry["invoices"]
        assert inv["reference_code"] == "C-1" and inv["rows"] == [2]
        assert inv["payload"]["items"][0]["price"] == 11900 and inv["payload"]["customer"]["dv"] == "8"
        [err] = entry["errors"]
        assert {k: err[k] for k in ("row", "column", "value")} == {
            "row": 3,
            "column": "item.quantity",
            "value": "1.5",
        }
        assert err["message"] == "item.quantity must be a whole number"

    def test_unreadable_file_is_a_file_level_error(
        self, workdir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A file that cannot be read is an error with row and column null, and exit 1."""
        (workdir / "empty.csv").write_text("")
        (workdir / "ok.csv").write_text(GOOD)
        assert run("empty.csv", "ok.csv", "--json") == 1
        files = json.loads(capsys.readouterr().out)["files"]
        assert files[0]["errors"] == [
            {"row": None, "column": None, "value": None, "message": "empty.csv: is empty"}
        ]
        assert files[1]["errors"] == [] and len(files[1]["invoices"]) == 1

    def test_explicit_profile(self, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--profile applies a profile to a file its globs would not select."""
        shutil.copy(SAMPLES / "erp_ventas.csv", workdir / "export.csv")
        assert run("export.csv") == 1
        capsys.readouterr()
        assert run("export.csv", "--profile", "erp_ventas_es", "--json") == 0
        assert json.loads(capsys.readouterr().out)["files"][0]["profile"] == "erp_ventas_es"

    def test_human_output_lists_errors_with_location(
        self, workdir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The human report shows each error with row, column and value."""
        (workdir / "a.csv").write_text(GOOD + BAD_ROW)
        assert run("a.csv") == 1
        out = capsys.readouterr().out
        assert "C-1  rows 2  1 item(s)  total 11900.00" in out
        assert "ERROR row 3, column 'item.quantity', value '1.5': item.quantity must be a whole number" in out

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["missing.csv"], "missing.csv: no such file"),
            (["a.csv", "--profile", "nope"], "unknown profile 'nope'"),
        ],
    )
    def test_usage_errors_exit_2(
        self, workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
    ) -> None:
        """A missing path or an unknown profile is a usage error (exit 2) and nothing is read."""
        (workdir / "a.csv").write_text(GOOD)
        assert run(*args) == 2
        assert message in capsys.readouterr().err

    def test_broken_profile_exits_2(self, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An invalid profile file is a configuration error (exit 2) naming the file."""
        (workdir / "profiles" / "broken.toml").write_text("[profile\n")
        (workdir / "a.csv").write_text(GOOD)
        assert run("a.csv") == 2
        assert "broken.toml" in capsys.readouterr().err

    def test_uses_the_lookup_cache_when_present(
        self, workdir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A lookups cache (here with range 4 only) is used read-only by the dry run."""
        (workdir / "var").mkdir()
        cache = {
            "version": 1,
            "fetched_at": 0,
            "complete": False,
            "municipalities": {},
            "units": {"94": 70},
            "numbering_ranges": [4],
        }
        (workdir / "var" / "lookups.json").write_text(json.dumps(cache))
        (workdir / "a.csv").write_text(GOOD)
        before = tree(workdir)
        assert run("a.csv", "--json") == 1
        err = json.loads(capsys.readouterr().out)["files"][0]["errors"][0]
        assert "numbering range" in err["message"] and "(known: 4)" in err["message"]
        assert tree(workdir) == before
