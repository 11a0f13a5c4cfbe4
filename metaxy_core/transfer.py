"""Copy metadata between two stores: how a project moves from one engine to another.

``copy_metadata(source, target)`` copies every stored feature's current rows (and, on request, the
superseded versions, and the graph snapshots, migration records and run times) with every system
column kept as stored, so provenance and data versions are byte-identical in the target and nothing
is recomputed.

* **Batches.** Current rows are read and written ``batch_size`` rows at a time; each batch is one
  atomic write in the target.
* **Resumable.** Rows the target already holds with the same provenance and update time are
  skipped, so running the same copy again after an interruption finishes the job and then does
  nothing. History copies (``history=True``) replay each sample's versions oldest first and resume
  per feature: a feature whose versions are all in the target is skipped.
* **Verified.** After each feature the target's counts must equal the source's, or
  :class:`~metaxy_core.errors.StoreError` is raised naming the feature and both counts.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import StoreError
from metaxy_core.feature import BaseFeature
from metaxy_core.graph import FeatureGraph
from metaxy_core.keys import FeatureKey
from metaxy_core.migrations import MIGRATIONS_TABLE
from metaxy_core.runs import RUNS_TABLE
from metaxy_core.snapshots import FEATURE_VERSIONS_TABLE, SNAPSHOTS_TABLE
from metaxy_core.stores.base import MetadataStore

SYSTEM_TABLES = (SNAPSHOTS_TABLE, FEATURE_VERSIONS_TABLE, MIGRATIONS_TABLE, RUNS_TABLE)
"""System tables copied with ``snapshots=True``: graph snapshots, migration records and run timings
(``metaxy plan`` estimates costs from the latter, so a moved project keeps its estimates)."""

_ROUND = "__metaxy_round"


@dataclass(frozen=True)
class FeatureCopy:
    """What ``copy_metadata`` did for one feature."""

    key: str
    rows: int
    """Current rows (soft-deleted ones included) in the source, and so in the target afterwards."""
    copied: int
    """Rows written by this run (0 when a resumed copy found everything in place)."""
    skipped: int
    """Rows the target already held unchanged."""
    history_rows: int | None = None
    """Superseded versions in the source (and target), when history was copied."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def copy_metadata(
    source: MetadataStore,
    target: MetadataStore,
    *,
    features: Sequence[str | FeatureKey | type[BaseFeature]] | None = None,
    history: bool = False,
    snapshots: bool = False,
    batch_size: int = 100_000,
    graph: FeatureGraph | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
) -> list[FeatureCopy]:
    """Copy stored metadata from ``source`` to ``target``; returns one :class:`FeatureCopy` per feature.

    ``features`` selects feature keys (default: every feature stored in the source that the active
    graph defines). ``on_batch(key, rows_done, rows_total)`` is called after each batch (progress).
    """
    if batch_size < 1:
        raise StoreError(f"copy_metadata: batch_size must be at least 1, got {batch_size}.")
    graph = graph or FeatureGraph.get_active()
    with source, target:
        stored = set(source.list_features())
        if features is None:
            keys = sorted(k for k in stored if k in graph)
        else:
            keys = [MetadataStore.feature_class(f, graph).spec.key for f in features]
            missing = [str(k) for k in keys if k not in stored]
            if missing:
                raise StoreError(
                    f"copy_metadata: the source store has no metadata for {missing}. Stored features: "
                    f"{', '.join(map(str, sorted(stored))) or 'none'}."
                )
        report = []
        for key in keys:
            cls = graph.get_feature(key)
            if history:
                report.append(_copy_with_history(source, target, cls, on_batch))
            else:
                report.append(_copy_current(source, target, cls, batch_size, on_batch))
        if snapshots:
            for name in SYSTEM_TABLES:
                _copy_system(source, target, name)
    return report


# -- current rows ---------------------------------------------------------------------------------
def _signature(cls: type[BaseFeature]) -> list[str]:
    """Columns that identify one stored row version: ids, provenance and when it was written."""
    return [*cls.spec.id_columns, C.PROVENANCE, C.UPDATED_AT]


def _count(store: MetadataStore, cls: type[BaseFeature], *, history: bool = False) -> int:
    if not store.has_feature(cls):
        return 0
    frame = store.read(cls, columns=[C.PROVENANCE], include_deleted=True, history=history)
    return len(frame)


