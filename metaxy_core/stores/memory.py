"""In-memory store on polars: for tests, notebooks and small pipelines. Nothing persists.

Resolution runs as polars lazy queries with the same canonical strings as the SQL engines.
"""

from collections.abc import Sequence
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import MetadataValidationError, ResolveError
from metaxy_core.feature import BaseFeature
from metaxy_core.increment import Increment
from metaxy_core.keys import FeatureKey
from metaxy_core.lineage import DepPlan, FieldPlan, ResolvePlan, TableSchema, field_column
from metaxy_core.provenance import PolarsHasher
from metaxy_core.schema import widened_columns
from metaxy_core.stores.base import MetadataStore, ParentCover

_MEMBER = "__metaxy_member"
_PRESENT_E = "__metaxy_present_e"
_PRESENT_S = "__metaxy_present_s"


def _struct_fields(dtype: pl.DataType) -> tuple[str, ...]:
    return tuple(f.name for f in dtype.fields) if isinstance(dtype, pl.Struct) else ()


def _apply_filters(frame: pl.LazyFrame, filters: Sequence[Any]) -> pl.LazyFrame:
    for f in filters:
        if isinstance(f, str):
            frame = frame.filter(pl.sql_expr(f))
        elif isinstance(f, pl.Expr):
            frame = frame.filter(f)
        else:
            frame = nw.from_native(frame).filter(f).to_native()
    return frame


def _widen(frame: pl.DataFrame, fields_by_column: dict[str, list[str]]) -> pl.DataFrame:
    exprs = []
    for column, fields in fields_by_column.items():
        have = _struct_fields(frame.schema[column])
        if list(have) == fields:
            continue
        exprs.append(
            pl.struct(
                [
                    (pl.col(column).struct.field(f) if f in have else pl.lit(None, dtype=pl.String)).alias(f)
                    for f in fields
                ]
            ).alias(column)
        )
    return frame.with_columns(exprs) if exprs else frame


