"""Dagster data versions from sample provenance.

The data version of a feature asset is an aggregate over its *current* samples: for every row,
``h = sha256(id_1 | id_2 | ... | metaxy_data_version)``; the first and second 64 bits of ``h`` are summed
modulo 2**64 over all rows, and the data version is ``sha256(count | sum_1 | sum_2)`` (16 hex chars).

* order independent: a sum does not care about row order, so no sort and no ``string_agg`` of 10M rows;
* exact and deterministic: integer arithmetic, no sampling, the same value in every engine;
* duplicates do not cancel (unlike XOR): the children of one expanded parent share a data version;
* it moves whenever a sample is added, removed or gets another data version, and only then, so a
  re-materialization that wrote identical data keeps Dagster's downstream assets fresh.

On a DuckDB store the aggregate runs as one SQL query inside DuckDB; on stores whose lazy reads are
polars it runs in polars (polars-hash gives the same sha256 hex); any other lazy backend is reduced
to the id and data-version columns and aggregated in polars.
"""

import hashlib
from dataclasses import dataclass
from typing import Any

import dagster as dg
import narwhals as nw
import polars as pl
import polars_hash  # noqa: F401  (registers the `chash` namespace)

from metaxy_core import columns as C
from metaxy_core.feature import BaseFeature
from metaxy_core.stores.base import MetadataStore

_MOD = 2**64
EMPTY_DATA_VERSION = "empty"
"""Data version of a feature with no stored (non-deleted) samples."""


@dataclass(frozen=True)
class FeatureDataVersion:
    """The aggregate data version of a feature's current samples, and how many samples it covers."""

    data_version: str
    row_count: int

    def as_dagster(self) -> dg.DataVersion:
        return dg.DataVersion(self.data_version)


def combine(row_count: int, sum_1: int, sum_2: int) -> str:
    """The data version string from the row count and the two 64-bit sums."""
    if row_count == 0:
        return EMPTY_DATA_VERSION
    text = f"{row_count}|{sum_1 % _MOD:016x}|{sum_2 % _MOD:016x}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reference_data_version(rows: list[tuple[list[str | None], str]]) -> str:
    """Pure-Python reference: ``rows`` are (id values as text, metaxy_data_version). Used by tests."""
    sum_1 = sum_2 = 0
    for ids, dv in rows:
        digest = hashlib.sha256("|".join("" if p is None else p for p in [*ids, dv]).encode()).hexdigest()
        sum_1 += int(digest[:16], 16)
        sum_2 += int(digest[16:32], 16)
    return combine(len(rows), sum_1, sum_2)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _duckdb_aggregate(relation: Any, ids: list[str]) -> tuple[int, int, int]:
    parts = [f"coalesce(CAST({_quote(c)} AS VARCHAR), '')" for c in ids]
    parts.append(f"coalesce({_quote(C.DATA_VERSION)}, '')")
    sql = f"""
        WITH h AS (SELECT sha256(concat_ws('|', {", ".join(parts)})) AS h FROM __metaxy_rows)
        SELECT count(*),
               coalesce(sum(('0x' || substr(h, 1, 16))::UBIGINT::HUGEINT), 0),
               coalesce(sum(('0x' || substr(h, 17, 16))::UBIGINT::HUGEINT), 0)
        FROM h
    """
    row = relation.query("__metaxy_rows", sql).fetchall()[0]
    return int(row[0]), int(row[1]), int(row[2])


def _polars_aggregate(frame: pl.LazyFrame, ids: list[str]) -> tuple[int, int, int]:
    text = pl.concat_str(
        [pl.col(c).cast(pl.String).fill_null("") for c in [*ids, C.DATA_VERSION]], separator="|"
    )
    hashed = text.chash.sha2_256()

    # Sum 32-bit halves as Int64 so nothing overflows below 2**31 rows, then recombine in Python.
    def half(start: int) -> pl.Expr:
        return hashed.str.slice(start, 8).str.to_integer(base=16, dtype=pl.Int64).sum()

    out = frame.select(
        pl.len().alias("n"),
        half(0).alias("a_hi"),
        half(8).alias("a_lo"),
        half(16).alias("b_hi"),
        half(24).alias("b_lo"),
    ).collect()
    r = out.row(0, named=True)
    n = int(r["n"])
    if n == 0:
        return 0, 0, 0
    return n, (int(r["a_hi"]) << 32) + int(r["a_lo"]), (int(r["b_hi"]) << 32) + int(r["b_lo"])


def feature_data_version(
    store: MetadataStore, feature: type[BaseFeature], filters: Any = None
) -> FeatureDataVersion:
    """Aggregate data version of ``feature``'s current samples, computed inside the store's engine.

    ``filters`` restrict it to some samples (a partition). The store must be open (``with store:``).
    A feature with nothing stored yet has the data version ``"empty"`` and a row count of 0.
    """
    if not store.has_feature(feature):
        return FeatureDataVersion(EMPTY_DATA_VERSION, 0)
    ids = list(feature.spec.id_columns)
    frame = store.read(feature, columns=[*ids, C.DATA_VERSION], filters=filters, lazy=True)
    native = frame.to_native() if isinstance(frame, nw.LazyFrame | nw.DataFrame) else frame
    if type(native).__module__.startswith("duckdb"):
        n, s1, s2 = _duckdb_aggregate(native, ids)
    elif isinstance(native, pl.LazyFrame):
        n, s1, s2 = _polars_aggregate(native, ids)
    elif isinstance(native, pl.DataFrame):
        n, s1, s2 = _polars_aggregate(native.lazy(), ids)
    else:
        eager = frame.collect() if isinstance(frame, nw.LazyFrame) else frame
        n, s1, s2 = _polars_aggregate(eager.to_polars().lazy(), ids)
    return FeatureDataVersion(combine(n, s1, s2), n)