def _copy_current(
    source: MetadataStore,
    target: MetadataStore,
    cls: type[BaseFeature],
    batch_size: int,
    on_batch: Callable[[str, int, int], None] | None,
) -> FeatureCopy:
    key = str(cls.spec.key)
    present = (
        target.read(cls, columns=_signature(cls), include_deleted=True).to_polars()
        if target.has_feature(cls)
        else None
    )
    total = _count(source, cls)
    copied = skipped = done = 0
    for batch in _batches(source, cls, batch_size):
        todo = batch
        if present is not None and present.height:
            todo = batch.join(present, on=_signature(cls), how="anti", nulls_equal=True)
        skipped += batch.height - todo.height
        if todo.height:
            target._import_rows(cls, _stored_layout(todo))
            copied += todo.height
        done += batch.height
        if on_batch is not None:
            on_batch(key, done, total)
    _verify(key, "current rows", total, _count(target, cls))
    return FeatureCopy(key=key, rows=total, copied=copied, skipped=skipped)


def _batches(store: MetadataStore, cls: type[BaseFeature], batch_size: int) -> Iterator[pl.DataFrame]:
    frame = store.read(cls, include_deleted=True).to_polars()
    yield from frame.iter_slices(batch_size)


def _stored_layout(frame: pl.DataFrame) -> pl.DataFrame:
    """User columns, then the system columns in the order every store creates them."""
    user = [c for c in frame.columns if not C.is_system(c)]
    system = [c for c in C.SYSTEM_COLUMNS if c in frame.columns]
    return frame.select(*user, *system)


# -- history --------------------------------------------------------------------------------------
def _copy_with_history(
    source: MetadataStore,
    target: MetadataStore,
    cls: type[BaseFeature],
    on_batch: Callable[[str, int, int], None] | None,
) -> FeatureCopy:
    """Replay every version oldest first, so each write moves the one before it into history."""
    key = str(cls.spec.key)
    total = _count(source, cls)
    versions = _count(source, cls, history=True)
    if target.has_feature(cls):
        have, have_versions = _count(target, cls), _count(target, cls, history=True)
        if (have, have_versions) == (total, versions):
            return FeatureCopy(key, total, 0, total, versions - total)
        raise StoreError(
            f"copy_metadata(history=True): the target already holds {have_versions} version(s) of '{key}' "
            f"(the source has {versions}), so versions cannot be replayed in order. Copy into a store without "
            f"'{key}', or delete it there first (metaxy metadata delete {key} --all --hard)."
        )
    current = source.read(cls, include_deleted=True).to_polars()
    every = source.read(cls, include_deleted=True, history=True).to_polars()
    superseded = every.join(current.select(_signature(cls)), on=_signature(cls), how="anti", nulls_equal=True)
    unit = list(MetadataStore._replace_key(cls))
    # One version of a unit (a sample, or an expansion parent with its children) is one write.
    version = [*unit, C.UPDATED_AT, C.MATERIALIZATION_ID]
    ordered = pl.concat(
        [superseded.with_columns(pl.lit(0).alias("__last")), current.with_columns(pl.lit(1).alias("__last"))],
        how="diagonal_relaxed",
    )
    ranks = (
        ordered.select(*version, "__last")
        .unique()
        .sort([*unit, "__last", C.UPDATED_AT], nulls_last=False)
        .with_columns(pl.int_range(pl.len()).over(unit).alias(_ROUND))
    )
    ordered = ordered.join(ranks, on=[*version, "__last"], how="left", nulls_equal=True).drop("__last")
    rounds = int(ordered.get_column(_ROUND).max() or 0) + 1
    done = 0
    for r in range(rounds):
        batch = ordered.filter(pl.col(_ROUND) == r).drop(_ROUND)
        if batch.height:
            target._import_rows(cls, _stored_layout(batch))
        done += batch.height
        if on_batch is not None:
            on_batch(key, done, versions)
    _verify(key, "current rows", total, _count(target, cls))
    _verify(key, "stored versions", versions, _count(target, cls, history=True))
    return FeatureCopy(key, total, total, 0, versions - total)


# -- system tables --------------------------------------------------------------------------------
def _copy_system(source: MetadataStore, target: MetadataStore, name: str) -> None:
    rows = source.read_system(name)
    if rows is None or rows.height == 0:
        return
    have = target.read_system(name)
    if have is not None and have.height:
        shared = [c for c in rows.columns if c in have.columns]
        rows = rows.join(have.select(shared), on=shared, how="anti", nulls_equal=True)
    if rows.height:
        target.append_system(name, rows)


def _verify(key: str, what: str, expected: int, got: int) -> None:
    if expected != got:
        raise StoreError(
            f"copy_metadata: '{key}' has {expected} {what} in the source but {got} in the target after the "
            "copy. Run the copy again (it resumes); if the counts still differ, the target was written to "
            "during the copy."
        )
