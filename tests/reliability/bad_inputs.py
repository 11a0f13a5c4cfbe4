"""Hypothesis strategies for frames a careless (or hostile) caller might hand to a store.

A drawn input is a valid frame with one to three *mutations* applied, each named so a failure
says which kind of bad input broke the store. Valid frames are drawn too (zero mutations): the
cross-backend comparison must hold for them as well.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import polars as pl
from hypothesis import strategies as st

from metaxy_core import columns as C

IDS = [f"s{i}" for i in range(6)]
SEED_IDS = IDS[:3]
"""Stored before each bad input, so writes hit the replace path and rejections have rows to protect."""

FIELDS = ("a", "b")

# Column names that break naive SQL quoting, case-insensitive engines or our reserved prefix.
ODD_NAMES = [
    "score ",
    " ",
    "a b",
    'quote"d',
    "it's",
    "semi;colon",
    "x); DROP TABLE t; --",
    "ünïcødé",
    "名前",
    "emoji🙂",
    "tab\there",
    "new\nline",
    "dot.ted",
    "select",
    "metaxy_bogus",
    "__metaxy_incoming",
]


def valid_frame(ids: list[str], salt: str = "") -> pl.DataFrame:
    """Rows a well-behaved pipeline writes to ``fuzz/strict`` and ``fuzz/open``."""
    return pl.DataFrame(
        {
            "sample_id": ids,
            "score": [float(i) for i in range(len(ids))],
            "label": [f"label-{i}{salt}" for i in ids],
            C.PROVENANCE_BY_FIELD: [{"a": f"a-{i}{salt}", "b": f"b-{i}{salt}"} for i in ids],
        },
        schema={
            "sample_id": pl.String,
            "score": pl.Float64,
            "label": pl.String,
            C.PROVENANCE_BY_FIELD: pl.Struct({"a": pl.String, "b": pl.String}),
        },
    )


Mutation = Callable[[pl.DataFrame, st.DataObject], Any]


def _set(frame: pl.DataFrame, column: str, values: list[Any], dtype: Any = None) -> pl.DataFrame:
    return frame.with_columns(pl.Series(column, values, dtype=dtype, strict=False))


def null_id(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    if frame.height == 0:
        return frame
    row = data.draw(st.integers(0, frame.height - 1))
    ids = frame["sample_id"].to_list()
    ids[row] = None
    return _set(frame, "sample_id", ids, pl.String)


def duplicate_id(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    if frame.height == 0:
        return frame
    return pl.concat([frame, frame.head(1)])


def wrong_id_type(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    kind = data.draw(st.sampled_from(["int", "float", "bool", "binary", "list"]))
    n = frame.height
    values: dict[str, pl.Series] = {
        "int": pl.Series("sample_id", list(range(n)), dtype=pl.Int64),
        "float": pl.Series("sample_id", [i + 0.5 for i in range(n)], dtype=pl.Float64),
        "bool": pl.Series("sample_id", [i % 2 == 0 for i in range(n)], dtype=pl.Boolean),
        "binary": pl.Series("sample_id", [f"s{i}".encode() for i in range(n)], dtype=pl.Binary),
        "list": pl.Series("sample_id", [[i] for i in range(n)], dtype=pl.List(pl.Int64)),
    }
    return frame.with_columns(values[kind])


def null_dtype_ids(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    """No rows, and an id column of polars' Null type (what ``pl.DataFrame({"sample_id": []})`` gives)."""
    return frame.head(0).with_columns(pl.Series("sample_id", [], dtype=pl.Null))


