"""``MetaxyIOManager``: resolves a feature's increment before its asset body runs, stamps and writes after.

How a metaxy asset (made by :func:`metaxy_dagster.metaxy_asset`) runs, in one step:

1. **resolve** (store open briefly): ``store.resolve_update(Feature)`` (roots: with the samples from
   the asset's samples provider); the increment streams into local Parquet files (see
   :mod:`metaxy_dagster.spool`) and the store is closed again;
2. **body**: the asset function gets the increment as its ``increment`` argument
   (:class:`MetaxyIncrement`: ``new``, ``stale``, ``orphaned``, ``to_process()``, ``batches(n)``)
   and returns the computed rows (polars, pandas, pyarrow or narwhals) for some or all of those
   samples, or commits them batch by batch (``increment.commit(rows)``, see
   :mod:`metaxy_dagster.batches`);
3. **stamp + write** (store open briefly): the rows are joined to the increment on the key columns
   (the id columns; the parent's ``on`` columns for an expansion feature) to attach
   ``metaxy_provenance_by_field`` / ``metaxy_provenance``, upstream columns the increment carried but
   the feature does not declare are dropped, and everything is written in one atomic ``store.write``
   (for an expansion feature with ``parents=`` the increment's parents, so a parent the body
   returned no children for is recorded as having none).
   Rows for samples outside the increment, or rows without the id columns, fail the step before
   anything is written. Then the feature's aggregate data version is computed in the store.
4. the asset returns ``MaterializeResult(data_version=..., metadata=...)``: an IO manager's
   ``handle_output`` cannot set a Dagster data version, which is why steps 1 and 3 are methods the
   asset calls rather than ``load_input``/``handle_output`` hooks.

A root feature without a samples provider works the other way round: its body returns the complete
set of samples (id columns, user columns and ``metaxy_provenance_by_field`` with user values such
as content hashes); the IO manager resolves them (``resolve_update(samples=...)``) and writes the
new and stale ones; orphaned samples (stored, no longer listed) are reported, not deleted.

As a regular IO manager it serves plain Dagster assets too: ``load_input`` reads a feature's
current rows as a polars frame (``AssetIn`` on a metaxy asset), and ``handle_output`` writes a
frame returned by an asset whose definition metadata names a feature (``metaxy/feature``) through
the same resolve/stamp/write path (without a data version: use :func:`metaxy_asset` for that).
"""

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import narwhals as nw
import polars as pl
from pydantic import Field

from metaxy_core import columns as C
from metaxy_core.feature import BaseFeature
from metaxy_core.graph import FeatureGraph
from metaxy_core.increment import Increment
from metaxy_core.keys import FeatureKey
from metaxy_core.stores.base import MetadataStore
from metaxy_dagster import metadata as md
from metaxy_dagster.data_versions import FeatureDataVersion, feature_data_version
from metaxy_dagster.errors import MetaxyDefinitionError, MetaxyOutputError
from metaxy_dagster.registry import SamplesProvider as SamplesProvider
from metaxy_dagster.registry import info_of_output
from metaxy_dagster.resource import MetaxyStoreResource
from metaxy_dagster.spool import IncrementSpool, spool_increment
from metaxy_dagster.translator import feature_key_of

# Feature classes announced by code that builds assets without a metaxy factory binding (e.g. an
# enriched plain asset), for lookups the active graph cannot answer. Weak: classes of a discarded
# graph drop out. Never "last one wins": two different classes for one key are an error.
_ANNOUNCED: "weakref.WeakSet[type[BaseFeature]]" = weakref.WeakSet()


def register_feature(feature: type[BaseFeature]) -> None:
    """Announce a feature class for :func:`lookup_feature` (when it is not in the active graph)."""
    _ANNOUNCED.add(feature)


def lookup_feature(
    key: FeatureKey | str, op: Any = None, output_name: str | None = None
) -> type[BaseFeature]:
    """The feature class behind an asset output.

    In order: the class its metaxy factory was given (bound to the asset's op), the active graph's
    feature of that key (a plain asset naming a feature in its metadata), or the one announced class
    of that key. Two announced classes for a key the active graph lacks are an error, not a guess.
    """
    info = info_of_output(op, output_name) if op is not None and output_name is not None else None
    if info is not None:
        return info.feature
    fkey = FeatureKey(key)
    graph = FeatureGraph.get_active()
    if fkey in graph.features_by_key:
        return graph.get_feature(fkey)
    announced = {cls for cls in list(_ANNOUNCED) if cls.spec.key == fkey}
    if len(announced) == 1:
        return announced.pop()
    if len(announced) > 1:
        raise MetaxyDefinitionError(
            f"Feature '{fkey}' is not in the active feature graph, and {len(announced)} different classes were "
            "registered under that key. Build the asset with a metaxy factory (so it is bound to its feature), "
            "or make the graph that defines it active."
        )
    return graph.get_feature(fkey)


