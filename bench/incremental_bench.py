"""Incremental resolves and partial root updates on DuckDB, next to the full-scan floor.

Same graph, data and floor as ``resolve_bench.py`` (DuckDB file, pinned to ``--threads`` CPUs):

1. video: ``resolve_update(Video, samples=...)`` and the write of N rows; crop: cold resolve and
   write of N rows, then ``--rewrites`` full rewrites (history holds versions);
2. first in-sync crop resolve: a full one, which records the checkpoint;
3. no change: ``resolve_update(Crop)`` (incremental), eager and ``lazy=True).counts()``, next to
   ``full=True`` and the floor (interleaved, best of ``--repeat``);
4. 1% change: 1% of the audio values change; ``resolve_update(Video, samples=<those 1%>,
   partial=True)`` next to the complete-samples resolve; the stale video rows are written; then
   the crop resolve (N/100 stale) as in 3.

Every count is checked against the expected value (the incremental, full and floor results alike).

    python bench/incremental_bench.py --samples 1000000 --out bench/results/incremental-$(date +%F).md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (
    CHANGE_FRACTION,
    change_audio,
    define_features,
    load_samples,
    measure,
    measure_many,
    pin_cpus,
)
from resolve_bench import floor_sql

HASH_LENGTH = 16


def run(
    n: int, repeat: int, rewrites: int, threads: int, workdir: Path
) -> list[tuple[str, float, float | None]]:
    import polars as pl

    import metaxy_core as mx

    features = define_features()
    video, crop = features["video"], features["crop"]
    store = mx.DuckDBMetadataStore(
        database=workdir / "bench.duckdb", hash_length=HASH_LENGTH, config={"threads": threads}
    )
    rows: list[tuple[str, float, float | None]] = []

    def check(what: str, got: dict[str, int], want: dict[str, int]) -> None:
        if got != want:
            raise SystemExit(f"[N={n}] {what}: counts {got} != expected {want}")

    def once(step: str, fn: Callable[[], Any]) -> Any:
        m = measure(fn)
        rows.append((step, m.seconds, None))
        return m.result

    def reopen() -> None:
        # DuckDB 2.0 (bench/README.md): a table created and filled in one transaction can read back
        # empty on that connection; reopening reads it correctly.
        store.__exit__(None, None, None)
        store.__enter__()

    def crop_step(step: str, want: dict[str, int]) -> None:
        con = store.connection
        counts_q = floor_sql(HASH_LENGTH, "example__crop", rows=False)
        m = measure_many(
            {
                "eager": lambda: store.resolve_update(crop),
                "lazy": lambda: store.resolve_update(crop, lazy=True).counts(),
                "full": lambda: store.resolve_update(crop, lazy=True, full=True).counts(),
                "floor": lambda: con.sql(counts_q).fetchall()[0],
            },
            repeat,
        )
        check(f"{step} eager", m["eager"].result.counts(), want)
        check(f"{step} lazy", m["lazy"].result, want)
        check(f"{step} full", m["full"].result, want)
        check(f"{step} floor", dict(zip(("new", "stale", "orphaned"), m["floor"].result, strict=True)), want)
        floor = m["floor"].seconds
        rows.append((f"{step}: incremental resolve, eager (polars)", m["eager"].seconds, floor))
        rows.append((f"{step}: incremental resolve, lazy counts()", m["lazy"].seconds, floor))
        rows.append((f"{step}: full=True resolve, lazy counts()", m["full"].seconds, floor))
        rows.append((f"{step}: floor (hand-written full scan, counts)", floor, floor))

    samples = load_samples(n, workdir)
    with store:
        inc = once("video resolve(samples=), all new", lambda: store.resolve_update(video, samples=samples))
        once("video write (N rows)", lambda frame=inc.new: store.write(video, frame))
        del inc
        reopen()
        cold = once("crop resolve, cold (full)", lambda: store.resolve_update(crop))
        crop_rows = cold.new.to_polars()
        del cold
        once("crop write (N rows)", lambda: store.write(crop, crop_rows))
        reopen()
        for _ in range(rewrites):
            store.write(crop, crop_rows)
        reopen()
        first = once(
            "crop resolve, first in sync (full; records the checkpoint)", lambda: store.resolve_update(crop)
        )
        check("first in-sync resolve", first.counts(), {"new": 0, "stale": 0, "orphaned": 0})

        crop_step("0 changed", {"new": 0, "stale": 0, "orphaned": 0})

        changed, n_changed = change_audio(samples, CHANGE_FRACTION)
        originals = samples.get_column("metaxy_provenance_by_field").struct.field("audio")
        subset = changed.filter(pl.col("metaxy_provenance_by_field").struct.field("audio") != originals)
        m = measure_many(
            {
                "partial": lambda: store.resolve_update(video, samples=subset, partial=True),
                "complete": lambda: store.resolve_update(video, samples=changed),
            },
            repeat,
        )
        want = {"new": 0, "stale": n_changed, "orphaned": 0}
        check("video partial", m["partial"].result.counts(), want)
        check("video complete", m["complete"].result.counts(), want)
        rows.append(("1% change: video resolve(samples=<1% rows>, partial=True)", m["partial"].seconds, None))
        rows.append(("1% change: video resolve(samples=<all N rows>)", m["complete"].seconds, None))
        once("video write (1% rows replaced)", lambda: store.write(video, m["partial"].result.stale))
        crop_step("1% changed", want)
        stale = store.resolve_update(crop).stale.to_polars()
        once("crop write (1% rows replaced)", lambda: store.write(crop, stale))
        after = once(
            "crop resolve after the 1% write (records a checkpoint)", lambda: store.resolve_update(crop)
        )
        check("after 1% write", after.counts(), {"new": 0, "stale": 0, "orphaned": 0})
        crop_step("0 changed again", {"new": 0, "stale": 0, "orphaned": 0})
    return rows


def render(n: int, rows: list[tuple[str, float, float | None]], notes: list[str]) -> str:
    lines = [
        f"### Incremental resolve on DuckDB, N = {n:,}",
        "",
        "| step | seconds | ratio to floor |",
        "|---|---:|---:|",
    ]
    for step, seconds, floor in rows:
        ratio = f"{seconds / floor:.3f}x" if floor else ""
        lines.append(f"| {step} | {seconds:.3f} | {ratio} |")
    lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rewrites", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("POLARS_MAX_THREADS", str(args.threads))
    restore = pin_cpus(args.threads)
    started = time.perf_counter()
    notes = [f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    try:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            rows = run(args.samples, args.repeat, args.rewrites, args.threads, Path(tmp))
    finally:
        if restore is not None:
            restore()
    notes.append(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    notes.append(
        f"best of {args.repeat} interleaved runs; {args.rewrites} full crop rewrites before; DuckDB threads="
        f"{args.threads}; whole run {time.perf_counter() - started:.0f} s"
    )
    text = render(args.samples, rows, notes)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
