"""The README stays honest: its two commands exist, CI runs the test one, and the demo recipe works."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _make_recipe(target: str) -> list[str]:
    """Return the shell lines of one Makefile target."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_readme_gives_exactly_two_setup_commands() -> None:
    """The README's command blocks before the first section are `make demo` and `make check`."""
    head = README.split("## What happens to a file")[0]
    blocks = re.findall(r"```sh\n(.*?)```", head, flags=re.S)
    assert [b.strip() for b in blocks] == ["make demo", "make check"]


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls `make check`, the README's test command, which runs lint, types and pytest."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make check$", ci, flags=re.M)
    check = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^check: install lint types test$", check, flags=re.M)
    assert any("pytest" in line for line in _make_recipe("test"))


def test_every_cli_command_in_the_readme_exists() -> None:
    """Each `factus-daemon <command> [<sub>]` named in the README is accepted by the parser."""
    parser = build_parser()
    seen = set(re.findall(r"(?:`|bin/)factus-daemon ([a-z-]+(?: [a-z-]+)?)", README))
    assert seen
    subcommands = {
        "auth": {"login", "refresh"},
        "invoice": {"list", "show", "pdf", "xml", "email", "events", "delete"},
        "lookup": {"numbering-ranges", "municipalities", "tributes", "units", "countries", "acquirer"},
    }
    for phrase in sorted(seen):
        words = phrase.split()
        top = words[0]
        with pytest.raises(SystemExit) as info:
            parser.parse_args([top, "--help"])
        assert info.value.code == 0, phrase
        if top in subcommands and len(words) > 1 and words[1] in subcommands[top]:
            with pytest.raises(SystemExit) as info:
                parser.parse_args([top, words[1], "--help"])
            assert info.value.code == 0, phrase


@pytest.mark.timeout(180)
def test_demo_recipe_runs_on_a_fresh_copy(tmp_path: Path) -> None:
    """`make demo`'s recipe, run in a copy of the project, validates every sample and writes reports."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTUS_")}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT)
    for line in _make_recipe("demo"):
        cmd = line.replace("$(BIN)/factus-daemon", f"{sys.executable} -m daemon")
        done = subprocess.run(  # noqa: S602 - the Makefile recipe is shell by nature
            cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150
        )
        assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    reports = sorted((tmp_path / "outbox").glob("*/report.json"))
    samples = [
        p for p in (ROOT / "config" / "samples").iterdir() if p.suffix in {".csv", ".xlsx", ".json", ".jsonl"}
    ]
    assert len(reports) == len(samples)
    validated = 0
    for path in reports:
        report = json.loads(path.read_text(encoding="utf-8"))
        assert report["file_errors"] == []
        for invoice in report["invoices"]:
            assert invoice["status"] == "validated", invoice
            assert (path.parent / invoice["pdf"]).read_bytes().startswith(b"%PDF-")
            assert b"<Invoice" in (path.parent / invoice["xml"]).read_bytes()
            validated += 1
    assert validated >= len(samples)
    assert not [p for p in (tmp_path / "inbox").rglob("*") if p.is_file()]
    assert len(list((tmp_path / "outbox" / "archive").rglob("*.*"))) == len(samples)


def test_readme_validate_example_succeeds() -> None:
    """The README's `validate ... --json` example exits 0 and prints planned payloads."""
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "validate", "config/samples/erp_ventas.csv", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    files = json.loads(done.stdout)["files"]
    assert files[0]["errors"] == []
    assert files[0]["invoices"][0]["payload"]["customer"]


def test_readme_emulator_example_works(tmp_path: Path) -> None:
    """The README's emulator snippet: start it, then a CLI lookup with the documented credentials."""
    assert "FACTUS_PASSWORD='sandbox2024%'" in README
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "emulator", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FACTUS_BASE_URL": url,
            "FACTUS_CLIENT_ID": "factus-emulator",
            "FACTUS_CLIENT_SECRET": "factus-emulator-secret",
            "FACTUS_USERNAME": "sandbox@factus.com.co",
            "FACTUS_PASSWORD": "sandbox2024%",
        }
        done = subprocess.run(
            [sys.executable, "-m", "daemon", "lookup", "numbering-ranges"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert "SETP" in done.stdout
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_readme_profile_snippets_are_valid_profiles() -> None:
    """Every TOML block in the README is accepted by the profile loader (as part of a profile)."""
    import tomllib

    from daemon.intake import MappingProfile

    blocks = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
    assert blocks
    for block in blocks:
        profile = MappingProfile.from_dict({"profile": {"name": "readme"}, **tomllib.loads(block)})
        assert profile.filters or profile.columns


def test_every_test_named_in_reliability_md_exists() -> None:
    """A guarantee's proof points at tests that exist (file, and test or class name when given)."""
    text = (ROOT / "RELIABILITY.md").read_text(encoding="utf-8")
    current: Path | None = None
    checked = 0
    for match in re.finditer(r"`(tests/[\w/]+\.py)?((?:::\w+)*)(?:\[[^\]`]*\])?`", text):
        path, names = match.group(1), match.group(2)
        if path:
            current = ROOT / path
            assert current.is_file(), path
        if not names:
            continue
        assert current is not None, match.group(0)
        source = current.read_text(encoding="utf-8")
        for name in names.strip(":").split("::"):
            assert re.search(rf"^\s*(?:def|class) {name}\b", source, flags=re.M), f"{current.name}::{name}"
            checked += 1
    assert checked >= 30
