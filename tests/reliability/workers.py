"""Child processes of the fault scenarios: ``python -m tests.reliability.workers <role> <json>``.

Each role opens its store through :mod:`tests.reliability.engines`, so it runs on any file engine.
Roles report on stdout (one JSON line at the end) or through the files named in their arguments,
written line by line and flushed, so the parent can read them even after killing the child.
"""

import json
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import metaxy_core as mx
from tests.reliability.batches import batch_counts, batch_feature, batch_rows, batch_to_write, partial_batches
from tests.reliability.engines import EngineUnavailable, build


def killable_writer(
    engine: str, folder: str, journal: str, first_batch: int, batches: int, rows: int
) -> None:
    """Write batches until killed, journaling each phase of each batch.

    ``start`` before opening the store, ``write`` once it is open, ``close`` when ``write`` has
    returned, ``ack`` after the session closed: a batch is acknowledged only then.
    """
    feature = batch_feature(mx.FeatureGraph())
    store = build(engine, folder)
    with open(journal, "a", buffering=1) as log:

        def note(phase: str, batch_id: int) -> None:
            log.write(f"{phase} {batch_id}\n")
            log.flush()

        print("ready", flush=True)
        for batch_id in range(first_batch, first_batch + batches):
            frame = batch_to_write(feature, batch_id, rows)
            note("start", batch_id)
            # one session per batch: kills also land while the store opens and closes the file
            with store:
                note("write", batch_id)
                store.write(feature, frame)
                note("close", batch_id)
            note("ack", batch_id)


def concurrent_writer(engine: str, folder: str, writer: int, batches: int, rows: int) -> None:
    """Write ``batches`` batches, one store session each; report the slowest session (lock wait + write)."""
    feature = batch_feature(mx.FeatureGraph())
    store = build(engine, folder)
    durations = []
    for k in range(batches):
        frame = batch_to_write(feature, writer * 1_000 + k, rows)
        start = time.monotonic()
        with store:
            store.write(feature, frame)
        durations.append(time.monotonic() - start)
    print(json.dumps({"writer": writer, "max_wait": max(durations), "total": sum(durations)}), flush=True)


def polling_reader(engine: str, folder: str, stop_file: str, rows: int) -> None:
    """Read the whole feature until ``stop_file`` appears; count reads that saw a partial batch."""
    feature = batch_feature(mx.FeatureGraph())
    store = build(engine, folder)
    reads, partial, durations, max_rows = 0, 0, [], 0
    while True:
        stop = Path(stop_file).exists()  # checked before the read, so one read follows the last write
        start = time.monotonic()
        with store:
            per_batch, total, _ = batch_counts(store, feature)
        durations.append(time.monotonic() - start)
        reads += 1
        partial += bool(partial_batches(per_batch, rows))
        max_rows = max(max_rows, total)
        if stop:
            break
        time.sleep(0.01)
    report = {"reads": reads, "partial": partial, "max_wait": max(durations), "max_rows": max_rows}
    print(json.dumps(report), flush=True)


def inspect_store(engine: str, folder: str, rows: int, resolve_newest: bool = False) -> dict[str, Any]:
    """What a fresh reader finds: rows per batch, totals, and (optionally) whether the newest complete
    batch resolves to an empty increment (its stored provenance is exactly what was written)."""
    feature = batch_feature(mx.FeatureGraph())
    with build(engine, folder) as store:
        per_batch, total, distinct = batch_counts(store, feature)
        resolved = None
        if resolve_newest and per_batch and not partial_batches(per_batch, rows):
            newest = max(per_batch)
            samples = batch_rows(newest, rows)
            increment = store.resolve_update(feature, samples=samples, filters=f"batch_id = {newest}")
            resolved = None if increment.is_empty else f"batch {newest}: {increment.summary()}"
    return {"per_batch": per_batch, "total": total, "distinct": distinct, "resolve_problem": resolved}


def seed_store(engine: str, folder: str, batch_id: int, rows: int) -> dict[str, Any]:
    feature = batch_feature(mx.FeatureGraph())
    with build(engine, folder) as store:
        return {"written": store.write(feature, batch_to_write(feature, batch_id, rows))}


def probe(engine: str, folder: str) -> dict[str, Any]:
    """Whether the engine's driver works here (opens and closes a scratch store)."""
    try:
        with build(engine, folder):
            pass
    except EngineUnavailable as exc:
        return {"unavailable": str(exc)}
    return {"unavailable": None}


def disk_full_writer(engine: str, folder: str, limit_bytes: int, rows: int) -> None:
    """Write one large batch with file sizes capped at ``limit_bytes`` (0: no cap, the disk itself is
    small); report how it failed."""
    if limit_bytes:
        # Without SIG_IGN the kernel kills the process at the limit; ignored, write() returns EFBIG.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    feature = batch_feature(mx.FeatureGraph())
    store = build(engine, folder)
    frame = batch_to_write(feature, 999_999, rows)
    outcome: dict[str, Any] = {"raised": None, "message": None, "metaxy_error": False}
    try:
        with store:
            store.write(feature, frame)
    except Exception as exc:
        outcome = {
            "raised": type(exc).__name__,
            "message": str(exc),
            "metaxy_error": isinstance(exc, mx.MetaxyError),
        }
    print(json.dumps(outcome), flush=True)


def _printing(function: Any) -> Any:
    def role(**arguments: Any) -> None:
        print(json.dumps(function(**arguments)), flush=True)

    return role


ROLES = {
    "inspect_store": _printing(inspect_store),
    "seed_store": _printing(seed_store),
    "probe": _printing(probe),
    "killable_writer": killable_writer,
    "concurrent_writer": concurrent_writer,
    "polling_reader": polling_reader,
    "disk_full_writer": disk_full_writer,
}

if __name__ == "__main__":
    ROLES[sys.argv[1]](**json.loads(sys.argv[2]))