def _key_columns(feature: type[BaseFeature]) -> tuple[str, ...]:
    """Columns an increment row is identified by: the parent's ``on`` columns for expansion, else the ids."""
    for dep in feature.spec.deps:
        if dep.lineage.type == "expansion":
            return tuple(dep.lineage.on or ())
    return tuple(feature.spec.id_columns)


key_columns = _key_columns


def _eager_polars(frame: Any) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, nw.LazyFrame):
        return frame.collect().to_polars()
    if isinstance(frame, nw.DataFrame):
        return frame.to_polars()
    native = nw.from_native(frame, eager_only=False)
    if isinstance(native, nw.LazyFrame):
        return native.collect().to_polars()
    return native.to_polars()


Committer = Callable[["MetaxyIncrement", pl.DataFrame, Any], int]
"""Writes committed rows for a :class:`MetaxyIncrement` (bound by the asset running the body)."""


class MetaxyIncrement:
    """The samples a metaxy asset has to (re)compute.

    Attributes:
        feature: the feature class.
        key_columns: the columns rows are matched on (the parent's ``on`` columns for expansion).

    The rows come in two ways:

    * whole, as eager polars frames: ``new`` (expected samples not stored yet), ``stale`` (stored
      samples whose provenance changed; column ``metaxy_changed_fields`` says which fields),
      ``orphaned`` (stored samples no longer expected: reported, never written) and ``to_process()``
      (new and stale together). Each is read into memory on first use;
    * in batches: ``for batch in increment.batches(10_000): increment.commit(compute(batch))``.
      Batches stream from the resolve (which went to local files, see :mod:`metaxy_dagster.spool`),
      so a 10M-sample increment is never held whole in memory; each ``commit`` validates, stamps and
      writes its rows atomically, so a retry after a failure only gets the samples not yet committed.

    Counts (``counts()``, ``is_empty``) never read the rows.
    """

    def __init__(
        self,
        feature: type[BaseFeature],
        *,
        new: pl.DataFrame | None = None,
        stale: pl.DataFrame | None = None,
        orphaned: pl.DataFrame | None = None,
        spool: IncrementSpool | None = None,
        key_columns: tuple[str, ...] | None = None,
    ) -> None:
        if spool is None and (new is None or stale is None or orphaned is None):
            raise TypeError("MetaxyIncrement needs new, stale and orphaned frames, or a spool.")
        self.feature = feature
        self.key_columns = key_columns if key_columns is not None else _key_columns(feature)
        self._frames: dict[str, pl.DataFrame] = {}
        for part, frame in (("new", new), ("stale", stale), ("orphaned", orphaned)):
            if frame is not None:
                self._frames[part] = frame
        self._spool = spool
        self._committer: Committer | None = None
        self._pending: list[pl.DataFrame] = []
        self._batches_handed = 0
        self.progress = BatchProgress(total=self._count("new") + self._count("stale"))

    @classmethod
    def from_core(cls, feature: type[BaseFeature], increment: Increment) -> "MetaxyIncrement":
        return cls(
            feature,
            new=_eager_polars(increment.new),
            stale=_eager_polars(increment.stale),
            orphaned=_eager_polars(increment.orphaned),
        )

    # -- whole frames ------------------------------------------------------------------------------
    def _part(self, part: str) -> pl.DataFrame:
        frame = self._frames.get(part)
        if frame is None:
            assert self._spool is not None
            frame = self._frames[part] = self._spool.read(part)
        return frame

    def _count(self, part: str) -> int:
        if self._spool is not None:
            return self._spool.counts[part]
        return self._frames[part].height

    @property
    def new(self) -> pl.DataFrame:
        """Expected samples that are not stored yet (read into memory on first use)."""
        return self._part("new")

    @property
    def stale(self) -> pl.DataFrame:
        """Stored samples whose provenance changed, with ``metaxy_changed_fields``."""
        return self._part("stale")

    @property
    def orphaned(self) -> pl.DataFrame:
        """Stored samples that are no longer expected (reported; never written)."""
        return self._part("orphaned")

    def to_process(self) -> pl.DataFrame:
        """``new`` and ``stale`` together: one row per sample (per parent for expansion) to compute."""
        stale = self.stale.drop(C.CHANGED_FIELDS, strict=False)
        if self._count("new") == 0:
            return stale
        if self._count("stale") == 0:
            return self.new
        return pl.concat([self.new, stale], how="diagonal_relaxed")

    def counts(self) -> dict[str, int]:
        return {part: self._count(part) for part in ("new", "stale", "orphaned")}

    def changed_field_counts(self) -> dict[str, int]:
        """Field key -> number of stale samples whose provenance changed on that field."""
        if self._spool is not None:
            return dict(self._spool.changed_fields)
        return md.changed_field_counts(self.stale)

    @property
    def is_empty(self) -> bool:
        """True when nothing is new or stale (orphans need no computation)."""
        return self._count("new") == 0 and self._count("stale") == 0

    def summary(self) -> str:
        c = self.counts()
        return f"new={c['new']} stale={c['stale']} orphaned={c['orphaned']}"

    # -- batches -----------------------------------------------------------------------------------
    def batches(self, size: int) -> Iterator[pl.DataFrame]:
        """The new, then the stale samples, at most ``size`` rows at a time (eager polars frames).

        Commit the rows computed for a batch with :meth:`commit` before asking for the next one; a
        batch never mixes new and stale samples (stale rows carry ``metaxy_changed_fields``).
        """
        if not isinstance(size, int) or size < 1:
            raise ValueError(
                f"increment.batches(size): size must be a positive number of rows, got {size!r}."
            )
        if self._spool is not None:
            source: Iterator[pl.DataFrame] = self._spool.batches(size)
        else:
            source = (
                chunk
                for part in ("new", "stale")
                for chunk in self._frames[part].iter_slices(size)
                if chunk.height
            )
        for batch in source:
            self._pending.append(batch)
            self._batches_handed += 1
            yield batch

    def commit(self, rows: Any) -> int:
        """Validate, stamp and write the rows computed for the batches handed out since the last commit.

        The write is atomic: a failure leaves nothing of this commit behind, and what earlier commits
        wrote stays (with its provenance), so a rerun resolves only the samples not yet committed.
        Rows for samples outside those batches fail before anything is written. A sample of those
        batches without rows is not written (it stays new/stale and is counted as missing). Returns
        the number of rows written.
        """
        if self._committer is None:
            raise MetaxyOutputError(
                f"increment.commit() for feature '{self.feature.spec.key}' works inside a metaxy asset body (the "
                "asset binds the store and the run); outside one, write with store.write(...)."
            )
        todo = self.pending()
        if todo.height == 0:
            raise MetaxyOutputError(
                f"increment.commit() for feature '{self.feature.spec.key}': no batch is waiting to be committed. "
                "Take rows from `for batch in increment.batches(n):` and commit once per batch (or group of batches)."
            )
        written = self._committer(self, todo, rows)
        self._pending.clear()
        return written

    def pending(self) -> pl.DataFrame:
        """The samples of the batches handed out and not committed yet (one frame)."""
        if not self._pending:
            empty = (
                self._frames["new"].head(0)
                if "new" in self._frames or self._spool is None
                else pl.scan_parquet(self._spool.path("new")).head(0).collect()  # the columns, no rows
            )
            return empty.drop(C.CHANGED_FIELDS, strict=False)
        frames = [b.drop(C.CHANGED_FIELDS, strict=False) for b in self._pending]
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")

    def bind(self, committer: Committer) -> None:
        """Called by the asset that runs the body: where :meth:`commit` writes."""
        self._committer = committer

    @property
    def committed(self) -> bool:
        """True once the body committed at least one batch."""
        return self.progress.commits > 0

    def close(self) -> None:
        """Remove the spooled files (the asset does it when the step ends)."""
        self._frames.clear()
        if self._spool is not None:
            self._spool.cleanup()