def missing_id(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    return frame.drop("sample_id")


def wrong_value_type(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    column = data.draw(st.sampled_from(["score", "label"]))
    kind = data.draw(st.sampled_from(["str", "bool", "list", "struct", "int", "date", "null", "decimal"]))
    n = frame.height
    values: dict[str, Any] = {
        "str": pl.Series(column, [f"v{i}" for i in range(n)]),
        "bool": pl.Series(column, [True] * n),
        "list": pl.Series(column, [[1, 2]] * n),
        "struct": pl.Series(column, [{"x": 1}] * n),
        "int": pl.Series(column, list(range(n)), dtype=pl.Int32),
        "date": pl.Series(column, [dt.date(2020, 1, 1)] * n),
        "null": pl.Series(column, [None] * n, dtype=pl.Null),
        "decimal": pl.Series(column, [1] * n, dtype=pl.Decimal(10, 2)),
    }
    return frame.with_columns(values[kind])


def bad_struct(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    kind = data.draw(
        st.sampled_from(
            ["missing_field", "extra_field", "not_struct", "int_fields", "null_field", "null_struct"]
        )
    )
    pbf = pl.col(C.PROVENANCE_BY_FIELD)
    if kind == "missing_field":
        return frame.with_columns(pl.struct(a=pbf.struct.field("a")).alias(C.PROVENANCE_BY_FIELD))
    if kind == "extra_field":
        return frame.with_columns(pbf.struct.with_fields(c=pl.lit("extra")).alias(C.PROVENANCE_BY_FIELD))
    if kind == "not_struct":
        return frame.with_columns(pbf.struct.field("a").alias(C.PROVENANCE_BY_FIELD))
    if kind == "int_fields":
        return frame.with_columns(
            pl.struct(a=pl.int_range(pl.len()), b=pl.lit(7)).alias(C.PROVENANCE_BY_FIELD)
        )
    if frame.height == 0:
        return frame
    row = data.draw(st.integers(0, frame.height - 1))
    values = frame[C.PROVENANCE_BY_FIELD].to_list()
    values[row] = {"a": None, "b": "b"} if kind == "null_field" else None
    return _set(frame, C.PROVENANCE_BY_FIELD, values, frame.schema[C.PROVENANCE_BY_FIELD])


def odd_column(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    name = data.draw(st.sampled_from(ODD_NAMES) | st.text(min_size=1, max_size=10))
    if name.lower() in {c.lower() for c in frame.columns}:
        return frame  # case-only collisions are their own mutation
    return frame.with_columns(pl.int_range(pl.len()).alias(name))


CASE_TWINS = {"Score": "score", "LABEL": "label", "Sample_ID": "sample_id", "METAXY_PROVENANCE": C.PROVENANCE}


def case_collision(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    """A column whose name differs from another only in case (SQL engines fold identifiers)."""
    name = data.draw(st.sampled_from(sorted(CASE_TWINS)))
    return frame.with_columns(pl.int_range(pl.len()).alias(name))


def huge_string(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    size = data.draw(st.sampled_from([2**16, 2**20, 2**22]))
    column = data.draw(st.sampled_from(["label", "sample_id", C.PROVENANCE_BY_FIELD]))
    big = "é" * (size // 2)
    if column == C.PROVENANCE_BY_FIELD:
        return frame.with_columns(pl.struct(a=pl.lit(big), b=pl.lit("b")).alias(C.PROVENANCE_BY_FIELD))
    if column == "sample_id":
        return frame.with_columns((pl.col("sample_id") + pl.lit(big)).alias("sample_id"))
    return frame.with_columns(pl.lit(big).alias(column))


def empty(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    kind = data.draw(st.sampled_from(["no_rows", "no_columns", "only_ids"]))
    if kind == "no_rows":
        return frame.head(0)
    if kind == "no_columns":
        return pl.DataFrame()
    return frame.select("sample_id") if "sample_id" in frame.columns else frame.head(0)


def system_misuse(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    kind = data.draw(
        st.sampled_from(
            [
                "created_at",
                "deleted_at",
                "feature_version",
                "materialization_id",
                "changed_fields",
                "provenance_random",
                "provenance_null",
                "provenance_int",
                "data_version",
                "data_version_by_field",
                "data_version_by_field_extra",
            ]
        )
    )
    n = frame.height
    now = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    columns: dict[str, pl.Series] = {
        "created_at": pl.Series(C.CREATED_AT, [now] * n),
        "deleted_at": pl.Series(C.DELETED_AT, [now] * n),
        "feature_version": pl.Series(C.FEATURE_VERSION, ["forged"] * n),
        "materialization_id": pl.Series(C.MATERIALIZATION_ID, ["forged"] * n),
        "changed_fields": pl.Series(C.CHANGED_FIELDS, [["a"]] * n),
        "provenance_random": pl.Series(C.PROVENANCE, [f"p{i}" for i in range(n)]),
        "provenance_null": pl.Series(C.PROVENANCE, [None] * n, dtype=pl.String),
        "provenance_int": pl.Series(C.PROVENANCE, list(range(n))),
        "data_version": pl.Series(C.DATA_VERSION, [f"dv{i}" for i in range(n)]),
        "data_version_by_field": pl.Series(C.DATA_VERSION_BY_FIELD, [{"a": "x"}] * n),
        "data_version_by_field_extra": pl.Series(C.DATA_VERSION_BY_FIELD, [{"a": "x", "zz": "y"}] * n),
    }
    return frame.with_columns(columns[kind])


def null_data_version(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    """A ``metaxy_data_version`` column holding nulls (some or all rows)."""
    if frame.height == 0:
        return frame
    keep = data.draw(st.booleans())
    values = [f"dv{i}" if keep and i % 2 else None for i in range(frame.height)]
    return frame.with_columns(pl.Series(C.DATA_VERSION, values, dtype=pl.String))


def mixed_types(frame: pl.DataFrame, data: st.DataObject) -> Any:
    """A pandas frame whose object column mixes ints, strings and floats (polars cannot hold that)."""
    column = data.draw(st.sampled_from(["label", "sample_id", "extra"]))
    native = frame.to_pandas()
    cycle = [1, "two", 3.5, None]
    native[column] = pd.Series([cycle[i % len(cycle)] for i in range(len(native))], dtype=object)
    return native


def not_a_frame(frame: pl.DataFrame, data: st.DataObject) -> Any:
    kind = data.draw(st.sampled_from(["dict", "list", "none", "series", "lazy", "string"]))
    return {
        "dict": frame.to_dict(as_series=False),
        "list": frame.rows(),
        "none": None,
        "series": frame.get_column(frame.columns[0]) if frame.width else pl.Series([]),
        "lazy": frame.lazy(),
        "string": "SELECT 1",
    }[kind]


# Mutations that leave a polars frame (others may follow); the last two end the chain.
FRAME_MUTATIONS: dict[str, Mutation] = {
    "null_id": null_id,
    "duplicate_id": duplicate_id,
    "wrong_id_type": wrong_id_type,
    "null_dtype_ids": null_dtype_ids,
    "missing_id": missing_id,
    "wrong_value_type": wrong_value_type,
    "bad_struct": bad_struct,
    "odd_column": odd_column,
    "case_collision": case_collision,
    "huge_string": huge_string,
    "empty": empty,
    "system_misuse": system_misuse,
    "null_data_version": null_data_version,
}
FINAL_MUTATIONS: dict[str, Mutation] = {"mixed_types": mixed_types, "not_a_frame": not_a_frame}


@dataclass(frozen=True)
class BadInput:
    mutations: tuple[str, ...]
    value: Any

    def __repr__(self) -> str:
        shape = getattr(self.value, "shape", None)
        return f"BadInput({'+'.join(self.mutations) or 'valid'}, {type(self.value).__name__}{shape or ''})"


@st.composite
def bad_inputs(draw: st.DrawFn, skip: frozenset[str] = frozenset()) -> BadInput:
    """A bad input; ``skip`` names mutations left out (known bugs pinned by their own xfail test)."""
    ids = draw(st.lists(st.sampled_from(IDS), min_size=0, max_size=5, unique=True))
    salt = draw(st.sampled_from(["", "-v2"]))
    frame: Any = valid_frame(ids, salt)
    data = draw(st.data())
    names = draw(st.lists(st.sampled_from(sorted(set(FRAME_MUTATIONS) - skip)), min_size=0, max_size=3))
    for name in names:
        if "sample_id" not in frame.columns and name in ("null_id", "duplicate_id"):
            continue
        try:
            frame = FRAME_MUTATIONS[name](frame, data)
        except pl.exceptions.PolarsError:
            continue  # an earlier mutation removed or retyped the column this one changes
    final = draw(st.sampled_from([None, *sorted(set(FINAL_MUTATIONS) - skip)]))
    if final is not None and frame.width and "sample_id" in frame.columns:
        frame = FINAL_MUTATIONS[final](frame, data)
        names = [*names, final]
    return BadInput(tuple(names), frame)
