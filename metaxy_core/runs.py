"""Recorded materializations: how long a feature took for how many samples.

Each record is one row of the system table ``runs``: the feature key, the samples recomputed (in
the units of its increment: parents for an expansion feature), the seconds it took and when. The
Dagster integration records every materialization; plain ``write`` users call
:meth:`MetadataStore.record_run <metaxy_core.stores.base.MetadataStore.record_run>`. ``metaxy plan``
turns the recent records into seconds per sample to estimate what a rerun will cost.

>>> import metaxy_core as mx
>>> from metaxy_core.runs import seconds_per_sample
>>> store = mx.InMemoryMetadataStore()
>>> store.record_run("video/raw", seconds=3.0, samples=10)
>>> store.record_run("video/raw", seconds=1.0, samples=10)
>>> seconds_per_sample(store)["video/raw"]
0.2
"""

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import polars as pl

from metaxy_core.errors import MetadataValidationError
from metaxy_core.keys import FeatureKey

if TYPE_CHECKING:
    from metaxy_core.stores.base import MetadataStore

RUNS_TABLE = "runs"
RECENT_RUNS = 20
"""Seconds per sample come from this many most recent records of a feature (older ones age out)."""


def run_record(
    key: FeatureKey, *, seconds: float, samples: int, materialization_id: str | None = None
) -> pl.DataFrame:
    """One validated row of the ``runs`` table."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not math.isfinite(seconds):
        raise MetadataValidationError(f"record_run({key}): seconds must be a finite number, got {seconds!r}.")
    if seconds < 0:
        raise MetadataValidationError(f"record_run({key}): seconds must be >= 0, got {seconds}.")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise MetadataValidationError(
            f"record_run({key}): samples must be a non-negative integer (the samples recomputed), got {samples!r}."
        )
    return pl.DataFrame(
        {
            "feature": [str(key)],
            "samples": [samples],
            "seconds": [float(seconds)],
            "materialization_id": [materialization_id],
            "recorded_at": [datetime.now(UTC)],
        },
        schema={
            "feature": pl.String,
            "samples": pl.Int64,
            "seconds": pl.Float64,
            "materialization_id": pl.String,
            "recorded_at": pl.Datetime("us", "UTC"),
        },
    )


def seconds_per_sample(store: "MetadataStore", recent: int = RECENT_RUNS) -> dict[str, float]:
    """Feature key -> measured seconds per sample over its ``recent`` latest records with samples.

    A ratio of sums, not a mean of ratios: a run of 1 sample that took 2 s of start-up does not
    outweigh a run of 1,000 samples. Features without records are absent.
    """
    records = store.read_system(RUNS_TABLE)
    if records is None or records.height == 0:
        return {}
    rates = (
        records.filter(pl.col("samples") > 0)
        .sort("recorded_at", descending=True)
        .group_by("feature")
        .head(recent)
        .group_by("feature")
        .agg(pl.col("seconds").sum(), pl.col("samples").sum())
    )
    return {row["feature"]: row["seconds"] / row["samples"] for row in rates.iter_rows(named=True)}
