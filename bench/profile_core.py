"""Where the time of a DuckDB-store write / resolve goes, and what alternatives would cost.

Companion of ``resolve_bench.py`` (same graph, same data). It instruments the store *from the
outside* (wrapping functions and methods in this process only; metaxy_core is not edited) and
times, on the same tables:

* a crop rewrite (N rows replacing N) split into: polars validation in ``_prepare_write`` (id
  checks, struct normalisation, coercion, the rest), ``to_arrow``, and every SQL statement the
  store runs (schema probes, staging + created_at join, history insert, delete, insert);
* alternative write statement sequences (run inside a transaction that is rolled back), e.g. a
  narrow created_at join, UPDATE/MERGE in place, no created_at carry-over;
* alternative duplicate-id checks;
* a steady-state and a 1%-change resolve split into schema probes, the SQL (arrow vs polars
  fetch) and the polars split, plus lazy ``counts()`` (three queries) vs one ``GROUP BY`` query;
* the root resolve (``samples=``) split into sample preparation, registration and SQL.

Run: ``python bench/profile_core.py --samples 1000000 [--db state.duckdb] [--out bench/results/profile.md]``.
With ``--db`` pointing at a file built by an earlier run (kept with ``--keep``), setup is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import resolve_bench as rb

TIMES: dict[str, list[tuple[float, float]]] = defaultdict(list)
"""label -> (wall, CPU) seconds of every call."""
_ACTIVE: list[str] = []
RSS_GROWTH: dict[str, float] = defaultdict(float)
"""label -> largest (peak RSS while active - RSS at entry), MB, from a 5 ms sampling thread."""
_ENTRY_RSS: list[float] = []
_PEAK_SEEN: list[float] = []


def _rss_mb() -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def _sampler() -> None:
    # Native code (DuckDB, polars) releases the GIL, so this thread sees RSS during the heavy calls.
    while True:
        rss = _rss_mb()
        for i in range(len(_PEAK_SEEN)):
            with contextlib.suppress(IndexError):
                _PEAK_SEEN[i] = max(_PEAK_SEEN[i], rss)
        time.sleep(0.005)


threading.Thread(target=_sampler, daemon=True).start()


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    _ACTIVE.append(label)
    entry = _rss_mb()
    _ENTRY_RSS.append(entry)
    _PEAK_SEEN.append(entry)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        TIMES[label].append((time.perf_counter() - wall, time.process_time() - cpu))
        peak = max(_PEAK_SEEN.pop(), _rss_mb())
        RSS_GROWTH[label] = max(RSS_GROWTH[label], peak - _ENTRY_RSS.pop())
        _ACTIVE.pop()


def wrap_attr(owner: Any, name: str, label: str) -> None:
    """Time every call of ``owner.name`` under ``label`` (skipped if the core no longer has it)."""
    original = getattr(owner, name, None)
    if original is None:
        return

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with timed(label):
            return original(*args, **kwargs)

    setattr(owner, name, wrapper)


SQL_LABELS = [
    (r"^CREATE TEMP TABLE __metaxy_staged", "sql: stage incoming + created_at LEFT JOIN"),
    (r"^INSERT INTO metaxy_history", "sql: copy replaced rows to history"),
    (r"^DELETE FROM", "sql: delete replaced rows"),
    (r"^INSERT INTO .* FROM __metaxy_staged", "sql: insert staged rows"),
    (r"^INSERT INTO .* FROM \"?__metaxy_incoming", "sql: insert incoming rows"),
    (r"^INSERT INTO", "sql: insert (other)"),
    (r"^CREATE TABLE", "sql: create tables"),
    (r"^DESCRIBE", "sql: DESCRIBE"),
    (r"information_schema", "sql: table exists?"),
    (r"^SELECT count\(\*\) FROM", "sql: count(*) probe"),
    (r"^(BEGIN|COMMIT|ROLLBACK)", "sql: begin/commit"),
    (r"^DROP TABLE", "sql: drop staging"),
    (r"^ALTER TABLE", "sql: alter table"),
]


def sql_label(sql: str) -> str:
    text = sql.strip()
    for pattern, label in SQL_LABELS:
        if re.search(pattern, text, flags=re.S):
            return label
    return "sql: other (" + text[:40] + ")"


def instrument() -> dict[str, str]:
    """Wrap the store internals; returns a holder the resolve wrapper fills with the last diff SQL."""
    import polars as pl

    import metaxy_core.stores.base as base_mod
    import metaxy_core.stores.duckdb as duck_mod

    store_cls = duck_mod.DuckDBMetadataStore
    captured: dict[str, str] = {}

    wrap_attr(base_mod, "_check_ids", "py: _check_ids (nulls + is_duplicated)")
    wrap_attr(base_mod, "_normalize_struct", "py: _normalize_struct")
    wrap_attr(base_mod, "coerce_declared_columns", "py: coerce_declared_columns")
    wrap_attr(base_mod, "to_polars", "py: to_polars(input)")
    wrap_attr(base_mod.MetadataStore, "_prepare_write", "py: _prepare_write (total)")
    wrap_attr(base_mod.MetadataStore, "_prepare_samples", "py: _prepare_samples (total)")
    wrap_attr(pl.DataFrame, "to_arrow", "py: polars to_arrow")
    wrap_attr(store_cls, "_schema", "py+sql: _schema probes (total)")
    wrap_attr(store_cls, "_write", "store: _write (total)")
    wrap_attr(store_cls, "_upsert", "store: _upsert (total)")
    wrap_attr(store_cls, "_ensure_table", "store: _ensure_table (total)")
    wrap_attr(store_cls, "_resolve", "store: _resolve (total)")

    original_run = store_cls._run

    def run(self: Any, sql: str, params: Any = None) -> Any:
        with timed(sql_label(sql)):
            return original_run(self, sql, params)

    store_cls._run = run

    original_split = getattr(store_cls, "_split", None)
    if original_split is not None:

        def split(self: Any, plan: Any, diff: str, *args: Any, **kwargs: Any) -> Any:
            captured["diff"] = diff
            with timed("store: _split (SQL fetch + polars split)"):
                return original_split(self, plan, diff, *args, **kwargs)

        store_cls._split = split
    return captured


def reset() -> None:
    TIMES.clear()
    RSS_GROWTH.clear()


def report(title: str, runs: int, total_label: str | None = None) -> list[str]:
    """Per call-site: wall and CPU seconds per run (sum of the calls within a run, averaged over runs)."""
    lines = [
        f"### {title}",
        "",
        "| component | wall s per run | CPU s per run | calls per run | RSS growth MB (peak - entry) |",
        "|---|---:|---:|---:|---:|",
    ]
    order = sorted(TIMES.items(), key=lambda kv: -sum(w for w, _ in kv[1]))
    for label, values in order:
        wall = sum(w for w, _ in values) / runs
        cpu = sum(c for _, c in values) / runs
        growth = RSS_GROWTH.get(label, 0.0)
        lines.append(f"| {label} | {wall:.3f} | {cpu:.3f} | {len(values) / runs:g} | {growth:,.0f} |")
    lines.append("")
    return lines


def bench(fn: Callable[[], Any], repeat: int) -> tuple[float, float, list[float]]:
    """Best-of-``repeat`` wall and CPU seconds (best of: other processes may share the cores)."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), walls


