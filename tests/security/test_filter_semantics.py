"""One filter, the same rows on every store: strings and narwhals expressions over each basic construct."""

from datetime import UTC, datetime
from typing import Any

import narwhals as nw
import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.filters import compile_filters

from .conftest import clip_rows

# clip_id: split, n_frames, score, tag
#   a: train 10  0.5  cat_1    b: train 25 1.25 NULL    c: test 3 -2.0 dog
#   d: val   40  3.5  cat%2    e: Train 17 0.0  NULL    f: test 0  9.75 Cat_3
STRING_FILTERS: dict[str, tuple[str, str]] = {
    "eq": ("split = 'train'", "ab"),
    "in": ("split IN ('test', 'val')", "cdf"),
    "not-in": ("split NOT IN ('test', 'val')", "abe"),
    "between": ("n_frames BETWEEN 3 AND 17", "ace"),
    "like": ("tag LIKE 'cat%'", "ad"),
    "like-underscore": ("tag LIKE 'cat_2'", "d"),
    "not-like": ("tag NOT LIKE '%a%'", "c"),
    "ilike": ("tag ILIKE 'cat%'", "adf"),
    "is-null": ("tag IS NULL", "be"),
    "is-not-null": ("tag IS NOT NULL AND n_frames > 5", "ad"),
    "not-equal-skips-null": ("tag <> 'dog'", "adf"),
    "arithmetic": ("n_frames * 2 + 1 > 30", "bde"),
    "true-division": ("n_frames / 2 > 8", "bde"),
    "negative": ("-score > 1", "c"),
    "lower": ("lower(split) = 'train'", "abe"),
    "upper": ("upper(split) = 'TEST'", "cf"),
    "length": ("length(tag) = 3", "c"),
    "substring": ("substring(split, 1, 2) = 'te'", "cf"),
    "trim-concat": ("trim(' ' || split || ' ') = 'val'", "d"),
    "concat": ("split || '-' || clip_id = 'train-a'", "a"),
    "cast-to-text": ("CAST(n_frames AS VARCHAR) = '10'", "a"),
    "cast-colons": ("n_frames::DOUBLE / 4 = 2.5", "a"),
    "cast-from-text": ("CAST('17' AS INTEGER) = n_frames", "e"),
    "abs": ("abs(score) > 1.5", "cdf"),
    "round": ("round(score) = 10", "f"),
    "coalesce": ("coalesce(tag, 'none') = 'none'", "be"),
    "case": ("CASE WHEN split = 'train' THEN n_frames ELSE 0 END > 20", "b"),
    "case-operand": ("CASE split WHEN 'val' THEN true WHEN 'test' THEN n_frames > 1 ELSE false END", "cd"),
    "not-and": ("NOT (split = 'train') AND score >= 0", "def"),
    "or": ("clip_id = 'a' OR clip_id = 'b'", "ab"),
    "starts-with": ("starts_with(split, 'te')", "cf"),
    "true": ("true", "abcdef"),
    "column-case": ("Split = 'val'", "d"),
    "quoted": ('"n_frames" >= 25', "bd"),
    "string-escape": ("tag = 'it''s' OR tag = 'dog'", "c"),
    "is-true": ("(n_frames > 5) IS TRUE", "abde"),
    "if": ("if(n_frames > 5, true, false)", "abde"),
    "contains": ("contains(tag, '%')", "d"),
    "regexp": ("regexp_matches(tag, '^c')", "ad"),
    "null-safe-eq": ("tag IS NOT DISTINCT FROM NULL", "be"),
    "nullif-division": ("score / nullif(n_frames, 0) > 0 OR n_frames / nullif(n_frames, 0) IS NULL", "abdf"),
}

NARWHALS_FILTERS: dict[str, tuple[Any, str]] = {
    "eq": (nw.col("split") == "train", "ab"),
    "is-in": (nw.col("split").is_in(["test", "val"]), "cdf"),
    "between": (nw.col("n_frames").is_between(3, 17), "ace"),
    "is-null": (nw.col("tag").is_null(), "be"),
    "starts-with": (nw.col("tag").str.starts_with("cat"), "ad"),
    "ends-with": (nw.col("tag").str.ends_with("_3"), "f"),
    "contains-literal": (nw.col("tag").str.contains("%", literal=True), "d"),
    "contains-regex": (nw.col("tag").str.contains("^cat"), "ad"),
    "arithmetic": ((nw.col("n_frames") * 2 + 1) > 30, "bde"),
    "lowercase": (nw.col("split").str.to_lowercase() == "train", "abe"),
    "cast": (nw.col("n_frames").cast(nw.String) == "10", "a"),
    "len-chars": (nw.col("tag").str.len_chars() == 3, "c"),
    "and-not": ((nw.col("score") > 1) & ~nw.col("split").is_in(["val"]), "bf"),
    "or": ((nw.col("clip_id") == "a") | (nw.col("n_frames") == 0), "af"),
}

