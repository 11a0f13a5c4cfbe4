"""An increment spooled to local Parquet files, so a step can work through it batch by batch.

A metaxy asset resolves its increment before the body runs and must not hold the store while the
body computes (a DuckDB file admits one process at a time, and a body may run for hours). Reading
the whole increment into memory instead would not fit a 10M-sample increment. So the resolve streams
the increment out of the store (:meth:`MetadataStore.iter_update`) into one Parquet file per part,
chunk by chunk, and closes the store; ``batches(n)`` then reads the files back ``n`` rows at a time.
The spool is also a fixed snapshot: rows the body commits while it iterates do not shift the batches.
"""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from metaxy_core import columns as C
from metaxy_core.feature import BaseFeature
from metaxy_core.stores.base import INCREMENT_PARTS, MetadataStore

SPOOL_CHUNK_ROWS = 20_000
"""Rows the store hands over at a time while spooling: one Parquet row group each, which is also
what reading a batch back holds in memory at most (a few MB for typical metadata rows)."""


class IncrementSpool:
    """The ``new``, ``stale`` and ``orphaned`` rows of one resolve, in a temporary directory.

    Row counts and per-field change counts are taken while spooling, so reporting them never reads
    the files. :meth:`cleanup` removes the directory (also done when the object is collected).
    """

    def __init__(self, directory: Path, counts: dict[str, int], changed_fields: dict[str, int]) -> None:
        self.directory = directory
        self.counts = counts
        self.changed_fields = changed_fields
        self._finalizer = _Cleanup(directory)

    def path(self, part: str) -> Path:
        return self.directory / f"{part}.parquet"

    def read(self, part: str) -> pl.DataFrame:
        """One part, whole (for the eager ``new`` / ``stale`` / ``orphaned`` attributes)."""
        return pl.read_parquet(self.path(part))

    def batches(self, size: int, parts: tuple[str, ...] = ("new", "stale")) -> Iterator[pl.DataFrame]:
        """The rows of ``parts``, at most ``size`` at a time (a batch never spans two parts)."""
        for part in parts:
            if not self.counts[part]:
                continue
            # Without pre-buffering the reader holds one row group at a time; with it (pyarrow's
            # default) it would read ahead over the whole file.
            reader = pq.ParquetFile(self.path(part), pre_buffer=False, buffer_size=1 << 20)
            try:
                for batch in reader.iter_batches(batch_size=size):
                    frame = pl.from_arrow(batch)
                    assert isinstance(frame, pl.DataFrame)
                    if frame.height:
                        yield frame
            finally:
                reader.close()

    def cleanup(self) -> None:
        self._finalizer()


class _Cleanup:
    """Removes the spool directory once, explicitly or when the spool is garbage-collected."""

    def __init__(self, directory: Path) -> None:
        self.directory: Path | None = directory

    def __call__(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __del__(self) -> None:
        # Plain try/except: at interpreter exit even contextlib may be gone.
        try:  # noqa: SIM105
            self()
        except Exception:
            pass


def spool_increment(
    store: MetadataStore,
    feature: type[BaseFeature],
    *,
    samples: Any = None,
    filters: Any = None,
    chunk_rows: int = SPOOL_CHUNK_ROWS,
) -> IncrementSpool:
    """Resolve ``feature`` and stream the increment into a new temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="metaxy-increment-"))
    counts = dict.fromkeys(INCREMENT_PARTS, 0)
    changed: dict[str, int] = {}
    writers: dict[str, pq.ParquetWriter] = {}
    schemas: dict[str, pa.Schema] = {}
    try:
        for part, chunk in store.iter_update(
            feature, batch_size=chunk_rows, samples=samples, filters=filters
        ):
            frame = chunk.to_polars()
            # The oldest Arrow layout (large strings, no views) reads back the same in every reader.
            table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
            writer = writers.get(part)
            if writer is None:
                writer = writers[part] = pq.ParquetWriter(directory / f"{part}.parquet", table.schema)
                schemas[part] = table.schema
            writer.write_table(_conform(table, schemas[part]))
            counts[part] += frame.height
            if part == "stale" and frame.height and C.CHANGED_FIELDS in frame.columns:
                for name, n in _changed_field_counts(frame).items():
                    changed[name] = changed.get(name, 0) + n
    except BaseException:
        for writer in writers.values():
            writer.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    for writer in writers.values():
        writer.close()
    return IncrementSpool(directory, counts, changed)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A later chunk in the first chunk's schema (e.g. a column that was all-null there)."""
    return table if table.schema == schema else table.cast(schema)


def _changed_field_counts(stale: pl.DataFrame) -> dict[str, int]:
    counts = stale.select(pl.col(C.CHANGED_FIELDS).explode().drop_nulls().value_counts()).unnest(
        C.CHANGED_FIELDS
    )
    return {str(r[C.CHANGED_FIELDS]): int(r["count"]) for r in counts.iter_rows(named=True)}