def table(title: str, rows: list[tuple[str, float, str]]) -> list[str]:
    lines = [f"### {title}", "", "| variant | best wall s | note |", "|---|---:|---|"]
    lines += [f"| {name} | {seconds:.3f} | {note} |" for name, seconds, note in rows]
    return [*lines, ""]


# -- write alternatives (SQL only, on scratch copies, committed + checkpointed) --------------------
def write_alternatives(con: Any, frame: Any, repeat: int) -> list[str]:
    """Statement sequences that store ``frame``'s rows (stamped as the store would) on scratch copies
    of the crop tables: BEGIN, statements, COMMIT timed, then CHECKPOINT timed separately (UPDATE and
    MERGE defer work to the checkpoint, so a rolled-back comparison would flatter them)."""
    import polars as pl

    from metaxy_core.stores._sql import q

    ids = "sample_uid"
    cur, hist = "bench_scratch", "bench_scratch_history"
    dv_null = frame.with_columns(
        pl.lit(None, dtype=frame.schema["metaxy_data_version_by_field"]).alias(
            "metaxy_data_version_by_field"
        ),
        pl.lit(None, dtype=pl.String).alias("metaxy_data_version"),
    )
    con.register("bench_incoming", frame.to_arrow())
    con.register("bench_incoming_dvnull", dv_null.to_arrow())
    cols = [row[0] for row in con.sql("DESCRIBE SELECT * FROM bench_incoming").fetchall()]
    plain = ", ".join(f"i.{q(c)}" for c in cols)
    set_clause = ", ".join(f"{q(c)} = i.{q(c)}" for c in cols if c != ids)
    to_history = (
        f"INSERT INTO {hist} SELECT t.* FROM {cur} AS t SEMI JOIN bench_incoming AS k ON t.{ids} = k.{ids}"
    )
    delete = f"DELETE FROM {cur} AS t USING bench_incoming AS k WHERE t.{ids} = k.{ids}"

    def insert(source: str = "bench_incoming") -> str:
        return f"INSERT INTO {cur} SELECT {plain} FROM {source} AS i"

    # (name, start from a full current table?, settings, statements)
    variants: list[tuple[str, bool, dict[str, str], list[str]]] = [
        ("first write: INSERT N rows into an empty table (store settings)", False, {}, [insert()]),
        (
            "first write, data-version columns NULL when equal to provenance",
            False,
            {},
            [insert("bench_incoming_dvnull")],
        ),
        (
            "first write, DuckDB default compression (dict_fsst on)",
            False,
            {"disabled_compression_methods": ""},
            [insert()],
        ),
        (
            "rewrite (store settings): history copy + DELETE + INSERT",
            True,
            {},
            [to_history, delete, insert()],
        ),
        (
            "rewrite, data-version columns NULL when equal to provenance",
            True,
            {},
            [to_history, delete, insert("bench_incoming_dvnull")],
        ),
        (
            "rewrite, DuckDB default compression (dict_fsst on)",
            True,
            {"disabled_compression_methods": ""},
            [to_history, delete, insert()],
        ),
        (
            "rewrite, history = every written version (append incoming twice, no copy of old rows)",
            True,
            {},
            [delete, insert(), f"INSERT INTO {hist} SELECT {plain} FROM bench_incoming AS i"],
        ),
        (
            "rewrite, history copy + UPDATE in place (+ INSERT of new ids)",
            True,
            {},
            [
                to_history,
                f"UPDATE {cur} AS t SET {set_clause} FROM bench_incoming AS i WHERE t.{ids} = i.{ids}",
                f"INSERT INTO {cur} SELECT {plain} FROM bench_incoming AS i ANTI JOIN {cur} AS o ON o.{ids} = i.{ids}",
            ],
        ),
        (
            "rewrite, history copy + MERGE INTO",
            True,
            {},
            [
                to_history,
                f"MERGE INTO {cur} AS t USING bench_incoming AS i ON t.{ids} = i.{ids} "
                f"WHEN MATCHED THEN UPDATE SET {set_clause} WHEN NOT MATCHED THEN INSERT VALUES ({plain})",
            ],
        ),
        ("part: history copy only", True, {}, [to_history]),
        ("part: DELETE only", True, {}, [delete]),
    ]
    rows: list[tuple[str, float, str]] = []
    for name, full, settings, statements in variants:
        walls, cpus, checkpoints = [], [], []
        for _ in range(repeat):
            source = "bench_incoming" if full else "bench_incoming LIMIT 0"
            con.execute(f"CREATE OR REPLACE TABLE {cur} AS SELECT * FROM {source}")
            con.execute(f"CREATE OR REPLACE TABLE {hist} AS SELECT * FROM bench_incoming LIMIT 0")
            con.execute("CHECKPOINT")
            previous = {
                key: con.sql("SELECT value FROM duckdb_settings() WHERE name = ?", params=[key]).fetchall()[
                    0
                ][0]
                for key in settings
            }
            for key, value in settings.items():
                con.execute(f"SET {key} = '{value}'")
            wall, cpu = time.perf_counter(), time.process_time()
            con.execute("BEGIN TRANSACTION")
            for sql in statements:
                con.execute(sql)
            con.execute("COMMIT")
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            start = time.perf_counter()
            con.execute("CHECKPOINT")
            checkpoints.append(time.perf_counter() - start)
            # Back to the store's own value (RESET would restore DuckDB's default instead).
            for key, value in previous.items():
                con.execute(f"SET {key} = '{value}'")
        best = min(range(repeat), key=lambda i: walls[i])
        rows.append(
            (
                name,
                walls[best],
                f"cpu {cpus[best]:.2f} s; then CHECKPOINT {checkpoints[best]:.2f} s; runs "
                + ", ".join(f"{t:.2f}" for t in walls),
            )
        )
    con.execute(f"DROP TABLE IF EXISTS {cur}")
    con.execute(f"DROP TABLE IF EXISTS {hist}")
    con.execute("CHECKPOINT")
    con.unregister("bench_incoming")
    con.unregister("bench_incoming_dvnull")
    return table(
        f"Write alternatives: {frame.height:,} stamped crop rows into scratch copies (COMMIT timed, CHECKPOINT after)",
        rows,
    )


