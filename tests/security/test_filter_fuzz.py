"""Fuzzing filter strings: compiling for any engine (or for polars) succeeds or raises FilterError,
never anything else."""

import contextlib
import os

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
