"""Observations of metaxy feature assets: tell Dagster what the store holds, so both agree on staleness.

Dagster decides whether a materializable asset is "Unsynced" from its *latest materialization*: the
data version recorded there, and the upstream data versions and code version recorded with it. Two
things make that view drift from the store:

* the store changes outside Dagster (``store.delete(...)``, a backfill from a script, a copy from
  another store): the asset's stored samples have another data version than Dagster recorded, and
  its children stay "Fresh";
* an upstream asset gets a new data version that does not concern the asset (``video/chunk``'s audio
  changed, ``video/faces`` reads frames only): metaxy finds nothing new or stale, but Dagster keeps
  ``video/faces`` "Unsynced" until it is materialized again.

An observation pass (:func:`observe_metaxy_assets`, run by :func:`build_metaxy_observation_job`, its
schedule or :func:`build_metaxy_observation_sensor`) goes through the features in topological order
and, for each asset (each partition of a partitioned asset whose ``partition_by`` names columns):

1. computes the store's data version and counts new / stale / orphaned samples, inside the store;
2. records an ``AssetObservation`` carrying them (``dagster/data_version`` is the store's);
3. when Dagster's latest materialization has another data version than the store (or none while the
   store has samples), reports a materialization with the store's data version. Its provenance (code
   version, upstream data versions) is the current one when the feature is in sync with its upstream
   in the store (nothing new, stale or orphaned), and the one recorded before otherwise, so children
   of a changed asset turn "Unsynced" and a feature with work stays so;
4. when the data versions agree but Dagster calls the asset "Unsynced" while the store says it is in
   sync, reports a materialization with the same data version and the current provenance: Dagster's
   view catches up without a run, and the data version (hence downstream automation) does not move;
5. records the results of the asset's built-in checks (``metaxy_in_sync``, ``metaxy_no_orphans``)
   against its latest materialization (in the job; the sensor has no run to record them in).

Why materializations and not only observations: for a materializable asset Dagster's staleness reads
the latest *materialization* alone (observations count only for observable source assets), so an
observation cannot change what the UI shows. The reported materializations are marked with the tag
``metaxy/observed`` and say why in their description; nothing is written to the store.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    NULL_EVENT_POINTER,
    CachingStaleStatusResolver,
    StaleStatus,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._time import get_current_datetime

from metaxy_core.feature import BaseFeature
from metaxy_dagster.assets import DEFAULT_STORE_KEY, MetaxyAssetInfo, _call_samples
from metaxy_dagster.checks import BUILTIN_CHECKS, check_results
from metaxy_dagster.data_versions import EMPTY_DATA_VERSION, feature_data_version
from metaxy_dagster.errors import MetaxyDefinitionError
from metaxy_dagster.partitions import filters_for_keys
from metaxy_dagster.registry import infos_of_asset
from metaxy_dagster.resource import MetaxyStoreResource

OBSERVED_TAG = "metaxy/observed"
"""Tag of the materializations an observation reports (value: why it reported one)."""

NOTHING = "nothing"
DATA_VERSION_CHANGED = "data version changed in the store"
RESYNCED = "in sync in the store; upstream provenance updated"


@dataclass(frozen=True)
class FeatureObservation:
    """What one observation found for one asset (or one partition of it) and what it reported."""

    asset_key: dg.AssetKey
    partition: str | None
    data_version: str
    row_count: int
    counts: dict[str, int] | None
    """new / stale / orphaned; None for a root feature without a samples provider (nothing to compare)."""
    dagster_data_version: str | None
    """The data version of Dagster's latest materialization before this observation."""
    action: str = NOTHING
    changed_fields: dict[str, int] = field(default_factory=dict)

    @property
    def in_sync(self) -> bool:
        return self.counts is not None and not any(self.counts.values())

    def summary(self) -> str:
        where = self.asset_key.to_user_string() + (f"[{self.partition}]" if self.partition else "")
        counted = " ".join(f"{k}={v}" for k, v in (self.counts or {}).items()) or "not counted"
        return f"{where}: data_version={self.data_version} rows={self.row_count} {counted}; {self.action}"


@dataclass(frozen=True)
class _Target:
    asset: dg.AssetsDefinition
    info: MetaxyAssetInfo
    checks: tuple[str, ...]


