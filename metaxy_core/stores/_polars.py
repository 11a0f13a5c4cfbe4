"""A resolve plan computed with polars lazy frames: the in-memory store's engine, shared with stores
that read their rows into polars and hash there (SQLite has no sha256 of its own).

The canonical strings and hashes are the ones the SQL engines compute (see ``_sql.py``), so every
store gives byte-identical provenance. Callers hand in the rows (current rows of each upstream, the
stored target rows), already restricted by the user's filters.
"""

from collections.abc import Iterable, Sequence

import narwhals as nw
import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import ResolveError
from metaxy_core.increment import Increment
from metaxy_core.lineage import DepPlan, FieldPlan, ResolvePlan, field_column
from metaxy_core.provenance import PolarsHasher

_MEMBER = "__metaxy_member"
_PRESENT_E = "__metaxy_present_e"
_PRESENT_S = "__metaxy_present_s"


def struct_fields(dtype: pl.DataType) -> tuple[str, ...]:
    return tuple(f.name for f in dtype.fields) if isinstance(dtype, pl.Struct) else ()


def dep_columns(dep: DepPlan) -> list[str]:
    """The upstream columns a dependency reads (the rest of its table is never touched)."""
    wanted = [src for src, _ in dep.carried]
    if dep.lineage == "aggregation":
        wanted += list(dep.member_ids)
    return [*dict.fromkeys([*wanted, C.DATA_VERSION_BY_FIELD])]


def dep_frame(dep: DepPlan, source: pl.LazyFrame, schema: pl.Schema, h: PolarsHasher) -> pl.LazyFrame:
    """One dependency: carried columns plus one data-version column per upstream field."""
    dv = pl.col(C.DATA_VERSION_BY_FIELD)

    def dv_value(f: str, present: bool) -> pl.Expr:
        return dv.struct.field(f) if present else pl.lit(None, dtype=pl.String)

    if dep.lineage != "aggregation":
        return source.select(
            *[pl.col(src).alias(out) for src, out in dep.carried],
            *[dv_value(f, p).alias(dep.dv_column(f)) for f, p in dep.dv_fields.items()],
        )
    for col in dep.member_ids:
        dtype = schema[col]
        if not (dtype == pl.String or dtype.is_integer()):
            raise ResolveError(
                f"Aggregation over '{dep.feature}': id column '{col}' has type {dtype}; aggregation needs string "
                "or integer ids (their text form orders the members)."
            )
    member = pl.concat_str([pl.col(c).cast(pl.String) for c in dep.member_ids], separator="|")
    group = [src for src, _ in dep.carried]
    aggs = [
        h.hash_expr(
            pl.concat_str([pl.col(_MEMBER), dv_value(f, p).fill_null("")], separator="|").str.join("|")
        ).alias(dep.dv_column(f))
        for f, p in dep.dv_fields.items()
    ]
    grouped = (
        source.with_columns(member.alias(_MEMBER))
        .sort(_MEMBER)
        .group_by(group, maintain_order=True)
        .agg(aggs)
    )
    return grouped.rename({src: out for src, out in dep.carried if src != out})


def field_hash(h: PolarsHasher, plan: ResolvePlan, fp: FieldPlan, root: bool) -> pl.Expr:
    parts: list[pl.Expr | str] = [fp.fq, fp.code_version]
    if root:
        parts.append(pl.col(C.PROVENANCE_BY_FIELD).struct.field(fp.key))
    else:
        deps = {d.index: d for d in plan.deps}
        for p in fp.parents:
            dep = deps.get(p.dep_index)
            parts += [p.fq, pl.col(dep.dv_column(p.field)) if dep is not None else ""]
    return h.hash(parts).alias(field_column(fp.key))


def expected_frame(
    plan: ResolvePlan, samples: pl.DataFrame | None, deps: Sequence[pl.LazyFrame], h: PolarsHasher
) -> tuple[pl.LazyFrame, list[str]]:
    """Expected provenance per sample (before target filters) and the carried column names.

    ``samples`` for a root feature; otherwise ``deps``, one :func:`dep_frame` per ``plan.deps``.
    """
    if samples is not None:
        carried = [c for c in samples.columns if not C.is_system(c)]
        base = samples.lazy()
        root = True
    else:
        carried = plan.carried_columns
        base = deps[0]
        for dep, frame in zip(plan.deps[1:], deps[1:], strict=True):
            how = "left" if dep.optional and plan.join != "full" else plan.join
            base = base.join(frame, on=list(dep.join_on), how=how, coalesce=True)  # type: ignore[arg-type]
        root = False
    fields = [field_hash(h, plan, fp, root) for fp in plan.fields]
    sample_parts: list[pl.Expr | str] = []
    for fp in plan.fields:
        sample_parts += [fp.key, pl.col(field_column(fp.key))]
    expected = (
        base.select(*carried, *fields)
        .with_columns(
            pl.struct([pl.col(field_column(fp.key)).alias(fp.key) for fp in plan.fields]).alias(
                C.PROVENANCE_BY_FIELD
            )
        )
        .with_columns(h.hash(sample_parts).alias(C.PROVENANCE))
    )
    return expected, carried


def stored_columns(plan: ResolvePlan) -> list[str]:
    """The target columns :func:`stored_frame` reads."""
    return [*dict.fromkeys([*plan.key_columns, C.PROVENANCE_BY_FIELD, C.PROVENANCE])]


def removed_fields(plan: ResolvePlan, present: Iterable[str]) -> list[str]:
    """Stored provenance fields the feature no longer has (they count as changed where rows carry them)."""
    have = {fp.key for fp in plan.fields}
    return sorted(f for f in present if f not in have)


