"""Inbox watching: ignore rules, stability gate, events as hints, scans as truth."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path, PurePath

import pytest
from service_support import wait_for

from daemon.service.watcher import InboxWatcher, eligible, held_open_for_writing


@pytest.mark.parametrize(
    ("rel", "ok"),
    [
        ("ventas.csv", True),
        ("siigo/ventas.xlsx", True),
        ("~$ventas.xlsx", False),
        (".~lock.ventas.xlsx#", False),
        ("ventas.tmp", False),
        ("ventas.csv.part", False),
        (".hidden.csv", False),
        (".processing/x/ventas.csv", False),
        ("a/b/ventas.csv", False),
        ("Thumbs.db", False),
        ("ventas.csv.done", True),
    ],
)
def test_eligible(rel: str, ok: bool) -> None:
    """Temp, lock, hidden and nested files are never candidates."""
    assert eligible(PurePath(rel)) is ok


def test_done_markers_are_not_candidates_in_marker_mode() -> None:
    """In done-marker mode the markers themselves are not sources."""
    assert not eligible(PurePath("ventas.csv.done"), done_marker=True)


class _Collector:
    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.lock = threading.Lock()

    def __call__(self, path: Path) -> None:
        with self.lock:
            self.paths.append(path)


def test_a_file_still_growing_is_not_ready(tmp_path: Path) -> None:
    """A file written in chunks becomes ready only after it stops changing for stable_s."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    got = _Collector()
    watcher = InboxWatcher(inbox, got, stable_s=0.3, observe=False)
    target = inbox / "slow.csv"
    with target.open("w") as fh:
        for n in range(6):
            fh.write(f"line {n}\n" * 50)
            fh.flush()
            watcher.scan()
            watcher.check()
            time.sleep(0.12)
    assert got.paths == []
    assert wait_for(lambda: bool(watcher.check()) or bool(got.paths), 2.0)
    assert got.paths == [target]


def test_observer_events_and_profile_folders(tmp_path: Path) -> None:
    """A file dropped into a profile folder is found through the observer and reported once."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    got = _Collector()
    watcher = InboxWatcher(inbox, got, stable_s=0.1)
    watcher.start()
    try:
        (inbox / "siigo").mkdir()
        (inbox / "siigo" / "a.csv").write_text("x")
        (inbox / "~$a.xlsx").write_text("lock")
        assert wait_for(lambda: len(got.paths) == 1, 5.0)
        time.sleep(0.3)
        assert got.paths == [inbox / "siigo" / "a.csv"]
    finally:
        watcher.stop()


def test_polling_observer_finds_files(tmp_path: Path) -> None:
    """The polling observer (network shares) finds a new file too."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    got = _Collector()
    watcher = InboxWatcher(inbox, got, stable_s=0.1, polling=True)
    watcher.start()
    try:
        (inbox / "b.json").write_text("[]")
        assert wait_for(lambda: got.paths == [inbox / "b.json"], 5.0)
    finally:
        watcher.stop()


def test_done_marker_mode_waits_for_the_marker(tmp_path: Path) -> None:
    """In done-marker mode a stable file waits until <name>.done appears."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    got = _Collector()
    watcher = InboxWatcher(inbox, got, stable_s=0.05, observe=False, done_marker=True)
    (inbox / "c.csv").write_text("x")
    watcher.scan()
    time.sleep(0.1)
    watcher.check()
    time.sleep(0.1)
    assert watcher.check() == []
    (inbox / "c.csv.done").write_text("")
    assert watcher.check() == [inbox / "c.csv"]


def test_supervise_restarts_a_dead_observer(tmp_path: Path) -> None:
    """A dead observer thread is replaced and a scan still finds files."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    got = _Collector()
    watcher = InboxWatcher(inbox, got, stable_s=0.05)
    watcher.start()
    try:
        watcher._observer.stop()
        watcher._observer.join(2)
        (inbox / "d.csv").write_text("x")
        watcher.supervise()
        assert watcher._observer.is_alive()
        assert wait_for(lambda: got.paths == [inbox / "d.csv"], 5.0)
    finally:
        watcher.stop()


@pytest.mark.skipif(not hasattr(fcntl, "F_SETLEASE"), reason="read leases are a Linux feature")
def test_a_file_held_open_by_its_writer_is_not_ready(tmp_path: Path) -> None:
    """A file whose writer pauses longer than stable_s but keeps it open is not taken until closed."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    got = _Collector()
    watcher = InboxWatcher(inbox, got, stable_s=0.1, observe=False)
    target = inbox / "paused.csv"
    with target.open("w") as fh:
        fh.write("first half\n")
        fh.flush()
        watcher.scan()
        deadline = time.monotonic() + 0.6  # six times stable_s with no change, writer still holding it
        while time.monotonic() < deadline:
            watcher.check()
            time.sleep(0.05)
        assert got.paths == []
        assert held_open_for_writing(target)
        fh.write("second half\n")
    assert not held_open_for_writing(target)
    assert wait_for(lambda: bool(watcher.check()) or bool(got.paths), 2.0)
    assert got.paths == [target]
    assert target.read_text() == "first half\nsecond half\n"