CASES = {f"sql-{k}": v for k, v in STRING_FILTERS.items()} | {
    f"nw-{k}": v for k, v in NARWHALS_FILTERS.items()
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_rows_on_every_store(
    store: mx.MetadataStore, stored_clip: type[mx.BaseFeature], case: str
) -> None:
    flt, expected = CASES[case]
    read = store.read(stored_clip, filters=flt).to_polars()
    assert sorted(read["clip_id"].to_list()) == list(expected)

    # resolve_update applies the filter to both sides: only matching samples come back stale
    changed = clip_rows().with_columns(pl.struct(frames=pl.lit("changed")).alias(C.PROVENANCE_BY_FIELD))
    increment = store.resolve_update(stored_clip, samples=changed, filters=flt)
    assert sorted(increment.stale.to_polars()["clip_id"].to_list()) == list(expected)
    assert increment.counts()["orphaned"] == 0


@pytest.mark.parametrize(
    "case", ["sql-like-underscore", "sql-true-division", "nw-is-in", "nw-contains-literal"]
)
def test_delete_matches_read(store: mx.MetadataStore, stored_clip: type[mx.BaseFeature], case: str) -> None:
    flt, expected = CASES[case]
    assert store.delete(stored_clip, flt, soft=False) == len(expected)
    remaining = set(store.read(stored_clip, include_deleted=True).to_polars()["clip_id"].to_list())
    assert remaining == set("abcdef") - set(expected)


def test_ambiguous_column_case_is_an_error() -> None:
    """Filters resolve column names like DuckDB (ignoring case) and refuse to guess between two."""
    with pytest.raises(mx.FilterError, match=r"unknown column 'spilt'. Available columns: clip_id, split"):
        compile_filters(
            ["spilt = 'x'"], dialect="duckdb", schema={"clip_id": pl.String(), "split": pl.String()}
        )
    with pytest.raises(mx.FilterError, match=r"'PATH' is ambiguous.*\['Path', 'path'\]"):
        compile_filters(["PATH = 'x'"], dialect="duckdb", schema={"Path": pl.String(), "path": pl.String()})


def test_system_columns_and_timestamps(store: mx.MetadataStore, stored_clip: type[mx.BaseFeature]) -> None:
    """A timestamp column compared with a text literal reads the literal as a timestamp, on every store."""
    for flt, expected in [
        ("metaxy_created_at > '2000-01-01' AND metaxy_deleted_at IS NULL", "abcdef"),
        ("metaxy_created_at < '2000-01-01 00:00:00'", ""),
        ("CAST(metaxy_created_at AS DATE) >= CAST('2000-01-01' AS DATE) AND clip_id = 'a'", "a"),
        (nw.col(C.CREATED_AT) > datetime(2000, 1, 1, tzinfo=UTC), "abcdef"),
        (nw.col(C.CREATED_AT) < datetime(2000, 1, 1, tzinfo=UTC), ""),
        (nw.col("tag").is_in(["dog", None]), "c"),
    ]:
        assert "".join(sorted(store.read(stored_clip, filters=flt).to_polars()["clip_id"])) == expected, flt


def test_long_condition_chains(store: mx.MetadataStore, stored_clip: type[mx.BaseFeature]) -> None:
    """Generated filters with hundreds of terms work alike on every store (no recursion limits)."""
    any_of = " OR ".join([*(f"clip_id = '{c}'" for c in "ab"), *["n_frames = -1"] * 600])
    all_of = " AND ".join(["n_frames >= 0"] * 600 + ["split = 'test'"])
    assert sorted(store.read(stored_clip, filters=any_of).to_polars()["clip_id"]) == ["a", "b"]
    assert sorted(store.read(stored_clip, filters=all_of).to_polars()["clip_id"]) == ["c", "f"]
