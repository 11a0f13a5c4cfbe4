"""In-memory store on polars: for tests, notebooks and small pipelines. Nothing persists.

Resolution runs as polars lazy queries with the same canonical strings as the SQL engines.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import MetadataValidationError
from metaxy_core.feature import BaseFeature
from metaxy_core.filters import polars_filters
from metaxy_core.increment import Increment
from metaxy_core.keys import FeatureKey
from metaxy_core.lineage import ResolvePlan, TableSchema
from metaxy_core.schema import widened_columns
from metaxy_core.stores import _polars as P
from metaxy_core.stores._incremental import KeyRestriction
from metaxy_core.stores.base import MetadataStore, ParentCover

_struct_fields = P.struct_fields


def _apply_filters(frame: pl.LazyFrame, filters: Sequence[Any]) -> pl.LazyFrame:
    # Filters are parsed and checked like on every SQL store, then translated to polars.
    for f in polars_filters(filters, frame.collect_schema()):
        frame = frame.filter(f)
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

    # -- resolve (the polars plan lives in _polars.py, shared with stores that hash in polars) ------
    def _stored_rows(self, plan: ResolvePlan, filters: Sequence[Any]) -> tuple[pl.LazyFrame, tuple[str, ...]]:
        """Live stored rows of the target (with its parent markers, for expansion) and their struct fields."""
        current = self._current[plan.feature]
        markers = self._markers.get(plan.feature)
        if markers is None or markers.height == 0 or plan.key_columns == plan.target_ids:
            return self._live(plan.feature, filters), _struct_fields(current.schema[C.PROVENANCE_BY_FIELD])
        a, b = _align(current, markers)
        both = pl.concat([a, b], how="diagonal_relaxed").lazy().filter(pl.col(C.DELETED_AT).is_null())
        return _apply_filters(both, filters), _struct_fields(a.schema[C.PROVENANCE_BY_FIELD])

    def _resolve(
        self,
        cls: type[BaseFeature],
        plan: ResolvePlan,
        samples: pl.DataFrame | None,
        filters: list[Any],
        lazy: bool,
        restriction: KeyRestriction | None = None,
    ) -> Increment:
        h = self.hasher
        stored = None
        if plan.feature in self._current:
            rows, present = self._stored_rows(plan, filters)
            if restriction is not None and restriction.samples_only and samples is not None:
                # a partial root update compares only the stored rows of the given samples
                keys = list(plan.key_columns)
                rows = rows.join(samples.lazy().select(keys), on=keys, how="semi", nulls_equal=True)
            elif restriction is not None:
                rows = rows.head(0)
            stored = P.stored_frame(plan, rows, set(present))
        if plan.missing_required:
            return P.increment(plan, None, plan.key_columns, stored, lazy)
        deps = [
            P.dep_frame(dep, self._live(dep.feature, dep.filters), self._current[dep.feature].schema, h)
            for dep in plan.deps
        ]
        expected, carried = P.expected_frame(plan, samples, [] if samples is not None else deps, h)
        if restriction is not None and not restriction.samples_only:
            expected = expected.head(0)  # only "nothing" reaches a store without incremental support
        return P.increment(plan, _apply_filters(expected, filters), carried, stored, lazy)

    # -- write ------------------------------------------------------------------------------------
    def _write(
        self,
        cls: type[BaseFeature],
        frame: pl.DataFrame,
        replace_key: tuple[str, ...],
        parents: ParentCover | None = None,
        *,
        stamped: bool = False,
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

    # -- history retention ------------------------------------------------------------------------
    def _compact(self, cls: type[BaseFeature], keep_versions: int, before: datetime | None) -> int:
        key = cls.spec.key
        history = self._history.get(key)
        if history is None or history.height == 0:
            return 0
        ranked = (
            history.with_row_index("__metaxy_i")
            .sort([C.UPDATED_AT, C.CREATED_AT], descending=True, maintain_order=True)
            .with_columns(pl.int_range(pl.len()).over(list(cls.spec.id_columns)).alias("__metaxy_rank"))
        )
        gone = pl.col("__metaxy_rank") >= keep_versions
        if before is not None:
            gone = gone & (pl.col(C.UPDATED_AT) < before)
        kept = ranked.filter(~gone).sort("__metaxy_i").drop("__metaxy_i", "__metaxy_rank")
        self._history[key] = kept
        return history.height - kept.height

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
