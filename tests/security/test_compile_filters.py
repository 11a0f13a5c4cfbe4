"""compile_filters renders valid SQL for every engine; SQLite's rendering is run through sqlite3."""

import re
import sqlite3

import polars as pl
import pytest
import sqlglot

import metaxy_core as mx
from metaxy_core.filters import DIALECTS, compile_filters, polars_filters

from .conftest import clip_rows
from .test_filter_semantics import CASES

SCHEMA = {
    "clip_id": pl.String(),
    "split": pl.String(),
    "n_frames": pl.Int64(),
    "score": pl.Float64(),
    "tag": pl.String(),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_renderings_parse_back_in_their_dialect(dialect: str, case: str) -> None:
    (rendered,) = compile_filters([CASES[case][0]], dialect=dialect, schema=SCHEMA)
    reparsed = sqlglot.parse(rendered, read=dialect)
    assert len(reparsed) == 1
    assert reparsed[0] is not None
    assert ";" not in rendered


@pytest.mark.parametrize(
    ("dialect", "text", "expected"),
    [
        ("postgres", "n_frames / 2 > 8", 'CAST("n_frames" AS DOUBLE PRECISION) / 2 > 8'),
        ("postgres", "substring(split, 1, 2) = 'te'", "SUBSTRING(\"split\" FROM 1 FOR 2) = 'te'"),
        ("postgres", "Split = 'a'", "\"split\" = 'a'"),
        ("clickhouse", "CAST(n_frames AS VARCHAR) = '1'", "CAST(\"n_frames\" AS Nullable(String)) = '1'"),
        ("clickhouse", "starts_with(tag, 'c')", "startsWith(\"tag\", 'c')"),
        ("clickhouse", "tag = 'a\\b'", "\"tag\" = 'a\\\\b'"),
        ("sqlite", "tag LIKE 'cat_%'", "\"tag\" GLOB 'cat?*'"),
        ("sqlite", "tag LIKE '[x]*'", "\"tag\" GLOB '[[]x][*]'"),
        ("sqlite", "n_frames / 2 > 8", 'CAST("n_frames" AS REAL) / 2 > 8'),
        ("duckdb", "split = 'it''s'", "\"split\" = 'it''s'"),
    ],
)
def test_selected_renderings(dialect: str, text: str, expected: str) -> None:
    assert compile_filters([text], dialect=dialect, schema=SCHEMA) == [expected]


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect 'oracle'"):
        compile_filters(["true"], dialect="oracle", schema=SCHEMA)


def test_non_filter_objects_are_rejected() -> None:
    with pytest.raises(mx.FilterError, match="SQL expression string or a narwhals expression, got int"):
        compile_filters([42], dialect="duckdb", schema=SCHEMA)
    with pytest.raises(mx.FilterError, match="polars expression"):
        polars_filters([pl.col("split") == "x"], SCHEMA)


@pytest.fixture(scope="module")
def sqlite_clips() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    # SQLite has no regular expressions built in; a SQLite store registers this function.
    con.create_function(
        "regexp", 2, lambda pattern, value: value is not None and re.search(pattern, value) is not None
    )
    rows = clip_rows().select(list(SCHEMA))
    con.execute("CREATE TABLE clip (clip_id TEXT, split TEXT, n_frames INTEGER, score REAL, tag TEXT)")
    con.executemany("INSERT INTO clip VALUES (?, ?, ?, ?, ?)", rows.rows())
    return con


@pytest.mark.parametrize("case", sorted(CASES))
def test_sqlite_rendering_selects_the_same_rows(sqlite_clips: sqlite3.Connection, case: str) -> None:
    flt, expected = CASES[case]
    (predicate,) = compile_filters([flt], dialect="sqlite", schema=SCHEMA)
    ids = [
        r[0] for r in sqlite_clips.execute(f"SELECT clip_id FROM clip WHERE ({predicate}) ORDER BY clip_id")
    ]
    assert "".join(ids) == expected, predicate


def _clickhouse_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_clickhouse_rendering_selects_the_same_rows(case: str) -> None:
    """The ClickHouse rendering run by ClickHouse's own engine (chDB, in process) on the same rows."""
    chdb = pytest.importorskip("chdb")
    values = ", ".join(
        "(" + ", ".join(_clickhouse_literal(v) for v in row) + ")"
        for row in clip_rows().select(list(SCHEMA)).rows()
    )
    source = (
        "values('clip_id String, split String, n_frames Int64, score Float64, tag Nullable(String)', "
        + values
        + ")"
    )
    flt, expected = CASES[case]
    (predicate,) = compile_filters([flt], dialect="clickhouse", schema=SCHEMA)
    out = (
        chdb.query(f"SELECT clip_id FROM {source} WHERE {predicate} ORDER BY clip_id", "CSV").bytes().decode()
    )
    assert "".join(x.strip('"') for x in out.split()) == expected, predicate