def _targets(assets: Sequence[dg.AssetsDefinition | dg.SourceAsset]) -> list[_Target]:
    found: list[_Target] = []
    for asset in assets:
        if isinstance(asset, dg.SourceAsset):
            continue  # an observable source observes itself
        # one target per feature the asset computes (several for a metaxy_multi_asset); none for
        # assets metaxy did not build, such as the graph asset
        for info in infos_of_asset(asset).values():
            checks = tuple(c.name for c in asset.check_specs if c.key.asset_key == info.asset_key)
            found.append(_Target(asset, info, tuple(c for c in BUILTIN_CHECKS if c in checks)))
    if not found:
        raise MetaxyDefinitionError(
            "No metaxy feature assets to observe: pass the assets built by metaxy_asset / build_metaxy_assets."
        )
    order = {key: i for i, key in enumerate(found[0].info.feature.graph.topological_order())}
    return sorted(found, key=lambda t: order.get(t.info.feature.spec.key, len(order)))


class _DagsterView:
    """Dagster's recorded state, re-read after each reported materialization (it changes the answers)."""

    def __init__(self, instance: dg.DagsterInstance, graph: AssetGraph) -> None:
        self.instance, self.graph = instance, graph
        self.refresh()

    def refresh(self) -> None:
        view = AssetGraphView(
            temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
            instance=self.instance,
            asset_graph=self.graph,
        )
        self.resolver = CachingStaleStatusResolver(
            instance=self.instance, asset_graph=self.graph, loading_context=view
        )

    def latest(self, key: dg.AssetKey, partition: str | None) -> Any:
        return self.resolver.instance_queryer.get_latest_materialization_or_observation_record(
            AssetKeyPartitionKey(key, partition)
        )

    def stale(self, key: dg.AssetKey, partition: str | None) -> bool:
        return self.resolver.get_status(key, partition) == StaleStatus.STALE

    def current_provenance(self, key: dg.AssetKey, fallback_code_version: str | None) -> dict[str, str]:
        """Provenance tags as a materialization made now would record them."""
        node = self.graph.get(key)
        # metaxy data versions are given by the asset, not derived by Dagster from its inputs
        tags: dict[str, str] = {DATA_VERSION_IS_USER_PROVIDED_TAG: "true"}
        code_version = node.code_version or fallback_code_version
        if code_version is not None:
            tags[CODE_VERSION_TAG] = code_version
        for dep in sorted(node.parent_keys):
            dep_node = self.graph.get(dep)
            if dep_node.is_partitioned:
                # Dagster compares a partitioned input by event pointer: no record of it after the
                # pointer means unchanged, so point at its newest record over all partitions.
                records = self.instance.fetch_materializations(dep, limit=1).records
                record = records[0] if records else None
                version = (record.event_log_entry.tags or {}).get(DATA_VERSION_TAG) if record else None
            else:
                record = self.latest(dep, None)
                version = self.resolver.get_current_data_version(dep).value
            tags[get_input_data_version_tag(dep)] = version or DEFAULT_DATA_VERSION.value
            tags[get_input_event_pointer_tag(dep)] = str(record.storage_id) if record else NULL_EVENT_POINTER
        return tags


def _provenance_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k.startswith("dagster/") and k != DATA_VERSION_TAG}


def observe_metaxy_assets(
    instance: dg.DagsterInstance,
    store: MetaxyStoreResource,
    assets: Sequence[dg.AssetsDefinition | dg.SourceAsset],
    *,
    log: Callable[[str], None] | None = None,
    record: Callable[[dg.AssetObservation | dg.AssetCheckEvaluation], None] | None = None,
) -> list[FeatureObservation]:
    """One observation pass over ``assets`` (see the module docstring); returns what it found.

    Reported materializations are recorded on ``instance`` at once (runless events), in topological
    order, so a child's provenance points at what its parents' observations just recorded.
    ``record`` receives the observations and check results (in a job: ``context.log_event``, which
    ties them to the run). Without it, observations are recorded as runless events and check results
    are left out: Dagster keeps a single run-less result per check and partition.
    """
    targets = _targets(assets)
    view = _DagsterView(instance, AssetGraph.from_assets(list(assets)))
    out: list[FeatureObservation] = []
    for target in targets:
        for found in _observe_asset(instance, store, view, target, record):
            out.append(found)
            if log is not None:
                log(found.summary())
    return out


