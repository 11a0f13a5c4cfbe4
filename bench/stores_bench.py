"""Every store on the benchmark steps, each next to its own hand-written floor.

The floor runs in the same process on the same tables.

Stores: DuckDB (file), SQLite (file, ADBC driver), PostgreSQL (a throwaway local server started by
this script) and ClickHouse through chDB (in-process). Per store, in its own subprocess pinned to
``--threads`` CPUs:

1. root: ``resolve_update(Video, samples=...)`` (all new) and the write of the N video rows;
2. cold: ``resolve_update(Crop)`` before crop has any metadata (N new);
3. first write of the N crop rows, then ``--rewrites`` full rewrites (history gets versions);
4. steady: ``resolve_update(Crop)`` with nothing changed;
5. 1% change: 1% of the audio values change, video is re-resolved and written, crop is resolved
   (N/100 stale), and the stale crop rows are written.

Each crop resolve is timed eagerly and as ``resolve_update(lazy=True).counts()``, interleaved with
the store's floor: one hand-written query (or, for SQLite, which has no sha256, the fastest path we
measured: an Arrow read of the needed columns, polars-hash and a polars join) computing the same
per-field and per-sample hashes from the stored video rows and comparing them with the stored crop
provenance, returning counts. Every count is checked against the expected value.

    python bench/stores_bench.py --samples 1000000 --stores duckdb sqlite postgres clickhouse \
        --out bench/results/stores-$(date +%F).md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (
    CHANGE_FRACTION,
    CROP_FIELDS,
    change_audio,
    define_features,
    make_samples,
    measure,
    measure_many,
    pin_cpus,
    polars_floor_counts,
    process_peak_mb,
)

STORES = ("duckdb", "sqlite", "postgres", "clickhouse")
HASH_LENGTH = 16
FIELDS = CROP_FIELDS
Counts = dict[str, int]


# -- the floors ---------------------------------------------------------------------------------------
def _field_parts(name: str, dv: str) -> list[str]:
    """Hash input of one crop field: fq(crop.f) | code_version | fq(video.f) | data version of video.f."""
    return [f"'example/crop.{name}'", "'1'", f"'example/video.{name}'", dv]


def _sample_parts(per_field: dict[str, str]) -> list[str]:
    parts: list[str] = []
    for name in FIELDS:
        parts += [f"'{name}'", per_field[name]]
    return parts


def postgres_floor_sql(schema: str, stored: str | None) -> str:
    """Counts of new / stale / orphaned crop rows in one PostgreSQL query; ``stored=None``: empty."""

    def h(parts: list[str]) -> str:
        text = " || '|' || ".join(parts)
        return f"substr(encode(sha256(convert_to({text}, 'UTF8')), 'hex'), 1, {HASH_LENGTH})"

    dv = {
        f: h(
            _field_parts(
                f, f"coalesce(metaxy_data_version_by_field->>'{f}', metaxy_provenance_by_field->>'{f}')"
            )
        )
        for f in FIELDS
    }
    per_field = ", ".join(f"{expr} AS p_{f}" for f, expr in dv.items())
    expected = (
        f"SELECT sample_uid, {h(_sample_parts({f: f'p_{f}' for f in FIELDS}))} AS prov FROM "
        f'(SELECT sample_uid, {per_field} FROM "{schema}".example__video WHERE metaxy_deleted_at IS NULL) AS v'
    )
    stored_q = (
        f'SELECT sample_uid, metaxy_provenance AS prov FROM "{schema}".{stored} WHERE metaxy_deleted_at IS NULL'
        if stored
        else "SELECT NULL::text AS sample_uid, NULL::text AS prov WHERE false"
    )
    return (
        "SELECT count(*) FILTER (WHERE s.sample_uid IS NULL), "
        "count(*) FILTER (WHERE e.sample_uid IS NOT NULL AND s.sample_uid IS NOT NULL AND e.prov <> s.prov), "
        "count(*) FILTER (WHERE e.sample_uid IS NULL) "
        f"FROM ({expected}) AS e FULL OUTER JOIN ({stored_q}) AS s ON e.sample_uid = s.sample_uid"
    )


def clickhouse_floor_sql(database: str, stored: str | None) -> str:
    """The same in ClickHouse SQL; current rows are read with FINAL, as the table engine requires."""

    def h(parts: list[str]) -> str:
        return (
            f"substring(lower(hex(SHA256(concatWithSeparator('|', {', '.join(parts)})))), 1, {HASH_LENGTH})"
        )

    live = "WHERE __metaxy_tombstone = 0 AND metaxy_deleted_at IS NULL"
    per_field = ", ".join(
        h(_field_parts(f, f"coalesce(metaxy_data_version_by_field__{f}, metaxy_provenance_by_field__{f})"))
        + f" AS p_{f}"
        for f in FIELDS
    )
    expected = (
        f"SELECT sample_uid, 1 AS e_in, {h(_sample_parts({f: f'p_{f}' for f in FIELDS}))} AS prov FROM "
        f"(SELECT sample_uid, {per_field} FROM {database}.example__video FINAL {live})"
    )
    stored_q = (
        f"SELECT sample_uid, 1 AS s_in, metaxy_provenance AS prov FROM {database}.{stored} FINAL {live}"
        if stored
        else "SELECT '' AS sample_uid, 1 AS s_in, '' AS prov WHERE 0"
    )
    return (
        "SELECT countIf(s.s_in IS NULL), countIf(e.e_in IS NOT NULL AND s.s_in IS NOT NULL AND e.prov != s.prov), "
        f"countIf(e.e_in IS NULL) FROM ({expected}) AS e FULL OUTER JOIN ({stored_q}) AS s "
        "ON e.sample_uid = s.sample_uid SETTINGS join_use_nulls = 1"
    )


def sqlite_floor(con: Any, stored: str | None) -> tuple[int, int, int]:
    """SQLite has no sha256: Arrow read (ADBC) of the needed columns, polars-hash, polars full join."""
    import polars as pl

    def read(sql: str) -> pl.DataFrame:
        with con.cursor() as cur:
            cur.execute(sql)
            frame = pl.from_arrow(cur.fetch_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame

    dv = ", ".join(
        f'coalesce("metaxy_data_version_by_field.{f}", "metaxy_provenance_by_field.{f}") AS dv__{f}'
        for f in FIELDS
    )
    up = read(f"SELECT sample_uid, {dv} FROM example__video WHERE metaxy_deleted_at IS NULL").lazy()
    if stored:
        stored_f = read(
            f"SELECT sample_uid, metaxy_provenance AS s_prov FROM {stored} WHERE metaxy_deleted_at IS NULL"
        ).lazy()
    else:
        stored_f = pl.LazyFrame(schema={"sample_uid": pl.String, "s_prov": pl.String})
    counts = polars_floor_counts(up, stored_f, HASH_LENGTH)
    return counts["new"], counts["stale"], counts["orphaned"]


# -- PostgreSQL server CPU ------------------------------------------------------------------------------
def _server_cpu(postmaster: int) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster, its reaped backends and the live ones."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            stat = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(pid_dir.name), int(stat[1])
        if pid == postmaster:
            total += sum(int(x) for x in stat[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(stat[11]) + int(stat[12])
    return total / tick


# -- one store, in its own process ----------------------------------------------------------------------
@dataclass
class Row:
    step: str
    seconds: float
    floor: float | None = None
    cpu: float | None = None
    floor_cpu: float | None = None
    rss_mb: float | None = None
    all_seconds: list[float] = field(default_factory=list)
    floor_all: list[float] = field(default_factory=list)


class Bench:
    """The store under test, its floor, and the hooks that differ per engine."""

    def __init__(self, kind: str, workdir: Path, threads: int) -> None:
        import metaxy_core as mx

        self.kind = kind
        self.server: Any = None
        self.postmaster: int | None = None
        self.floor_con: Any = None
        if kind == "duckdb":
            self.store: Any = mx.DuckDBMetadataStore(
                database=workdir / "bench.duckdb", hash_length=HASH_LENGTH, config={"threads": threads}
            )
        elif kind == "sqlite":
            self.store = mx.SQLiteMetadataStore(
                database=workdir / "bench.sqlite", hash_length=HASH_LENGTH, driver="adbc"
            )
        elif kind == "postgres":
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from pg_server import LocalServer, server_bin_dir

            bin_dir = server_bin_dir()
            if bin_dir is None:
                raise SystemExit("postgres: no initdb/pg_ctl found")
            self.server = LocalServer(bin_dir)
            self.server.start()
            self.postmaster = int((self.server.data / "postmaster.pid").read_text().split()[0])
            self.store = mx.PostgreSQLMetadataStore(self.server.dsn, schema="bench", hash_length=HASH_LENGTH)
        elif kind == "clickhouse":
            from metaxy_core.stores.clickhouse import ClickHouseMetadataStore

            self.store = ClickHouseMetadataStore(
                dsn=f"chdb://{workdir}/chdb?database=bench", hash_length=HASH_LENGTH
            )
        else:
            raise SystemExit(f"unknown store {kind!r}; choose from {', '.join(STORES)}")

    def server_cpu(self) -> float:
        return _server_cpu(self.postmaster) if self.postmaster else 0.0

    def after_write(self) -> None:
        if self.kind == "duckdb":
            # DuckDB 2.0 bug (bench/README.md): a table created and filled with >= 122,880 rows in one
            # transaction can read back empty on that connection; reopening reads it correctly.
            self.store.__exit__(None, None, None)
            self.store.__enter__()

    def floor(self, stored: str | None) -> tuple[int, int, int]:
        if self.kind == "duckdb":
            from resolve_bench import floor_sql

            con = self.store.connection
            if stored is None:
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE bench_empty_crop (sample_uid VARCHAR, "
                    "metaxy_provenance VARCHAR, metaxy_deleted_at TIMESTAMPTZ)"
                )
            return tuple(
                con.sql(floor_sql(HASH_LENGTH, stored or "bench_empty_crop", rows=False)).fetchall()[0]
            )
        if self.kind == "sqlite":
            if self.floor_con is None:
                import adbc_driver_sqlite.dbapi as adbc

                # autocommit: a read must not hold a snapshot that hides the store's later writes
                self.floor_con = adbc.connect(self.store.database, autocommit=True)
            return sqlite_floor(self.floor_con, stored)
        if self.kind == "postgres":
            if self.floor_con is None:
                import psycopg

                self.floor_con = psycopg.connect(self.server.dsn, autocommit=True)
            return tuple(self.floor_con.execute(postgres_floor_sql("bench", stored)).fetchone())
        # chDB runs one engine per process: the floor goes through the store's open session
        return tuple(self.store._x.rows(clickhouse_floor_sql("bench", stored))[0])

    def close(self) -> None:
        if self.floor_con is not None:
            self.floor_con.close()
        if self.server is not None:
            self.server.stop()


def run_store(kind: str, n: int, repeat: int, rewrites: int, workdir: Path, threads: int, out: Path) -> None:
    features = define_features()
    video, crop = features["video"], features["crop"]
    rows: list[Row] = []
    notes: list[str] = [f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    started = time.perf_counter()

    def save(done: bool = False) -> None:
        result = {"store": kind, "n": n, "rows": [asdict(r) for r in rows], "notes": notes, "done": done}
        out.write_text(json.dumps(result))

    bench = Bench(kind, workdir, threads)
    store = bench.store

    def check(what: str, got: Counts, want: Counts) -> None:
        if got != want:
            raise SystemExit(f"[{kind} N={n}] {what}: counts {got} != expected {want}")

    def timed(fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` plus the PostgreSQL server's CPU it caused, kept in ``server_cpu``."""

        def run() -> Any:
            before = bench.server_cpu()
            result = fn()
            server_cpu.setdefault(id(fn), []).append(bench.server_cpu() - before)
            return result

        return run

    server_cpu: dict[int, list[float]] = {}

    def once(step: str, fn: Callable[[], Any]) -> Any:
        m = measure(timed(fn))
        rows.append(Row(step, m.seconds, cpu=m.cpu + min(server_cpu.pop(id(fn))), rss_mb=m.rss_mb))
        save()
        return m.result

    def resolve_step(step: str, want: Counts, stored: str | None) -> Any:
        fns = {
            "eager": lambda: store.resolve_update(crop, full=True),
            "lazy": lambda: store.resolve_update(crop, lazy=True, full=True).counts(),
            "floor": lambda: bench.floor(stored),
        }
        m = measure_many({k: timed(f) for k, f in fns.items()}, repeat)
        cpu = {k: m[k].cpu + min(server_cpu.pop(id(f))) for k, f in fns.items()}
        check(f"{step} eager", m["eager"].result.counts(), want)
        check(f"{step} lazy", m["lazy"].result, want)
        check(f"{step} floor", dict(zip(("new", "stale", "orphaned"), m["floor"].result, strict=True)), want)
        for mode, label in (("eager", "eager (polars)"), ("lazy", "lazy counts()")):
            rows.append(
                Row(
                    f"{step} resolve, {label}",
                    m[mode].seconds,
                    m["floor"].seconds,
                    cpu[mode],
                    cpu["floor"],
                    m[mode].rss_mb,
                    m[mode].all_seconds,
                    m["floor"].all_seconds,
                )
            )
        save()
        return m["eager"].result

    samples = make_samples(n)
    try:
        with store:
            inc = once(
                "video resolve(samples=), all new", lambda: store.resolve_update(video, samples=samples)
            )
            check("video resolve", inc.counts(), {"new": n, "stale": 0, "orphaned": 0})
            once("video write (first, N rows)", lambda frame=inc.new: store.write(video, frame))
            del inc
            bench.after_write()

            cold = resolve_step("cold", {"new": n, "stale": 0, "orphaned": 0}, None)
            crop_rows = cold.new.to_polars()
            del cold
            once("crop write (first, N rows)", lambda: store.write(crop, crop_rows))
            bench.after_write()
            if rewrites:
                m = measure(timed(lambda: store.write(crop, crop_rows)), rewrites)
                server = min(v for k, vs in server_cpu.items() for v in vs)
                server_cpu.clear()
                rows.append(
                    Row(
                        f"crop rewrite (all N replaced), best of {rewrites}",
                        m.seconds,
                        cpu=m.cpu + server,
                        rss_mb=m.rss_mb,
                        all_seconds=m.all_seconds,
                    )
                )
                save()

            resolve_step("steady (0 changed)", {"new": 0, "stale": 0, "orphaned": 0}, "example__crop")

            changed, n_changed = change_audio(samples, CHANGE_FRACTION)
            inc = once(
                "video resolve(samples=), 1% stale", lambda: store.resolve_update(video, samples=changed)
            )
            check("video 1% resolve", inc.counts(), {"new": 0, "stale": n_changed, "orphaned": 0})
            once("video write (1% rows replaced)", lambda frame=inc.stale: store.write(video, frame))
            del inc
            one_pct = resolve_step(
                "1% change", {"new": 0, "stale": n_changed, "orphaned": 0}, "example__crop"
            )
            crop_stale = one_pct.stale.to_polars()
            del one_pct
            fields = crop_stale.get_column("metaxy_changed_fields").explode().unique().to_list()
            if fields != ["audio"]:
                raise SystemExit(f"[{kind} N={n}] 1% change: changed fields {fields}, expected ['audio']")
            once("crop write (1% rows replaced)", lambda: store.write(crop, crop_stale))
            check(
                "crop after 1% write",
                store.resolve_update(crop, lazy=True).counts(),
                {"new": 0, "stale": 0, "orphaned": 0},
            )
    finally:
        bench.close()
    notes.append(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    notes.append(
        f"whole run {time.perf_counter() - started:.0f} s, process peak RSS {process_peak_mb():,.0f} MB"
    )
    save(done=True)


# -- report -----------------------------------------------------------------------------------------------
def render(results: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", render_summary(results)]
    for result in results:
        status = "" if result["done"] else " (did not finish: partial)"
        lines += [
            f"### {result['store']}, N = {result['n']:,}{status}",
            "",
            "| step | seconds | floor s | ratio | CPU s (floor CPU s) | peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for raw in result["rows"]:
            row = Row(**raw)
            floor = f"{row.floor:.3f}" if row.floor else ""
            ratio = f"{row.seconds / row.floor:.2f}x" if row.floor else ""
            cpu = f"{row.cpu:.2f}" if row.cpu is not None else ""
            if row.floor_cpu is not None:
                cpu += f" ({row.floor_cpu:.2f})"
            rss = f"{row.rss_mb:,.0f}" if row.rss_mb is not None else ""
            lines.append(f"| {row.step} | {row.seconds:.3f} | {floor} | {ratio} | {cpu} | {rss} |")
        lines.append("")
        lines += [f"- {note}" for note in result["notes"]]
        if result.get("error"):
            lines.append(f"- error: {result['error']}")
        lines.append("")
    return "\n".join(lines)


def render_summary(results: list[dict[str, Any]]) -> str:
    """One table across stores: each step's seconds, floor seconds and ratio (largest N per store)."""
    latest: dict[str, dict[str, Any]] = {}
    for result in results:
        if result["rows"]:
            latest[result["store"]] = result
    if not latest:
        return ""
    steps: list[str] = []
    for result in latest.values():
        steps += [r["step"] for r in result["rows"] if r["step"] not in steps]
    names = list(latest)
    lines = [
        "| step | " + " | ".join(f"{s} (N={latest[s]['n']:,}): s / floor s / ratio" for s in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for step in steps:
        cells = []
        for name in names:
            row = next((r for r in latest[name]["rows"] if r["step"] == step), None)
            if row is None:
                cells.append("")
            elif row["floor"]:
                cells.append(
                    f"{row['seconds']:.2f} / {row['floor']:.2f} / {row['seconds'] / row['floor']:.2f}x"
                )
            else:
                cells.append(f"{row['seconds']:.2f}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def environment(threads: int, repeat: int, rewrites: int) -> str:
    import chdb
    import duckdb
    import polars as pl

    return (
        f"python {sys.version.split()[0]}, duckdb {duckdb.__version__}, polars {pl.__version__}, chdb "
        f"{chdb.__version__}, PostgreSQL server from tests/pg_server.py (fsync off); each store in its own "
        f"process pinned to {threads} CPUs ({os.cpu_count()} visible; the PostgreSQL server inherits the "
        f"pinning); resolve times are the best of {repeat} interleaved store/floor runs; {rewrites} full crop "
        "rewrites before the steady step; CPU s = process time of all threads, plus the PostgreSQL "
        "server's CPU for that store; ratio = store seconds / floor seconds."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--repeat", type=int, default=3, help="interleaved store/floor runs per resolve step")
    parser.add_argument("--rewrites", type=int, default=3, help="full crop rewrites before the steady step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per store and size")
    parser.add_argument(
        "--out", type=Path, help="also write the markdown here (and the raw results as .json)"
    )
    parser.add_argument("--render", type=Path, help="only re-render the markdown of an earlier run's .json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        run_store(args.worker, args.n, args.repeat, args.rewrites, args.workdir, args.threads, args.json)
        return 0

    if args.render:
        header = f"## Stores vs their floors (re-rendered from {args.render.name})"
        text = render(json.loads(args.render.read_text()), header)
        if args.out:
            args.out.write_text(text)
        print(text)
        return 0

    env = {**os.environ, "POLARS_MAX_THREADS": str(args.threads)}
    results: list[dict[str, Any]] = []
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    for n in args.samples:
        for kind in args.stores:
            workdir = Path(tempfile.mkdtemp(prefix=f"metaxy_stores_{kind}_"))
            out = workdir / "result.json"
            cmd = [
                sys.executable, __file__, "--worker", kind, "--n", str(n), "--json", str(out),
                "--repeat", str(args.repeat), "--rewrites", str(args.rewrites), "--threads", str(args.threads),
                "--workdir", str(workdir),
            ]  # fmt: skip
            print(f"# {kind} N={n:,} ...", file=sys.stderr, flush=True)
            error = None
            try:
                proc = subprocess.run(
                    cmd, env=env, preexec_fn=pin_cpus(args.threads), check=False, timeout=args.timeout
                )
                if proc.returncode != 0:
                    error = f"exit code {proc.returncode}"
            except subprocess.TimeoutExpired:
                error = f"timed out after {args.timeout:.0f} s"
            if out.exists():
                result = json.loads(out.read_text())
            else:
                result = {"store": kind, "n": n, "rows": [], "notes": [], "done": False}
            result["error"] = error
            results.append(result)
            shutil.rmtree(workdir, ignore_errors=True)
            text = render(
                results,
                f"## Stores vs their floors (started {started})\n\n"
                + environment(args.threads, args.repeat, args.rewrites),
            )
            if args.out:  # rewritten after every store, so a late failure keeps what finished
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(text)
                args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
