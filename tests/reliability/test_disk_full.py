"""A write that runs out of disk space fails with a clear error and leaves earlier data readable."""

from dataclasses import asdict
from pathlib import Path

import pytest

from tests.reliability.conftest import Report
from tests.reliability.scenarios import DiskFullStats, can_mount_tmpfs, disk_full

SEED_ROWS = 20_000
BIG_ROWS = 300_000  # ~15x the seeded data: cannot fit in the headroom


@pytest.mark.parametrize("headroom", [0, 1_000_000], ids=["at-limit", "1MB-headroom"])
def test_file_size_limit(file_engine: str, tmp_path: Path, headroom: int, reliability_report: Report) -> None:
    stats = disk_full(file_engine, tmp_path, seed_rows=SEED_ROWS, big_rows=BIG_ROWS, headroom=headroom)
    reliability_report(f"disk full (RLIMIT_FSIZE) {file_engine}", asdict(stats))
    check(stats)


@pytest.mark.slow
def test_full_tmpfs(file_engine: str, tmp_path: Path, reliability_report: Report) -> None:
    if not can_mount_tmpfs(tmp_path / "probe"):
        pytest.skip("mounting a tmpfs needs root in a container that allows mount")
    stats = disk_full(
        file_engine, tmp_path, seed_rows=SEED_ROWS, big_rows=BIG_ROWS, headroom=2_000_000, tmpfs=True
    )
    reliability_report(f"disk full (tmpfs) {file_engine}", asdict(stats))
    check(stats)


def check(stats: DiskFullStats) -> None:
    assert stats.raised is not None, "the write fit after all: raise BIG_ROWS"
    assert stats.message is not None
    assert stats.metaxy_error, f"not a MetaxyError: {stats.raised}: {stats.message}"
    message = stats.message.lower()
    # names the operation and the cause, so the user knows to free space
    assert "write(fault/batch)" in message
    assert "too large" in message or "space" in message, message
    assert stats.reopened
    assert stats.rows_after == stats.rows_before, "earlier data lost, or the failed batch is visible"


def test_checks_in_a_fresh_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path engines with one database per process take (chDB): every check runs in a child."""
    from tests.reliability import engines

    monkeypatch.setattr(engines, "ISOLATED_ENGINES", {"duckdb"})
    stats = disk_full("duckdb", tmp_path, seed_rows=SEED_ROWS, big_rows=BIG_ROWS, headroom=0)
    check(stats)
