"""Fault scenarios shared by the tests and ``bench/reliability_report.py`` (which runs them longer).

Each scenario injects a real fault into real processes on one file engine and returns what it
observed; the callers assert on the figures. Nothing here repairs a store between faults: the
checks read it exactly as the next process would find it.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.batches import partial_batches
from tests.reliability.spawn import call, report, worker


@dataclass
class KillStats:
    trials: int = 0
    mid_write: int = 0
    """Kills that landed inside ``store.write`` (after the store opened, before ``write`` returned)."""
    phases: dict[str, int] = field(default_factory=dict)
    """Kills per phase of the writer: opening, writing, closing, between batches."""
    acked_batches: int = 0
    unacked_committed: int = 0
    """Batches whose write committed but whose writer died before acknowledging: allowed, counted."""
    rows_lost: int = 0
    partial_batches: list[int] = field(default_factory=list)
    duplicate_rows: int = 0
    unexpected_batches: list[int] = field(default_factory=list)
    resolve_failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.rows_lost
            or self.partial_batches
            or self.duplicate_rows
            or self.unexpected_batches
            or self.resolve_failures
        )


def _journal(path: Path) -> tuple[list[int], set[int], str]:
    """(started batch ids in order, acknowledged ids, phase the writer was in when it died)."""
    started: list[int] = []
    acked: set[int] = set()
    phase = "between batches"
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.endswith(tuple("0123456789")):
                continue  # a line cut by the kill
            verb, batch_id = line.split()
            if verb == "start":
                started.append(int(batch_id))
            elif verb == "ack":
                acked.add(int(batch_id))
            phase = {"start": "opening", "write": "writing", "close": "closing", "ack": "between batches"}[
                verb
            ]
    return started, acked, phase


def sigkill_trials(
    engine: str, folder: Path, *, trials: int, rows: int, max_delay: float, seed: int = 0
) -> KillStats:
    """Kill a batch writer ``trials`` times at random moments; check the store after every kill."""
    rng = random.Random(seed)
    journal = folder / "journal.txt"
    store_folder = folder / "store"
    store_folder.mkdir(parents=True, exist_ok=True)
    stats = KillStats()
    next_batch = 0
    for _ in range(trials):
        child = worker(
            "killable_writer",
            engine=engine,
            folder=str(store_folder),
            journal=str(journal),
            first_batch=next_batch,
            batches=10_000,
            rows=rows,
        )
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            report(child, timeout=30)  # raises with the child's stderr
        time.sleep(rng.uniform(0, max_delay))
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        if child.returncode != -signal.SIGKILL:
            raise AssertionError(f"the writer ended before the kill (exit {child.returncode})")
        stats.trials += 1
        started, acked, phase = _journal(journal)
        stats.phases[phase] = stats.phases.get(phase, 0) + 1
        stats.mid_write += phase == "writing"
        next_batch = max(started, default=next_batch - 1) + 1

        # A fresh reader, no repair step: it also checks the store still resolves, and that the newest
        # batch's provenance is exactly what was written.
        found = call(engine, "inspect_store", folder=str(store_folder), rows=rows, resolve_newest=True)
        per_batch: dict[int, int] = found["per_batch"]
        stats.acked_batches = len(acked)
        stats.rows_lost = sum(rows - per_batch.get(b, 0) for b in acked)
        stats.partial_batches = partial_batches(per_batch, rows)
        stats.duplicate_rows = found["total"] - found["distinct"]
        stats.unexpected_batches = sorted(set(per_batch) - set(started))
        stats.unacked_committed = sum(1 for b in per_batch if b not in acked and per_batch[b] == rows)
        if found["resolve_problem"]:
            stats.resolve_failures.append(found["resolve_problem"])
        if not stats.ok:
            break
    return stats


@dataclass
class ConcurrencyStats:
    writers: int
    batches: int
    rows: int
    stored_rows: int
    distinct_rows: int
    partial_batches: list[int]
    reads: int
    partial_reads: int
    max_write_wait: float
    max_read_wait: float
    seconds: float

    @property
    def expected_rows(self) -> int:
        return self.writers * self.batches * self.rows


def concurrent_writers(
    engine: str, folder: Path, *, writers: int, batches: int, rows: int
) -> ConcurrencyStats:
    """``writers`` processes write ``batches`` batches each while a reader polls the same store."""
    folder.mkdir(parents=True, exist_ok=True)
    stop = folder / "stop"
    store_folder = folder / "store"
    start = time.monotonic()
    reader = worker("polling_reader", engine=engine, folder=str(store_folder), stop_file=str(stop), rows=rows)
    procs = [
        worker(
            "concurrent_writer", engine=engine, folder=str(store_folder), writer=w, batches=batches, rows=rows
        )
        for w in range(writers)
    ]
    try:
        writer_reports = [report(p, timeout=600) for p in procs]
    finally:
        stop.touch()
    reader_report = report(reader, timeout=600)
    seconds = time.monotonic() - start
    found = call(engine, "inspect_store", folder=str(store_folder), rows=rows)
    per_batch, total, distinct = found["per_batch"], found["total"], found["distinct"]
    expected = {w * 1_000 + k for w in range(writers) for k in range(batches)}
    missing = sorted(expected - set(per_batch))
    return ConcurrencyStats(
        writers=writers,
        batches=batches,
        rows=rows,
        stored_rows=total,
        distinct_rows=distinct,
        partial_batches=partial_batches(per_batch, rows, expected) + missing,
        reads=reader_report["reads"],
        partial_reads=reader_report["partial"],
        max_write_wait=max(r["max_wait"] for r in writer_reports),
        max_read_wait=reader_report["max_wait"],
        seconds=seconds,
    )


@dataclass
class DiskFullStats:
    limit_bytes: int
    raised: str | None
    message: str | None
    metaxy_error: bool
    rows_before: int
    rows_after: int
    reopened: bool


def disk_full(
    engine: str, folder: Path, *, seed_rows: int, big_rows: int, headroom: int, tmpfs: bool = False
) -> DiskFullStats:
    """Fill a store, then write a big batch in a child that runs out of space.

    ``tmpfs=False`` caps file sizes at the store's size + ``headroom`` bytes (RLIMIT_FSIZE: EFBIG,
    works unprivileged); ``tmpfs=True`` puts the store on a tmpfs of that size (a real ENOSPC; needs
    root and ``mount``, see :func:`can_mount_tmpfs`).
    """
    store_folder = folder / "store"
    store_folder.mkdir(parents=True, exist_ok=True)
    size = 0
    if tmpfs:
        # Measure the seeded size on a scratch copy, then seed the real store on a tmpfs just that big.
        scratch = folder / "scratch"
        scratch.mkdir()
        call(engine, "seed_store", folder=str(scratch), batch_id=1, rows=seed_rows)
        size = sum(p.stat().st_size for p in scratch.rglob("*") if p.is_file())
        _mount_tmpfs(store_folder, size + headroom)
    try:
        call(engine, "seed_store", folder=str(store_folder), batch_id=1, rows=seed_rows)
        limit = 0
        if not tmpfs:
            limit = max(p.stat().st_size for p in store_folder.rglob("*") if p.is_file()) + headroom
        child = worker(
            "disk_full_writer", engine=engine, folder=str(store_folder), limit_bytes=limit, rows=big_rows
        )
        outcome = report(child, timeout=300)
        found = call(engine, "inspect_store", folder=str(store_folder), rows=seed_rows)
        reopened = True
        per_batch = found["per_batch"]
        rows_after = (
            per_batch.get(1, 0) if found["total"] == found["distinct"] and set(per_batch) == {1} else -1
        )
    finally:
        if tmpfs:
            subprocess.run(["umount", str(store_folder)], check=False)
    return DiskFullStats(
        limit_bytes=limit or size + headroom,
        raised=outcome["raised"],
        message=outcome["message"],
        metaxy_error=outcome["metaxy_error"],
        rows_before=seed_rows,
        rows_after=rows_after,
        reopened=reopened,
    )


def _mount_tmpfs(path: Path, size: int) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def can_mount_tmpfs(scratch: Path) -> bool:
    """Whether this process may mount a tmpfs (root in a container that allows it)."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    scratch.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(scratch)], capture_output=True, check=False
    )
    if done.returncode != 0:
        return False
    subprocess.run(["umount", str(scratch)], check=False)
    return True


def summary(title: str, figures: dict[str, object]) -> str:
    """One line the tests print (visible with ``-s`` / ``-rA``) and the report script reuses."""
    return f"[reliability] {title}: " + json.dumps(figures, default=str)