def stored_frame(plan: ResolvePlan, frame: pl.LazyFrame, present: set[str]) -> pl.LazyFrame:
    """Stored current rows at increment granularity (grouped by parent for expansion).

    ``present``: the provenance fields the stored struct has (a field added later reads as null).
    Fields the feature no longer has get a ``__metaxy_r_<field>`` column, non-null where a row still
    has provenance for them (see :func:`removed_fields`).
    """
    removed = removed_fields(plan, present)
    pbf = pl.col(C.PROVENANCE_BY_FIELD)

    def field(f: str) -> pl.Expr:
        return pbf.struct.field(f) if f in present else pl.lit(None, dtype=pl.String)

    keys = list(plan.key_columns)
    if plan.key_columns == plan.target_ids:
        return frame.select(
            *keys,
            pbf.alias("__metaxy_stored_pbf"),
            pl.col(C.PROVENANCE).alias("__metaxy_stored_prov"),
            pl.lit(1, dtype=pl.UInt32).alias("__metaxy_n"),
            *[field(fp.key).alias("__metaxy_s_" + fp.key) for fp in plan.fields],
            *[pl.lit(1, dtype=pl.UInt32).alias("__metaxy_n_" + fp.key) for fp in plan.fields],
            *[field(f).alias("__metaxy_r_" + f) for f in removed],
        )
    return frame.group_by(keys).agg(
        pl.struct([field(fp.key).min().alias(fp.key) for fp in plan.fields]).alias("__metaxy_stored_pbf"),
        pl.col(C.PROVENANCE).min().alias("__metaxy_stored_prov"),
        pl.col(C.PROVENANCE).n_unique().cast(pl.UInt32).alias("__metaxy_n"),
        *[field(fp.key).min().alias("__metaxy_s_" + fp.key) for fp in plan.fields],
        *[
            field(fp.key).drop_nulls().n_unique().cast(pl.UInt32).alias("__metaxy_n_" + fp.key)
            for fp in plan.fields
        ],
        *[field(f).max().alias("__metaxy_r_" + f) for f in removed],
    )


def increment(
    plan: ResolvePlan,
    expected: pl.LazyFrame | None,
    carried: Sequence[str],
    stored: pl.LazyFrame | None,
    lazy: bool,
) -> Increment:
    """New, stale and orphaned samples from expected (None: a required upstream is missing) vs stored."""
    keys = list(plan.key_columns)
    field_struct = pl.Struct({fp.key: pl.String for fp in plan.fields})
    if expected is None:
        expected = pl.LazyFrame(
            {
                **{k: pl.Series([], dtype=pl.String) for k in keys},
                C.PROVENANCE_BY_FIELD: pl.Series([], dtype=field_struct),
                C.PROVENANCE: pl.Series([], dtype=pl.String),
                **{field_column(fp.key): pl.Series([], dtype=pl.String) for fp in plan.fields},
            }
        )
        carried = keys
        if stored is not None:
            # the stored key types win: an empty expected frame has no real types
            key_types = stored.collect_schema()
            expected = expected.with_columns([pl.col(k).cast(key_types[k]) for k in keys])
    non_key = [c for c in carried if c not in keys]
    new_cols = [*keys, *non_key, C.PROVENANCE_BY_FIELD, C.PROVENANCE]
    all_fields = pl.lit([fp.key for fp in plan.fields], dtype=pl.List(pl.String)).alias(C.CHANGED_FIELDS)
    if stored is None:
        new = expected.select(*new_cols, all_fields)
        stale = new.clear()
        orphaned = expected.select(*keys, C.PROVENANCE_BY_FIELD, C.PROVENANCE).clear()
    else:
        joined = expected.with_columns(pl.lit(True).alias(_PRESENT_E)).join(
            stored.with_columns(pl.lit(True).alias(_PRESENT_S)), on=keys, how="full", coalesce=True
        )
        changes = {
            fp.key: pl.when(
                (pl.col("__metaxy_n_" + fp.key) > 1)
                | pl.col("__metaxy_s_" + fp.key).ne_missing(pl.col(field_column(fp.key)))
            ).then(pl.lit(fp.key))
            for fp in plan.fields
        }
        # a removed field changed for every stored row that still has provenance for it
        removed = [
            c.removeprefix("__metaxy_r_") for c in stored.collect_schema() if c.startswith("__metaxy_r_")
        ]
        changes |= {f: pl.when(pl.col("__metaxy_r_" + f).is_not_null()).then(pl.lit(f)) for f in removed}
        changed = pl.concat_list([changes[f] for f in sorted(changes)]).list.drop_nulls()
        e, s = pl.col(_PRESENT_E).is_not_null(), pl.col(_PRESENT_S).is_not_null()
        is_stale = (
            e
            & s
            & ((pl.col("__metaxy_n") > 1) | pl.col(C.PROVENANCE).ne_missing(pl.col("__metaxy_stored_prov")))
        )
        new = joined.filter(e & ~s).select(*new_cols, changed.alias(C.CHANGED_FIELDS))
        stale = joined.filter(is_stale).select(*new_cols, changed.alias(C.CHANGED_FIELDS))
        orphaned = joined.filter(~e & s).select(
            *keys,
            pl.col("__metaxy_stored_pbf").alias(C.PROVENANCE_BY_FIELD),
            pl.col("__metaxy_stored_prov").alias(C.PROVENANCE),
        )
    if lazy:
        return Increment(nw.from_native(new), nw.from_native(stale), nw.from_native(orphaned))
    new_df, stale_df, orphaned_df = pl.collect_all([new, stale, orphaned])
    return Increment(nw.from_native(new_df), nw.from_native(stale_df), nw.from_native(orphaned_df))