def dedupe_alternatives(frame: Any, repeat: int) -> list[str]:
    import duckdb
    import polars as pl

    ids = ["sample_uid"]
    con = duckdb.connect()
    con.register("f", frame.select(ids).to_arrow())
    variants: list[tuple[str, Callable[[], Any]]] = [
        (
            "current: pl.struct(ids).is_duplicated().any()",
            lambda: frame.select(pl.struct(ids).is_duplicated().any()),
        ),
        (
            "single id: pl.col(id).is_duplicated().any()",
            lambda: frame.select(pl.col(ids[0]).is_duplicated().any()),
        ),
        ("n_unique() == height", lambda: frame.select(pl.struct(ids).n_unique()).item() == frame.height),
        ("single id: pl.col(id).n_unique()", lambda: frame.select(pl.col(ids[0]).n_unique()).item()),
        (
            "DuckDB: count(DISTINCT id) on the registered arrow",
            lambda: con.sql("SELECT count(DISTINCT sample_uid) FROM f").fetchall(),
        ),
        ("null counts (current, per id column)", lambda: [frame.get_column(c).null_count() for c in ids]),
    ]
    rows = []
    for name, fn in variants:
        wall, cpu, _ = bench(fn, repeat)
        rows.append((name, wall, f"cpu {cpu:.2f} s"))
    return table(f"Duplicate-id check alternatives ({frame.height:,} rows)", rows)


