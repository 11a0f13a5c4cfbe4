"""``build_metaxy_sensor``: launch runs for the features whose samples are new or stale.

On each tick the sensor

1. skips while a run it launched is still queued or running (its steps will change the counts);
2. calls the samples provider of every root feature (outside the store, so the DuckDB file is held
   only for the counting);
3. opens the store once and, per feature, counts new / stale / orphaned samples with
   ``resolve_update(lazy=True).counts()`` (the counting runs in the store's engine; nothing is
   materialised in Python) and computes the feature's aggregate data version;
4. requests one run for exactly the assets with new or stale samples (``include_downstream=True``
   adds everything downstream of them; ``include_downstream="predicted"`` adds only the features
   :func:`metaxy_core.plan` predicts will recompute samples once their upstreams have run, and logs
   that plan as a markdown table), tagged with the counts, or returns a ``SkipReason``.

Run keys hash the stored state (each feature's aggregate data version, its counts, and the time of
its latest materialization), so a state that comes back (samples A → B → A) gets a new key, while
ticks that see the same state do not launch the same run twice. The cursor remembers the state the
last request was made for: when a finished run leaves exactly that state (e.g. the definitions were
edited and the runs load newer code than the sensor), the sensor skips and says why instead of
launching the same no-op run on every tick.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dagster as dg

from metaxy_core.feature import BaseFeature
from metaxy_core.keys import FeatureKey
from metaxy_dagster.assets import DEFAULT_STORE_KEY
from metaxy_dagster.data_versions import feature_data_version
from metaxy_dagster.errors import MetaxyDefinitionError
from metaxy_dagster.io_manager import SamplesProvider, lookup_feature
from metaxy_dagster.registry import check_code_location, check_one_asset_per_feature, infos_of_asset
from metaxy_dagster.resource import MetaxyStoreResource
from metaxy_dagster.translator import MetaxyTranslator, feature_key_of

SENSOR_NAME_TAG = "dagster/sensor_name"
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _managed(
    assets: Sequence[dg.AssetsDefinition | dg.SourceAsset] | None,
    features: Sequence[type[BaseFeature]] | None,
    translator: MetaxyTranslator,
) -> list[tuple[type[BaseFeature], dg.AssetKey]]:
    pairs: list[tuple[type[BaseFeature], dg.AssetKey]] = []
    for feature in features or ():
        pairs.append((feature, translator.get_asset_key(feature)))
    for asset in assets or ():
        if isinstance(asset, dg.SourceAsset):
            continue  # observable roots are written outside Dagster; there is nothing to launch
        infos = infos_of_asset(asset)
        for spec in asset.specs:
            key = feature_key_of(dict(spec.metadata))
            if key is not None:
                info = infos.get(spec.key)
                feature = info.feature if info is not None else lookup_feature(key)
                pairs.append((feature, spec.key))
    if not pairs:
        raise MetaxyDefinitionError(
            "build_metaxy_sensor: no metaxy feature assets given. Pass assets=<metaxy assets> or features=[...]."
        )
    graph = pairs[0][0].graph
    order = {key: i for i, key in enumerate(graph.topological_order())}
    unique: dict[Any, tuple[type[BaseFeature], dg.AssetKey]] = {}
    for feature, asset_key in pairs:
        seen = unique.get(feature.spec.key)
        if seen is not None and seen[1] != asset_key:
            raise MetaxyDefinitionError(
                f"build_metaxy_sensor: feature '{feature.spec.key}' has two assets, {seen[1].to_user_string()} and "
                f"{asset_key.to_user_string()}. One feature is one table: give each feature one asset per code "
                "location."
            )
        unique[feature.spec.key] = (feature, asset_key)
    return sorted(unique.values(), key=lambda p: order.get(p[0].spec.key, len(order)))


def _digest(state: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _read_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {}  # a cursor from an older version of this sensor
    return value if isinstance(value, dict) else {}


def _latest_materialization(instance: dg.DagsterInstance, key: dg.AssetKey) -> float | None:
    event = instance.get_latest_materialization_event(key)
    return event.timestamp if event is not None else None


def build_metaxy_sensor(
    assets: Sequence[dg.AssetsDefinition | dg.SourceAsset] | None = None,
    *,
    features: Sequence[type[BaseFeature]] | None = None,
    samples: Mapping[type[BaseFeature], SamplesProvider] | None = None,
    translator: MetaxyTranslator | None = None,
    name: str = "metaxy_sensor",
    store_resource_key: str = DEFAULT_STORE_KEY,
    include_downstream: bool | Literal["predicted"] = False,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    description: str | None = None,
) -> dg.SensorDefinition:
    """A sensor that materializes the metaxy assets whose samples are new or stale.

    Args:
        assets: assets built by the metaxy factories (their samples providers are reused).
        features: alternatively (or in addition), feature classes; keys come from ``translator``.
        samples: root feature -> samples provider; overrides the providers given to the factories.
            Root features without a provider are not counted.
        include_downstream: also select every managed asset downstream of one that needs work, so one
            run propagates a change through the graph (otherwise each tick requests the next hop).
            ``"predicted"``: instead, only the downstream assets predicted to recompute samples (a
            feature reading only unaffected fields stays out); the plan is logged as a markdown table
            and its total estimate is a run tag.
    """
    tr = translator or MetaxyTranslator()
    managed = _managed(assets, features, tr)
    check_one_asset_per_feature(assets or (), f"build_metaxy_sensor '{name}'")
    # Samples providers come from the assets given (each bound to its own asset) or from samples=;
    # a feature given only as a class has none unless samples= names one.
    providers: dict[str, SamplesProvider] = {}
    for asset in assets or ():
        for info in infos_of_asset(asset).values():
            if info.samples is not None:
                providers[str(info.feature.spec.key)] = info.samples
    for feature, provider in (samples or {}).items():
        providers[str(feature.spec.key)] = provider
    keys = [k for _, k in managed]
    if include_downstream not in (True, False, "predicted"):
        raise MetaxyDefinitionError(
            f"build_metaxy_sensor: include_downstream={include_downstream!r}; use False (only features with new or "
            "stale samples now), True (and everything downstream) or 'predicted' (and what is predicted to rerun)."
        )

    @dg.sensor(
        name=name,
        asset_selection=keys,
        required_resource_keys={store_resource_key},
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=description
        or "Counts new, stale and orphaned samples per metaxy feature and materializes the features that need work.",
    )
    def _sensor(context: dg.SensorEvaluationContext, **_resources: Any) -> dg.SensorResult | dg.SkipReason:
        # Direct invocation (`sensor(context)`) passes required resources as keywords; they are read
        # from context.resources below either way.
        check_code_location(context, f"sensor '{name}'")
        in_flight = context.instance.get_run_records(
            filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: name}, statuses=_IN_FLIGHT), limit=1
        )
        if in_flight:
            return dg.SkipReason(
                f"Run {in_flight[0].dagster_run.run_id} launched by {name} is still in progress."
            )

        given: dict[str, Any] = {}
        for feature, _ in managed:
            provider = providers.get(str(feature.spec.key))
            if not feature.spec.deps and provider is not None:
                given[str(feature.spec.key)] = provider()
        resource: MetaxyStoreResource = getattr(context.resources, store_resource_key)
        state: dict[str, Any] = {}
        counts: dict[str, dict[str, int]] = {}
        uncounted: list[str] = []
        with resource.open() as store:
            for feature, _ in managed:
                fkey = str(feature.spec.key)
                if not feature.spec.deps and fkey not in given:
                    uncounted.append(fkey)
                    continue
                increment = store.resolve_update(feature, samples=given.get(fkey), lazy=True)
                counts[fkey] = increment.counts()
                state[fkey] = {
                    "data_version": feature_data_version(store, feature).data_version,
                    **counts[fkey],
                }
            predicted = None
            if include_downstream == "predicted":
                from metaxy_core.planning import plan as make_plan

                predicted = make_plan(store, graph=managed[0][0].graph, samples=given)

        needs_work = {
            f.spec.key
            for f, _ in managed
            if sum(counts.get(str(f.spec.key), {}).get(k, 0) for k in ("new", "stale"))
        }
        if predicted is not None:
            # features below new expansion parents may have work the plan cannot count yet: include them
            needs_work.update(FeatureKey(k) for k in predicted.may_run)
        elif include_downstream and needs_work:
            graph = managed[0][0].graph
            for key in list(needs_work):
                needs_work.update(graph.downstream_of(key))
        selected = [(f, k) for f, k in managed if f.spec.key in needs_work]
        summary = ", ".join(
            f"{fkey}: new={c['new']} stale={c['stale']} orphaned={c['orphaned']}"
            for fkey, c in counts.items()
        )
        if not selected:
            extra = (
                f" Not counted (root without samples provider): {', '.join(uncounted)}." if uncounted else ""
            )
            return dg.SkipReason(f"All {len(counts)} counted features are in sync ({summary}).{extra}")

        state_key = _digest(state)
        previous = _read_cursor(context.cursor)
        if previous.get("state") == state_key:
            # The run launched for this very state changed nothing. Typically the definitions were
            # edited: runs load the new code while this sensor still evaluates the old one, so it keeps
            # seeing work that the runs do not. Requesting again would repeat the same no-op run.
            return dg.SkipReason(
                f"Same store state as when run {previous.get('run_key')} was requested, which changed nothing "
                f"({summary}). If feature definitions were edited, reload the code location so this sensor "
                "evaluates the same code as the runs; the sensor requests again when the state changes."
            )
        for feature, key in managed:
            state.setdefault(str(feature.spec.key), {})["last_materialization"] = _latest_materialization(
                context.instance, key
            )
        run_key = _digest(state)
        tags = {"metaxy/features": str(len(selected))}
        for feature, _ in selected:
            c = counts.get(str(feature.spec.key), {"new": 0, "stale": 0, "orphaned": 0})
            tags[f"metaxy/{feature.spec.key.table_name}"] = (
                f"new={c['new']} stale={c['stale']} orphaned={c['orphaned']}"
            )
        for kind in ("new", "stale", "orphaned"):
            tags[f"metaxy/{kind}"] = str(sum(c[kind] for c in counts.values()))
        if predicted is not None:
            total = predicted.total_estimated_seconds
            tags["metaxy/plan_estimated_seconds"] = "unknown" if total is None else f"{total:.1f}"
            context.log.info(f"{name}: predicted work\n{predicted.to_markdown()}")
        context.log.info(f"{name}: requesting {[str(k) for _, k in selected]} ({summary})")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=run_key, asset_selection=[k for _, k in selected], tags=tags)
            ],
            cursor=json.dumps({"state": state_key, "run_key": run_key}),
        )

    return _sensor
