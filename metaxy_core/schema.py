"""User column types: from a feature class's annotations to polars dtypes, with lossless coercion.

A feature that declares columns is strict: writes must carry its required columns and no others.
A feature that declares none (``pass``) accepts any user columns. Values are coerced to the declared
type only when no information is lost (int -> str, int -> float, narrower -> wider).
"""

import datetime as dt
import types
import typing
from typing import Any

import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import MetadataValidationError

if typing.TYPE_CHECKING:
    from metaxy_core.feature import BaseFeature
    from metaxy_core.lineage import TableSchema

_SCALARS: dict[Any, pl.DataType] = {
    str: pl.String(),
    int: pl.Int64(),
    float: pl.Float64(),
    bool: pl.Boolean(),
    bytes: pl.Binary(),
    dt.date: pl.Date(),
    dt.datetime: pl.Datetime("us"),
}


def polars_dtype(annotation: Any) -> tuple[pl.DataType | None, bool]:
    """(dtype or None when unknown, nullable) for a type annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return polars_dtype(args[0])[0], nullable
        return None, nullable
    if origin is list:
        (inner,) = typing.get_args(annotation) or (Any,)
        inner_dtype, _ = polars_dtype(inner)
        return (pl.List(inner_dtype) if inner_dtype is not None else None), False
    return _SCALARS.get(annotation), False


def lossless(src: pl.DataType, dst: pl.DataType) -> bool:
    if src == dst or src == pl.Null:
        return True
    if src.is_integer() and (dst == pl.String or dst.is_float()):
        return True
    if src.is_integer() and dst.is_integer():
        return dst == pl.Int64 or (src.is_unsigned_integer() and dst == pl.UInt64)
    if src.is_float() and dst.is_float():
        return dst == pl.Float64
    if isinstance(src, pl.Datetime) and isinstance(dst, pl.Datetime):
        return True
    return isinstance(src, pl.List) and isinstance(dst, pl.List) and lossless(src.inner, dst.inner)


def coerce_declared_columns(
    cls: "type[BaseFeature]",
    frame: pl.DataFrame,
    *,
    strict_unknown: bool,
    stored: "TableSchema | None" = None,
    upstream_columns: frozenset[str] = frozenset(),
) -> pl.DataFrame:
    key = cls.spec.key
    ids = set(cls.spec.id_columns)
    declared = cls.model_fields
    casts: list[pl.Expr] = []
    for name, info in declared.items():
        dtype, nullable = polars_dtype(info.annotation)
        if name not in frame.columns:
            # A write of no rows (e.g. parents without children) stores no values of the column.
            if not strict_unknown or frame.height == 0:
                continue
            if nullable or not info.is_required():
                fill = info.default if not info.is_required() and info.default is not None else None
                casts.append(pl.lit(fill, dtype=dtype).alias(name))
                continue
            raise MetadataValidationError(
                f"write({key}): missing column '{name}' declared on {cls.__name__}. Add it to the frame, or make it "
                f"optional on the class (`{name}: ... | None = None`)."
            )
        if dtype is None:
            continue
        src = frame.schema[name]
        if src == dtype:
            continue
        if not lossless(src, dtype):
            raise MetadataValidationError(
                f"write({key}): column '{name}' has type {src}, but {cls.__name__} declares {dtype}; convert it "
                "before writing (only lossless conversions such as int -> str or int -> float are automatic)."
            )
        if isinstance(dtype, pl.Datetime) and isinstance(src, pl.Datetime):
            continue  # keep the caller's unit/zone: equal instants either way
        casts.append(pl.col(name).cast(dtype))
    if strict_unknown and declared:
        unknown = [c for c in frame.columns if c not in declared and c not in ids and not C.is_system(c)]
        # Upstream columns that an increment carried are not this feature's data: drop them, so
        # `write(F, increment.new.with_columns(result=...))` just works.
        carried = [c for c in unknown if c in upstream_columns]
        if carried:
            frame = frame.drop(carried)
            unknown = [c for c in unknown if c not in carried]
        if unknown:
            raise MetadataValidationError(
                f"write({key}): column(s) {unknown} are not declared on {cls.__name__} (declared: "
                f"{list(declared)}, ids: {sorted(ids)}). Declare them on the class or drop them before writing."
            )
    frame = frame.with_columns(casts) if casts else frame
    if stored is not None and stored.dtypes:
        frame = _fit_stored_types(cls, frame, stored)
    return frame


def _fit_stored_types(cls: "type[BaseFeature]", frame: pl.DataFrame, stored: "TableSchema") -> pl.DataFrame:
    """Columns already stored keep their type, or widen it losslessly; anything else fails naming the fix.

    A frame value that fits the stored type is cast to it. A user column whose stored type fits
    the frame's losslessly (int -> float, int -> str, a narrower int -> a wider one) keeps the
    frame's type: the store widens the stored column (old values converted) in the same write.
    """
    key = cls.spec.key
    ids = set(cls.spec.id_columns)
    casts = []
    for name in frame.columns:
        if C.is_system(name) or name not in stored.dtypes:
            continue
        have, want = frame.schema[name], stored.dtypes[name]
        if have == want:
            continue
        if lossless(have, want):
            casts.append(pl.col(name).cast(want))
            continue
        if name not in ids and lossless(want, have):
            continue  # widened by the store
        raise MetadataValidationError(
            f"write({key}): column '{name}' is stored as {want}, but the frame has {have}, and {want} -> {have} is "
            f"not a lossless widening. Convert the column to {want} before writing, or change the stored type "
            f"first with a migration: `metaxy migrations alter-column {key} {name} {have}` (Python: "
            f"metaxy_core.migrations.alter_column_type(store, {cls.__name__}, {name!r}, pl.{have!r})). Nothing was "
            "written."
        )
    return frame.with_columns(casts) if casts else frame


def widened_columns(
    frame_schema: "dict[str, pl.DataType]", stored: "dict[str, pl.DataType]"
) -> dict[str, pl.DataType]:
    """User columns a prepared write widens: name -> the (wider) incoming type."""
    return {
        name: dtype
        for name, dtype in frame_schema.items()
        if not C.is_system(name)
        and name in stored
        and stored[name] != dtype
        and lossless(stored[name], dtype)
    }