def _partition_keys(instance: dg.DagsterInstance, target: _Target) -> list[str | None] | None:
    """[None] for an unpartitioned asset, its partition keys, or None when it cannot be observed."""
    partitions_def = target.asset.partitions_def
    if partitions_def is None:
        return [None]
    if not isinstance(target.info.partition_by, str | Mapping):
        return None  # a callable partition_by needs a run's context: such assets are not observed
    return list(partitions_def.get_partition_keys(dynamic_partitions_store=instance))


def _observe_asset(
    instance: dg.DagsterInstance,
    resource: MetaxyStoreResource,
    view: _DagsterView,
    target: _Target,
    emit: Callable[[dg.AssetObservation | dg.AssetCheckEvaluation], None] | None,
) -> list[FeatureObservation]:
    info, key = target.info, target.info.asset_key
    feature: type[BaseFeature] = info.feature
    keys = _partition_keys(instance, target)
    if keys is None:
        return []
    listed = _call_samples(info.samples, feature) if info.samples is not None else None
    countable = bool(feature.spec.deps) or listed is not None
    measured = []
    with resource.open() as store:
        for partition in keys:
            filters = (
                filters_for_keys(target.asset.partitions_def, info.partition_by, [partition])
                if partition is not None
                else None
            )
            version = feature_data_version(store, feature, filters)
            increment = (
                store.resolve_update(feature, samples=listed, filters=filters, lazy=True)
                if countable
                else None
            )
            checks = (
                check_results(feature, key, increment, target.checks, info.check_severity)
                if increment is not None and target.checks
                else []
            )
            measured.append(
                (partition, version, increment.counts() if increment is not None else None, checks)
            )
    results = []
    for partition, version, counts, checks in measured:
        record = view.latest(key, partition)
        recorded_tags = dict(record.event_log_entry.tags or {}) if record is not None else {}
        recorded = recorded_tags.get(DATA_VERSION_TAG)
        found = FeatureObservation(key, partition, version.data_version, version.row_count, counts, recorded)
        action = NOTHING
        if record is None and version.data_version == EMPTY_DATA_VERSION:
            pass  # missing for Dagster and empty in the store: they agree
        elif recorded != version.data_version:
            action = DATA_VERSION_CHANGED
        elif found.in_sync and view.stale(key, partition):
            action = RESYNCED
        if action != NOTHING:
            if found.in_sync:
                tags = view.current_provenance(key, recorded_tags.get(CODE_VERSION_TAG))
            else:
                tags = _provenance_tags(recorded_tags)
            tags[DATA_VERSION_TAG] = version.data_version
            tags[OBSERVED_TAG] = "data_version" if action == DATA_VERSION_CHANGED else "provenance"
            description = (
                f"Reported by a metaxy observation: {action} "
                f"(Dagster had {recorded or 'none'}, the store has {version.data_version})."
            )
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=key,
                    partition=partition,
                    tags=tags,
                    description=description,
                    metadata=_metadata(found),
                )
            )
            view.refresh()
        observation = dg.AssetObservation(
            asset_key=key,
            partition=partition,
            tags={DATA_VERSION_TAG: version.data_version},
            metadata={**_metadata(found), "metaxy/reported": dg.MetadataValue.text(action)},
        )
        if emit is None:
            instance.report_runless_asset_event(observation)
        else:
            emit(observation)
            for evaluation in _check_evaluations(instance, key, partition, checks):
                emit(evaluation)
        results.append(replace(found, action=action))
    return results


def _metadata(found: FeatureObservation) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "metaxy/data_version": dg.MetadataValue.text(found.data_version),
        "metaxy/dagster_data_version": dg.MetadataValue.text(found.dagster_data_version or "none"),
        "dagster/row_count": dg.MetadataValue.int(found.row_count),
    }
    for name, value in (found.counts or {}).items():
        meta[f"metaxy/{name}"] = dg.MetadataValue.int(value)
    return meta


