"""What the metaxy factories know about the assets they built, bound to those assets.

Nothing here is looked up by feature key alone: information is attached to the op of the asset
that carries it (Dagster keeps the op when an asset is re-specced with ``with_attributes`` or
``map_asset_specs``), keyed by the op's output name, so a sensor or IO manager working for an asset
uses that asset's feature class and samples provider, whatever else the process built.

A code location with two assets for one feature would leave "which one writes the table" to chance,
so :func:`check_one_asset_per_feature` refuses it; metaxy assets and sensors run it against their
code location's definitions.
"""

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import dagster as dg

from metaxy_core.feature import BaseFeature
from metaxy_dagster.errors import MetaxyDefinitionError
from metaxy_dagster.translator import feature_key_of

SamplesProvider = Callable[[], Any]
"""A zero-argument callable returning a root feature's samples (see ``metaxy_asset(samples=...)``)."""


@dataclass(frozen=True)
class MetaxyAssetInfo:
    """What the factories know about a metaxy asset (the sensor and the IO manager read it)."""

    feature: type[BaseFeature]
    asset_key: dg.AssetKey
    samples: SamplesProvider | None
    observable: bool
    # how partition keys map to samples (see metaxy_dagster.partitions); observations read it
    partition_by: Any = None
    check_severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN


# op -> output name -> info. Weak: an asset that is no longer referenced takes its entry along.
_BY_OP: "weakref.WeakKeyDictionary[Any, dict[str, MetaxyAssetInfo]]" = weakref.WeakKeyDictionary()


def bind(asset: dg.AssetsDefinition, infos: Iterable[MetaxyAssetInfo]) -> None:
    """Attach ``infos`` (one per feature the asset computes) to ``asset``'s op."""
    outputs: dict[str, MetaxyAssetInfo] = {}
    for info in infos:
        outputs[asset.get_output_name_for_asset_key(info.asset_key)] = info
    _BY_OP[asset.node_def] = outputs


def infos_of_asset(asset: dg.AssetsDefinition | dg.SourceAsset) -> dict[dg.AssetKey, MetaxyAssetInfo]:
    """Asset key -> info for every feature ``asset`` computes (empty for assets metaxy did not build)."""
    if not isinstance(asset, dg.AssetsDefinition):
        return {}
    outputs = _BY_OP.get(asset.node_def)
    if not outputs:
        return {}
    found = {}
    for key in asset.keys:
        info = outputs.get(asset.get_output_name_for_asset_key(key))
        if info is not None:
            found[key] = replace(info, asset_key=key) if info.asset_key != key else info
    return found


def info_of_output(op: Any, output_name: str) -> MetaxyAssetInfo | None:
    """The info bound to one output of an op (an IO manager's view of an asset)."""
    outputs = _BY_OP.get(op)
    return outputs.get(output_name) if outputs else None


# repository -> True once checked: a check per step would repeat the same walk over every asset.
_CHECKED: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def feature_assets(assets: Iterable[Any]) -> dict[str, list[dg.AssetKey]]:
    """Feature key -> keys of the materializable assets that write it (by ``metaxy/feature`` metadata)."""
    found: dict[str, list[dg.AssetKey]] = {}
    for asset in assets:
        if not isinstance(asset, dg.AssetsDefinition) or not asset.is_materializable:
            continue
        for spec in asset.specs:
            key = feature_key_of(dict(spec.metadata))
            if key is not None:
                found.setdefault(str(key), []).append(spec.key)
    return found


def check_one_asset_per_feature(assets: Iterable[Any], where: str) -> None:
    """Raise :class:`MetaxyDefinitionError` if two materializable assets write the same feature."""
    twice = {k: keys for k, keys in feature_assets(assets).items() if len(set(keys)) > 1}
    if twice:
        listed = "; ".join(
            f"'{k}' by {', '.join(sorted(a.to_user_string() for a in set(keys)))}"
            for k, keys in sorted(twice.items())
        )
        raise MetaxyDefinitionError(
            f"{where}: features with more than one asset: {listed}. A feature is one table with one writer: keep "
            "one asset per feature in a code location (build the others for their own Definitions, or compute "
            "several features in one step with metaxy_multi_asset)."
        )


def _code_location(context: Any) -> tuple[Any, Iterable[Any]]:
    """The scope (repository or job) a run or sensor tick sees, and its assets.

    That is the whole code location when Dagster provides it (``dagster dev``, the daemon), else the
    assets of the run's job (``dg.materialize``); no scope for a bare context.
    """
    try:
        scope = context.repository_def
    except Exception:  # no repository behind an in-process materialize or a bare sensor context
        scope = None
    if scope is not None:
        return scope, scope.assets_defs_by_key.values()
    scope = getattr(context, "job_def", None)
    if scope is None:
        return None, ()
    graph = scope.asset_layer.asset_graph
    # A job run for a selection sees only the selected assets; the graph it was cut from has all
    # of the definitions (private in Dagster, hence the fallback to the job's own assets).
    return scope, getattr(graph, "_source_asset_graph", graph).assets_defs


def code_location_assets(context: Any) -> list[Any]:
    """The assets a run or sensor tick can see (see :func:`check_code_location`)."""
    return list(_code_location(context)[1])


def check_code_location(context: Any, where: str) -> None:
    """:func:`check_one_asset_per_feature` over the assets a run or sensor tick can see.

    Checked once per repository / job.
    """
    scope, assets = _code_location(context)
    if scope is None or _CHECKED.get(scope):
        return
    check_one_asset_per_feature(assets, where)
    _CHECKED[scope] = True
