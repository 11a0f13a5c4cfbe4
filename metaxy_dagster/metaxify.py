"""``metaxify``: add what metaxy knows about a feature to an asset you defined yourself.

For teams that keep their own ``@dg.asset`` / ``@dg.multi_asset`` bodies (or ``dg.AssetSpec``s of
external assets) and call the store themselves, ``metaxify`` adds to each spec that stands for a
feature:

* the feature's asset key (a single asset or spec; ``keep_key=True`` keeps yours and records the
  feature in the metadata instead);
* deps on the upstream features' assets;
* the code version (the feature code version), description, group, owners and automation condition
  from the translator where the asset has none;
* the translator's definition metadata (``metaxy/feature``, versions, fields, ``dagster/column_schema``)
  and ``dagster/column_lineage`` from the dependencies' ``columns=`` / ``rename=``;
* the ``metaxy/feature`` tag and the translator's kinds.

Your own values win on every clash: metadata and tags are merged with yours on top, kinds, owners
and deps are added to yours, and the single-valued attributes are only filled in where unset.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

import dagster as dg

from metaxy_core.errors import MetaxyError
from metaxy_core.feature import BaseFeature
from metaxy_core.graph import FeatureGraph
from metaxy_core.keys import FeatureKey
from metaxy_core.lineage import TableSchema, build_plan
from metaxy_dagster.errors import MetaxyDefinitionError
from metaxy_dagster.io_manager import register_feature
from metaxy_dagster.translator import FEATURE_METADATA_KEY, MetaxyTranslator

COLUMN_LINEAGE_KEY = "dagster/column_lineage"

FeatureMap = Mapping[Any, type[BaseFeature]] | Iterable[type[BaseFeature]]


def declared_columns(feature: type[BaseFeature]) -> tuple[str, ...]:
    """The feature's id columns, then its other declared columns (what a definition can know of its table)."""
    ids = tuple(feature.spec.id_columns)
    return ids + tuple(c for c in feature.model_fields if c not in ids)


def column_lineage(
    feature: type[BaseFeature],
    key_of: Mapping[FeatureKey, dg.AssetKey] | None = None,
    translator: MetaxyTranslator | None = None,
) -> dg.TableColumnLineage | None:
    """``dagster/column_lineage`` of ``feature``: each of its columns carried from an upstream column.

    The carried columns are the ones the resolve plan carries (``columns=``, ``rename=``, join
    columns), computed from the declared columns of the upstream features. ``key_of`` gives the asset
    key of an upstream feature (default: the translator's key). None for a root feature, or when
    nothing it declares comes from upstream.
    """
    if not feature.spec.deps:
        return None
    graph = feature.graph
    key_of = dict(key_of or {})
    tr = translator or MetaxyTranslator()

    def schema_of(key: FeatureKey) -> TableSchema | None:
        return TableSchema(columns=declared_columns(graph.get_feature(key)))

    try:
        plan = build_plan(graph, feature.spec.key, schema_of)
    except MetaxyError:
        # Columns the upstream class does not declare (e.g. a feature without typed columns): the
        # lineage is unknown before anything is stored, so none is shown rather than a wrong one.
        return None
    own = set(declared_columns(feature))
    deps_by_column: dict[str, list[dg.TableColumnDep]] = {}
    for dep in plan.deps:
        upstream_key = key_of.get(dep.feature) or tr.get_asset_key(graph.get_feature(dep.feature))
        for source, target in dep.carried:
            if target in own:
                deps_by_column.setdefault(target, []).append(
                    dg.TableColumnDep(asset_key=upstream_key, column_name=source)
                )
    if not deps_by_column:
        return None
    return dg.TableColumnLineage(deps_by_column=deps_by_column)


def _feature_of(spec: dg.AssetSpec) -> str | None:
    value = spec.metadata.get(FEATURE_METADATA_KEY)
    return None if value is None else str(getattr(value, "value", value))


def feature_asset_keys(assets: Any) -> dict[str, dg.AssetKey]:
    """Feature key string -> asset key, for the metaxy assets and metaxified specs among ``assets``."""
    found: dict[str, dg.AssetKey] = {}
    for asset in assets or ():
        specs = [asset] if isinstance(asset, dg.AssetSpec) else list(getattr(asset, "specs", ()))
        for spec in specs:
            name = _feature_of(spec)
            if name is not None:
                found[name] = spec.key
    return found


def with_built_upstreams(
    options: Mapping[str, Any],
    feature: type[BaseFeature],
    built: Sequence[Any],
    translator: MetaxyTranslator,
) -> dict[str, Any]:
    """``options`` with ``deps=`` naming the assets in ``built`` of ``feature``'s upstream features whose
    keys differ from the translator's (e.g. a ``key_prefix`` given to one feature of a
    ``build_metaxy_assets`` call), so the deps between assets of one call always connect."""
    moved: list[Any] = []
    for asset in built:
        for name, key in feature_asset_keys([asset]).items():
            upstream = next((d.feature for d in feature.spec.deps if str(d.feature) == name), None)
            if upstream is not None and key != translator.get_asset_key(feature.graph.get_feature(upstream)):
                moved.append(asset)
    if not moved:
        return dict(options)
    return {**options, "deps": [*moved, *(options.get("deps") or [])]}


