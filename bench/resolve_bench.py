"""Resolve/write benchmark of the DuckDB store against a hand-written SQL floor.

Graph (the reference versioning graph): ``example/video`` (root; fields audio, frames) ->
``example/crop`` (audio <- video.audio, frames <- video.frames) -> ``example/face_detection``
(faces <- crop.frames); ``example/video`` -> ``example/stt`` (transcription <- video.audio).

Per size N, in a fresh subprocess (so peak RSS is per size), on a DuckDB *file* in a temp dir:

1. root resolve (``samples=``) and write of N video rows; write of N crop rows (first write), then
   10 full rewrites of crop (history gets 10 versions of every sample);
2. cold resolve of crop (all N new), before crop is written;
3. steady-state resolve of crop (0 changed) after the 10 rewrites;
4. 1%-change resolve: 1% of the video samples get a new audio value, video is re-resolved and its
   stale rows written, then crop is resolved (1% stale, changed field ``audio``).

Every crop resolve is timed eagerly (frames as polars) and lazily (``resolve_update(lazy=True)
.counts()``). The floor is one hand-written DuckDB query over the same tables doing the same join +
sha256(concat_ws(...)) + full outer join compare: counts only (the floor of lazy counts) and
returning the differing rows as Arrow (the floor of an eager resolve). Each step is run ``--repeat``
times; the median is reported. Every count is checked against the expected value and the floor.

Run: ``python bench/resolve_bench.py --samples 100000 1000000 --out bench/results/run.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (
    CHANGE_FRACTION,
    MB,
    Measured,
    change_audio,
    define_features,
    load_samples,
    pin_cpus,
    process_peak_mb,
)
from bench_common import measure as _measure
from bench_common import measure_many as _measure_many

STEADY_REWRITES = 10
STAT: Callable[[list[float]], float] = min
"""How repeated runs are summarised: ``min`` (best of R, default: robust when other processes share
the cores) or ``statistics.median`` (``--stat median``)."""


def measure_many(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, Measured]:
    return _measure_many(fns, repeat, STAT)


def measure(fn: Callable[[], Any], repeat: int = 1) -> Measured:
    return _measure(fn, repeat, STAT)


@dataclass
class Row:
    step: str
    n: int
    seconds: float
    floor: float | None = None
    rss_mb: float | None = None
    kind: str = "info"
    """'resolve' (ratio target), 'write' (absolute target at 1M), 'rss' (process peak), 'info'."""
    note: str = ""
    all_seconds: list[float] = field(default_factory=list)
    floor_all: list[float] = field(default_factory=list)
    cpu: float | None = None
    floor_cpu: float | None = None

    @property
    def ratio(self) -> float | None:
        return self.seconds / self.floor if self.floor else None


# -- the floor: one hand-written query -------------------------------------------------------------
def floor_sql(hash_length: int, stored_table: str, rows: bool) -> str:
    """Expected crop provenance from video + compare with stored crop, as one query.

    ``rows=False`` counts new/stale/orphaned; ``rows=True`` returns the differing rows with the
    carried columns and the expected provenance (what an eager resolve hands back).
    """

    def h(*parts: str) -> str:
        text = "concat_ws('|', " + ", ".join(parts) + ")"
        return f"substr(sha256({text}), 1, {hash_length})" if hash_length < 64 else f"sha256({text})"

    def field(name: str) -> str:
        # Hs(fq(crop.f) | code_version | fq(video.f) | dv[video.f])
        # the store keeps a data version equal to the provenance as NULL; the floor reads it the same way
        dv = f"coalesce(metaxy_data_version_by_field, metaxy_provenance_by_field).{name}"
        return h(f"'example/crop.{name}'", "'1'", f"'example/video.{name}'", dv)

    per_field = (
        f"SELECT sample_uid, frames, duration, size, {field('audio')} AS p_audio, {field('frames')} AS p_frames "
        "FROM example__video WHERE metaxy_deleted_at IS NULL"
    )
    expected = (
        "SELECT sample_uid, frames, duration, size, p_audio, p_frames, "
        + h("'audio'", "p_audio", "'frames'", "p_frames")
        + f" AS prov FROM ({per_field}) AS v"
    )
    stored = (
        f"SELECT sample_uid, metaxy_provenance AS prov FROM {stored_table} WHERE metaxy_deleted_at IS NULL"
    )
    joined = f"FROM ({expected}) AS e FULL OUTER JOIN ({stored}) AS s ON e.sample_uid = s.sample_uid"
    if not rows:
        return (
            "SELECT count(*) FILTER (WHERE s.sample_uid IS NULL) AS new, "
            "count(*) FILTER (WHERE e.sample_uid IS NOT NULL AND s.sample_uid IS NOT NULL AND e.prov <> s.prov) "
            "AS stale, count(*) FILTER (WHERE e.sample_uid IS NULL) AS orphaned " + joined
        )
    return (
        "SELECT CASE WHEN s.sample_uid IS NULL THEN 'new' WHEN e.sample_uid IS NULL THEN 'orphaned' "
        "ELSE 'stale' END AS status, coalesce(e.sample_uid, s.sample_uid) AS sample_uid, e.frames, e.duration, "
        "e.size, struct_pack(audio := e.p_audio, frames := e.p_frames) AS metaxy_provenance_by_field, "
        "e.prov AS metaxy_provenance " + joined + " WHERE s.sample_uid IS NULL OR e.sample_uid IS NULL "
        "OR e.prov <> s.prov"
    )


# -- one size, in its own process ------------------------------------------------------------------
def run_size(
    n: int, repeat: int, workdir: Path, threads: int, duckdb_config: dict[str, str]
) -> dict[str, Any]:
    import metaxy_core as mx

    features = define_features()
    video, crop = features["video"], features["crop"]
    hash_length = 16
    db = workdir / f"bench_{n}.duckdb"
    store = mx.DuckDBMetadataStore(database=db, hash_length=hash_length, config={"threads": threads})

    def apply_settings() -> None:
        # SET after connecting: DuckDB ignores some settings (e.g. disabled_compression_methods) when
        # they are passed as connect(config=...).
        for key, value in duckdb_config.items():
            store.connection.execute(f"SET {key} = '{value}'")

    rows: list[Row] = []
    notes: list[str] = [f"load average at start: {os.getloadavg()[0]:.2f}"]

    def check(what: str, got: dict[str, int], want: dict[str, int]) -> None:
        if got != want:
            raise SystemExit(f"[N={n}] {what}: counts {got} != expected {want}; the store resolved wrongly.")

    def reopen() -> None:
        # Work around a DuckDB 2.0 bug (see bench/README.md): a table created and filled with >= 122,880
        # rows in one transaction reads back empty on that connection when a projected column is all NULL
        # (metaxy_deleted_at). Reopening the file reads the committed data correctly.
        store.__exit__(None, None, None)
        store.__enter__()
        apply_settings()

    def resolve_step(
        step: str, want: dict[str, int], stored_table: str, counts_q: str | None = None, counts_note: str = ""
    ) -> Any:
        con = store.connection
        counts_q = counts_q or floor_sql(hash_length, stored_table, rows=False)
        rows_q = floor_sql(hash_length, stored_table, rows=True)
        # The floor's rows are materialised (that is the work timed) and dropped at once; the store's
        # increment, which the run goes on with, comes last, so neither is held while the other runs.
        m = measure_many(
            {
                "floor_rows": lambda: con.sql(rows_q).to_arrow_table().num_rows,
                "floor_counts": lambda: con.sql(counts_q).fetchall()[0],
                "lazy": lambda: store.resolve_update(crop, lazy=True, full=True).counts(),
                "eager": lambda: store.resolve_update(crop, full=True),
            },
            repeat,
        )
        check(f"{step} eager", m["eager"].result.counts(), want)
        check(f"{step} lazy", m["lazy"].result, want)
        floor_counts = dict(zip(("new", "stale", "orphaned"), m["floor_counts"].result, strict=True))
        if floor_counts != want:
            # Say whether the engine is inconsistent (a rerun differs) or the data really differ.
            again = con.sql(counts_q).fetchall()[0]
            store_again = store.resolve_update(crop, lazy=True).counts()
            raise SystemExit(
                f"[N={n}] {step} floor: counts {floor_counts} != expected {want}; rerun of the floor gives {again}, "
                f"store lazy counts now {store_again}; the DuckDB settings were {duckdb_config or 'default'}."
            )
        if m["floor_rows"].result != sum(want.values()):
            raise SystemExit(
                f"[N={n}] floor rows {step}: {m['floor_rows'].result}, want {sum(want.values())}"
            )
        for mode, floor, label, note in (
            ("eager", "floor_rows", "eager (polars)", "floor = rows as Arrow"),
            ("lazy", "floor_counts", "lazy counts()", counts_note or "floor = counts"),
        ):
            rows.append(
                Row(
                    f"{step} resolve, {label}",
                    n,
                    m[mode].seconds,
                    m[floor].seconds,
                    m[mode].rss_mb,
                    "resolve",
                    note,
                    m[mode].all_seconds,
                    m[floor].all_seconds,
                    m[mode].cpu,
                    m[floor].cpu,
                )
            )
        return m["eager"].result

    def once(step: str, fn: Callable[[], Any], kind: str = "info", note: str = "") -> Any:
        m = measure(fn)
        rows.append(Row(step, n, m.seconds, None, m.rss_mb, kind, note, m.all_seconds, cpu=m.cpu))
        return m.result

    t_total = time.perf_counter()
    samples = load_samples(n, workdir)
    with store:
        apply_settings()
        # (1) roots: resolve with samples=, then write.
        inc = once("video resolve(samples=), all new", lambda: store.resolve_update(video, samples=samples))
        check("video resolve", inc.counts(), {"new": n, "stale": 0, "orphaned": 0})
        once("video write (first, N rows)", lambda frame=inc.new: store.write(video, frame), "write")
        del inc
        reopen()

        # (2) cold resolve of crop: no crop table yet, so the floor compares against an empty one.
        store.connection.execute(
            "CREATE OR REPLACE TEMP TABLE bench_empty_crop (sample_uid VARCHAR, metaxy_provenance VARCHAR, "
            "metaxy_deleted_at TIMESTAMPTZ)"
        )
        # Counting a cold resolve needs no hash at all (nothing is stored to compare with: every
        # upstream row is new), and the store does not compute any: its counts floor does the same.
        cold = resolve_step(
            "cold",
            {"new": n, "stale": 0, "orphaned": 0},
            "bench_empty_crop",
            counts_q=(
                "SELECT count(*) AS new, 0 AS stale, 0 AS orphaned FROM example__video "
                "WHERE metaxy_deleted_at IS NULL"
            ),
            counts_note="floor = count of live upstream rows (no target: nothing to hash)",
        )
        crop_rows = cold.new.to_polars()
        del cold

        # (1b) writes of crop: first write, then full rewrites (each moves N rows to history).
        once("crop write (first, N rows)", lambda rows=crop_rows: store.write(crop, rows), "write")
        reopen()
        rewrites = measure(lambda rows=crop_rows: store.write(crop, rows), STEADY_REWRITES)
        rows.append(
            Row(
                f"crop rewrite (all N replaced), {STAT.__name__} of {STEADY_REWRITES}",
                n,
                rewrites.seconds,
                None,
                rewrites.rss_mb,
                "write",
                "runs " + " ".join(f"{t:.1f}" for t in rewrites.all_seconds),
                rewrites.all_seconds,
                cpu=rewrites.cpu,
            )
        )
        del crop_rows  # a pipeline does not keep what it wrote; neither does the benchmark
        history = store.connection.sql("SELECT count(*) FROM metaxy_history.example__crop").fetchall()[0][0]
        notes.append(f"crop history rows after rewrites: {history:,} ({history // n} versions per sample)")

        # (3) steady state.
        resolve_step("steady (0 changed)", {"new": 0, "stale": 0, "orphaned": 0}, "example__crop")

        # (4) 1% change of video audio.
        changed_samples, n_changed = change_audio(samples, CHANGE_FRACTION)
        inc = once(
            "video resolve(samples=), 1% stale", lambda: store.resolve_update(video, samples=changed_samples)
        )
        check("video 1% resolve", inc.counts(), {"new": 0, "stale": n_changed, "orphaned": 0})
        once("video write (1% rows replaced)", lambda frame=inc.stale: store.write(video, frame))
        del inc
        one_pct = resolve_step("1% change", {"new": 0, "stale": n_changed, "orphaned": 0}, "example__crop")
        crop_stale = one_pct.stale.to_polars()
        del one_pct
        changed_fields = crop_stale.get_column("metaxy_changed_fields").explode().unique().to_list()
        if changed_fields != ["audio"]:
            raise SystemExit(f"[N={n}] 1% change: changed fields {changed_fields}, expected ['audio']")
        once("crop write (1% rows replaced)", lambda: store.write(crop, crop_stale))
        after = store.resolve_update(crop, lazy=True).counts()
        check("crop after 1% write", after, {"new": 0, "stale": 0, "orphaned": 0})
    total = time.perf_counter() - t_total
    peak = process_peak_mb()
    rows.append(Row("process peak RSS (whole size run)", n, total, None, peak, "rss", "seconds = whole run"))
    notes.append(f"load average at end: {os.getloadavg()[0]:.2f}")
    notes.append(f"DuckDB file size at the end: {db.stat().st_size / MB:,.0f} MB")
    return {"n": n, "rows": [asdict(r) for r in rows], "notes": notes}


# -- report ----------------------------------------------------------------------------------------
FIXED_COST_S = 0.05
"""Below this floor a ratio compares fixed per-call costs, not work: such rows get an absolute margin."""


def targets(row: Row, baseline: dict[str, float]) -> tuple[str, str]:
    """(target text, PASS/FAIL/'') for one row."""
    big = row.n >= 10_000_000
    if row.kind == "resolve":
        text = "≤ 1.5x floor"
        ok = row.ratio is not None and row.ratio <= 1.5
        if row.floor is not None and row.floor < FIXED_COST_S:
            # a floor answered from table metadata in milliseconds: the store's fixed cost per call
            # (planning, schema lookups, building the query) is the whole difference
            text = f"≤ floor + {FIXED_COST_S * 1000:.0f} ms"
            ok = row.seconds <= row.floor + FIXED_COST_S
        if big and row.step in baseline:
            limit = 12 * baseline[row.step]
            text += f"; ≤ 12x 1M ({limit:.2f} s)"
            ok = ok and row.seconds <= limit
        return text, "PASS" if ok else "FAIL"
    if row.kind == "write":
        if row.n == 1_000_000:
            return "≤ 2 s", "PASS" if row.seconds <= 2 else "FAIL"
        if big:
            limit = 12 * baseline.get(row.step, 2.0)
            return f"≤ 12x 1M ({limit:.2f} s)", "PASS" if row.seconds <= limit else "FAIL"
        return "(2 s at 1M)", ""
    if row.kind == "rss":
        limit = 6144 if big else 1024
        return f"≤ {limit} MB", "PASS" if (row.rss_mb or 0) <= limit else "FAIL"
    return "", ""


def render(results: list[dict[str, Any]], header: str, earlier: Sequence[dict[str, Any]] = ()) -> str:
    one_m = next((r for r in [*results, *earlier] if r["n"] == 1_000_000), None)
    baseline = {x["step"]: x["seconds"] for x in one_m["rows"]} if one_m else {}
    lines = [
        header,
        "",
        "| step | N | seconds | floor s | ratio | peak RSS MB | target | pass/fail | CPU s (floor CPU s) |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for result in results:
        for raw in result["rows"]:
            row = Row(**raw)
            target, verdict = targets(row, baseline)
            floor = f"{row.floor:.3f}" if row.floor else ""
            ratio = f"{row.ratio:.2f}x" if row.ratio else ""
            rss = f"{row.rss_mb:,.0f}" if row.rss_mb is not None else ""
            cpu = f"{row.cpu:.2f}" if row.cpu is not None else ""
            if row.floor_cpu is not None:
                cpu += f" ({row.floor_cpu:.2f})"
            step = row.step + (f" ({row.note})" if row.note else "")
            lines.append(
                f"| {step} | {row.n:,} | {row.seconds:.3f} | {floor} | {ratio} | {rss} | {target} | {verdict} | {cpu} |"
            )
    lines.append("")
    for result in results:
        for note in result["notes"]:
            lines.append(f"- N={result['n']:,}: {note}")
    return "\n".join(lines) + "\n"


def environment(threads: int, extra: str = "") -> str:
    import duckdb
    import polars as pl

    return (
        f"python {sys.version.split()[0]}, duckdb {duckdb.__version__}, polars {pl.__version__}, "
        f"{threads} threads (DuckDB threads, POLARS_MAX_THREADS, CPU affinity), {os.cpu_count()} CPUs visible"
        + extra
    )


def _parse_config(items: list[str]) -> dict[str, str]:
    config = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--duckdb-set expects KEY=VALUE, got {item!r}")
        config[key.strip()] = value.strip()
    return config


def main(argv: list[str] | None = None) -> int:
    global STAT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per resolve/floor step (default 3)")
    parser.add_argument(
        "--stat",
        choices=["min", "median"],
        default="min",
        help="summary of repeated runs (default: best of R)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--duckdb-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="DuckDB setting applied with SET on the store's connection (e.g. disabled_compression_methods=dict_fsst)",
    )
    parser.add_argument(
        "--out", type=Path, help="also write the markdown table here (and the raw results as .json)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a .json written by an earlier --out run whose 1M rows are the reference of the 10M '12x' targets",
    )
    parser.add_argument("--workdir", type=Path, help="where the DuckDB files go (default: a temp dir)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    STAT = min if args.stat == "min" else statistics.median
    duckdb_config = _parse_config(args.duckdb_set)

    if args.worker is not None:
        result = run_size(args.worker, args.repeat, args.workdir, args.threads, duckdb_config)
        args.json.write_text(json.dumps(result))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="metaxy_bench_", dir=args.workdir))
    env = {**os.environ, "POLARS_MAX_THREADS": str(args.threads)}
    results = []
    try:
        for n in args.samples:
            out = workdir / f"result_{n}.json"
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                str(n),
                "--json",
                str(out),
                "--repeat",
                str(args.repeat),
                "--stat",
                args.stat,
                "--threads",
                str(args.threads),
                "--workdir",
                str(workdir),
                *(f"--duckdb-set={item}" for item in args.duckdb_set),
            ]
            print(f"# N={n:,} ...", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, env=env, preexec_fn=pin_cpus(args.threads), check=False)
            if proc.returncode != 0:
                print(f"# N={n:,} failed with exit code {proc.returncode}", file=sys.stderr)
                return proc.returncode
            results.append(json.loads(out.read_text()))
            (workdir / f"bench_{n}.duckdb").unlink(missing_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    extra = f"; times are {args.stat} of {args.repeat} interleaved runs (rewrites: of {STEADY_REWRITES})"
    if duckdb_config:
        extra += f"; DuckDB SET {duckdb_config}"
    header = (
        f"## metaxy DuckDB store vs hand-written floor ({time.strftime('%Y-%m-%d %H:%M')})\n\n"
        + environment(args.threads, extra)
    )
    earlier = json.loads(args.baseline.read_text()) if args.baseline else []
    text = render(results, header, earlier)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
