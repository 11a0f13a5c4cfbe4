"""Fuzzing filter strings: compiling for any engine (or for polars) succeeds or raises FilterError,
never anything else."""

import contextlib
import os

import duckdb
import polars as pl
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metaxy_core as mx
from metaxy_core.filters import DIALECTS, compile_filters, polars_filters

SCHEMA = {"clip_id": pl.String(), "n_frames": pl.Int64(), "score": pl.Float64(), "ok": pl.Boolean()}

TOKENS = [
    "clip_id",
    "n_frames",
    "score",
    "ok",
    "Clip_ID",
    "nope",
    "x.y",
    "*",
    "'a'",
    "'it''s'",
    "'%a_'",
    "1",
    "-2",
    "3.5",
    "1e3",
    "NULL",
    "TRUE",
    "false",
    "=",
    "<>",
    "!=",
    "<",
    ">=",
    "+",
    "-",
    "/",
    "*",
    "%",
    "||",
    "::",
    "AND",
    "OR",
    "NOT",
    "IN",
    "BETWEEN",
    "LIKE",
    "ILIKE",
    "IS",
    "DISTINCT",
    "FROM",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "AS",
    "VARCHAR",
    "INT",
    "BLOB",
    "(",
    ")",
    ",",
    ";",
    "--",
    "/*",
    "*/",
    '"',
    "'",
    "SELECT",
    "DROP",
    "TABLE",
    "COMMIT",
    "ATTACH",
    "read_csv",
    "lower",
    "upper",
    "length",
    "coalesce",
    "abs",
    "round",
    "substring",
    "starts_with",
    "regexp_matches",
    "contains",
    "[",
    "]",
    "$1",
    "?",
    "\\",
    "\n",
]

filter_text = st.one_of(
    st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map(" ".join),
    st.text(max_size=60),
)


@settings(
    max_examples=int(os.environ.get("FILTER_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(filter_text)
def test_fuzzed_filters_compile_or_raise_filter_error(text: str) -> None:
    for dialect in DIALECTS:
        try:
            predicates = compile_filters([text], dialect=dialect, schema=SCHEMA)
        except mx.FilterError:
            continue
        assert len(sqlglot.parse(predicates[0], read=dialect)) == 1  # still exactly one expression
    with contextlib.suppress(mx.FilterError):
        polars_filters([text], SCHEMA)


# -- generated valid filters: polars (in-memory store) and DuckDB select the same rows -------------
ROWS = pl.DataFrame(
    {
        "clip_id": ["a", "b", "c", "d", "e", "f"],
        "n_frames": [10, -3, None, 0, 7, 10],
        "score": [0.5, None, -2.25, 3.0, 1.0, 0.0],
        "ok": [True, False, None, True, False, True],
        "tag": ["cat_1", "Dog", None, "", "c%t", "CAT"],
    }
)
ROW_SCHEMA = dict(ROWS.schema)
_CLIPS = duckdb.connect()
_CLIPS.register("clips", ROWS.to_arrow())

_ints = st.integers(-12, 12).map(str)
_floats = st.sampled_from(["0.5", "-2.25", "1.0", "3"])
_strings = st.sampled_from(["'cat_1'", "'Dog'", "''", "'c%t'", "'CAT'", "'x'", "'it''s'"])
_patterns = st.text(alphabet="ca%_tDgo", max_size=5).map(lambda p: "'" + p + "'")
_int_term = st.recursive(
    st.one_of(st.just("n_frames"), _ints, st.just("length(tag)")),
    lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    ),
    max_leaves=4,
)
_num_term = st.one_of(
    _int_term,
    st.just("score"),
    _floats,
    st.just("abs(score)"),
    st.just("round(score)"),
    st.tuples(_int_term, _int_term).map(lambda t: f"({t[0]} / {t[1]})"),
    st.just("CAST(n_frames AS DOUBLE)"),
    st.just("CAST(score * 2.5 AS INT)"),
    st.just("CAST(score AS BIGINT)"),
    st.just("CASE WHEN ok THEN n_frames ELSE -1 END"),
)
_str_term = st.one_of(
    st.just("tag"),
    _strings,
    st.just("lower(tag)"),
    st.just("upper(tag)"),
    st.just("coalesce(tag, 'none')"),
    st.just("trim(tag)"),
    st.just("substring(tag, 2, 2)"),
    st.just("tag || 'x'"),
    st.just("CAST(n_frames AS VARCHAR)"),
)
_cmp = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
_atom = st.one_of(
    st.tuples(_num_term, _cmp, _num_term).map(" ".join),
    st.tuples(_str_term, _cmp, _str_term).map(" ".join),
    st.tuples(_str_term, st.sampled_from(["LIKE", "NOT LIKE", "ILIKE"]), _patterns).map(" ".join),
    st.tuples(_int_term, st.lists(_ints, min_size=1, max_size=3)).map(
        lambda t: f"{t[0]} IN ({', '.join(t[1])})"
    ),
    st.tuples(_num_term, _num_term, _num_term).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
    st.tuples(
        st.sampled_from(["tag", "n_frames", "score", "ok"]), st.sampled_from(["IS NULL", "IS NOT NULL"])
    ).map(" ".join),
    st.sampled_from(["ok", "NOT ok", "ok IS TRUE", "TRUE", "FALSE", "NULL", "if(ok, n_frames > 1, NULL)"]),
    st.tuples(_str_term, st.sampled_from(["starts_with", "ends_with", "contains"]), _strings).map(
        lambda t: f"{t[1]}({t[0]}, {t[2]})"
    ),
    st.tuples(_str_term, _str_term).map(lambda t: f"{t[0]} IS NOT DISTINCT FROM {t[1]}"),
)
condition = st.recursive(
    _atom,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda c: f"NOT ({c})"),
    ),
    max_leaves=5,
)


@settings(max_examples=int(os.environ.get("FILTER_FUZZ_EXAMPLES", "200")), deadline=None)
@given(condition)
def test_generated_filters_select_the_same_rows_in_polars_and_duckdb(text: str) -> None:
    try:
        (predicate,) = compile_filters([text], dialect="duckdb", schema=ROW_SCHEMA)
        (expr,) = polars_filters([text], ROW_SCHEMA)
    except mx.FilterError:
        return
    try:
        in_duckdb = [
            r[0]
            for r in _CLIPS.execute(
                f"SELECT clip_id FROM clips WHERE {predicate} ORDER BY clip_id"
            ).fetchall()
        ]
    except duckdb.Error:
        return  # e.g. an overflow the engine refuses at run time
    assert ROWS.filter(expr)["clip_id"].sort().to_list() == in_duckdb, predicate