def rewire_feature_deps(
    derived: Sequence[dg.AssetDep], spec: dg.AssetSpec, user_deps: Any, feature: type[BaseFeature]
) -> dg.AssetSpec:
    """``spec`` with the deps on upstream features pointed at the assets the user passed for them.

    ``derived`` are the translator's deps of ``feature`` (one per feature dep, in order). A metaxy asset
    or metaxified spec of an upstream feature given in ``user_deps`` lives under its own key
    (``key_prefix=``, ``keep_key=True``); it replaces the key the translator derived, so the dep is
    wired to a real asset instead of a phantom one of the derived key. Partition mappings are kept.
    """
    given = feature_asset_keys(user_deps)
    if not given or len(derived) != len(feature.spec.deps):
        return spec  # nothing to rewire, or a translator whose deps are not one per feature dep
    replace = {
        d.asset_key: given[str(fd.feature)]
        for fd, d in zip(feature.spec.deps, derived, strict=True)
        if str(fd.feature) in given
    }
    if not replace:
        return spec
    deps: list[dg.AssetDep] = []
    seen: set[dg.AssetKey] = set()
    for d in spec.deps:  # the derived deps come first, so their partition mappings are the ones kept
        key = replace.get(d.asset_key, d.asset_key)
        if key not in seen:
            seen.add(key)
            deps.append(dg.AssetDep(key, partition_mapping=d.partition_mapping))
    return spec.replace_attributes(deps=deps)


