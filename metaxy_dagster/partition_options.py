"""Partitions written in YAML: the ``partitions:`` and ``partition_by:`` options of ``MetaxyComponent``.

One key names the kind of partitions::

    partitions: {static: [train, test]}              # StaticPartitionsDefinition
    partitions: {dynamic: datasets}                  # DynamicPartitionsDefinition(name="datasets")
    partitions: {daily: {start_date: "2024-01-01"}}  # also hourly, weekly, monthly
    partitions: {multi: {split: {static: [train, test]}, dataset: {dynamic: datasets}}}

``partition_by`` then says which samples a partition holds: for static and dynamic partitions the
column whose value is the partition key, for multi-partitions ``{dimension: column}``, and for time
windows a timestamp column whose value falls in the window (naive timestamps in the partitions'
timezone, UTC by default). Without ``partition_by`` every partition run sees all samples.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
import narwhals as nw
from pydantic import ConfigDict, Field

from metaxy_core.feature import BaseFeature
from metaxy_dagster.errors import MetaxyDefinitionError
from metaxy_dagster.partitions import PartitionBy, check_partition_by


class TimeWindowOptions(dg.Model):
    """The window partitions of one period, from ``start_date`` on."""

    model_config = ConfigDict(extra="forbid")

    start_date: str = Field(description='The first partition\'s start, e.g. "2024-01-01".')
    end_date: str | None = Field(default=None, description="No partitions from this date on; default: open.")
    timezone: str | None = Field(default=None, description="The partitions' timezone; default: UTC.")
    fmt: str | None = Field(default=None, description="strftime format of the partition keys.")


_WINDOWS: dict[str, type[dg.TimeWindowPartitionsDefinition]] = {
    "hourly": dg.HourlyPartitionsDefinition,
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}


class DimensionOptions(dg.Model):
    """Exactly one of the keys: the kind of partitions and what defines them."""

    model_config = ConfigDict(extra="forbid")

    static: list[str] | None = Field(default=None, description="The partition keys.")
    dynamic: str | None = Field(
        default=None, description="Name of the dynamic partitions (added at run time)."
    )
    hourly: TimeWindowOptions | None = None
    daily: TimeWindowOptions | None = None
    weekly: TimeWindowOptions | None = None
    monthly: TimeWindowOptions | None = None

    def kind(self, where: str) -> str:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise MetaxyDefinitionError(
                f"{where}: give exactly one of {', '.join(type(self).model_fields)} (got {given or 'none'}), "
                "e.g. partitions: {static: [train, test]}."
            )
        return given[0]

    def build(self, where: str) -> dg.PartitionsDefinition:
        """The Dagster partitions definition; errors name ``where`` (the YAML attribute)."""
        kind = self.kind(where)
        try:
            if kind == "static":
                assert self.static is not None
                if not self.static or len(set(self.static)) != len(self.static):
                    raise MetaxyDefinitionError(
                        f"{where}.static: {self.static} must list distinct partition keys, at least one."
                    )
                return dg.StaticPartitionsDefinition(list(self.static))
            if kind == "dynamic":
                return dg.DynamicPartitionsDefinition(name=self.dynamic)
            window: TimeWindowOptions = getattr(self, kind)
            extra = {k: v for k, v in (("timezone", window.timezone), ("fmt", window.fmt)) if v}
            return _WINDOWS[kind](start_date=window.start_date, end_date=window.end_date, **extra)
        except MetaxyDefinitionError:
            raise
        except Exception as exc:  # Dagster's own check of dates, formats, timezones, key characters
            raise MetaxyDefinitionError(f"{where}: {exc}") from exc


class PartitionsOptions(DimensionOptions):
    """One kind of partitions, or ``multi``: two dimensions, each of one kind."""

    # Not recursive: Dagster's multi-partitions nest one level only (and its YAML schema cannot recurse).
    multi: dict[str, DimensionOptions] | None = Field(
        default=None, description="Dimension name -> its partitions (two dimensions)."
    )

    def build(self, where: str) -> dg.PartitionsDefinition:
        if self.kind(where) != "multi":
            return super().build(where)
        assert self.multi is not None
        if len(self.multi) != 2:
            raise MetaxyDefinitionError(
                f"{where}.multi: Dagster multi-partitions have exactly two dimensions, got {sorted(self.multi)}."
            )
        return dg.MultiPartitionsDefinition(
            {dim: sub.build(f"{where}.multi.{dim}") for dim, sub in self.multi.items()}
        )


def resolve_partition_by(
    feature: type[BaseFeature],
    partitions_def: dg.PartitionsDefinition,
    partition_by: str | Mapping[str, str] | None,
    where: str,
) -> PartitionBy | None:
    """What ``metaxy_asset(partition_by=...)`` takes for the YAML ``partition_by`` of ``partitions_def``.

    A time window becomes a filter on the timestamp column; multi-partitions with a time dimension
    are not expressible in YAML (use ``metaxy_asset`` with a callable).
    """
    if partition_by is not None and not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        try:  # the column and dimension checks of metaxy_asset, reported at the YAML attribute
            check_partition_by(feature, partitions_def, partition_by)
        except MetaxyDefinitionError as exc:
            raise MetaxyDefinitionError(f"{where}: {exc}") from exc
    if partition_by is None or not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        if isinstance(partitions_def, dg.MultiPartitionsDefinition) and partition_by is not None:
            timed = [
                d.name
                for d in partitions_def.partitions_defs
                if isinstance(d.partitions_def, dg.TimeWindowPartitionsDefinition)
            ]
            if timed:
                raise MetaxyDefinitionError(
                    f"{where}: partition_by for multi-partitions with a time dimension ({timed}) is not "
                    "supported in YAML; build that feature with metaxy_asset(partition_by=callable)."
                )
        return partition_by
    if not isinstance(partition_by, str):
        raise MetaxyDefinitionError(
            f"{where}: time-window partitions take one timestamp column, got {dict(partition_by)}."
        )
    declared = set(feature.model_fields)
    if declared and partition_by not in declared:
        raise MetaxyDefinitionError(
            f"{where}: '{partition_by}' is not a column of '{feature.spec.key}' (it declares "
            f"{sorted(declared)}); name the timestamp column whose value places a sample in a window."
        )
    column = partition_by

    def in_window(context: dg.AssetExecutionContext) -> list[Any]:
        window = context.partition_time_window  # a range of partitions: the whole span
        # Naive bounds in the partitions' timezone: one literal means the same on every engine.
        start, end = window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)
        return [nw.col(column) >= start, nw.col(column) < end]

    return in_window
