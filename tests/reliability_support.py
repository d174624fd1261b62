"""Helpers for the reliability suites: a daemon workspace, process probes and the end-state checks.

Built on :mod:`service_support` (canonical invoices, TOML config, subprocess environment). The
checks are the promises of ``RELIABILITY.md``: every good invoice validated exactly once at the
emulator, every source file in exactly one terminal place, every report complete and parseable,
no temp file left behind, nothing written outside the daemon's folders.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service_support import (
    HEADER,
    bills_by_reference,
    config_toml,
    daemon_env,
    invoice_rows,
    wait_for,
)

from daemon.emulator import EmulatorServer
from daemon.service.outbox import CSV_COLUMNS, REPORT_STATUSES

__all__ = [
    "FORMULA_START",
    "Rig",
    "Soak",
    "assert_clean",
    "assert_once",
    "assert_reports_complete",
    "assert_terminal",
    "csv_file",
    "proc_stats",
    "tree",
]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


ADDRESS_SPACE_LIMIT = 8 * 1024**3
"""Virtual memory cap of every daemon subprocess started by :class:`Rig` (8 GiB)."""


def _limit_address_space() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def csv_file(rows: Iterable[Mapping[str, str]]) -> str:
    """A canonical CSV written with the csv module (cells with commas or quotes are quoted)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow([row.get(col, "") for col in HEADER])
    return out.getvalue()