def _align(a: pl.DataFrame, b: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give two frames the same struct fields (sorted union) so they concatenate."""
    fields = {
        c: sorted(set(_struct_fields(a.schema[c])) | set(_struct_fields(b.schema[c])))
        for c in C.STRUCT_COLUMNS
        if c in a.columns and c in b.columns
    }
    return _widen(a, fields), _widen(b, fields)


class InMemoryMetadataStore(MetadataStore):
    """Metadata held in polars frames inside this process.

    >>> import metaxy_core as mx, polars as pl
    >>> with mx.FeatureGraph().use():
    ...     class Doc(mx.Feature, spec=mx.FeatureSpec(key="doc")):
    ...         pass
    ...     store = mx.InMemoryMetadataStore(hash_length=8)
    ...     with store:
    ...         samples = pl.DataFrame({"sample_uid": ["a", "b"],
    ...                                 "metaxy_provenance_by_field": [{"default": "1"}, {"default": "2"}]})
    ...         inc = store.resolve_update(Doc, samples=samples)
    ...         _ = store.write(Doc, inc.new)
    ...         store.resolve_update(Doc, samples=samples).counts()
    {'new': 0, 'stale': 0, 'orphaned': 0}
    """

    kind = "memory"
    supports_parent_markers = True

    def __init__(self, *, hash_algorithm: str = "sha256", hash_length: int | None = None) -> None:
        super().__init__(hash_algorithm=hash_algorithm, hash_length=hash_length)
        self._current: dict[FeatureKey, pl.DataFrame] = {}
        self._history: dict[FeatureKey, pl.DataFrame] = {}
        # Expansion parents recorded with no children (see ParentCover), per feature.
        self._markers: dict[FeatureKey, pl.DataFrame] = {}
        self._system: dict[str, pl.DataFrame] = {}

    def __repr__(self) -> str:
        return "InMemoryMetadataStore()"

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _schema(self, key: FeatureKey) -> TableSchema | None:
        frame = self._current.get(key)
        if frame is None:
            return None
        return TableSchema(
            columns=tuple(c for c in frame.columns if not C.is_system(c)),
            struct_fields={
                c: _struct_fields(frame.schema[c]) for c in C.STRUCT_COLUMNS if c in frame.columns
            },
            types={c: str(t) for c, t in frame.schema.items()},
            dtypes=dict(frame.schema),
        )

    def _append_system(self, name: str, frame: pl.DataFrame) -> None:
        old = self._system.get(name)
        self._system[name] = frame if old is None else pl.concat([old, frame], how="diagonal_relaxed")

    def _read_system(self, name: str) -> pl.DataFrame | None:
        return self._system.get(name)

    def _list_features(self) -> list[FeatureKey]:
        return list(self._current)

    def _live(self, key: FeatureKey, filters: Sequence[Any] = ()) -> pl.LazyFrame:
        frame = self._current[key].lazy().filter(pl.col(C.DELETED_AT).is_null())
        return _apply_filters(frame, filters)

    # -- resolve ----------------------------------------------------------------------------------
    def _dep_frame(self, dep: DepPlan, h: PolarsHasher) -> pl.LazyFrame:
        source = self._live(dep.feature, dep.filters)
        dv = pl.col(C.DATA_VERSION_BY_FIELD)

        def dv_value(f: str, present: bool) -> pl.Expr:
            return dv.struct.field(f) if present else pl.lit(None, dtype=pl.String)

        if dep.lineage != "aggregation":
            return source.select(
                *[pl.col(src).alias(out) for src, out in dep.carried],
                *[dv_value(f, p).alias(dep.dv_column(f)) for f, p in dep.dv_fields.items()],
            )
        schema = self._current[dep.feature].schema
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

    @staticmethod
    def _field_hash(h: PolarsHasher, plan: ResolvePlan, fp: FieldPlan, root: bool) -> pl.Expr:
        parts: list[pl.Expr | str] = [fp.fq, fp.code_version]
        if root:
            parts.append(pl.col(C.PROVENANCE_BY_FIELD).struct.field(fp.key))
        else:
            deps = {d.index: d for d in plan.deps}
            for p in fp.parents:
                dep = deps.get(p.dep_index)
                parts += [p.fq, pl.col(dep.dv_column(p.field)) if dep is not None else ""]
        return h.hash(parts).alias(field_column(fp.key))

    def _expected(
        self, plan: ResolvePlan, samples: pl.DataFrame | None, filters: Sequence[Any], h: PolarsHasher
    ) -> tuple[pl.LazyFrame, list[str]]:
        if samples is not None:
            carried = [c for c in samples.columns if not C.is_system(c)]
            base = samples.lazy()
            root = True
        else:
            carried = plan.carried_columns
            frames = [self._dep_frame(dep, h) for dep in plan.deps]
            base = frames[0]
            for dep, frame in zip(plan.deps[1:], frames[1:], strict=True):
                how = "left" if dep.optional and plan.join != "full" else plan.join
                base = base.join(frame, on=list(dep.join_on), how=how, coalesce=True)  # type: ignore[arg-type]
            root = False
        fields = [self._field_hash(h, plan, fp, root) for fp in plan.fields]
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
        return _apply_filters(expected, filters), carried

    def _stored_rows(self, plan: ResolvePlan, filters: Sequence[Any]) -> tuple[pl.LazyFrame, tuple[str, ...]]:
        """Live stored rows of the target (with its parent markers, for expansion) and their struct fields."""
        current = self._current[plan.feature]
        markers = self._markers.get(plan.feature)
        if markers is None or markers.height == 0 or plan.key_columns == plan.target_ids:
            return self._live(plan.feature, filters), _struct_fields(current.schema[C.PROVENANCE_BY_FIELD])
        a, b = _align(current, markers)
        both = pl.concat([a, b], how="diagonal_relaxed").lazy().filter(pl.col(C.DELETED_AT).is_null())
        return _apply_filters(both, filters), _struct_fields(a.schema[C.PROVENANCE_BY_FIELD])

    def _stored(self, plan: ResolvePlan, filters: Sequence[Any]) -> pl.LazyFrame | None:
        if plan.feature not in self._current:
            return None
        frame, struct_fields = self._stored_rows(plan, filters)
        present = set(struct_fields)
        pbf = pl.col(C.PROVENANCE_BY_FIELD)

        def field(f: str) -> pl.Expr:
            return pbf.struct.field(f) if f in present else pl.lit(None, dtype=pl.String)

        keys = list(plan.key_columns)
        # fields the feature no longer has: listed among changed fields where rows still carry them
        removed = self._removed_fields(plan)
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

    def _removed_fields(self, plan: ResolvePlan) -> list[str]:
        current = self._current.get(plan.feature)
        if current is None:
            return []
        have = {fp.key for fp in plan.fields}
        return sorted(f for f in _struct_fields(current.schema[C.PROVENANCE_BY_FIELD]) if f not in have)

    def _resolve(
        self,
        cls: type[BaseFeature],
        plan: ResolvePlan,
        samples: pl.DataFrame | None,
        filters: list[Any],
        lazy: bool,
    ) -> Increment:
        h = self.hasher
        keys = list(plan.key_columns)
        stored = self._stored(plan, filters)
        field_struct = pl.Struct({fp.key: pl.String for fp in plan.fields})
        if plan.missing_required:
            expected = pl.LazyFrame(
                {
                    **{k: pl.Series([], dtype=pl.String) for k in keys},
                    C.PROVENANCE_BY_FIELD: pl.Series([], dtype=field_struct),
                    C.PROVENANCE: pl.Series([], dtype=pl.String),
                    **{field_column(fp.key): pl.Series([], dtype=pl.String) for fp in plan.fields},
                }
            )
            carried: list[str] = keys
        else:
            expected, carried = self._expected(plan, samples, filters, h)
        non_key = [c for c in carried if c not in keys]
        new_cols = [*keys, *non_key, C.PROVENANCE_BY_FIELD, C.PROVENANCE]
        all_fields = pl.lit([fp.key for fp in plan.fields], dtype=pl.List(pl.String)).alias(C.CHANGED_FIELDS)
        if stored is None:
            new = expected.select(*new_cols, all_fields)
            stale = new.clear()
            orphaned = expected.select(*keys, C.PROVENANCE_BY_FIELD, C.PROVENANCE).clear()
        else:
            if plan.missing_required:
                # the stored key types win: an empty expected frame has no real types
                key_types = stored.collect_schema()
                expected = expected.with_columns([pl.col(k).cast(key_types[k]) for k in keys])
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
            changes |= {
                f: pl.when(pl.col("__metaxy_r_" + f).is_not_null()).then(pl.lit(f))
                for f in self._removed_fields(plan)
            }
            changed = pl.concat_list([changes[f] for f in sorted(changes)]).list.drop_nulls()
            e, s = pl.col(_PRESENT_E).is_not_null(), pl.col(_PRESENT_S).is_not_null()
            is_stale = (
                e
                & s
                & (
                    (pl.col("__metaxy_n") > 1)
                    | pl.col(C.PROVENANCE).ne_missing(pl.col("__metaxy_stored_prov"))
                )
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

    # -- write ------------------------------------------------------------------------------------
    def _write(
        self,
        cls: type[BaseFeature],
        frame: pl.DataFrame,
        replace_key: tuple[str, ...],
        parents: ParentCover | None = None,
    ) -> None:
        key = cls.spec.key
        on = list(replace_key)
        current = self._current.get(key)
        markers = self._markers.get(key)
        if parents is not None:
            kept_markers = markers.join(parents.covered, on=on, how="anti") if markers is not None else None
            if kept_markers is None or kept_markers.height == 0:
                markers = parents.empty
            elif parents.empty.height == 0:
                markers = kept_markers
            else:
                markers = pl.concat(list(_align(kept_markers, parents.empty)), how="diagonal_relaxed")
        if current is None:
            self._current[key] = frame
            self._history[key] = frame.clear()
            if markers is not None:
                self._markers[key] = markers
            return
        widened = widened_columns(dict(frame.schema), dict(current.schema))
        if widened:
            # lossless widening of stored user columns (old values converted, history too)
            history = self._history[key]
            current = current.with_columns([pl.col(c).cast(t) for c, t in widened.items()])
            self._history[key] = history.with_columns(
                [pl.col(c).cast(t) for c, t in widened.items() if c in history.columns]
            )
        replaced_keys = frame.select(on).unique() if parents is None else parents.covered
        replaced = current.join(replaced_keys, on=on, how="semi")
        kept = current.join(replaced_keys, on=on, how="anti")
        kept, frame = _align(kept, frame)
        history, replaced = _align(self._history[key], replaced)
        # Build every result before swapping them in, so a failure leaves the store unchanged.
        new_current = pl.concat([kept, frame], how="diagonal_relaxed")
        new_history = pl.concat([history, replaced], how="diagonal_relaxed")
        self._current[key], self._history[key] = new_current, new_history
        if markers is not None:
            self._markers[key] = markers

    # -- schema changes ---------------------------------------------------------------------------
    def _alter_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType) -> int:
        key = cls.spec.key
        try:
            current = self._current[key].with_columns(pl.col(column).cast(dtype, strict=True))
            history = self._history[key]
            if column in history.columns:
                history = history.with_columns(pl.col(column).cast(dtype, strict=True))
        except pl.exceptions.PolarsError as exc:
            raise MetadataValidationError(
                f"alter_column_type({key}, {column!r}): stored values do not convert to {dtype} ({exc}); nothing "
                "changed."
            ) from exc
        self._current[key], self._history[key] = current, history
        return current.height

    def _add_id_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType, default: Any) -> int:
        key = cls.spec.key
        value = pl.lit(default, dtype=dtype).alias(column)
        self._current[key] = self._current[key].with_columns(value)
        self._history[key] = self._history[key].with_columns(value)
        return self._current[key].height

    # -- read / delete ----------------------------------------------------------------------------
    def _read(
        self,
        cls: type[BaseFeature],
        columns: Sequence[str] | None,
        filters: list[Any],
        include_deleted: bool,
        history: bool,
        lazy: bool,
    ) -> Any:
        key = cls.spec.key
        frame = self._current[key]
        if history:
            a, b = _align(frame, self._history[key])
            frame = pl.concat([a, b], how="diagonal_relaxed")
        lf = frame.lazy()
        if not include_deleted:
            lf = lf.filter(pl.col(C.DELETED_AT).is_null())
        lf = _apply_filters(lf, filters)
        if columns is not None:
            lf = lf.select(list(columns))
        return nw.from_native(lf if lazy else lf.collect())

    def _delete(self, cls: type[BaseFeature], filters: list[Any], soft: bool) -> int:
        key = cls.spec.key
        ids = list(cls.spec.id_columns)
        current = self._current[key]
        candidates = current.lazy()
        if soft:
            candidates = candidates.filter(pl.col(C.DELETED_AT).is_null())
        matched = _apply_filters(candidates, filters).select(ids).unique().collect()
        if matched.height == 0:
            return 0
        hit = current.join(matched.with_columns(pl.lit(True).alias("__metaxy_hit")), on=ids, how="left")
        is_hit = pl.col("__metaxy_hit").fill_null(False)
        if soft:
            from datetime import UTC, datetime

            now = pl.lit(datetime.now(UTC), dtype=pl.Datetime("us", "UTC"))
            history, before = _align(self._history[key], current.join(matched, on=ids, how="semi"))
            updated = hit.with_columns(
                pl.when(is_hit).then(now).otherwise(pl.col(C.DELETED_AT)).alias(C.DELETED_AT),
                pl.when(is_hit).then(now).otherwise(pl.col(C.UPDATED_AT)).alias(C.UPDATED_AT),
            ).drop("__metaxy_hit")
            self._history[key] = pl.concat([history, before], how="diagonal_relaxed")
            self._current[key] = updated
        else:
            self._current[key] = hit.filter(~is_hit).drop("__metaxy_hit")
            self._history[key] = self._history[key].join(matched, on=ids, how="anti")
        return matched.height
