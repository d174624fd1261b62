"""Soak the daemon: feed files continuously for N minutes while emulator faults switch on and off.

A watch-mode daemon subprocess (``python -m daemon run``) is pointed at an in-process emulator
(``duplicate_policy = create-duplicate``, so any resend is a second bill). One small CSV is dropped
every ``--file-every`` seconds (about one in ten is a junk file that must go to ``failed/``) while
the faults cycle every ``--phase-s`` seconds: calm, 30 % 5xx, Factus down (the emulator stopped, then
started again on the same port with its state), 429 bursts, lost answers (connection reset after
the bill is stored), revoked tokens, latency, DIAN time-outs. Every ``--sample-s``
seconds the daemon's RSS, open file descriptors and threads are printed (read from
``/proc/<pid>/status`` and ``/proc/<pid>/fd``). At the end: growth of RSS and descriptors, and the
lost / duplicated invoice check. Exit status 0 when nothing was lost or duplicated and memory and
descriptors stayed flat, 1 otherwise.

    .venv/bin/python bench/soak.py                 # 20 minutes
    .venv/bin/python bench/soak.py --minutes 2     # a quick look
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from reliability_support import Rig, Soak, assert_clean  # noqa: E402

from daemon.emulator import EmulatorConfig, EmulatorServer  # noqa: E402
from daemon.log import configure_logging  # noqa: E402

SETTINGS = {
    "factus": {"rate_limit": 5000, "validate_timeout_s": 1.0, "timeout_s": 3.0, "refresh_margin_s": 1.0},
    "submit": {"max_attempts": 6},
    "scheduler": {"retry_pending_s": 0.5, "token_check_s": 0.5},
}


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print the figures; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="how long files are fed (default 20)")
    parser.add_argument("--file-every", type=float, default=0.5, help="seconds between files (default 0.5)")
    parser.add_argument("--per-file", type=int, default=3, help="invoices per file (default 3)")
    parser.add_argument(
        "--phase-s",
        type=float,
        default=60.0,
        help="seconds per fault phase, the outage included (default 60)",
    )
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the workspace folder afterwards")
    args = parser.parse_args(argv)
    configure_logging("warning")  # the in-process emulator would log every request
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))  # run the cleanup: stop the daemon too

    config = EmulatorConfig(port=0, rate_limit=100_000, duplicate_policy="create-duplicate", token_ttl_s=30)
    workdir = Path(tempfile.mkdtemp(prefix="factus-soak-"))
    with EmulatorServer(config) as server:
        rig = Rig(workdir / "ws", server, **SETTINGS)
        soak = Soak(
            rig,
            duration_s=args.minutes * 60,
            file_every_s=args.file_every,
            per_file=args.per_file,
            phase_s=args.phase_s,
            sample_every_s=args.sample_s,
            report=lambda line: print(line, flush=True),
        )
        print(f"soak for {args.minutes} min in {workdir}; emulator at {server.url}", flush=True)
        started = time.monotonic()
        try:
            soak.run()
            soak.settle(timeout_s=600)
            alive = rig.alive()
            code = rig.stop()
        finally:
            rig.cleanup()
        lost, duplicated = soak.lost_and_duplicated()
        try:
            assert_clean(rig)
            clean = True
        except AssertionError as exc:
            print(f"leftovers: {exc}")
            clean = False
    samples = [s for t, s in soak.samples if t >= min(60.0, args.minutes * 60 / 4)]
    third = max(1, len(samples) // 3)
    early, late = samples[:third], samples[-third:]
    rss_early = statistics.median(s["vmrss"] for s in early) / 1024
    rss_late = statistics.median(s["vmrss"] for s in late) / 1024
    fds_early, fds_late = max(s["fds"] for s in early), max(s["fds"] for s in late)
    settled = len(rig.archived()) + len(rig.failed_files())
    print()
    print(f"duration            {(time.monotonic() - started) / 60:.1f} min (feeding {args.minutes} min)")
    print(f"files fed           {len(soak.files)} ({settled} archived or failed)")
    print(f"invoices fed        {len(soak.refs)}")
    print(f"lost                {len(lost)} {lost[:5]}")
    print(f"duplicated          {len(duplicated)} {duplicated[:5]}")
    print(
        f"RSS median          {rss_early:.1f} MB early -> {rss_late:.1f} MB late (peak {max(s['vmhwm'] for s in samples) / 1024:.1f} MB)"
    )
    print(f"open descriptors    {fds_early} early -> {fds_late} late (max {max(s['fds'] for s in samples)})")
    print(f"threads             max {max(s['threads'] for s in samples)}")
    print(f"daemon              {'alive' if alive else 'DEAD'} until SIGTERM, exit {code}")
    ok = (
        not lost
        and not duplicated
        and alive
        and code == 0
        and clean
        and settled == len(soak.files)
        and rss_late - rss_early < 32
        and fds_late <= fds_early + 8
    )
    print("verdict             " + ("OK" if ok else "FAILED"))
    if not args.keep and ok:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