@dataclass
class BatchProgress:
    """What the commits of one body did so far (for logs and metadata)."""

    total: int
    commits: int = 0
    committed: int = 0
    """Samples of committed batches (with or without rows)."""
    covered: int = 0
    """Samples with at least one written row."""
    written: int = 0
    """Rows written."""


@dataclass(frozen=True)
class MetaxyWriteReport:
    """What one materialization of a feature did; becomes the asset's materialization metadata."""

    feature: type[BaseFeature]
    counts: dict[str, int]
    written: int
    missing: int
    changed_fields: dict[str, int]
    data_version: FeatureDataVersion
    preview: pl.DataFrame
    materialization_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        feature = self.feature
        meta: dict[str, Any] = {
            "metaxy/new": dg.MetadataValue.int(self.counts["new"]),
            "metaxy/stale": dg.MetadataValue.int(self.counts["stale"]),
            "metaxy/orphaned": dg.MetadataValue.int(self.counts["orphaned"]),
            "metaxy/written": dg.MetadataValue.int(self.written),
            "metaxy/missing": dg.MetadataValue.int(self.missing),
            "metaxy/changed_fields": dg.MetadataValue.json(self.changed_fields),
            "metaxy/feature_version": dg.MetadataValue.text(feature.feature_version()),
            "metaxy/feature_code_version": dg.MetadataValue.text(feature.feature_code_version()),
            "metaxy/snapshot_version": dg.MetadataValue.text(feature.graph.snapshot_version),
            "metaxy/field_versions": dg.MetadataValue.json(feature.field_versions()),
            "metaxy/field_code_versions": dg.MetadataValue.json(
                {str(f.key): f.code_version for f in feature.spec.fields}
            ),
            "metaxy/data_version": dg.MetadataValue.text(self.data_version.data_version),
            "dagster/row_count": dg.MetadataValue.int(self.data_version.row_count),
            "metaxy/preview": md.preview_table(self.preview),
            "metaxy/definition_diff": dg.MetadataValue.md(md.definition_diff(feature, previous)),
        }
        meta.update(self.extra)
        return meta


