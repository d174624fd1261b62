"""Helpers for the service tests: canonical input files, settings and daemon subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from daemon.emulator import EmulatorServer
from daemon.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

HEADER = (
    "reference_code",
    "customer.identification_document_id",
    "customer.identification",
    "customer.dv",
    "customer.names",
    "customer.company",
    "customer.email",
    "item.code_reference",
    "item.name",
    "item.quantity",
    "item.price",
    "item.tax_rate",
)


def invoice_rows(
    ref: str, *, items: int = 1, price: str = "11900", person: bool = True, nit_dv: str = "7"
) -> list[dict[str, str]]:
    """Rows of one canonical invoice (a person customer, or the NIT 900825759 with ``nit_dv``)."""
    rows = []
    for n in range(items):
        rows.append(
            {
                "reference_code": ref,
                "customer.identification_document_id": "3" if person else "6",
                "customer.identification": "1012345678" if person else "900825759",
                "customer.dv": "" if person else nit_dv,
                "customer.names": "Juan Pérez" if person else "",
                "customer.company": "" if person else "Acme SAS",
                "customer.email": "cliente@example.com",
                "item.code_reference": f"P{n}",
                "item.name": f"Producto {n}",
                "item.quantity": "2",
                "item.price": price,
                "item.tax_rate": "19",
            }
        )
    return rows


def csv_text(rows: Iterable[Mapping[str, str]]) -> str:
    """A canonical CSV (comma separated, header first)."""
    lines = [",".join(HEADER)]
    for row in rows:
        lines.append(",".join(row.get(col, "") for col in HEADER))
    return "\n".join(lines) + "\n"


def write_invoices(path: Path, refs: Iterable[str], **kw: Any) -> Path:
    """Write a canonical CSV holding one invoice per reference code (atomically: temp + rename)."""
    rows: list[dict[str, str]] = []
    for ref in refs:
        rows.extend(invoice_rows(ref, **kw))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(csv_text(rows), encoding="utf-8")
    os.replace(tmp, path)
    return path


def settings_for(
    root: Path, emu: EmulatorServer | None = None, *, base_url: str | None = None, **sections: Any
) -> Settings:
    """Settings with every folder under ``root``, small timings, and the emulator's credentials."""
    data: dict[str, Any] = {
        "factus": {
            "base_url": base_url or (emu.url if emu else "http://127.0.0.1:9"),
            "client_id": "factus-emulator",
            "client_secret": "factus-emulator-secret",
            "username": "sandbox@factus.com.co",
            "password": "sandbox2024%",
            "token_cache": str(root / "var" / "token.json"),
            "timeout_s": 5.0,
            "validate_timeout_s": 1.5,
            "max_retries": 1,
            "backoff_base_s": 0.05,
            "backoff_max_s": 0.2,
            "rate_limit": 10_000,
        },
        "paths": {
            "inbox": str(root / "inbox"),
            "outbox": str(root / "outbox"),
            "state_dir": str(root / "var"),
            "profiles": str(root / "profiles"),
        },
        "watch": {"stable_s": 0.2, "rescan_s": 1.0},
        "submit": {"concurrency": 4, "max_attempts": 3, "shutdown_timeout_s": 10.0},
        "scheduler": {"retry_pending_s": 1.0},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return Settings.model_validate(data)


def config_toml(root: Path, **sections: Mapping[str, Any]) -> Path:
    """A TOML config for a daemon subprocess (credentials go through the environment)."""
    base: dict[str, dict[str, Any]] = {
        "factus": {
            "token_cache": str(root / "var" / "token.json"),
            "timeout_s": 5.0,
            "validate_timeout_s": 1.0,
            "max_retries": 1,
            "backoff_base_s": 0.05,
            "backoff_max_s": 0.2,
            "rate_limit": 10_000,
        },
        "paths": {
            "inbox": str(root / "inbox"),
            "outbox": str(root / "outbox"),
            "state_dir": str(root / "var"),
            "profiles": str(root / "profiles"),
        },
        "watch": {"stable_s": 0.2, "rescan_s": 0.5},
        "submit": {"concurrency": 4, "max_attempts": 4, "shutdown_timeout_s": 10.0},
        "scheduler": {"retry_pending_s": 0.5},
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    lines = []
    for section, values in base.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path = root / "daemon.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def daemon_env(server: EmulatorServer) -> dict[str, str]:
    """Environment for a daemon subprocess pointed at ``server``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTUS_")}
    cfg = server.config
    env.update(
        {
            "FACTUS_BASE_URL": server.url,
            "FACTUS_CLIENT_ID": cfg.client_id,
            "FACTUS_CLIENT_SECRET": cfg.client_secret,
            "FACTUS_USERNAME": cfg.username,
            "FACTUS_PASSWORD": cfg.password,
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def spawn_daemon(config: Path, env: Mapping[str, str], *args: str, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m daemon --config CONFIG --log-json run ARGS`` (logs in ``cwd/daemon.log``)."""
    with (cwd / "daemon.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(config), "--log-json", "run", *args],
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=log,
        )


def wait_for(predicate: Callable[[], bool], timeout_s: float, *, step_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def reports(outbox: Path) -> list[dict[str, Any]]:
    """Every ``report.json`` in the outbox, parsed."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(outbox.glob("*/report.json"))]


def bills_by_reference(server: EmulatorServer) -> dict[str, list[dict[str, Any]]]:
    """The emulator's bills grouped by reference code."""
    out: dict[str, list[dict[str, Any]]] = {}
    for bill in server.snapshot()["bills"]:
        out.setdefault(bill["reference_code"], []).append(bill)
    return out


def leftovers(root: Path) -> list[Path]:
    """Temp files anywhere under ``root`` and files still in ``inbox/.processing``."""
    temps = [p for p in root.rglob("*.fdtmp")]
    processing = [p for p in (root / "inbox" / ".processing").rglob("*") if p.is_file()]
    return temps + processing
