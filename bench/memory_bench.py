"""Peak RSS of the performance run's steps on the DuckDB store, with the store's default settings.

The graph and data of ``resolve_bench.py``. One subprocess per size, a DuckDB file in a temp dir, the
store built with nothing but ``database=`` (its default memory budget and thread count), no floor
queries (they would add their own memory to the process). Steps:

1. ``resolve_update(Video, samples=...)`` (all new) and ``write`` of the N rows;
2. cold ``resolve_update(Crop)`` (all N new, eager: frames come back);
3. first write of the N crop rows, then ``--rewrites`` full rewrites (history grows);
4. steady ``resolve_update(Crop, full=True)`` (0 changed) and the same as ``lazy=True`` + ``counts()``;
5. 1% change: video re-resolved and its stale rows written, crop resolved and its stale rows written.
6. ``compact(keep_versions=1)``: the file size before and after is in the header line.

Per step: the kernel's high-water mark is reset before the step and read after it (peak), and the RSS
after the step (what the step left behind). The first row is the process before any store work (Python,
polars, DuckDB, the input frame): the part of every peak the store does not own.

Run: ``python bench/memory_bench.py --samples 1000000 --out bench/results/memory-$(date +%F).md``;
``--duckdb-set KEY=VALUE`` sets a DuckDB option on the store's connection to try it (e.g. a lower
``memory_limit``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (
    CHANGE_FRACTION,
    MB,
    _peak_rss_mb,
    _reset_peak_rss,
    change_audio,
    define_features,
    load_samples,
    process_peak_mb,
)

LIMIT_MB = {1_000_000: 1024, 10_000_000: 6 * 1024}


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_size(n: int, workdir: Path, rewrites: int, duckdb_set: dict[str, str]) -> dict[str, Any]:
    import metaxy_core as mx

    features = define_features()
    video, crop = features["video"], features["crop"]
    db = workdir / f"memory_{n}.duckdb"
    store = mx.DuckDBMetadataStore(database=db)
    rows: list[dict[str, Any]] = []

    def step(name: str, fn: Callable[[], Any]) -> Any:
        gc.collect()
        _reset_peak_rss()
        t = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t
        rows.append(
            {"step": name, "seconds": seconds, "peak_mb": _peak_rss_mb(), "after_mb": current_rss_mb()}
        )
        print(f"  {name}: {seconds:.2f} s, peak {rows[-1]['peak_mb']:.0f} MB", file=sys.stderr, flush=True)
        return result

    def check(what: str, got: dict[str, int], want: dict[str, int]) -> None:
        if got != want:
            raise SystemExit(f"[N={n}] {what}: counts {got} != expected {want}")

    def opened() -> None:
        for key, value in duckdb_set.items():
            store.connection.execute(f"SET {key} = '{value}'")

    def reopen() -> None:
        # The DuckDB 2.0 first-write bug of bench/README.md: reopen after a table's first write.
        store.__exit__(None, None, None)
        store.__enter__()
        opened()

    samples = load_samples(n, workdir)
    gc.collect()
    rows.append(
        {
            "step": "baseline (imports + input frame)",
            "seconds": 0.0,
            "peak_mb": _peak_rss_mb(),
            "after_mb": current_rss_mb(),
        }
    )
    t_total = time.perf_counter()
    with store:
        opened()
        inc = step(
            "video resolve(samples=), all new", lambda s=samples: store.resolve_update(video, samples=s)
        )
        check("video resolve", inc.counts(), {"new": n, "stale": 0, "orphaned": 0})
        step("video write (N rows)", lambda frame=inc.new: store.write(video, frame))
        del inc
        reopen()
        cold = step("cold crop resolve (eager)", lambda: store.resolve_update(crop))
        check("cold", cold.counts(), {"new": n, "stale": 0, "orphaned": 0})
        crop_rows = cold.new
        del cold
        step("crop write (first, N rows)", lambda rows=crop_rows: store.write(crop, rows))
        reopen()
        step(
            f"crop rewrite x{rewrites} (all N replaced)",
            lambda rows=crop_rows: [store.write(crop, rows) for _ in range(rewrites)],
        )
        del crop_rows
        steady = step("steady crop resolve (eager, full)", lambda: store.resolve_update(crop, full=True))
        check("steady", steady.counts(), {"new": 0, "stale": 0, "orphaned": 0})
        del steady
        counts = step(
            "steady crop resolve (lazy counts, full)",
            lambda: store.resolve_update(crop, lazy=True, full=True).counts(),
        )
        check("steady lazy", counts, {"new": 0, "stale": 0, "orphaned": 0})
        changed, n_changed = change_audio(samples, CHANGE_FRACTION)
        del samples
        inc = step(
            "video resolve(samples=), 1% stale", lambda s=changed: store.resolve_update(video, samples=s)
        )
        check("video 1%", inc.counts(), {"new": 0, "stale": n_changed, "orphaned": 0})
        step("video write (1% rows)", lambda frame=inc.stale: store.write(video, frame))
        del inc, changed
        one = step("1% crop resolve (eager)", lambda: store.resolve_update(crop))
        check("crop 1%", one.counts(), {"new": 0, "stale": n_changed, "orphaned": 0})
        step("crop write (1% rows)", lambda frame=one.stale: store.write(crop, frame))
        del one
        check("after", store.resolve_update(crop, lazy=True).counts(), {"new": 0, "stale": 0, "orphaned": 0})
        store.connection.execute("CHECKPOINT")
        file_before = db.stat().st_size / MB
        history_before = store.read(crop, history=True, lazy=True).to_native().count("*").fetchall()[0][0]
        removed = step(
            "compact(keep_versions=1), every feature", lambda: store.compact([video, crop], keep_versions=1)
        )
        history_after = store.read(crop, history=True, lazy=True).to_native().count("*").fetchall()[0][0]
        # crop: the current row and one superseded version per sample are kept
        if history_after != 2 * n or history_before - history_after != removed["example/crop"]:
            raise SystemExit(
                f"[N={n}] compact: crop rows with history {history_before} -> {history_after}, {removed}"
            )
    total = time.perf_counter() - t_total
    rows.append(
        {
            "step": "process peak (whole run)",
            "seconds": total,
            "peak_mb": process_peak_mb(),
            "after_mb": current_rss_mb(),
        }
    )
    return {
        "n": n,
        "rows": rows,
        "memory_limit": store.memory_limit,
        "file_mb": db.stat().st_size / MB,
        "file_before_compact_mb": file_before,
        "load": os.getloadavg()[0],
        "duckdb_set": duckdb_set,
    }


def render(results: list[dict[str, Any]]) -> str:
    out = []
    for res in results:
        limit = LIMIT_MB.get(res["n"])
        extra = f", SET {res['duckdb_set']}" if res["duckdb_set"] else ""
        out.append(
            f"N = {res['n']:,} (store memory_limit {res['memory_limit']}{extra}; load average at end "
            f"{res['load']:.1f}; file {res['file_before_compact_mb']:,.0f} MB after the run, "
            f"{res['file_mb']:,.0f} MB after compaction)\n"
        )
        out.append("| step | seconds | peak RSS MB | RSS after MB |")
        out.append("|---|---:|---:|---:|")
        for row in res["rows"]:
            out.append(
                f"| {row['step']} | {row['seconds']:.2f} | {row['peak_mb']:,.0f} | {row['after_mb']:,.0f} |"
            )
        if limit is not None:
            peak = res["rows"][-1]["peak_mb"]
            out.append(
                f"\nProcess peak {peak:,.0f} MB, target ≤ {limit:,} MB: {'PASS' if peak <= limit else 'FAIL'}\n"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--rewrites", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--duckdb-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    duckdb_set = dict(item.split("=", 1) for item in args.duckdb_set)
    if args.child is not None:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            print(json.dumps(run_size(args.child, Path(tmp), args.rewrites, duckdb_set)))
        return 0
    results = []
    for n in args.samples:
        print(f"# N={n:,} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--child", str(n), "--rewrites", str(args.rewrites)]
        cmd += [f"--duckdb-set={item}" for item in args.duckdb_set]
        if args.workdir:
            cmd += ["--workdir", str(args.workdir)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    text = render(results)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        args.out.with_suffix(args.out.suffix + ".json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
