"""Filters: user predicates over a feature's columns, rendered as SQL for each engine.

A filter is a SQL expression string (``"split = 'train'"``) or a narwhals expression
(``nw.col("split") == "train"``). Every store turns a list of filters into SQL predicates for its own
engine through :func:`compile_filters`, so one filter means the same rows on every store.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

DIALECTS = ("duckdb", "postgres", "clickhouse", "sqlite")


def compile_filters(filters: Sequence[Any], *, dialect: str, schema: Mapping[str, pl.DataType]) -> list[str]:
    """Each filter as one SQL predicate for ``dialect`` over a relation with columns ``schema``.

    ``schema`` maps the filtered relation's column names to polars dtypes (used to translate
    narwhals expressions). The returned strings are combined with AND by the caller.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {DIALECTS}")
    out: list[str] = []
    for f in filters:
        if isinstance(f, str):
            out.append(f)
        else:
            raise NotImplementedError("narwhals filters are not compiled yet")
    return out