def _check_evaluations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None, checks: list[dg.AssetCheckResult]
) -> list[dg.AssetCheckEvaluation]:
    """The built-in checks' results, attached to the asset's latest materialization."""
    if not checks:
        return []
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    target = (
        AssetCheckEvaluationTargetMaterializationData(
            storage_id=record[0].storage_id, run_id=record[0].run_id, timestamp=record[0].timestamp
        )
        if record
        else None
    )
    return [
        dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=str(result.check_name),
            passed=bool(result.passed),
            metadata=dict(result.metadata or {}),
            target_materialization_data=target,
            severity=result.severity,
            description=result.description,
            partition=partition,
        )
        for result in checks
    ]


def build_metaxy_observation_job(
    assets: Sequence[dg.AssetsDefinition | dg.SourceAsset],
    *,
    name: str = "metaxy_observe",
    store_resource_key: str = DEFAULT_STORE_KEY,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> dg.JobDefinition:
    """A job whose one step observes every metaxy asset in ``assets`` (see :mod:`metaxy_dagster.observations`).

    Launch it from the UI's Jobs page, from a schedule (:func:`build_metaxy_observation_schedule`) or
    after a script changed the store. It needs the store resource (``metaxy_store`` by default).
    """
    chosen = list(assets)
    _targets(chosen)  # fail at definition time when nothing can be observed

    @dg.op(name=f"{name}_step", required_resource_keys={store_resource_key}, out=dg.Out(dg.Nothing))
    def observe(context: dg.OpExecutionContext) -> dg.Output[None]:
        resource: MetaxyStoreResource = getattr(context.resources, store_resource_key)
        found = observe_metaxy_assets(
            context.instance, resource, chosen, log=context.log.info, record=context.log_event
        )
        reported = [f.summary() for f in found if f.action != NOTHING]
        # The step's output carries the summary as metadata (shown on the run page); no value is stored.
        return dg.Output(
            None,
            metadata={
                "observed": len(found),
                "reported": dg.MetadataValue.md("\n".join(f"- {r}" for r in reported) or "nothing"),
            },
        )

    @dg.job(
        name=name,
        description=description
        or "Observe every metaxy feature asset: report the store's data versions so Dagster's staleness agrees.",
        tags=tags,
    )
    def observation_job() -> None:
        observe()

    return observation_job


def build_metaxy_observation_schedule(
    assets: Sequence[dg.AssetsDefinition | dg.SourceAsset],
    *,
    cron_schedule: str = "*/15 * * * *",
    name: str = "metaxy_observe_schedule",
    job_name: str = "metaxy_observe",
    store_resource_key: str = DEFAULT_STORE_KEY,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """A schedule running :func:`build_metaxy_observation_job` (every 15 minutes by default).

    Put the schedule in ``dg.Definitions(schedules=[...])``; its job comes with it.
    """
    job = build_metaxy_observation_job(assets, name=job_name, store_resource_key=store_resource_key)
    return dg.ScheduleDefinition(
        name=name, job=job, cron_schedule=cron_schedule, default_status=default_status
    )


def build_metaxy_observation_sensor(
    assets: Sequence[dg.AssetsDefinition | dg.SourceAsset],
    *,
    name: str = "metaxy_observation_sensor",
    store_resource_key: str = DEFAULT_STORE_KEY,
    minimum_interval_seconds: int = 300,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor that runs an observation pass on each tick, without launching runs.

    The events are recorded as the daemon evaluates the sensor; the tick says what was reported.
    Check results are recorded by the job only (:func:`build_metaxy_observation_job`): they need a run.
    """
    chosen = list(assets)
    _targets(chosen)

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        required_resource_keys={store_resource_key},
        description="Observe every metaxy feature asset: report the store's data versions so Dagster's "
        "staleness agrees.",
    )
    def observation_sensor(context: dg.SensorEvaluationContext, **_resources: Any) -> dg.SkipReason:
        # Direct invocation passes required resources as keywords; context.resources has them too.
        resource: MetaxyStoreResource = getattr(context.resources, store_resource_key)
        found = observe_metaxy_assets(context.instance, resource, chosen)
        reported = [f.summary() for f in found if f.action != NOTHING]
        return dg.SkipReason(
            f"observed {len(found)} asset(s)/partition(s); "
            + ("; ".join(reported) if reported else "Dagster already agrees with the store")
        )

    return observation_sensor
