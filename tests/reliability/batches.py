"""The feature and rows the fault scenarios write: numbered batches with a known, checkable content.

Batch ``b`` always holds the same ``rows`` samples (``row_id`` = ``"b<b>-<i>"``), so after any fault
the checker knows exactly what a complete batch looks like and can tell complete from partial.
"""

from collections.abc import Iterable

import polars as pl

import metaxy_core as mx
from metaxy_core import columns as C


def batch_feature(graph: mx.FeatureGraph) -> type[mx.BaseFeature]:
    """A root feature ``fault/batch`` defined in ``graph``."""
    with graph.use():

        class Batch(
            mx.BaseFeature,
            spec=mx.FeatureSpec(key="fault/batch", id_columns=["row_id"], fields=["value"]),
        ):
            row_id: str
            batch_id: int
            payload: str

    return Batch


def batch_rows(batch_id: int, rows: int) -> pl.DataFrame:
    """The samples of one batch (user values as provenance); the payload makes each write big enough to take a measurable time."""
    index = pl.int_range(0, rows).cast(pl.String)
    return pl.select(
        row_id=pl.lit(f"b{batch_id}-") + index,
        batch_id=pl.lit(batch_id, dtype=pl.Int64),
        payload=pl.lit("x" * 48 + f"{batch_id}-") + index,
        **{C.PROVENANCE_BY_FIELD: pl.struct(value=pl.lit(f"v{batch_id}-") + index)},
    )


def batch_to_write(feature: type[mx.BaseFeature], batch_id: int, rows: int) -> pl.DataFrame:
    """The rows a pipeline writes for batch ``batch_id``: its samples with their resolved provenance.

    A root feature's provenance does not depend on stored rows, so a throwaway in-memory store
    resolves it; the fault scenarios then time only the write into the store under test.
    """
    with mx.InMemoryMetadataStore() as scratch:
        return scratch.resolve_update(feature, samples=batch_rows(batch_id, rows)).new.to_polars()


def batch_counts(store: mx.MetadataStore, feature: type[mx.BaseFeature]) -> tuple[dict[int, int], int, int]:
    """(rows per batch id, total rows, distinct row ids) of the stored current rows."""
    if not store.has_feature(feature):
        return {}, 0, 0
    frame = store.read(feature, columns=["row_id", "batch_id"]).to_polars()
    per_batch = dict(frame.group_by("batch_id").len().iter_rows())
    return per_batch, frame.height, frame.get_column("row_id").n_unique()


def partial_batches(
    per_batch: dict[int, int], rows: int, batch_ids: Iterable[int] | None = None
) -> list[int]:
    """Batch ids stored with neither 0 nor ``rows`` rows (optionally only among ``batch_ids``)."""
    wanted = per_batch if batch_ids is None else {b: per_batch.get(b, 0) for b in batch_ids}
    return sorted(b for b, n in wanted.items() if n not in (0, rows))