def previous_materialization_metadata(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey
) -> dict[str, Any] | None:
    """Raw values of the latest materialization's metadata for ``asset_key`` (None if never materialized)."""
    event = instance.get_latest_materialization_event(asset_key)
    if event is None or event.asset_materialization is None:
        return None
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


class MetaxyIOManager(dg.ConfigurableIOManager):
    """Resolves increments and writes stamped rows for metaxy assets; loads features for plain assets.

    Register it next to the store resource::

        store = MetaxyStoreResource(store="dev")
        Definitions(assets=..., resources={"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)})

    ``store=`` means what it means everywhere in metaxy_dagster: *which metadata store*, as a
    :class:`MetaxyStoreResource` or as the name of a store in the metaxy config
    (``MetaxyIOManager(store="dev")`` is ``MetaxyIOManager(store=MetaxyStoreResource(store="dev"))``).
    """

    store: dg.ResourceDependency[MetaxyStoreResource]
    preview_rows: int = Field(default=10, description="Rows shown in the `metaxy/preview` table metadata.")

    def __init__(self, *, store: "MetaxyStoreResource | str", **kwargs: Any) -> None:
        if isinstance(store, str):
            store = MetaxyStoreResource(store=store)
        super().__init__(store=store, **kwargs)

    # -- the metaxy asset protocol -------------------------------------------------------------------
    def resolve_increment(
        self, feature: type[BaseFeature], *, samples: Any = None, filters: Any = None
    ) -> MetaxyIncrement:
        """Resolve the increment, holding the store only for that.

        The increment streams out of the store into local files (see :mod:`metaxy_dagster.spool`),
        so the body can take it whole or in batches without the store staying open. ``filters``
        scope it to some samples (a partition): new, stale and orphaned alike.
        """
        frame = None if samples is None else _eager_polars(samples)
        # Outside `with`, the resolve opens the store just for the call and read-only where the
        # engine allows (DuckDB), so the resolves of concurrent steps share the file.
        spool = spool_increment(self.store.get_store(), feature, samples=frame, filters=filters)
        return MetaxyIncrement(feature, spool=spool)

    def write_rows(
        self,
        feature: type[BaseFeature],
        increment: MetaxyIncrement,
        rows: Any,
        *,
        materialization_id: str | None = None,
        filters: Any = None,
    ) -> MetaxyWriteReport:
        """Check ``rows`` against ``increment``, attach provenance, write atomically, aggregate.

        ``rows=None`` with an empty increment writes nothing and only reports (the body was skipped).
        ``filters`` (a partition) scope the reported data version.
        """
        if rows is None and increment.is_empty:
            return self._write(feature, increment, None, materialization_id, filters)
        to_write = self.stamp(feature, increment, rows)
        return self._write(feature, increment, to_write, materialization_id, filters)

    def write_stamped(
        self,
        feature: type[BaseFeature],
        increment: MetaxyIncrement,
        to_write: pl.DataFrame,
        *,
        materialization_id: str | None = None,
        filters: Any = None,
    ) -> MetaxyWriteReport:
        """Write rows already stamped with :meth:`stamp` (checked before anything else was written)."""
        return self._write(feature, increment, to_write, materialization_id, filters)

    def report_unwritten(
        self, feature: type[BaseFeature], increment: MetaxyIncrement, *, filters: Any = None
    ) -> MetaxyWriteReport:
        """The report of a feature the body wrote nothing for: every sample to compute is missing."""
        with self.store.open() as store:
            return self._report(
                store,
                feature,
                increment,
                written=0,
                missing=increment.progress.total,
                fallback_preview=increment.pending().head(0),
                materialization_id=None,
                filters=filters,
            )

    def commit_rows(
        self,
        feature: type[BaseFeature],
        increment: MetaxyIncrement,
        todo: pl.DataFrame,
        rows: Any,
        *,
        materialization_id: str | None = None,
    ) -> int:
        """One checkpoint: stamp ``rows`` against the samples ``todo`` (some batches) and write them atomically.

        The same checks as :meth:`write_rows`, scoped to ``todo``; the feature's data version is
        computed once at the end (:meth:`batch_report`), not per commit. Returns rows written.
        """
        keys = list(increment.key_columns)
        to_write = self._stamp(feature, todo, keys, rows, "the batches handed out since the last commit")
        with self.store.open() as store:
            written = self._put(store, feature, keys, todo, to_write, materialization_id)
        progress = increment.progress
        progress.commits += 1
        progress.committed += todo.height
        progress.covered += todo.height - _missing(keys, todo, to_write)
        progress.written += written
        return written

    def batch_report(
        self,
        feature: type[BaseFeature],
        increment: MetaxyIncrement,
        *,
        materialization_id: str | None = None,
        filters: Any = None,
    ) -> MetaxyWriteReport:
        """The report of a body that committed in batches: totals over its commits, the final data version."""
        p = increment.progress
        with self.store.open() as store:
            report = self._report(
                store,
                feature,
                increment,
                written=p.written,
                missing=p.total - p.covered,
                fallback_preview=increment.pending().head(0),
                materialization_id=materialization_id,
                filters=filters,
            )
        report.extra.update(
            {
                "metaxy/batches": dg.MetadataValue.int(p.commits),
                "metaxy/committed": dg.MetadataValue.int(p.committed),
                "metaxy/total": dg.MetadataValue.int(p.total),
            }
        )
        return report

    def write_samples(
        self,
        feature: type[BaseFeature],
        samples: Any,
        *,
        materialization_id: str | None = None,
        filters: Any = None,
    ) -> MetaxyWriteReport:
        """Root feature: resolve the complete ``samples`` and write the new and stale ones."""
        frame = _check_rows_frame(feature, samples, key_columns(feature))
        with self.store.open() as store:
            increment = MetaxyIncrement.from_core(
                feature, store.resolve_update(feature, samples=frame, filters=filters)
            )
            user_rows = frame.drop([c for c in frame.columns if C.is_system(c)])
            keys = list(increment.key_columns)
            todo_keys = increment.to_process().select(keys)
            # Unchanged samples are in `samples` too; only new and stale ones are written.
            user_rows = _align_key_types(feature, user_rows, todo_keys, keys).join(
                todo_keys, on=keys, how="semi", nulls_equal=True
            )
            to_write = self.stamp(feature, increment, user_rows)
            return self._write(feature, increment, to_write, materialization_id, filters)

    def stamp(self, feature: type[BaseFeature], increment: MetaxyIncrement, rows: Any) -> pl.DataFrame:
        """``rows`` with the increment's provenance attached; raises before anything is written."""
        return self._stamp(
            feature, increment.to_process(), list(increment.key_columns), rows, "this run's increment"
        )

    def _stamp(
        self, feature: type[BaseFeature], todo: pl.DataFrame, keys: list[str], rows: Any, scope: str
    ) -> pl.DataFrame:
        frame = _check_rows_frame(feature, rows, tuple(keys))
        key_frame = todo.select([*keys, C.PROVENANCE_BY_FIELD, C.PROVENANCE])
        frame = _align_key_types(feature, frame, key_frame, keys)
        outside = (
            frame.select(keys).unique().join(key_frame.select(keys), on=keys, how="anti", nulls_equal=True)
        )
        if outside.height:
            examples = outside.head(5).to_dicts()
            what = "parent(s)" if tuple(keys) != tuple(feature.spec.id_columns) else "sample(s)"
            raise MetaxyOutputError(
                f"Asset for feature '{feature.spec.key}' returned rows for {outside.height} {what} outside {scope}, "
                f"e.g. {examples} (matched on {keys}). Only new or stale samples may be written: build the rows "
                "from the `increment` argument (increment.to_process() or its batches). Nothing was written."
            )
        # Provenance always comes from the increment: a body that kept (or altered) it cannot corrupt it.
        frame = frame.drop([C.PROVENANCE_BY_FIELD, C.PROVENANCE, C.CHANGED_FIELDS], strict=False)
        declared = set(feature.model_fields)
        if declared:
            carried = set(todo.columns) - declared - set(feature.spec.id_columns) - set(keys)
            frame = frame.drop([c for c in frame.columns if c in carried and not C.is_system(c)])
        return frame.join(key_frame, on=keys, how="left", nulls_equal=True)

    def _write(
        self,
        feature: type[BaseFeature],
        increment: MetaxyIncrement,
        to_write: pl.DataFrame | None,
        materialization_id: str | None,
        filters: Any = None,
    ) -> MetaxyWriteReport:
        keys = list(increment.key_columns)
        todo = increment.to_process()
        if to_write is None:
            to_write = todo.head(0)
            missing = 0
        else:
            missing = _missing(keys, todo, to_write)
        with self.store.open() as store:
            written = self._put(store, feature, keys, todo, to_write, materialization_id)
            return self._report(
                store,
                feature,
                increment,
                written=written,
                missing=missing,
                fallback_preview=to_write,
                materialization_id=materialization_id,
                filters=filters,
            )

    @staticmethod
    def _put(
        store: MetadataStore,
        feature: type[BaseFeature],
        keys: list[str],
        todo: pl.DataFrame,
        to_write: pl.DataFrame,
        materialization_id: str | None,
    ) -> int:
        # Expansion: every parent of the increment is covered by this write, so a parent the body
        # returned no rows for is stored as having no children (its old children move to history)
        # and is in sync afterwards, instead of coming back as new/stale on every run.
        expansion = tuple(keys) != tuple(feature.spec.id_columns)
        parents = (
            todo.select([*keys, C.PROVENANCE_BY_FIELD, C.PROVENANCE]) if expansion and todo.height else None
        )
        if not to_write.height and parents is None:
            return 0
        return store.write(feature, to_write, parents=parents, materialization_id=materialization_id)

    def _report(
        self,
        store: MetadataStore,
        feature: type[BaseFeature],
        increment: MetaxyIncrement,
        *,
        written: int,
        missing: int,
        fallback_preview: pl.DataFrame,
        materialization_id: str | None,
        filters: Any,
    ) -> MetaxyWriteReport:
        data_version = feature_data_version(store, feature, filters)
        preview = fallback_preview.head(self.preview_rows)
        if written and materialization_id is not None:
            # Read back what was stored, so the preview shows the stamped data versions.
            stored = store.read(
                feature, filters=nw.col(C.MATERIALIZATION_ID) == materialization_id, lazy=True
            )
            preview = _eager_polars(stored.head(self.preview_rows))
            preview = preview.sort(list(feature.spec.id_columns))
        return MetaxyWriteReport(
            feature=feature,
            counts=increment.counts(),
            written=written,
            missing=missing,
            changed_fields=increment.changed_field_counts(),
            data_version=data_version,
            preview=preview,
            materialization_id=materialization_id,
        )

    def data_version(self, feature: type[BaseFeature], filters: Any = None) -> FeatureDataVersion:
        with self.store.open() as store:
            return feature_data_version(store, feature, filters)

    # -- regular IO manager hooks ------------------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        """A feature's current rows (system columns included) as an eager polars frame."""
        upstream = context.upstream_output
        meta = dict(upstream.definition_metadata or {}) if upstream is not None else {}
        key = feature_key_of(meta)
        if key is None:
            asset = context.asset_key.to_user_string() if context.has_asset_key else context.name
            raise MetaxyOutputError(
                f"MetaxyIOManager cannot load '{asset}': it is not a metaxy feature asset (no 'metaxy/feature' "
                "definition metadata). Load it with the IO manager that stored it."
            )
        feature = lookup_feature(key, getattr(upstream, "op_def", None), getattr(upstream, "name", None))
        with self.store.open() as store:
            return _eager_polars(store.read(feature))

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None or isinstance(obj, MetaxyWriteReport):
            return  # a metaxy asset already wrote its rows (or returned a MaterializeResult)
        key = feature_key_of(dict(context.definition_metadata or {}))
        if key is None:
            raise MetaxyOutputError(
                f"MetaxyIOManager got a {type(obj).__name__} for asset '{context.asset_key.to_user_string()}', which "
                "names no feature: add metadata={'metaxy/feature': '<feature key>'} or build it with metaxy_asset."
            )
        feature = lookup_feature(key, getattr(context, "op_def", None), getattr(context, "name", None))
        run_id = getattr(context, "run_id", None)
        if feature.spec.deps:
            increment = self.resolve_increment(feature)
            report = self.write_rows(feature, increment, obj, materialization_id=run_id)
        else:
            report = self.write_samples(feature, obj, materialization_id=run_id)
        with contextlib.suppress(Exception):
            context.add_output_metadata(report.metadata())


