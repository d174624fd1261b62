"""End-to-end throughput of the daemon against the emulator with a scaled rate limit (prints figures).

The emulator allows ``--limit`` requests per ``--window-s`` window and answers after ``--latency-ms``.
The daemon (``run --once`` semantics, in-process) submits ``--invoices`` invoices spread over several
files: each invoice costs 3 requests (create, PDF, XML), so the ceiling is ``limit / 3`` invoices per
window. Beside it, a naive sequential submitter (one thread, no limiter, no reconciliation) does the
same work against a fresh emulator. Printed: requests per window achieved in steady state versus the
limit, 429 answers, invoices per minute versus the ceiling.

    .venv/bin/python bench/bench_daemon.py                      # 80 req / 2 s, 50 ms, 240 invoices
    .venv/bin/python bench/bench_daemon.py --invoices 480 --limit 80 --window-s 2 --latency-ms 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from service_support import invoice_rows, settings_for, write_invoices  # noqa: E402

from daemon.emulator import EmulatorConfig, EmulatorServer  # noqa: E402
from daemon.log import configure_logging  # noqa: E402
from daemon.money import dumps_json  # noqa: E402
from daemon.service.runner import Daemon  # noqa: E402

REQUESTS_PER_INVOICE = 3


class Sampler:
    """Samples the emulator's request counters every ``step_s`` on a thread."""

    def __init__(self, server: EmulatorServer, step_s: float = 0.05) -> None:
        self.server = server
        self.step_s = step_s
        self.samples: list[tuple[float, int, int]] = []  # (monotonic, total requests, 429s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> tuple[float, int, int]:
        req = self.server.snapshot()["requests"]
        return time.monotonic(), int(req["total"]), int(req["by_status"].get("429", 0))

    def _run(self) -> None:
        while not self._stop.wait(self.step_s):
            self.samples.append(self._read())

    def __enter__(self) -> Sampler:
        self.samples.append(self._read())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self._read())


def window_counts(samples: list[tuple[float, int, int]], window_s: float) -> list[int]:
    """Requests in consecutive windows, from the first request to the last (edges dropped)."""
    active = [s for s in samples if s[1] > samples[0][1]]
    if len(active) < 2:
        return []
    start, end = active[0][0], active[-1][0]
    counts: list[int] = []
    t = start
    while t + window_s <= end:
        lo = max((s for s in samples if s[0] <= t), key=lambda s: s[0])[1]
        hi = max((s for s in samples if s[0] <= t + window_s), key=lambda s: s[0])[1]
        counts.append(hi - lo)
        t += window_s
    return counts[1:-1] if len(counts) > 3 else counts


