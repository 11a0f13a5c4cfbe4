"""The processing-cost plan in Dagster: run records after each materialization, the plan as metadata.

* Every metaxy asset materialization records how many samples it recomputed and how long that
  took (:meth:`MetadataStore.record_run`), so ``metaxy plan`` can estimate the cost of a rerun.
* The graph asset shows the plan as a markdown table (``metaxy/plan``), and the sensor can request
  exactly the features predicted to recompute samples (``include_downstream="predicted"``).
"""

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg

from metaxy_core.feature import BaseFeature
from metaxy_core.graph import FeatureGraph
from metaxy_core.planning import Plan

if TYPE_CHECKING:
    from metaxy_dagster.io_manager import MetaxyIOManager, MetaxyWriteReport, SamplesProvider


def record_materialization(
    context: dg.AssetExecutionContext,
    io: "MetaxyIOManager",
    feature: type[BaseFeature],
    report: "MetaxyWriteReport",
    seconds: float,
) -> None:
    """Record the samples a materialization recomputed and its duration; a failure only warns.

    The rows are already written: losing one timing must not fail the asset.
    """
    samples = report.counts["new"] + report.counts["stale"]
    if samples == 0:
        return  # nothing recomputed: the duration says nothing about the cost per sample
    try:
        with io.store.open() as store:
            store.record_run(feature, seconds=seconds, samples=samples, materialization_id=context.run_id)
    except Exception as exc:
        context.log.warning(
            f"{feature.spec.key}: could not record the run's duration for `metaxy plan`: {exc}"
        )


def root_samples(
    graph: FeatureGraph,
    providers: Mapping[str, "SamplesProvider"],
    features: list[type[BaseFeature]] | None = None,
) -> dict[str, Any]:
    """Call the samples provider of every root feature that has one; feature key -> samples."""
    given: dict[str, Any] = {}
    for feature in features or list(graph.features_by_key.values()):
        provider = providers.get(str(feature.spec.key))
        if not feature.spec.deps and provider is not None:
            given[str(feature.spec.key)] = provider()
    return given


def registered_providers(assets: Iterable[Any]) -> dict[str, "SamplesProvider"]:
    """The samples providers given to the metaxy asset factories that built ``assets``."""
    from metaxy_dagster.registry import infos_of_asset

    found: dict[str, SamplesProvider] = {}
    for asset in assets:
        for info in infos_of_asset(asset).values():
            if info.samples is not None:
                found[str(info.feature.spec.key)] = info.samples
    return found


def plan_metadata(plan: Plan) -> dict[str, Any]:
    """Materialization metadata: the plan as a markdown table, its total and the features to rerun."""
    total = plan.total_estimated_seconds
    meta: dict[str, Any] = {
        "metaxy/plan": dg.MetadataValue.md(plan.to_markdown()),
        "metaxy/plan_features_to_run": dg.MetadataValue.int(len(plan.to_run)),
        "metaxy/plan_samples_to_process": dg.MetadataValue.int(
            sum(f.predicted.to_process for f in plan.features)
        ),
    }
    if total is not None:
        meta["metaxy/plan_estimated_seconds"] = dg.MetadataValue.float(float(total))
    return meta