class Rig:
    """One daemon workspace under ``root``: folders, config, environment and the daemon process.

    Args:
        root: the workspace folder (inbox, outbox, var live below it).
        server: the emulator the daemon talks to.
        sections: TOML overrides, as for :func:`service_support.config_toml`.
    """

    def __init__(self, root: Path, server: EmulatorServer, **sections: Mapping[str, Any]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.server = server
        self.config = config_toml(root, **sections)
        self.env = daemon_env(server)
        paths = dict(sections.get("paths", {}))
        self.inbox = Path(paths.get("inbox", root / "inbox"))
        self.outbox = Path(paths.get("outbox", root / "outbox"))
        self.archive = self.outbox / "archive"
        self.failed = self.outbox / "failed"
        self.var = Path(paths.get("state_dir", root / "var"))
        self.staging = root / "staging"
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(exist_ok=True)

    # -- input -----------------------------------------------------------------------------------

    def drop_text(self, name: str, text: str, *, encoding: str = "utf-8") -> Path:
        """Put a file into the inbox atomically (written beside it, then renamed in)."""
        return self.drop_bytes(name, text.encode(encoding))

    def drop_bytes(self, name: str, data: bytes) -> Path:
        """Put raw bytes into the inbox atomically under ``name`` (may name a profile sub-folder)."""
        tmp = self.staging / f"{time.time_ns()}-{random.random():.6f}"
        tmp.write_bytes(data)
        target = self.inbox / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, target)
        return target

    def drop(self, name: str, refs: Iterable[str], **kw: Any) -> Path:
        """Drop a canonical CSV with one invoice per reference code."""
        rows = [row for ref in refs for row in invoice_rows(ref, **kw)]
        return self.drop_text(name, csv_file(rows))

    # -- the daemon ------------------------------------------------------------------------------

    def command(self, *args: str, log_level: str | None = None) -> list[str]:
        """The argv of ``python -m daemon ... run ARGS``."""
        argv = [sys.executable, "-m", "daemon", "--config", str(self.config), "--log-json"]
        if log_level:
            argv += ["--log-level", log_level]
        return [*argv, "run", *args]

    def spawn(
        self, *args: str, log_level: str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a daemon subprocess (its stdout and stderr are appended to ``daemon.log``).

        Its address space is capped at :data:`ADDRESS_SPACE_LIMIT`, so an input that makes it try
        to allocate absurd amounts fails inside the daemon instead of exhausting the test machine.
        """
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                self.command(*args, log_level=log_level),
                cwd=self.root,
                env=dict(env or self.env),
                stdout=log,
                stderr=log,
                umask=0o022,
                preexec_fn=_limit_address_space,
            )
        return proc

    def start(self, *args: str, log_level: str | None = None) -> subprocess.Popen[bytes]:
        """Start the daemon in watch mode (``run``) and keep it as :attr:`proc`."""
        assert self.proc is None or self.proc.poll() is not None, "a daemon is already running"
        self.proc = self.spawn(*args, log_level=log_level)
        return self.proc

    def alive(self) -> bool:
        """True while the watch-mode daemon runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM the watch-mode daemon and return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"the daemon ignored SIGTERM for {timeout_s} s\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL the watch-mode daemon (no hook, no warning)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def once(self, *args: str, timeout_s: float = 90.0, log_level: str | None = None) -> int:
        """Run ``run --once ARGS`` to the end and return its exit code."""
        proc = self.spawn("--once", *args, log_level=log_level)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise AssertionError(f"run --once still running after {timeout_s} s\n{self.log_tail()}") from None

    def log(self) -> str:
        """Everything the daemon processes of this workspace wrote."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the log (assertion messages)."""
        return self.log()[-chars:]

    def cleanup(self) -> None:
        """Kill a daemon still running (test teardown)."""
        self.kill()

    # -- ledger and folders ---------------------------------------------------------------------

    def ledger(self) -> dict[str, Any]:
        """Files and invoices by state, read from the ledger (empty before it exists)."""
        path = self.var / "ledger.sqlite3"
        if not path.exists():
            return {"files": {}, "invoices": {}, "file_count": 0}
        db = sqlite3.connect(path, timeout=10)
        try:
            files = dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
            invoices = dict(db.execute("SELECT state, COUNT(*) FROM invoices GROUP BY state").fetchall())
        except sqlite3.OperationalError as exc:
            # The daemon creates the file, then its schema: in between there is nothing to count yet.
            if "no such table" not in str(exc):
                raise
            return {"files": {}, "invoices": {}, "file_count": 0}
        finally:
            db.close()
        return {"files": files, "invoices": invoices, "file_count": sum(files.values())}

    def settled(self, files: int) -> bool:
        """True when the ledger holds ``files`` files, all archived or failed, and no invoice in flight."""
        try:
            info = self.ledger()
        except sqlite3.Error:
            return False
        done = info["files"].get("archived", 0) + info["files"].get("failed", 0)
        active = sum(info["invoices"].get(s, 0) for s in ("planned", "submitting", "pending"))
        return info["file_count"] >= files and done == info["file_count"] and active == 0

    def wait_settled(self, files: int, timeout_s: float = 60.0) -> None:
        """Wait for :meth:`settled`, failing with the log tail."""
        ok = wait_for(lambda: self.settled(files), timeout_s, step_s=0.1)
        assert ok, f"not settled after {timeout_s} s: {self.ledger()}\n{self.log_tail()}"

    def archived(self) -> list[Path]:
        """Source files in the archive."""
        return sorted(p for p in self.archive.rglob("*") if p.is_file() or p.is_symlink())

    def failed_files(self) -> list[Path]:
        """Source files in the failed folder (reason files and retried reasons excluded)."""
        if not self.failed.is_dir():
            return []
        return sorted(
            p
            for p in self.failed.iterdir()
            if (p.is_file() or p.is_symlink() or p.is_fifo())
            and not p.name.endswith(".reason.json")
            and p.name != "retried"
        )

    def reason(self, name: str) -> dict[str, Any]:
        """The parsed ``<name>.reason.json`` of a failed file."""
        data: dict[str, Any] = json.loads((self.failed / f"{name}.reason.json").read_text(encoding="utf-8"))
        return data

    def reports(self) -> dict[str, dict[str, Any]]:
        """Every report.json by source name (the later one wins when a name repeats)."""
        out: dict[str, dict[str, Any]] = {}
        for path in sorted(self.outbox.glob("*/report.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            out[data["source"]] = data
        return out


# -- end-state checks -------------------------------------------------------------------------------


def assert_once(server: EmulatorServer, refs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Every reference has exactly one bill at the emulator, and it is validated; returns them."""
    bills = bills_by_reference(server)
    out: dict[str, dict[str, Any]] = {}
    problems = []
    for ref in refs:
        found = bills.get(ref, [])
        if len(found) != 1 or found[0]["status"] != 1:
            problems.append((ref, [(b["number"], b["status"]) for b in found]))
        else:
            out[ref] = found[0]
    assert not problems, f"not validated exactly once: {problems}"
    return out


def assert_never_validated(server: EmulatorServer, refs: Iterable[str]) -> None:
    """None of these references has a validated bill (rejected or invalid input)."""
    bills = bills_by_reference(server)
    wrong = {ref: bills[ref] for ref in refs if any(b["status"] == 1 for b in bills.get(ref, []))}
    assert not wrong, f"validated although they should not be: {wrong}"


def assert_terminal(rig: Rig, *, archived: Iterable[str] = (), failed: Iterable[str] = ()) -> None:
    """Each named source is in exactly one terminal place (the one expected) and nowhere else."""
    in_archive = [p.name for p in rig.archived()]
    in_failed = [p.name for p in rig.failed_files()]
    for name in archived:
        assert in_archive.count(name) == 1 and name not in in_failed, (name, in_archive, in_failed)
    for name in failed:
        assert in_failed.count(name) == 1 and name not in in_archive, (name, in_archive, in_failed)
    left = [p for p in rig.inbox.rglob("*") if not p.is_dir() or p.is_symlink()]
    assert left == [], f"files left in the inbox or .processing: {left}"


def assert_clean(rig: Rig) -> None:
    """No temp file anywhere, nothing left claimed in ``inbox/.processing``."""
    temps = [p for p in rig.root.rglob("*.fdtmp")]
    assert temps == [], f"temp files left behind: {temps}"
    processing = rig.inbox / ".processing"
    claimed = [p for p in processing.rglob("*") if not p.is_dir()] if processing.is_dir() else []
    assert claimed == [], f"files stuck in .processing: {claimed}"


def assert_reports_complete(rig: Rig, server: EmulatorServer | None = None) -> dict[str, dict[str, Any]]:
    """Every report.json and report.csv is final, parseable and agrees with the documents on disk.

    When ``server`` is given, every validated line carries the number the emulator issued.
    """
    numbers: dict[str, set[str]] = {}
    if server is not None:
        for ref, bills in bills_by_reference(server).items():
            numbers[ref] = {b["number"] for b in bills if b["status"] == 1}
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(rig.outbox.glob("*/report.json")):
        batch = path.parent
        report = json.loads(path.read_text(encoding="utf-8"))
        keys = {"source", "sha256", "profile", "started_at", "finished_at", "summary", "invoices"}
        assert keys | {"file_errors"} == set(report), (path, sorted(report))
        assert report["finished_at"], f"{path} is not final: {report['summary']}"
        counts = dict.fromkeys(REPORT_STATUSES, 0)
        for line in report["invoices"]:
            assert line["status"] in REPORT_STATUSES and line["status"] != "pending", (path, line)
            counts[line["status"]] += 1
            if line["status"] == "validated":
                assert line["number"] and line["cufe"], (path, line)
                pdf, xml = batch / line["pdf"], batch / line["xml"]
                assert pdf.resolve().is_relative_to(batch.resolve()), (path, line["pdf"])
                assert pdf.read_bytes().startswith(b"%PDF"), pdf
                assert xml.read_bytes().lstrip().startswith(b"<"), xml
                if server is not None:
                    assert line["number"] in numbers.get(line["reference_code"], set()), (path, line)
            for err in line["errors"]:
                assert set(err) == {"row", "column", "value", "message", "rule"} and err["message"], err
        assert report["summary"] == counts, (path, report["summary"], counts)
        text = (batch / "report.csv").read_bytes().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
        assert tuple(rows[0]) == CSV_COLUMNS, rows[0]
        assert all(len(r) == len(CSV_COLUMNS) for r in rows[1:]), path
        assert sum(1 for r in rows[1:] if r[0] == "invoice") == len(report["invoices"]), path
        for cells in rows[1:]:
            for cell in cells:
                assert not cell.startswith(FORMULA_START), f"{batch / 'report.csv'}: formula cell {cell!r}"
        found[report["source"]] = report
    return found


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of everything below ``folder`` (links not followed)."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


# -- process probes ----------------------------------------------------------------------------------


def proc_stats(pid: int) -> dict[str, int] | None:
    """RSS and peak RSS (kB), threads and open file descriptors of a live process (None when gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    values: dict[str, int] = {"fds": fds}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key.lower()] = int(rest.split()[0])
    return values


# -- soak -----------------------------------------------------------------------------------------------

FAULT_PHASES: list[tuple[str, dict[str, Any]]] = [
    ("calm", {}),
    ("5xx 30%", {"fail_rate": 0.3}),
    ("Factus down", {"down": True}),
    ("429 bursts", {"burst_429": 6, "retry_after_s": 1}),
    ("lost responses", {"reset_after_store_rate": 0.3, "reset_before_store_rate": 0.1}),
    ("token expiry", {"expire_tokens": True}),
    ("latency", {"latency_ms": 40, "latency_jitter_ms": 60}),
    ("dian time-outs", {"dian_timeout": 2}),
]


@dataclass
class Soak:
    """Feed a watch-mode daemon continuously while emulator faults switch on and off.

    The phases (:data:`FAULT_PHASES`) include one where the emulator is stopped altogether and
    started again on the same port with the same state.

    Args:
        rig: the workspace (its daemon is started by :meth:`run`).
        duration_s: how long files are fed.
        file_every_s: one file dropped this often.
        per_file: invoices per file.
        phase_s: how long each fault phase lasts (phases cycle through :data:`FAULT_PHASES`).
        sample_every_s: RSS and descriptors are sampled this often.
        report: called with a line of text at each sample (the benchmark prints them).
    """

    rig: Rig
    duration_s: float
    file_every_s: float = 0.5
    per_file: int = 2
    phase_s: float = 5.0
    sample_every_s: float = 1.0
    report: Callable[[str], None] = lambda line: None
    refs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    seed: int = 7

    def run(self) -> None:
        """Start the daemon, feed and fault for ``duration_s``, clear the faults, wait until settled."""
        rng = random.Random(self.seed)
        server, rig = self.rig.server, self.rig
        proc = rig.start()
        assert wait_for(lambda: (rig.inbox / ".processing").is_dir(), 30), rig.log_tail()
        started = time.monotonic()
        next_file = next_sample = started
        phase_index, next_phase = -1, started
        stop_expiring = threading.Event()
        expirer: threading.Thread | None = None
        n = 0
        while (now := time.monotonic()) < started + self.duration_s:
            assert proc.poll() is None, f"the daemon died during the soak\n{rig.log_tail()}"
            if now >= next_phase:
                stop_expiring.set()
                if expirer is not None:
                    expirer.join()
                if not server.running:
                    server.start()
                phase_index = (phase_index + 1) % len(FAULT_PHASES)
                name, faults = FAULT_PHASES[phase_index]
                actions = ("expire_tokens", "down")
                server.set_faults({"clear": True, **{k: v for k, v in faults.items() if k not in actions}})
                if faults.get("down"):
                    server.stop()  # unreachable: connections refused, requests in flight cut off
                if faults.get("expire_tokens"):
                    stop_expiring = threading.Event()
                    expirer = threading.Thread(target=_expire_tokens, args=(server, stop_expiring, 0.7))
                    expirer.start()
                self.phases.append(name)
                next_phase = now + self.phase_s
            if now >= next_file:
                n += 1
                refs = [f"SK{self.seed}-{n}-{i}" for i in range(self.per_file)]
                name = f"soak-{n:05d}.csv"
                if rng.random() < 0.1:
                    rig.drop_bytes(f"junk-{n:05d}.csv", b"\x00\x01junk")
                    self.files.append(f"junk-{n:05d}.csv")
                rig.drop(name, refs)
                self.refs += refs
                self.files.append(name)
                next_file = now + self.file_every_s
            if now >= next_sample:
                stats = proc_stats(proc.pid)
                if stats is not None:
                    self.samples.append((now - started, stats))
                    rss_mb = stats["vmrss"] / 1024
                    self.report(
                        f"t={now - started:7.1f}s phase={self.phases[-1]:<15} rss={rss_mb:7.1f} MB "
                        f"fds={stats['fds']:4d} threads={stats['threads']:3d} files={len(self.files):5d}"
                    )
                next_sample = now + self.sample_every_s
            time.sleep(0.02)
        stop_expiring.set()
        if expirer is not None:
            expirer.join()
        if not server.running:
            server.start()
        server.set_faults({"clear": True})

    def settle(self, timeout_s: float = 120.0) -> None:
        """Wait until every file fed is archived or failed and nothing is in flight."""
        self.rig.wait_settled(len(self.files), timeout_s)
        stats = proc_stats(self.rig.proc.pid) if self.rig.proc is not None else None
        if stats is not None:
            self.samples.append((self.samples[-1][0] + 0.001 if self.samples else 0.0, stats))

    def lost_and_duplicated(self) -> tuple[list[str], list[str]]:
        """References never validated and references validated more than once."""
        bills = bills_by_reference(self.rig.server)
        lost = [r for r in self.refs if not any(b["status"] == 1 for b in bills.get(r, []))]
        dup = [r for r in self.refs if len(bills.get(r, [])) > 1]
        return lost, dup


def _expire_tokens(server: EmulatorServer, stop: threading.Event, every_s: float) -> None:
    while not stop.wait(every_s):
        server.set_faults({"expire_tokens": True})