def _missing(keys: list[str], todo: pl.DataFrame, to_write: pl.DataFrame) -> int:
    """Samples of ``todo`` that ``to_write`` has no row for."""
    return (
        todo.select(keys).join(to_write.select(keys).unique(), on=keys, how="anti", nulls_equal=True).height
    )


def _check_rows_frame(feature: type[BaseFeature], rows: Any, keys: tuple[str, ...]) -> pl.DataFrame:
    name = f"feature '{feature.spec.key}'"
    if rows is None:
        raise MetaxyOutputError(
            f"Asset for {name} returned None. Return the computed rows as a dataframe (polars, pandas or "
            "pyarrow); return an empty frame with the id columns to write nothing."
        )
    try:
        frame = _eager_polars(rows)
    except TypeError as exc:
        raise MetaxyOutputError(
            f"Asset for {name} returned a {type(rows).__name__}, which is not a dataframe. Return polars, pandas "
            "or pyarrow rows (or a narwhals frame)."
        ) from exc
    needed = list(dict.fromkeys([*feature.spec.id_columns, *keys]))
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        hint = ""
        if tuple(keys) != tuple(feature.spec.id_columns):
            hint = f" Expansion rows need the child ids {list(feature.spec.id_columns)} and the parent ids {list(keys)}."
        raise MetaxyOutputError(
            f"Asset for {name} returned rows without id column(s) {absent} (columns: {frame.columns}).{hint} "
            "Nothing was written."
        )
    return frame


def _align_key_types(
    feature: type[BaseFeature], frame: pl.DataFrame, key_frame: pl.DataFrame, keys: list[str]
) -> pl.DataFrame:
    casts = []
    for column in keys:
        want, have = key_frame.schema[column], frame.schema[column]
        if want != have and want != pl.Null:
            casts.append((column, want, have))
    if not casts:
        return frame
    for column, want, have in casts:
        # Only lossless conversions: a float 1.5 must not become id 1, nor the string '001' id 1, or
        # rows would be stored under another sample. A cast is lossless when it converts back unchanged.
        original = frame.get_column(column)
        try:
            converted = original.cast(want, strict=True)
            lossless = bool((converted.cast(have, strict=True) == original).all())
        except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError):
            lossless = False
        if not lossless:
            raise MetaxyOutputError(
                f"Asset for feature '{feature.spec.key}' returned key column '{column}' as {have}, but the "
                f"increment has {want}, and converting changes some values (e.g. 1.5 -> 1 or '001' -> 1). "
                f"Return '{column}' as {want}, the values the increment gave. Nothing was written."
            )
        frame = frame.with_columns(converted.alias(column))
    return frame
