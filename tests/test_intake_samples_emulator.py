"""The shipped samples' payloads are accepted and validated by the Factus emulator over real sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from daemon.emulator import EmulatorConfig, EmulatorServer
from daemon.factus import FactusClient
from daemon.intake import Lookups, load_profiles, read_invoices
from daemon.settings import FactusSettings, Settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(
    p for p in (ROOT / "config" / "samples").iterdir() if p.suffix in {".csv", ".xlsx", ".json", ".jsonl"}
)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_invoices_validate_at_the_emulator(sample: Path, emu: EmulatorServer, tmp_path: Path) -> None:
    """Every invoice of every sample is validated by the emulator, with the total the intake expects."""
    defaults = EmulatorConfig()
    settings = FactusSettings(
        base_url=emu.url,
        client_id=defaults.client_id,
        client_secret=SecretStr(defaults.client_secret),
        username=defaults.username,
        password=SecretStr(defaults.password),
        token_cache=tmp_path / "token.json",
    )
    result = read_invoices(
        sample,
        settings=Settings(),
        lookups=Lookups.builtin(),
        profiles=load_profiles(ROOT / "config" / "profiles"),
    )
    assert result.invoices and not result.errors
    with FactusClient.from_settings(settings) as client:
        for planned in result.invoices:
            outcome = client.create_bill(json.loads(planned.payload_json()))
            assert outcome.kind == "validated", (
                planned.reference_code,
                outcome.message,
                outcome.field_errors,
            )