def resolve_variants(store: Any, crop: Any, diff: str, label: str, repeat: int) -> list[str]:
    """The store's captured diff SQL fetched different ways, lazy counts, and the floor."""
    con = store.connection
    variants: list[tuple[str, Callable[[], Any]]] = [
        ("diff SQL -> to_arrow_table()", lambda: con.sql(diff).to_arrow_table()),
        ("diff SQL -> .pl()", lambda: con.sql(diff).pl()),
        ("diff SQL -> count(*)", lambda: con.sql(f"SELECT count(*) FROM ({diff}) AS d").fetchall()),
        ("lazy counts() as shipped (3 queries)", lambda: store.resolve_update(crop, lazy=True).counts()),
        (
            "one query: GROUP BY status",
            lambda: con.sql(f"SELECT __metaxy_status, count(*) FROM ({diff}) AS d GROUP BY ALL").fetchall(),
        ),
        ("floor: counts", lambda: con.sql(rb.floor_sql(16, "example__crop", rows=False)).fetchall()),
        (
            "floor: rows as Arrow",
            lambda: con.sql(rb.floor_sql(16, "example__crop", rows=True)).to_arrow_table(),
        ),
    ]
    rows = []
    for name, fn in variants:
        wall, cpu, _ = bench(fn, repeat)
        rows.append((name, wall, f"cpu {cpu:.2f} s"))
    return table(f"Crop resolve, {label}: SQL variants", rows)