def _enrich(
    spec: dg.AssetSpec,
    feature: type[BaseFeature],
    translator: MetaxyTranslator,
    key_of: Mapping[FeatureKey, dg.AssetKey],
) -> dg.AssetSpec:
    """``spec`` with the feature's attributes added; the spec's own values win."""
    derived = translator.get_asset_spec(feature)
    metadata: dict[str, Any] = dict(derived.metadata)
    lineage = column_lineage(feature, key_of, translator)
    if lineage is not None:
        metadata[COLUMN_LINEAGE_KEY] = lineage
    dep_keys = [
        key_of.get(d.feature) or translator.get_asset_key(feature.graph.get_feature(d.feature))
        for d in feature.spec.deps
    ]
    have = {d.asset_key for d in spec.deps}
    mappings = {d.asset_key: d.partition_mapping for d in derived.deps}
    derived_keys = [d.asset_key for d in derived.deps]
    deps = list(spec.deps) + [
        dg.AssetDep(key, partition_mapping=mappings.get(derived_key))
        for key, derived_key in zip(dep_keys, derived_keys, strict=True)
        if key not in have and key != spec.key
    ]
    tags = {k: v for k, v in derived.tags.items() if not k.startswith("dagster/kind/")}
    own_tags = {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")}
    return spec.replace_attributes(
        deps=deps,
        metadata={**metadata, **spec.metadata},
        tags={**tags, **own_tags},
        kinds={*derived.kinds, *spec.kinds},
        owners=list(dict.fromkeys([*spec.owners, *(derived.owners or [])])),
        code_version=spec.code_version or derived.code_version,
        description=spec.description or derived.description,
        group_name=spec.group_name if spec.group_name not in (None, "default") else derived.group_name,
        automation_condition=spec.automation_condition or derived.automation_condition,
    )


def _features_by_key(
    keys: list[dg.AssetKey],
    feature: type[BaseFeature] | None,
    features: FeatureMap | None,
    translator: MetaxyTranslator,
    where: str,
) -> dict[dg.AssetKey, type[BaseFeature]]:
    """Asset key of the target -> the feature it stands for."""
    if feature is not None:
        if features is not None:
            raise MetaxyDefinitionError(f"{where}: pass either a feature or features=, not both.")
        if len(keys) != 1:
            raise MetaxyDefinitionError(
                f"{where}: the asset has {len(keys)} specs ({[k.to_user_string() for k in keys]}); pass "
                "features={asset key: Feature, ...} to say which spec is which feature."
            )
        return {keys[0]: feature}
    if isinstance(features, Mapping):
        found: dict[dg.AssetKey, type[BaseFeature]] = {}
        for raw_key, cls in features.items():
            key = dg.AssetKey.from_coercible(raw_key)
            if key not in keys:
                raise MetaxyDefinitionError(
                    f"{where}: features= names asset '{key.to_user_string()}' (feature '{cls.spec.key}'), which "
                    f"is not one of the asset's keys {[k.to_user_string() for k in keys]}."
                )
            found[key] = cls
        return found
    # A list of features, or the whole active graph: match the keys the translator derives.
    candidates = (
        list(features) if features is not None else list(FeatureGraph.get_active().features_by_key.values())
    )
    found = {}
    for key in keys:
        cls = translator.feature_for_key(candidates, key)
        if cls is not None:
            found[key] = cls
    unmatched = [c for c in candidates if c not in found.values()] if features is not None else []
    if unmatched or not found:
        expected = {
            str(c.spec.key): translator.get_asset_key(c).to_user_string() for c in (unmatched or candidates)
        }
        raise MetaxyDefinitionError(
            f"{where}: no spec of the asset {[k.to_user_string() for k in keys]} has the key the translator gives "
            f"feature(s) {expected}. Pass features={{asset key: Feature}} to map your keys to features."
        )
    return found


@overload
def metaxify(
    target: dg.AssetSpec,
    feature: type[BaseFeature] | None = None,
    *,
    features: FeatureMap | None = None,
    translator: MetaxyTranslator | None = None,
    keep_key: bool = False,
    deps: Iterable[Any] | None = None,
) -> dg.AssetSpec: ...


@overload
def metaxify(
    target: dg.AssetsDefinition,
    feature: type[BaseFeature] | None = None,
    *,
    features: FeatureMap | None = None,
    translator: MetaxyTranslator | None = None,
    keep_key: bool = False,
    deps: Iterable[Any] | None = None,
) -> dg.AssetsDefinition: ...


def metaxify(
    target: dg.AssetSpec | dg.AssetsDefinition,
    feature: type[BaseFeature] | None = None,
    *,
    features: FeatureMap | None = None,
    translator: MetaxyTranslator | None = None,
    keep_key: bool = False,
    deps: Iterable[Any] | None = None,
) -> dg.AssetSpec | dg.AssetsDefinition:
    """``target`` (an ``AssetSpec``, ``@asset`` or ``@multi_asset``) with metaxy's keys, deps and metadata.

    Args:
        target: the spec or assets definition to enrich.
        feature: the feature a single asset or spec stands for. Its key becomes the translator's key
            for the feature unless ``keep_key=True``.
        features: for a multi-asset: ``{asset key: Feature}`` (keys are kept, so the body's
            ``MaterializeResult(asset_key=...)`` stay valid), or a list of features whose translator
            keys the specs already have. Without ``feature`` and ``features``, specs are matched
            against every feature of the active graph by key.
        translator: derives keys, metadata, tags, kinds (default :class:`MetaxyTranslator`); use the
            same one as the rest of the code location so deps connect.
        keep_key: keep the single asset's own key (the feature is recorded in the metadata).
        deps: assets (or specs) of upstream features that live under keys of their own (their
            ``key_prefix=``, ``keep_key=True``): deps and column lineage point at them instead of at
            the key the translator gives those features.

    Specs that stand for no feature are left as they are. Deps between features of one call point
    at the keys that call gives them.
    """
    tr = translator or MetaxyTranslator()
    specs = [target] if isinstance(target, dg.AssetSpec) else list(target.specs)
    keys = [s.key for s in specs]
    where = f"metaxify({', '.join(k.to_user_string() for k in keys)})"
    by_key = _features_by_key(keys, feature, features, tr, where)
    rename = feature is not None and not keep_key
    final_key = {k: (tr.get_asset_key(f) if rename else k) for k, f in by_key.items()}
    key_of = {f.spec.key: final_key[k] for k, f in by_key.items()}
    known = {str(k): k for k in next(iter(by_key.values())).graph.features_by_key}
    for name, key in feature_asset_keys(deps).items():  # upstreams under keys of their own
        if name in known:
            key_of.setdefault(known[name], key)
    for cls in by_key.values():
        register_feature(cls)

    if isinstance(target, dg.AssetSpec):
        (cls,) = by_key.values()
        return _enrich(target.replace_attributes(key=final_key[target.key]), cls, tr, key_of)

    renamed = target
    replacements = {k: v for k, v in final_key.items() if k != v}
    if replacements:
        renamed = target.with_attributes(asset_key_replacements=replacements)
    by_final = {final_key[k]: f for k, f in by_key.items()}

    def enrich(spec: dg.AssetSpec) -> dg.AssetSpec:
        cls = by_final.get(spec.key)
        return spec if cls is None else _enrich(spec, cls, tr, key_of)

    return _wire_added_deps(renamed.map_asset_specs(enrich))


def _wire_added_deps(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """``asset`` with the inputs ``map_asset_specs`` added for new deps mapped to their asset keys.

    Dagster 1.13 adds a ``Nothing`` input per added dep but leaves it unmapped, so the dep shows in
    the graph yet does not order the steps of a run (the body could run before its upstream). Mapping
    each such input to its dep's key makes it a real dependency, like a dep given to ``@asset``.
    """
    from dagster._core.definitions.assets.definition.assets_definition import (
        stringify_asset_key_to_input_name,
    )

    mapped = dict(asset.keys_by_input_name)
    deps = {stringify_asset_key_to_input_name(d.asset_key): d.asset_key for s in asset.specs for d in s.deps}
    missing = {n: deps[n] for n in asset.node_def.input_dict if n not in mapped and n in deps}
    if not missing:
        return asset
    attributes = asset.get_attributes_dict()
    return dg.AssetsDefinition.dagster_internal_init(
        **{**attributes, "keys_by_input_name": {**mapped, **missing}}
    )
