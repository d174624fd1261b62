"""Intake benchmark (not a test): read + map + validate throughput and peak memory, beside a naive baseline.

Run:  .venv/bin/python bench/bench_intake.py [--lines 100000] [--xlsx-rows 100000] [--skip-baseline]

1. 100,000 canonical CSV lines (about 20,000 invoices of 1-9 lines) through ``read_invoices``:
   goal >= 50,000 lines/s and peak memory < 500 MB.
2. A 100,000-row XLSX (typed cells) through ``read_invoices``: goal >= 20,000 rows/s
   (values are read with python-calamine; zip/XML screening and checks included).
Each is printed beside a naive baseline measured in the same run: pandas defaults
(``read_csv`` / ``read_excel`` with openpyxl) plus one pydantic model per row.
Every measurement runs in a fresh subprocess; peak memory is that process's peak RSS (interpreter
and imports included). Inputs are generated once into ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import random
import resource
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"

HEADERS = [
    "reference_code",
    "payment_form",
    "payment_due_date",
    "payment_method_code",
    "customer.identification_document_id",
    "customer.identification",
    "customer.company",
    "customer.names",
    "customer.email",
    "customer.municipality_code",
    "customer.phone",
    "item.code_reference",
    "item.name",
    "item.quantity",
    "item.price",
    "item.discount_rate",
    "item.tax_rate",
    "item.is_excluded",
    "item.unit_measure_code",
    "item.withholding.06",
    "item.note",
]
CITIES = ["11001", "05001", "76001", "08001", "68679", "13001", "66001", "17001"]


def rows(n: int, *, typed: bool) -> list[list[Any]]:
    """``n`` valid canonical lines grouped in invoices of 1-9 lines (deterministic)."""
    from daemon.money import nit_check_digit  # noqa: F401  (ensures the package imports)

    rng = random.Random(20261125)
    out: list[list[Any]] = []
    invoice = 0
    while len(out) < n:
        invoice += 1
        company = rng.random() < 0.5
        credit = rng.random() < 0.3
        ident: Any = str(900_000_000 + invoice) if company else str(10_000_000 + invoice)
        head = [
            f"BENCH-{invoice:07d}",
            "2" if credit else "1",
            "2026-12-31" if credit else "",
            rng.choice(["10", "47", "48"]),
            6 if typed and company else (3 if typed else ("6" if company else "3")),
            int(ident) if typed else ident,
            f"Empresa {invoice} S.A.S." if company else "",
            "" if company else f"Cliente {invoice}",
            f"cliente{invoice}@example.com",
            rng.choice(CITIES),
            f"0{rng.randint(600_000_000, 609_999_999)}",
        ]
        for j in range(min(rng.randint(1, 9), n - len(out))):
            excluded = rng.random() < 0.1
            price = Decimal(rng.randint(100, 9_999_999)) / 100
            out.append(
                [
                    *head,
                    f"SKU-{rng.randint(1, 5000):05d}",
                    f"Producto {j} de la factura {invoice}",
                    rng.randint(1, 20),
                    float(price) if typed else f"{price:.2f}",
                    rng.choice([0, 0, 5, 10]),
                    "0.00" if excluded else rng.choice(["19.00", "5.00"]),
                    1 if excluded else 0,
                    rng.choice(["94", "KGM", "LTR"]),
                    rng.choice(["", "", "2.50"]),
                    "",
                ]
            )
    return out


def make_csv(n: int) -> Path:
    """The CSV input (cached)."""
    path = RESULTS / f"canonical_{n}.csv"
    if not path.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADERS)
            writer.writerows(rows(n, typed=False))
    return path


def make_xlsx(n: int) -> Path:
    """The XLSX input with typed cells (cached; openpyxl write-only)."""
    path = RESULTS / f"canonical_{n}.xlsx"
    if not path.exists():
        from openpyxl import Workbook

        RESULTS.mkdir(parents=True, exist_ok=True)
        wb = Workbook(write_only=True)
        ws = wb.create_sheet("Facturas")
        ws.append(HEADERS)
        for row in rows(n, typed=True):
            ws.append(row)
        wb.save(path)
    return path


# -- children ----------------------------------------------------------------------------------------


def child_intake(path: Path) -> dict[str, Any]:
    """read_invoices on the file."""
    from daemon.intake import Lookups, read_invoices
    from daemon.settings import Settings

    settings, lookups = Settings(), Lookups.builtin()
    start = time.perf_counter()
    result = read_invoices(path, settings=settings, lookups=lookups)
    seconds = time.perf_counter() - start
    lines = sum(len(i.payload["items"]) for i in result.invoices)
    return {
        "seconds": seconds,
        "lines": lines,
        "invoices": len(result.invoices),
        "errors": len(result.errors),
    }


def child_naive(path: Path) -> dict[str, Any]:
    """pandas with default options, then one pydantic model per row."""
    import pandas as pd
    from pydantic import BaseModel, ConfigDict, Field

    class NaiveRow(BaseModel):
        model_config = ConfigDict(populate_by_name=True, coerce_numbers_to_str=True)
        reference_code: str
        payment_form: int
        payment_method_code: int
        document_id: int = Field(alias="customer.identification_document_id")
        identification: str = Field(alias="customer.identification")
        email: str = Field(alias="customer.email")
        municipality: str = Field(alias="customer.municipality_code")
        code_reference: str = Field(alias="item.code_reference")
        name: str = Field(alias="item.name")
        quantity: int = Field(alias="item.quantity", gt=0)
        price: Decimal = Field(alias="item.price", decimal_places=2)
        discount_rate: Decimal = Field(alias="item.discount_rate")
        tax_rate: Decimal = Field(alias="item.tax_rate")
        is_excluded: int = Field(alias="item.is_excluded")

    start = time.perf_counter()
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_excel(path, engine="openpyxl")
    records = frame.to_dict(orient="records")
    ok = 0
    for record in records:
        clean = {k: ("" if isinstance(v, float) and v != v else v) for k, v in record.items()}
        NaiveRow.model_validate(clean)
        ok += 1
    seconds = time.perf_counter() - start
    altered = _altered_phones(path, records)
    return {"seconds": seconds, "lines": ok, "invoices": None, "errors": 0, "altered": altered}


def _altered_phones(path: Path, records: list[dict[str, Any]]) -> int:
    """How many phone cells the naive reader changed (a leading zero lost), outside the timing."""
    if path.suffix != ".csv":
        return sum(1 for r in records if not str(r["customer.phone"]).startswith("0"))
    with path.open(newline="", encoding="utf-8") as fh:
        originals = [row["customer.phone"] for row in csv.DictReader(fh)]
    return sum(1 for r, o in zip(records, originals, strict=True) if str(r["customer.phone"]) != o)


def run_child(kind: str, path: Path) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; returns its figures plus peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def child_main(kind: str, path: Path) -> None:
    """Entry point of a child process."""
    figures = child_intake(path) if kind == "intake" else child_naive(path)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


# -- report --------------------------------------------------------------------------------------------


def report(title: str, rows_n: int, ours: dict[str, Any], naive: dict[str, Any] | None, goal: float) -> bool:
    """Print one comparison; return whether the goal was met."""
    rate = rows_n / ours["seconds"]
    met = rate >= goal
    print(f"\n{title}")
    print(f"  intake (read_invoices)   {ours['seconds']:7.2f} s  {rate:10,.0f} rows/s  "
          f"peak RSS {ours['peak_rss_mb']:6.0f} MB  invoices {ours['invoices']:,}  errors {ours['errors']}")  # fmt: skip
    if naive is not None:
        naive_rate = rows_n / naive["seconds"]
        print(f"  naive (pandas + pydantic/row) {naive['seconds']:5.2f} s  {naive_rate:10,.0f} rows/s  "
              f"peak RSS {naive['peak_rss_mb']:6.0f} MB  (flat rows only: no grouping, payloads or lookups)")  # fmt: skip
        print(
            f"    ...and pandas defaults altered {naive['altered']:,} of {rows_n:,} phone cells (leading zero lost)"
        )
        print(f"  speed-up vs naive: {naive['seconds'] / ours['seconds']:.1f}x")
    print(f"  goal >= {goal:,.0f} rows/s: {'met' if met else 'NOT met'}")
    return met


def main() -> int:
    """Generate inputs, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--xlsx-rows", type=int, default=100_000)
    parser.add_argument("--skip-baseline", action="store_true", help="skip the (slow) naive baselines")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child[0], Path(args.child[1]))
        return 0
    import platform

    calamine = importlib.metadata.version("python-calamine")
    print(f"Python {platform.python_version()} on {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs; "
          f"pandas {importlib.metadata.version('pandas')}; XLSX values engine python-calamine {calamine}")  # fmt: skip
    csv_path = make_csv(args.lines)
    ours = run_child("intake", csv_path)
    naive = None if args.skip_baseline else run_child("naive", csv_path)
    ok = report(
        f"CSV: {args.lines:,} canonical lines ({csv_path.stat().st_size / 1e6:.1f} MB)",
        args.lines,
        ours,
        naive,
        50_000,
    )
    memory_ok = ours["peak_rss_mb"] < 500
    print(f"  goal peak memory < 500 MB: {'met' if memory_ok else 'NOT met'}")
    xlsx_path = make_xlsx(args.xlsx_rows)
    ours_x = run_child("intake", xlsx_path)
    naive_x = None if args.skip_baseline else run_child("naive", xlsx_path)
    ok_x = report(
        f"XLSX: {args.xlsx_rows:,} rows ({xlsx_path.stat().st_size / 1e6:.1f} MB)",
        args.xlsx_rows,
        ours_x,
        naive_x,
        20_000,
    )
    print(
        f"\nrepeat: .venv/bin/python bench/bench_intake.py --lines {args.lines} --xlsx-rows {args.xlsx_rows}"
    )
    return 0 if ok and memory_ok and ok_x else 1


if __name__ == "__main__":
    sys.exit(main())