# -- main ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--db", type=Path, help="reuse a state file built by an earlier --keep run")
    parser.add_argument("--keep", type=Path, help="copy the built state file here for later --db runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("POLARS_MAX_THREADS", str(args.threads))

    import metaxy_core as mx

    captured = instrument()
    features = rb.define_features()
    video, crop = features["video"], features["crop"]
    n = args.samples
    workdir = Path(tempfile.mkdtemp(prefix="metaxy_profile_"))
    out: list[str] = [f"## Profile of the DuckDB store at N={n:,}", "", rb.environment(args.threads), ""]
    samples = rb.make_samples(n)
    try:
        db = workdir / "profile.duckdb"
        if args.db:
            shutil.copy(args.db, db)
        store = mx.DuckDBMetadataStore(database=db, hash_length=16, config={"threads": args.threads})
        if not args.db:
            # Root resolve + first write, then crop first write + rewrites (as the bench does).
            reset()
            with store:
                inc = store.resolve_update(video, samples=samples)
            out += report("Root resolve (samples=, all new)", 1, "store: _resolve (total)")
            reset()
            with store:
                store.write(video, inc.new)
            out += report("Root first write (N rows into a new table)", 1, "store: _write (total)")
            with store:
                crop_rows = store.resolve_update(crop).new.to_polars()
            reset()
            with store:
                store.write(crop, crop_rows)
            out += report("Crop first write (N rows into a new table)", 1, "store: _write (total)")
            with store:
                for _ in range(rb.STEADY_REWRITES - args.repeat):
                    store.write(crop, crop_rows)
        else:
            with store:
                crop_rows = store.read(
                    crop,
                    columns=[
                        "sample_uid",
                        "frames",
                        "duration",
                        "size",
                        "metaxy_provenance_by_field",
                        "metaxy_provenance",
                    ],
                ).to_polars()
        reset()
        with store:
            for _ in range(args.repeat):
                store.write(crop, crop_rows)
        out += report(
            f"Crop rewrite (N rows replace N), mean of {args.repeat}", args.repeat, "store: _write (total)"
        )
        if args.keep:
            shutil.copy(db, args.keep)

        with store:
            out += write_alternatives(store.connection, _stamped(store, crop, crop_rows), args.repeat)
        out += dedupe_alternatives(crop_rows, args.repeat)

        # Resolve breakdowns.
        for label, changed in (("steady (0 changed)", None), ("1% change", rb.CHANGE_FRACTION)):
            if changed:
                with store:
                    changed_samples, _ = rb.change_audio(samples, changed)
                    reset()
                    inc = store.resolve_update(video, samples=changed_samples)
                    out += report("Root resolve (samples=, 1% stale)", 1, "store: _resolve (total)")
                    store.write(video, inc.stale)
            with store:
                reset()
                for _ in range(args.repeat):
                    store.resolve_update(crop)
                out += report(f"Crop resolve, {label}, eager", args.repeat, "store: _resolve (total)")
                diff = captured["diff"]
                con = store.connection
                out += resolve_variants(store, crop, diff, label, args.repeat)
                if args.out:
                    # The operator tree with timings, next to the report, for reading by hand.
                    explain = con.sql(f"EXPLAIN ANALYZE {diff}").fetchall()
                    target = args.out.with_name(f"{args.out.stem}_explain_{label.split()[0]}.txt")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text("\n".join(str(r[-1]) for r in explain))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


def _stamped(store: Any, crop: Any, frame: Any) -> Any:
    """The rows exactly as the store would insert them (validated and stamped)."""
    schema = store._schema(crop.spec.key)
    return store._prepare_write(crop, frame, schema, "profile")


if __name__ == "__main__":
    sys.exit(main())
