"""The result of ``store.resolve_update``: which samples are new, stale or orphaned."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import narwhals as nw
import polars as pl


def _count(frame: Any) -> int:
    if isinstance(frame, nw.LazyFrame):
        return int(frame.select(nw.len()).collect().item())
    return len(frame)


@dataclass(frozen=True)
class Increment:
    """New, stale and orphaned samples of one feature.

    * ``new``: expected but not stored. Rows: key columns, carried upstream columns,
      ``metaxy_provenance_by_field`` and ``metaxy_provenance`` (the values to write).
    * ``stale``: stored with a different ``metaxy_provenance``; same columns plus
      ``metaxy_changed_fields`` (sorted field keys whose provenance differs).
    * ``orphaned``: stored but no longer expected; key columns and the *stored* provenance.

    Frames are narwhals ``DataFrame``s (``lazy=False``) or ``LazyFrame``s (``lazy=True``); use
    ``.to_polars()`` / ``.to_native()`` to leave narwhals.
    """

    new: Any
    stale: Any
    orphaned: Any
    counter: Callable[[], dict[str, int]] | None = field(default=None, repr=False, compare=False)
    """Set by stores that can count all three parts in one engine query (lazy increments)."""

    def counts(self) -> dict[str, int]:
        """``{"new": n, "stale": n, "orphaned": n}``, computed in the engine for lazy frames."""
        if self.counter is not None:
            return self.counter()
        return {"new": _count(self.new), "stale": _count(self.stale), "orphaned": _count(self.orphaned)}

    @property
    def is_empty(self) -> bool:
        return not any(self.counts().values())

    def to_process(self) -> pl.DataFrame:
        """``new`` and ``stale`` rows together (eager polars), the rows a pipeline step recomputes."""
        frames = [
            self._polars(self.new),
            self._polars(self.stale).drop("metaxy_changed_fields", strict=False),
        ]
        return pl.concat(frames, how="diagonal_relaxed")

    @staticmethod
    def _polars(frame: Any) -> pl.DataFrame:
        if isinstance(frame, nw.LazyFrame):
            frame = frame.collect()
        return frame.to_polars()

    def summary(self) -> str:
        c = self.counts()
        return f"new={c['new']} stale={c['stale']} orphaned={c['orphaned']}"
