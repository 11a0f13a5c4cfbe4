"""Where should the SQLite store hash? A measurement at 1M samples.

SQLite has no sha256. Two designs compute the same resolve (expected provenance of a downstream
feature from its upstream's data versions, FULL OUTER JOIN with the stored provenance, counts of
new / stale / orphaned):

1. ``sql``: everything in one SQLite query, hashing with a Python ``hashlib`` function registered
   on the connection (``create_function(..., deterministic=True)``);
2. ``polars``: read only the needed columns (as Arrow through ADBC, or rows through ``sqlite3``),
   then hash with polars-hash and join in polars.

Also timed: reading the columns alone (ADBC vs ``sqlite3``), loading 1M rows (ADBC ingest vs
``executemany``), and the store itself end to end (``--store``: root write, cold resolve of a
downstream feature, its write, steady resolve) with each driver. Tables are laid out like the
store's (one column per provenance field).

Run: ``python bench/sqlite_hashing.py --samples 1000000`` (about a minute; needs
``adbc-driver-sqlite`` for the ADBC rows).
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import polars_hash  # noqa: F401  (registers the .chash namespace)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import polars_expected
from bench_common import polars_floor_counts as polars_counts

FIELDS = ("audio", "frames")
UP = "example/video"
DOWN = "example/crop"


def timed(label: str, fn: Callable[[], Any], results: dict[str, float], repeat: int) -> Any:
    best = float("inf")
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    results[label] = best
    print(f"{label:<48} {best:7.2f} s", flush=True)
    return out


def frames(n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = pl.int_range(n, eager=True).cast(pl.String).alias("sample_uid")
    up = pl.DataFrame([ids]).with_columns(
        (pl.lit("a") + pl.col("sample_uid")).chash.sha2_256().str.slice(0, 16).alias("dv__audio"),
        (pl.lit("f") + pl.col("sample_uid")).chash.sha2_256().str.slice(0, 16).alias("dv__frames"),
    )
    # the stored downstream provenance: computed by the polars path itself, then 1% perturbed and
    # 1% of the samples dropped (new) plus 1% extra (orphaned)
    return up, pl.DataFrame()


def sql_counts(con: sqlite3.Connection) -> dict[str, int]:
    def h(parts: list[str]) -> str:
        return "metaxy_sha256(" + " || '|' || ".join(parts) + ")"

    per_field = [
        h([f"'{DOWN}.{f}'", "'1'", f"'{UP}.{f}'", f"coalesce(dv__{f}, '')"]) + f" AS p__{f}" for f in FIELDS
    ]
    sample = []
    for f in FIELDS:
        sample += [f"'{f}'", f"p__{f}"]
    expected = (
        f"SELECT sample_uid, {h(sample)} AS prov, 1 AS in_e FROM "
        f"(SELECT sample_uid, {', '.join(per_field)} FROM up)"
    )
    # Join the stored table itself (not a subquery): SQLite then probes its index on the id; a
    # subquery on the right side is scanned once per expected row.
    sql = (
        "SELECT sum(s.sample_uid IS NULL), sum(e.in_e IS NULL), "
        "sum(e.in_e IS NOT NULL AND s.sample_uid IS NOT NULL AND e.prov IS NOT s.s_prov) "
        f"FROM ({expected}) AS e FULL OUTER JOIN stored AS s ON e.sample_uid = s.sample_uid"
    )
    new, orphaned, stale = con.execute(sql).fetchone()
    return {"new": new, "orphaned": orphaned, "stale": stale}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--store", action="store_true", help="time only SQLiteMetadataStore end to end")
    args = parser.parse_args()
    n = args.samples
    results: dict[str, float] = {}
    if args.store:
        store_bench(n, results)
        return
    up, _ = frames(n)
    stored = (
        polars_expected(up.lazy())
        .select("sample_uid", pl.col("prov").alias("s_prov"))
        .collect()
        .with_row_index("i")
        .with_columns(
            pl.when(pl.col("i") % 100 == 0)
            .then(pl.lit("changed"))
            .otherwise(pl.col("s_prov"))
            .alias("s_prov")
        )
        .filter(pl.col("i") % 100 != 1)
        .drop("i")
    )
    extra = pl.DataFrame({"sample_uid": [f"x{i}" for i in range(n // 100)], "s_prov": ["o"] * (n // 100)})
    stored = pl.concat([stored, extra])
    want = {"new": n // 100, "orphaned": n // 100, "stale": n // 100}

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.sqlite")
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")

        def load_executemany() -> None:
            con.execute("DROP TABLE IF EXISTS up")
            con.execute("CREATE TABLE up (sample_uid TEXT, dv__audio TEXT, dv__frames TEXT)")
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO up VALUES (?, ?, ?)", up.iter_rows())
            con.execute("COMMIT")

        timed(f"write {n:,} rows: sqlite3 executemany", load_executemany, results, 1)
        con.execute("CREATE TABLE stored (sample_uid TEXT, s_prov TEXT)")
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO stored VALUES (?, ?)", stored.iter_rows())
        con.execute("COMMIT")
        con.execute("CREATE INDEX stored_id ON stored (sample_uid)")
        con.execute("CREATE INDEX up_id ON up (sample_uid)")
        con.create_function(
            "metaxy_sha256", 1, lambda s: hashlib.sha256(s.encode()).hexdigest()[:16], deterministic=True
        )

        def read_sqlite3() -> pl.DataFrame:
            cur = con.execute("SELECT sample_uid, dv__audio, dv__frames FROM up")
            return pl.DataFrame(
                cur.fetchall(), schema=["sample_uid", "dv__audio", "dv__frames"], orient="row"
            )

        timed(f"read {n:,} x 3 columns: sqlite3 fetchall -> polars", read_sqlite3, results, args.repeat)

        got = timed("resolve (1): all in SQL, hashlib UDF", lambda: sql_counts(con), results, 1)
        assert got == want, got

        def resolve_sqlite3() -> dict[str, int]:
            upf = read_sqlite3()
            cur = con.execute("SELECT sample_uid, s_prov FROM stored")
            st = pl.DataFrame(cur.fetchall(), schema=["sample_uid", "s_prov"], orient="row")
            return polars_counts(upf.lazy(), st.lazy())

        got = timed("resolve (2): sqlite3 rows -> polars-hash", resolve_sqlite3, results, args.repeat)
        assert got == want, got
        con.close()

        try:
            import adbc_driver_sqlite.dbapi as adbc
        except ImportError:
            print("adbc-driver-sqlite is not installed: ADBC rows skipped")
            return
        acon = adbc.connect(path)

        def read_adbc(sql: str) -> pl.DataFrame:
            with acon.cursor() as cur:
                cur.execute(sql)
                out = pl.from_arrow(cur.fetch_arrow_table())
            assert isinstance(out, pl.DataFrame)
            return out

        timed(
            f"read {n:,} x 3 columns: ADBC Arrow -> polars",
            lambda: read_adbc("SELECT sample_uid, dv__audio, dv__frames FROM up"),
            results,
            args.repeat,
        )

        def resolve_adbc() -> dict[str, int]:
            upf = read_adbc("SELECT sample_uid, dv__audio, dv__frames FROM up")
            st = read_adbc("SELECT sample_uid, s_prov FROM stored")
            return polars_counts(upf.lazy(), st.lazy())

        got = timed("resolve (2): ADBC Arrow -> polars-hash", resolve_adbc, results, args.repeat)
        assert got == want, got
        timed(
            "  of which hashing + join in polars",
            lambda: polars_counts(up.lazy(), stored.lazy()),
            results,
            args.repeat,
        )

        def load_adbc() -> None:
            with acon.cursor() as cur:
                cur.adbc_ingest("up2", up.to_arrow(), mode="replace")
            acon.commit()

        timed(f"write {n:,} rows: ADBC ingest", load_adbc, results, 1)
        acon.close()


def store_bench(n: int, results: dict[str, float]) -> None:
    import metaxy_core as mx
    from metaxy_core.stores._sqlite_io import adbc_available

    with mx.FeatureGraph().use():

        class Video(mx.Feature, spec=mx.FeatureSpec(key=UP, fields=list(FIELDS))):
            pass

        class Crop(mx.Feature, spec=mx.FeatureSpec(key=DOWN, deps=[Video], fields=list(FIELDS))):
            pass

        ids = pl.int_range(n, eager=True).cast(pl.String).alias("sample_uid")
        samples = pl.DataFrame([ids]).with_columns(
            pl.struct(
                audio=pl.lit("a") + pl.col("sample_uid"), frames=pl.lit("f") + pl.col("sample_uid")
            ).alias("metaxy_provenance_by_field")
        )
        for driver in ["sqlite3", *(["adbc"] if adbc_available() else [])]:
            with tempfile.TemporaryDirectory() as tmp:
                store = mx.SQLiteMetadataStore(database=Path(tmp) / "s.sqlite", driver=driver)
                with store:
                    inc = timed(
                        f"[{driver}] resolve root ({n:,} samples, all new)",
                        lambda s=store: s.resolve_update(Video, samples=samples),
                        results,
                        1,
                    )
                    timed(f"[{driver}] write root", lambda s=store, i=inc: s.write(Video, i.new), results, 1)
                    inc = timed(
                        f"[{driver}] resolve downstream, cold",
                        lambda s=store: s.resolve_update(Crop),
                        results,
                        1,
                    )
                    timed(
                        f"[{driver}] write downstream",
                        lambda s=store, i=inc: s.write(Crop, i.new),
                        results,
                        1,
                    )
                    inc = timed(
                        f"[{driver}] resolve downstream, steady",
                        lambda s=store: s.resolve_update(Crop),
                        results,
                        1,
                    )
                    assert inc.counts() == {"new": 0, "stale": 0, "orphaned": 0}
                    timed(
                        f"[{driver}] rewrite all downstream rows",
                        lambda s=store: s.write(Crop, s.read(Crop).to_polars()),
                        results,
                        1,
                    )


if __name__ == "__main__":
    main()