def run_daemon(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = EmulatorConfig(
        port=0,
        rate_limit=args.limit,
        rate_window_s=args.window_s,
        latency_ms=args.latency_ms,
        token_ttl_s=3600,
    )
    with EmulatorServer(config) as server:
        settings = settings_for(
            work,
            server,
            factus={"rate_limit": args.limit, "rate_window_s": args.window_s, "timeout_s": 10.0,
                    "validate_timeout_s": 10.0, "max_retries": 4},
            submit={"concurrency": args.concurrency, "max_attempts": 5},
            watch={"stable_s": 0.1},
        )  # fmt: skip
        per_file = max(1, args.invoices // args.files)
        refs = 0
        for f in range(args.files):
            names = [f"B{f:02d}-{n:04d}" for n in range(per_file)]
            write_invoices(work / "inbox" / f"batch{f:02d}.csv", names)
            refs += len(names)
        daemon = Daemon(settings)
        with Sampler(server) as sampler:
            started = time.monotonic()
            code = daemon.run_once()
            elapsed = time.monotonic() - started
        snap = server.snapshot()
    validated = sum(1 for b in snap["bills"] if b["status"] == 1)
    first = next(s[0] for s in sampler.samples if s[1] > sampler.samples[0][1])
    busy_s = sampler.samples[-1][0] - first
    return {
        "exit": code,
        "invoices": refs,
        "validated": validated,
        "elapsed_s": elapsed,
        "busy_s": busy_s,
        "requests": snap["requests"]["total"],
        "429": snap["requests"]["by_status"].get("429", 0),
        "windows": window_counts(sampler.samples, args.window_s),
    }


def run_naive(args: argparse.Namespace, count: int) -> dict[str, Any]:
    """One thread: login, then create + PDF + XML per invoice, no limiter, no retry."""
    config = EmulatorConfig(
        port=0,
        rate_limit=args.limit,
        rate_window_s=args.window_s,
        latency_ms=args.latency_ms,
        token_ttl_s=3600,
    )
    with EmulatorServer(config) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        token = http.post(
            "/oauth/token",
            data={
                "grant_type": "password",
                "client_id": config.client_id,
                "client_secret": config.client_secret,
                "username": config.username,
                "password": config.password,
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        validated = refused = 0
        with Sampler(server) as sampler:
            started = time.monotonic()
            for n in range(count):
                row = invoice_rows(f"N-{n:04d}")[0]
                payload = _payload(row)
                answer = http.post(
                    "/v1/bills/validate",
                    content=dumps_json(payload),
                    headers={**headers, "Content-Type": "application/json"},
                )
                if answer.status_code != 201:
                    refused += 1
                    continue
                number = answer.json()["data"]["bill"]["number"]
                http.get(f"/v1/bills/download-pdf/{number}", headers=headers)
                http.get(f"/v1/bills/download-xml/{number}", headers=headers)
                validated += 1
            elapsed = time.monotonic() - started
        snap = server.snapshot()
    return {
        "invoices": count,
        "validated": validated,
        "refused": refused,
        "elapsed_s": elapsed,
        "requests": snap["requests"]["total"],
        "429": snap["requests"]["by_status"].get("429", 0),
        "windows": window_counts(sampler.samples, args.window_s),
    }


def _payload(row: dict[str, str]) -> dict[str, Any]:
    return {
        "numbering_range_id": 8,
        "reference_code": row["reference_code"],
        "document": "01",
        "operation_type": "10",
        "payment_form": "1",
        "payment_method_code": "10",
        "send_email": False,
        "customer": {
            "identification_document_id": 3,
            "identification": row["customer.identification"],
            "names": row["customer.names"],
            "email": row["customer.email"],
            "legal_organization_id": 2,
            "tribute_id": 21,
        },
        "items": [
            {
                "code_reference": row["item.code_reference"],
                "name": row["item.name"],
                "quantity": int(row["item.quantity"]),
                "discount_rate": 0,
                "price": int(row["item.price"]),
                "tax_rate": "19.00",
                "unit_measure_id": 70,
                "standard_code_id": 1,
                "is_excluded": 0,
                "tribute_id": 1,
            }
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=240)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--limit", type=int, default=80, help="emulator requests per window")
    parser.add_argument("--window-s", type=float, default=2.0)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--naive-invoices", type=int, default=60)
    args = parser.parse_args()
    configure_logging("error", json=True)

    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        d = run_daemon(args, Path(tmp))
    n = run_naive(args, args.naive_invoices)

    ceiling_per_min = args.limit / REQUESTS_PER_INVOICE * 60 / args.window_s
    limit = args.limit
    print(f"emulator: {limit} requests / {args.window_s:g} s window, {args.latency_ms} ms latency")
    print(f"ceiling:  {limit / REQUESTS_PER_INVOICE:.1f} invoices per window = {ceiling_per_min:.0f} invoices/min "
          f"({REQUESTS_PER_INVOICE} requests per invoice)")  # fmt: skip
    for name, r in (("daemon", d), ("naive sequential", n)):
        windows = r["windows"]
        per_min = r["validated"] / r["elapsed_s"] * 60
        mean = statistics.mean(windows) if windows else float("nan")
        low = min(windows) if windows else float("nan")
        print(f"\n{name}:")
        print(f"  invoices validated      {r['validated']}/{r['invoices']} in {r['elapsed_s']:.1f} s")
        print(f"  invoices per minute     {per_min:.0f}  ({per_min / ceiling_per_min:.0%} of the ceiling)")
        print(f"  requests per window     mean {mean:.1f}, min {low:.0f} of {limit}  "
              f"({mean / limit:.0%} mean, {low / limit:.0%} worst steady window)")  # fmt: skip
        print(f"  steady windows          {windows}")
        print(f"  429 answers             {r['429']}  (requests {r['requests']})")
        if "exit" in r:
            print(f"  exit code               {r['exit']}")
    print("\nrepeat: .venv/bin/python bench/bench_daemon.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
