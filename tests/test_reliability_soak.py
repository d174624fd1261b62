"""A short soak (about 40 s; ``bench/soak.py`` runs the same for 20 minutes).

Files are fed continuously into a watch-mode daemon subprocess while emulator faults switch on and
off (5xx, Factus stopped and restarted, 429 bursts, lost answers, revoked tokens, latency, DIAN
time-outs). Memory and open file
descriptors of the daemon must stay flat, and nothing may be lost or issued twice.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_support import Rig, Soak, assert_clean, assert_reports_complete

from daemon.emulator import EmulatorConfig, EmulatorServer

pytestmark = pytest.mark.slow

SOAK_SETTINGS = {
    "factus": {"rate_limit": 5000, "validate_timeout_s": 1.0, "timeout_s": 3.0, "refresh_margin_s": 1.0},
    "submit": {"max_attempts": 6},
    "scheduler": {"retry_pending_s": 0.5, "token_check_s": 0.5},
}


@pytest.fixture(name="server")
def _server() -> Iterator[EmulatorServer]:
    """An emulator that would show any resent invoice as a second bill."""
    config = EmulatorConfig(port=0, rate_limit=100_000, duplicate_policy="create-duplicate", token_ttl_s=5)
    with EmulatorServer(config) as server:
        yield server


def test_soak_memory_and_descriptors_stay_flat(tmp_path: Path, server: EmulatorServer) -> None:
    """Thirty-two seconds of files every 0.4 s under switching faults (Factus down for a while among
    them): nothing lost or duplicated, every file settled, RSS and open descriptors of the daemon flat."""
    rig = Rig(tmp_path / "soak", server, **SOAK_SETTINGS)
    soak = Soak(rig, duration_s=32.0, file_every_s=0.4, per_file=2, phase_s=4.0, sample_every_s=0.5)
    try:
        soak.run()
        soak.settle(timeout_s=90)
        assert rig.alive(), rig.log_tail()
        assert rig.stop() == 0, rig.log_tail()
    finally:
        rig.cleanup()
    lost, duplicated = soak.lost_and_duplicated()
    assert lost == [] and duplicated == [], (lost, duplicated)
    assert len(soak.files) >= 50 and len(set(soak.phases)) >= 7, (len(soak.files), soak.phases)
    assert len(rig.archived()) + len(rig.failed_files()) == len(soak.files)
    assert_clean(rig)
    assert_reports_complete(rig, server)

    samples = [s for t, s in soak.samples if t >= 5.0]  # after start-up and the first files
    third = max(1, len(samples) // 3)
    early, late = samples[:third], samples[-third:]
    rss_early = statistics.median(s["vmrss"] for s in early)
    rss_late = statistics.median(s["vmrss"] for s in late)
    assert rss_late - rss_early < 24 * 1024, f"RSS grew from {rss_early} kB to {rss_late} kB"
    fds_early = max(s["fds"] for s in early)
    fds_late = max(s["fds"] for s in late)
    assert fds_late <= fds_early + 8, f"open descriptors grew from {fds_early} to {fds_late}"
    assert max(s["fds"] for s in samples) < 200 and max(s["threads"] for s in samples) < 80, samples[-1]
