"""Partitioned metaxy assets: which samples a partition run resolves, writes, counts and versions.

``metaxy_asset(Feature, partitions_def=..., partition_by=...)`` maps Dagster partitions to samples:

* ``partition_by="split"``: the partition key equals the value of column ``split`` (static or
  dynamic partitions);
* ``partition_by={"split": "split", "lang": "language"}``: for a ``MultiPartitionsDefinition``, one
  column per dimension;
* ``partition_by=callable``: ``(context) -> filter`` (a narwhals expression or SQL expression
  string), e.g. a time window over a timestamp column.

The filter scopes the whole step: the increment (new, stale and orphaned samples), the rows the
body may return, the built-in checks and the data version. A run over several partitions in one
step (a backfill with ``BackfillPolicy.single_run()``) resolves them all at once.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import dagster as dg
import narwhals as nw

from metaxy_core.feature import BaseFeature
from metaxy_dagster.errors import MetaxyDefinitionError

PartitionBy = str | Mapping[str, str] | Callable[[dg.AssetExecutionContext], Any]


def check_partition_by(
    feature: type[BaseFeature],
    partitions_def: dg.PartitionsDefinition | None,
    partition_by: PartitionBy | None,
) -> None:
    """Definition-time errors: a column the feature lacks, dimensions that do not match, a missing def."""
    key = feature.spec.key
    if partition_by is None:
        return
    if partitions_def is None:
        raise MetaxyDefinitionError(
            f"metaxy asset for '{key}': partition_by= needs partitions_def= (e.g. "
            "dg.StaticPartitionsDefinition(['train', 'test']))."
        )
    declared = set(feature.model_fields)
    columns: Iterable[str] = ()
    if isinstance(partition_by, str):
        columns = [partition_by]
        if isinstance(partitions_def, dg.MultiPartitionsDefinition):
            raise MetaxyDefinitionError(
                f"metaxy asset for '{key}': a MultiPartitionsDefinition needs partition_by={{dimension: column}} "
                f"for its dimensions {[d.name for d in partitions_def.partitions_defs]}."
            )
    elif isinstance(partition_by, Mapping):
        if not isinstance(partitions_def, dg.MultiPartitionsDefinition):
            raise MetaxyDefinitionError(
                f"metaxy asset for '{key}': partition_by as a dict is for a MultiPartitionsDefinition; for "
                f"{type(partitions_def).__name__} give one column name."
            )
        dims = {d.name for d in partitions_def.partitions_defs}
        if set(partition_by) != dims:
            raise MetaxyDefinitionError(
                f"metaxy asset for '{key}': partition_by names dimensions {sorted(partition_by)}, the partitions "
                f"definition has {sorted(dims)}; map each dimension to a column."
            )
        columns = partition_by.values()
    elif not callable(partition_by):
        raise MetaxyDefinitionError(
            f"metaxy asset for '{key}': partition_by must be a column name, a {{dimension: column}} dict or a "
            f"callable (context) -> filter, got {type(partition_by).__name__}."
        )
    missing = [c for c in columns if declared and c not in declared]
    if missing:
        raise MetaxyDefinitionError(
            f"metaxy asset for '{key}': partition column(s) {missing} are not columns of the feature "
            f"(it declares {sorted(declared)}). Declare the column on the feature so each stored sample "
            "records its partition."
        )


def partition_filters(context: dg.AssetExecutionContext, partition_by: PartitionBy | None) -> list[Any]:
    """The filters selecting the samples of this run's partition(s); [] for an unpartitioned run."""
    if partition_by is None or (not context.has_partition_key_range and not context.has_partition_key):
        return []
    if callable(partition_by) and not isinstance(partition_by, str | Mapping):
        result = partition_by(context)
        if result is None:
            return []
        return list(result) if isinstance(result, list | tuple) else [result]
    return filters_for_keys(context.assets_def.partitions_def, partition_by, context.partition_keys) or []


def filters_for_keys(
    partitions_def: dg.PartitionsDefinition | None, partition_by: PartitionBy | None, keys: Sequence[str]
) -> list[Any] | None:
    """The filters selecting the samples of partitions ``keys``, without a run context.

    None when ``partition_by`` is a callable (it needs the run's context) or there is no partitioning.
    """
    if partition_by is None or partitions_def is None or not keys:
        return None
    if isinstance(partition_by, str):
        column = nw.col(partition_by)
        return [column == keys[0] if len(keys) == 1 else column.is_in(list(keys))]
    if not isinstance(partition_by, Mapping):
        return None
    assert isinstance(partitions_def, dg.MultiPartitionsDefinition)
    by_dimension = [partitions_def.get_partition_key_from_str(k) for k in keys]
    if len(by_dimension) == 1:
        dims = by_dimension[0].keys_by_dimension
        return [nw.col(partition_by[d]) == value for d, value in dims.items()]
    # several multi-partition keys in one step: any of the dimension-value combinations
    options = [
        nw.all_horizontal(
            *(nw.col(partition_by[d]) == v for d, v in k.keys_by_dimension.items()), ignore_nulls=False
        )
        for k in by_dimension
    ]
    return [nw.any_horizontal(*options, ignore_nulls=False)]


def describe(filters: list[Any]) -> str:
    """A short text of the partition filters for logs and metadata."""
    return " AND ".join(str(f) for f in filters) or "all samples"


def add_dynamic_partitions(
    partitions_def: dg.DynamicPartitionsDefinition,
    instance: dg.DagsterInstance,
    samples: Any,
    column: str,
) -> list[str]:
    """Register every value of ``column`` in ``samples`` not yet a partition; returns the new keys.

    For a root feature whose samples provider lists e.g. a ``dataset`` column: call it from a sensor
    or schedule (or use :func:`dynamic_partitions_request` inside a sensor's ``SensorResult``).
    """
    request = dynamic_partitions_request(partitions_def, instance, samples, column)
    if request is None:
        return []
    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return list(request.partition_keys)


def dynamic_partitions_request(
    partitions_def: dg.DynamicPartitionsDefinition,
    instance: dg.DagsterInstance,
    samples: Any,
    column: str,
) -> dg.AddDynamicPartitionsRequest | None:
    """An ``AddDynamicPartitionsRequest`` for the values of ``column`` not yet registered, or None."""
    if partitions_def.name is None:
        raise MetaxyDefinitionError("dynamic partitions need a named DynamicPartitionsDefinition(name=...).")
    frame = nw.from_native(samples)
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    if column not in frame.columns:
        raise MetaxyDefinitionError(
            f"The samples have no column '{column}' to take partition keys from (columns: {frame.columns})."
        )
    values = {str(v) for v in frame.get_column(column).unique().to_list() if v is not None}
    known = set(instance.get_dynamic_partitions(partitions_def.name))
    new = sorted(values - known)
    return partitions_def.build_add_request(new) if new else None
