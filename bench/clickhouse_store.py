"""The ClickHouse store (chDB in-process) next to the DuckDB store on the reference graph.

Steps per store at N samples: resolve + write the root (video), resolve crop with nothing stored
(cold), write crop, rewrite crop fully R times (history grows, the current state must not slow
down), resolve crop with nothing to do (steady), then change 1% of the audio values and resolve +
write video and resolve crop again. Every resolve is checked against the expected counts.

    python bench/clickhouse_store.py --samples 1000000 --rewrites 3
"""

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import change_audio, define_features, make_samples


def run(store: Any, n: int, rewrites: int) -> list[tuple[str, float]]:
    import polars as pl

    feats = define_features()
    video, crop = feats["video"], feats["crop"]
    samples = make_samples(n)
    out: list[tuple[str, float]] = []

    def timed(label: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        out.append((label, time.perf_counter() - start))
        return result

    def counts(inc: Any, want: dict[str, int]) -> None:
        got = inc.counts()
        assert got == want, (got, want)

    with store:
        inc = timed("video resolve (N new)", lambda: store.resolve_update(video, samples=samples))
        counts(inc, {"new": n, "stale": 0, "orphaned": 0})
        timed("video write", lambda: store.write(video, inc.new))
        inc = timed("crop resolve, cold", lambda: store.resolve_update(crop, full=True))
        counts(inc, {"new": n, "stale": 0, "orphaned": 0})
        rows = inc.new.to_polars()
        timed("crop write", lambda: store.write(crop, rows))
        for r in range(1, rewrites + 1):
            again = rows.with_columns(pl.col("metaxy_provenance").alias("metaxy_data_version"))
            timed(f"crop full rewrite {r}", lambda again=again: store.write(crop, again))
        inc = timed("crop resolve, steady", lambda: store.resolve_update(crop, full=True))
        counts(inc, {"new": 0, "stale": 0, "orphaned": 0})
        changed, k = change_audio(samples, 0.01)
        inc = timed("video resolve, 1% changed", lambda: store.resolve_update(video, samples=changed))
        counts(inc, {"new": 0, "stale": k, "orphaned": 0})
        timed("video write 1%", lambda: store.write(video, inc.stale))
        inc = timed("crop resolve, 1% stale", lambda: store.resolve_update(crop, full=True))
        counts(inc, {"new": 0, "stale": k, "orphaned": 0})
        timed("crop read (current)", lambda: store.read(crop))
    return out


def main() -> None:
    import metaxy_core as mx
    from metaxy_core.stores.clickhouse import ClickHouseMetadataStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--rewrites", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="metaxy-ch-store-bench-"))
    stores = {
        "duckdb": mx.DuckDBMetadataStore(database=folder / "m.duckdb", hash_length=16),
        "clickhouse (chDB)": ClickHouseMetadataStore(
            dsn=f"chdb://{folder}/chdb?database=bench", hash_length=16
        ),
    }
    try:
        results = {name: run(store, args.samples, args.rewrites) for name, store in stores.items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    names = list(results)
    print(f"N = {args.samples:,}, {args.rewrites} full rewrites; seconds")
    print("| step | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for i, (label, _) in enumerate(results[names[0]]):
        print(f"| {label} | " + " | ".join(f"{results[n][i][1]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
