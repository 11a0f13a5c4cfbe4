"""Asset factories: ``@metaxy_asset(Feature)``, ``build_metaxy_assets([...])``, ``metaxy_observable_source``.

Every asset gets its key, deps, description, group, kinds, tags, code version (the feature code
version) and definition metadata from a :class:`MetaxyTranslator`. Deps are real asset deps, so
Dagster orders the steps of one run by the feature graph (``materialize([faces, chunk, raw])`` runs
``raw`` first) and tracks staleness along them.

The asset body's parameters are matched by name:

* ``context``: the ``AssetExecutionContext``;
* ``increment``: the :class:`MetaxyIncrement` resolved before the body runs (not available to a root
  feature without a samples provider: its body *returns* the samples);
* any other name: the resource with that key.

The body returns the computed rows (polars, pandas, pyarrow), or ``dg.Output(rows, data_version=...,
metadata=...)`` to provide its own data version or extra metadata. See :mod:`metaxy_dagster.io_manager`
for what happens to the rows.
"""

import inspect
import time
import typing
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from metaxy_core.feature import BaseFeature
from metaxy_core.graph import FeatureGraph
from metaxy_dagster import metadata as md
from metaxy_dagster.batches import bind_commits, finish_increment
from metaxy_dagster.checks import builtin_check_specs, check_results, selected_builtin_checks
from metaxy_dagster.data_versions import feature_data_version
from metaxy_dagster.errors import MetaxyDefinitionError
from metaxy_dagster.io_manager import (
    MetaxyIncrement,
    MetaxyIOManager,
    SamplesProvider,
    previous_materialization_metadata,
)
from metaxy_dagster.metaxify import rewire_feature_deps, with_built_upstreams
from metaxy_dagster.partitions import PartitionBy, check_partition_by, describe, partition_filters
from metaxy_dagster.planning import plan_metadata, record_materialization, registered_providers, root_samples
from metaxy_dagster.registry import MetaxyAssetInfo as MetaxyAssetInfo
from metaxy_dagster.registry import bind, check_code_location, code_location_assets, infos_of_asset
from metaxy_dagster.resource import MetaxyStoreResource
from metaxy_dagster.translator import MetaxyTranslator
from metaxy_dagster.user_checks import requiring_check_results

DEFAULT_IO_MANAGER_KEY = "metaxy_io_manager"
DEFAULT_STORE_KEY = "metaxy_store"

AssetBody = Callable[..., Any]


def info_of_asset(asset: dg.AssetsDefinition | dg.SourceAsset) -> MetaxyAssetInfo | None:
    """What the metaxy factory that built ``asset`` knows about it (None for other assets).

    For an asset computing several features (:func:`metaxy_multi_asset`) use
    :func:`metaxy_dagster.registry.infos_of_asset`.
    """
    infos = infos_of_asset(asset)
    return next(iter(infos.values())) if len(infos) == 1 else None


def _register(info: MetaxyAssetInfo, asset: dg.AssetsDefinition | None = None) -> None:
    # Bound to the asset's op, never to the feature key: a sensor or IO manager serving an asset
    # finds that asset's feature class and samples provider, not the latest one built.
    if asset is not None:
        bind(asset, [info])


def _call_samples(provider: SamplesProvider, feature: type[BaseFeature]) -> Any:
    samples = provider()
    if samples is None:
        raise MetaxyDefinitionError(
            f"The samples provider of root feature '{feature.spec.key}' returned None: return a dataframe with "
            f"{list(feature.spec.id_columns)} and 'metaxy_provenance_by_field' (an empty frame for no samples)."
        )
    return samples


def _is_resource_annotation(annotation: Any) -> bool:
    """A parameter annotated the way Dagster injects resources: a resource class or ResourceParam[...]."""
    if annotation is inspect.Parameter.empty:
        return False
    # Pipes clients are resources without being ConfigurableResources (Dagster's TreatAsResourceParam).
    if isinstance(annotation, type) and issubclass(
        annotation, dg.ConfigurableResource | dg.ConfigurableIOManager | dg.PipesClient
    ):
        return True
    extras = getattr(annotation, "__metadata__", ())  # ResourceParam[T] is Annotated[T, "resource_param"]
    return "resource_param" in extras


def _body_params(
    feature: type[BaseFeature],
    fn: AssetBody,
    *,
    has_increment: bool,
    inputs: Collection[str] = (),
    increment_name: str = "increment",
    where: str | None = None,
) -> tuple[bool, bool, list[str], list[str]]:
    """(wants context, wants increment, resource keys, input names) from the body's signature.

    Parameters are matched the Dagster way: ``context``, ``increment``, names of ``ins=`` (loaded
    inputs), and resources annotated with their class (``store: MyResource``) or ``ResourceParam``.
    """
    wants_context = wants_increment = False
    resources: list[str] = []
    wanted_inputs: list[str] = []
    where = where or f"{fn.__name__} (feature '{feature.spec.key}')"
    try:  # resolves string annotations (a module with `from __future__ import annotations`)
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        hints = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise MetaxyDefinitionError(
                f"{where}: *args/**kwargs are not supported; name the parameters (context, increment, inputs "
                "from ins=, or resources annotated with their class)."
            )
        if name == "context":
            wants_context = True
        elif name == increment_name:
            wants_increment = True
        elif name in inputs:
            wanted_inputs.append(name)
        elif _is_resource_annotation(hints.get(name, param.annotation)):
            resources.append(name)
        else:
            raise MetaxyDefinitionError(
                f"{where}: parameter '{name}' is not context, {increment_name}, an input from ins= ({sorted(inputs) or 'none'}) "
                f"or a resource. Annotate a resource with its class ({name}: MyResource, a ConfigurableResource) "
                f"or dg.ResourceParam[...], or add ins={{'{name}': dg.AssetIn(...)}} for an upstream asset's value."
            )
    missing = [n for n in inputs if n not in wanted_inputs]
    if missing:
        raise MetaxyDefinitionError(f"{where}: ins= names {missing}, but the body has no such parameter(s).")
    if wants_increment and not has_increment:
        raise MetaxyDefinitionError(
            f"{fn.__name__}: '{feature.spec.key}' is a root feature without a samples provider, so there is no "
            "increment before the body runs. Either drop the `increment` parameter and return the samples (id "
            "columns + 'metaxy_provenance_by_field' with e.g. content hashes), or pass samples=<callable> to "
            "metaxy_asset so the increment is resolved first."
        )
    return wants_context, wants_increment, resources, wanted_inputs


def _unwrap(result: Any) -> tuple[Any, dg.DataVersion | None, dict[str, Any], list[dg.AssetCheckResult]]:
    """(rows, data version, metadata, check results) from what the body returned or yielded.

    A body may be a generator: it yields ``dg.AssetCheckResult``s for its own ``check_specs`` and
    one value, the rows (or ``dg.Output(rows, ...)``).
    """
    checks: list[dg.AssetCheckResult] = []
    if inspect.isgenerator(result):
        values = []
        for item in result:
            (checks if isinstance(item, dg.AssetCheckResult) else values).append(item)
        if len(values) != 1:
            raise MetaxyDefinitionError(
                f"A metaxy asset body that yields must yield exactly one value (its rows, or dg.Output(rows)) "
                f"besides any dg.AssetCheckResult; it yielded {len(values)}."
            )
        result = values[0]
    if isinstance(result, dg.AssetCheckResult):
        raise MetaxyDefinitionError(
            "A metaxy asset body returned a dg.AssetCheckResult: yield check results and yield the rows."
        )
    if isinstance(result, dg.Output):
        return result.value, result.data_version, dict(result.metadata or {}), checks
    if isinstance(result, dg.MaterializeResult):
        raise MetaxyDefinitionError(
            "A metaxy asset body must return its rows (or dg.Output(rows, ...)), not a MaterializeResult: the "
            "asset writes the rows and builds the MaterializeResult itself."
        )
    return result, None, {}, checks


# Options of ``dg.asset`` that describe the asset (they go on its AssetSpec) and how each combines with
# what the translator derived: merged ones add to it, the others replace it when given.
_SPEC_MERGED = ("deps", "metadata", "owners", "tags", "kinds")
_SPEC_REPLACED = (
    "description",
    "group_name",
    "code_version",
    "automation_condition",
    "skippable",
    "freshness_policy",
)
# Options of the step itself, passed to the underlying multi-asset unchanged.
_OP_OPTIONS = (
    "partitions_def",
    "backfill_policy",
    "retry_policy",
    "op_tags",
    "pool",
    "hooks",
    "config_schema",
    "resource_defs",
)


def _asset_spec(
    spec: dg.AssetSpec, options: dict[str, Any], feature: type[BaseFeature], io_manager_key: str
) -> dg.AssetSpec:
    """The translator's spec with the user's ``dg.asset`` options applied (user values win)."""
    prefix = options.pop("key_prefix", None)
    if prefix:
        parts = [prefix] if isinstance(prefix, str) else list(prefix)
        spec = spec.replace_attributes(key=dg.AssetKey([*parts, *spec.key.path]))
    merged = {k: options.pop(k) for k in _SPEC_MERGED if options.get(k) is not None}
    if "kinds" in merged:
        merged["kinds"] = set(merged["kinds"])
    replaced = {k: options.pop(k) for k in _SPEC_REPLACED if k in options}
    derived = list(spec.deps)
    spec = spec.merge_attributes(**merged).replace_attributes(**replaced)
    spec = rewire_feature_deps(derived, spec, merged.get("deps"), feature)  # deps=[upstream's asset]
    return spec.with_io_manager_key(io_manager_key)


def _build_asset(
    feature: type[BaseFeature],
    fn: AssetBody | None,
    *,
    samples: SamplesProvider | None,
    translator: MetaxyTranslator,
    io_manager_key: str,
    skip_empty: bool,
    asset_kwargs: Mapping[str, Any],
    checks: bool | Iterable[str] = True,
    check_severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
    partition_by: PartitionBy | None = None,
) -> dg.AssetsDefinition:
    is_root = not feature.spec.deps
    if samples is not None and not is_root:
        raise MetaxyDefinitionError(
            f"samples= is only for root features; '{feature.spec.key}' has deps, so its samples come from upstream "
            "metadata. Drop samples=."
        )
    if fn is None and not (is_root and samples is not None):
        raise MetaxyDefinitionError(
            f"Feature '{feature.spec.key}' needs an asset body that computes its rows: decorate a function with "
            f"@metaxy_asset({feature.__name__}) or pass compute={{{feature.__name__}: fn}} to build_metaxy_assets. "
            "(Only a root feature with a samples provider can do without one: its samples are written as given.)"
        )
    has_increment = not is_root or samples is not None
    options = dict(asset_kwargs)
    ins: dict[str, dg.AssetIn] = dict(options.pop("ins", None) or {})
    wants_context, wants_increment, resource_keys, _ = (
        _body_params(feature, fn, has_increment=has_increment, inputs=ins)
        if fn is not None
        else (False, False, [], [])
    )
    unknown = sorted(
        k
        for k in options
        if k not in (*_SPEC_MERGED, *_SPEC_REPLACED, *_OP_OPTIONS, "key_prefix", "check_specs", "name")
    )
    if unknown:
        raise MetaxyDefinitionError(
            f"metaxy asset for '{feature.spec.key}': unsupported option(s) {unknown}. The asset key comes from the "
            "translator (use key_prefix= or a MetaxyTranslator subclass); supported dg.asset options: "
            f"{', '.join(sorted((*_SPEC_MERGED, *_SPEC_REPLACED, *_OP_OPTIONS, 'key_prefix', 'check_specs', 'ins')))}."
        )
    check_partition_by(feature, options.get("partitions_def"), partition_by)
    spec = translator.get_asset_spec(feature)
    if fn is not None and fn.__doc__ and spec.description == f"Metaxy feature `{feature.spec.key}`.":
        spec = spec.replace_attributes(description=inspect.cleandoc(fn.__doc__))
    spec = _asset_spec(spec, options, feature, io_manager_key)
    if ins:  # each input is a dependency of the asset too (Dagster needs both)
        spec = spec.merge_attributes(deps=[a.key or dg.AssetKey(name) for name, a in ins.items()])
    asset_key = spec.key
    user_checks = [*translator.get_check_specs(feature, asset_key), *(options.pop("check_specs", None) or [])]
    if fn is not None and user_checks:  # their results come from the body
        fn = requiring_check_results(fn, [c.name for c in user_checks], feature)
    # A root without a samples provider has no expected sample set before its body runs: nothing to check.
    builtin = selected_builtin_checks(checks) if has_increment else ()
    clash = [c.name for c in user_checks if c.name in builtin]
    if clash:
        raise MetaxyDefinitionError(
            f"metaxy asset for '{feature.spec.key}': check_specs {clash} reuse built-in check names; rename them or "
            f"drop the built-in ones with checks=False."
        )
    op_name = options.pop("name", None) or asset_key.to_python_identifier()

    def materialize(
        context: dg.AssetExecutionContext, io: MetaxyIOManager, loaded: Mapping[str, Any]
    ) -> Iterator[Any]:
        started = time.perf_counter()
        previous = previous_materialization_metadata(context.instance, asset_key)
        run_id = context.run_id

        def call_body(increment: MetaxyIncrement | None) -> Any:
            assert fn is not None
            kwargs: dict[str, Any] = {name: getattr(context.resources, name) for name in resource_keys}
            kwargs.update(loaded)
            if wants_context:
                kwargs["context"] = context
            if wants_increment:
                kwargs["increment"] = increment
            return fn(**kwargs)

        user_version: dg.DataVersion | None = None
        user_meta: dict[str, Any] = {}
        user_results: list[dg.AssetCheckResult] = []
        filters = partition_filters(context, partition_by)
        if filters:
            context.log.info(
                f"{feature.spec.key}: partition(s) {context.partition_keys}: {describe(filters)}"
            )
        if is_root and samples is None:
            rows, user_version, user_meta, user_results = _unwrap(call_body(None))
            report = io.write_samples(feature, rows, materialization_id=run_id, filters=filters or None)
        else:
            given = _call_samples(samples, feature) if samples is not None else None
            increment = io.resolve_increment(feature, samples=given, filters=filters or None)
            try:
                context.log.info(f"{feature.spec.key}: increment {increment.summary()}")
                if increment.is_empty and (skip_empty or fn is None):
                    context.log.info(f"{feature.spec.key}: nothing new or stale; the body was not called.")
                    report = io.write_rows(
                        feature, increment, None, materialization_id=run_id, filters=filters or None
                    )
                elif fn is None:  # a root written as its samples provider lists it
                    report = io.write_rows(
                        feature,
                        increment,
                        increment.to_process(),
                        materialization_id=run_id,
                        filters=filters or None,
                    )
                else:
                    bind_commits(io, increment, run_id, context.log)
                    rows, user_version, user_meta, user_results = _unwrap(call_body(increment))
                    report = finish_increment(io, increment, rows, run_id, filters or None)
            finally:
                increment.close()
        context.log.info(
            f"{feature.spec.key}: new={report.counts['new']} stale={report.counts['stale']} "
            f"orphaned={report.counts['orphaned']} written={report.written} "
            f"data_version={report.data_version.data_version}"
        )
        record_materialization(context, io, feature, report, time.perf_counter() - started)
        meta = report.metadata(previous)
        if user_version is not None:
            meta["metaxy/user_data_version"] = dg.MetadataValue.text(user_version.value)
        meta.update(user_meta)
        yield dg.MaterializeResult(
            asset_key=asset_key,
            data_version=user_version or report.data_version.as_dagster(),
            metadata=meta,
        )
        selected = context.selected_asset_check_keys
        for result in user_results:
            if dg.AssetCheckKey(asset_key, result.check_name) in selected:
                yield result

    def compute(context: dg.AssetExecutionContext, **loaded: Any) -> Iterator[Any]:
        io: MetaxyIOManager = getattr(context.resources, io_manager_key)
        if not isinstance(io, MetaxyIOManager):
            raise MetaxyDefinitionError(
                f"Resource '{io_manager_key}' is a {type(io).__name__}; metaxy assets need a MetaxyIOManager there "
                f"(resources={{'{io_manager_key}': MetaxyIOManager(store=MetaxyStoreResource(...))}})."
            )
        check_code_location(context, f"metaxy asset '{asset_key.to_user_string()}'")
        selected = context.selected_asset_check_keys
        if asset_key in context.selected_asset_keys:
            yield from materialize(context, io, loaded)
        else:
            unanswered = [c.name for c in user_checks if dg.AssetCheckKey(asset_key, c.name) in selected]
            if unanswered:
                raise MetaxyDefinitionError(
                    f"Checks {unanswered} of '{feature.spec.key}' are results of the asset body, so they run only "
                    "with a materialization; select the asset too."
                )
        wanted = [n for n in builtin if dg.AssetCheckKey(asset_key, n) in selected]
        if wanted:
            given = _call_samples(samples, feature) if samples is not None else None
            filters = partition_filters(context, partition_by) or None
            with io.store.open() as store:
                increment = store.resolve_update(feature, samples=given, filters=filters, lazy=True)
                results = check_results(feature, asset_key, increment, wanted, check_severity)
            yield from results

    asset = dg.multi_asset(
        name=op_name,
        specs=[spec],
        check_specs=[*builtin_check_specs(asset_key, builtin), *user_checks],
        can_subset=True,
        ins=ins or None,
        required_resource_keys={io_manager_key, *resource_keys},
        **{k: options.pop(k) for k in _OP_OPTIONS if k in options},
    )(compute)
    info = MetaxyAssetInfo(
        feature,
        asset_key,
        samples,
        observable=False,
        partition_by=partition_by,
        check_severity=check_severity,
    )
    _register(info, asset)
    return asset


def metaxy_asset(
    feature: type[BaseFeature],
    *,
    samples: SamplesProvider | None = None,
    translator: MetaxyTranslator | None = None,
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY,
    skip_empty: bool = True,
    checks: bool | Iterable[str] = True,
    check_severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
    partition_by: PartitionBy | None = None,
    **asset_kwargs: Any,
) -> Callable[[AssetBody], dg.AssetsDefinition]:
    """Decorator: the function computes ``feature``'s rows; the result is a Dagster asset.

    Args:
        feature: the feature class.
        samples: root features only: a zero-argument callable returning the complete set of samples
            (id columns, user columns, ``metaxy_provenance_by_field`` with e.g. content hashes). With it,
            the increment is resolved before the body runs (and the sensor can count new samples).
        translator: maps the feature to key, group, tags, metadata (default :class:`MetaxyTranslator`).
        io_manager_key: resource key of the :class:`MetaxyIOManager`.
        skip_empty: do not call the body when nothing is new or stale.
        checks: the built-in asset checks (``metaxy_in_sync``, ``metaxy_no_orphans``): True for both
            (default), False for none, or a list of names. See :mod:`metaxy_dagster.checks`.
        check_severity: severity of a failed built-in check (WARN by default).
        partition_by: with ``partitions_def``: the column whose value is the partition key, a
            ``{dimension: column}`` dict for multi-partitions, or ``(context) -> filter``. A partition
            run then resolves, writes, checks and versions only that partition's samples. See
            :mod:`metaxy_dagster.partitions`.
        asset_kwargs: ``dg.asset`` options. ``metadata``, ``tags``, ``owners``, ``kinds`` and ``deps``
            add to what the translator derives; ``description``, ``group_name``, ``code_version``,
            ``automation_condition``, ``skippable`` and ``freshness_policy`` replace it;
            ``key_prefix`` is prepended to the key; ``partitions_def``, ``backfill_policy``,
            ``retry_policy``, ``op_tags``, ``pool``, ``hooks``, ``config_schema``,
            ``resource_defs`` and ``name`` (the op name) configure the step; ``check_specs`` adds
            your own checks (the body yields their ``dg.AssetCheckResult``s besides its rows).

    Example::

        @metaxy_asset(VideoChunk)
        def chunks(context: dg.AssetExecutionContext, increment: MetaxyIncrement) -> pl.DataFrame:
            return split_into_chunks(increment.to_process())
    """
    tr = translator or MetaxyTranslator()

    def decorator(fn: AssetBody) -> dg.AssetsDefinition:
        return _build_asset(
            feature,
            fn,
            samples=samples,
            translator=tr,
            io_manager_key=io_manager_key,
            skip_empty=skip_empty,
            asset_kwargs=asset_kwargs,
            checks=checks,
            check_severity=check_severity,
            partition_by=partition_by,
        )

    return decorator


def metaxy_observable_source(
    feature: type[BaseFeature],
    *,
    samples: SamplesProvider,
    translator: MetaxyTranslator | None = None,
    store_resource_key: str = DEFAULT_STORE_KEY,
    **kwargs: Any,
) -> dg.SourceAsset:
    """A root feature written outside Dagster, as an observable source asset.

    Use it when something else writes the root feature's metadata (an ingestion service, a script
    using the store directly); to have Dagster write it, use ``metaxy_asset(Feature, samples=...)``.

    An observation only reads: it reports the aggregate data version of the samples stored for the
    feature (:func:`metaxy_dagster.feature_data_version`), so downstream assets turn "Unsynced" in
    Dagster exactly when the stored samples changed. As metadata it adds the stored row count and how
    many samples ``samples()`` lists that are new, stale or orphaned compared with the store (counted
    in the store's engine): samples the writer has yet to store. Nothing is written.
    """
    if feature.spec.deps:
        raise MetaxyDefinitionError(
            f"metaxy_observable_source: '{feature.spec.key}' has deps; only root features can be observable "
            "sources. Use metaxy_asset for it."
        )
    tr = translator or MetaxyTranslator()
    spec = tr.get_asset_spec(feature)

    def observe(context: dg.AssetExecutionContext) -> dg.ObserveResult:
        resource: MetaxyStoreResource = getattr(context.resources, store_resource_key)
        listed = _call_samples(samples, feature)
        with resource.open() as store:
            version = feature_data_version(store, feature)
            counts = store.resolve_update(feature, samples=listed, lazy=True).counts()
        context.log.info(
            f"{feature.spec.key}: stored={version.row_count} data_version={version.data_version}; listed "
            f"samples not stored yet: new={counts['new']} stale={counts['stale']} orphaned={counts['orphaned']}"
        )
        meta = {
            "metaxy/data_version": dg.MetadataValue.text(version.data_version),
            "dagster/row_count": dg.MetadataValue.int(version.row_count),
            **{f"metaxy/{k}": dg.MetadataValue.int(v) for k, v in counts.items()},
        }
        return dg.ObserveResult(data_version=version.as_dagster(), metadata=meta)

    tags = {**spec.tags, **{f"dagster/kind/{k}": "" for k in spec.kinds}}
    with warnings.catch_warnings():
        # Dagster flags observable sources as beta; that is our concern, not every caller's.
        warnings.simplefilter("ignore", dg.BetaWarning)
        source = _observable_source(spec, observe, tags, store_resource_key, kwargs)
    _register(MetaxyAssetInfo(feature, spec.key, samples, observable=True))
    return source


def _observable_source(
    spec: dg.AssetSpec,
    observe: Callable[..., Any],
    tags: dict[str, str],
    store_resource_key: str,
    kwargs: dict[str, Any],
) -> dg.SourceAsset:
    return dg.observable_source_asset(
        key=spec.key,
        description=spec.description,
        metadata=dict(spec.metadata),
        group_name=kwargs.pop("group_name", None) or spec.group_name,
        tags=tags,
        required_resource_keys={store_resource_key},
        **kwargs,
    )(observe)


def build_metaxy_assets(
    features: Iterable[type[BaseFeature]] | FeatureGraph,
    *,
    compute: Mapping[type[BaseFeature], AssetBody] | None = None,
    samples: Mapping[type[BaseFeature], SamplesProvider] | None = None,
    observe: Sequence[type[BaseFeature]] = (),
    options: Mapping[type[BaseFeature], Mapping[str, Any]] | None = None,
    translator: MetaxyTranslator | None = None,
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY,
    store_resource_key: str = DEFAULT_STORE_KEY,
    skip_empty: bool = True,
    checks: bool | Iterable[str] = True,
    check_severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
) -> list[dg.AssetsDefinition | dg.SourceAsset]:
    """One asset per feature (in topological order), sharing one translator.

    Args:
        features: feature classes, or a whole :class:`FeatureGraph`.
        compute: feature -> asset body (same contract as :func:`metaxy_asset`).
        samples: root feature -> samples provider.
        observe: root features to expose as observable sources instead of materializable assets.
        options: feature -> its ``dg.asset`` options, combined as in :func:`metaxy_asset`.

    A root feature with a samples provider and no body is written as given. Any other feature
    without a body is an error naming it.
    """
    tr = translator or MetaxyTranslator()
    compute = dict(compute or {})
    samples = dict(samples or {})
    chosen = list(features.features_by_key.values()) if isinstance(features, FeatureGraph) else list(features)
    if not chosen:
        return []
    graph = chosen[0].graph
    order = {key: i for i, key in enumerate(graph.topological_order())}
    chosen.sort(key=lambda f: order.get(f.spec.key, len(order)))
    options = dict(options or {})
    unknown = [f for f in [*compute, *samples, *observe, *options] if f not in chosen]
    if unknown:
        raise MetaxyDefinitionError(
            f"build_metaxy_assets: {[str(f.spec.key) for f in unknown]} appear in compute/samples/observe/options but not "
            f"in features ({[str(f.spec.key) for f in chosen]})."
        )
    result: list[dg.AssetsDefinition | dg.SourceAsset] = []
    for feature in chosen:
        if feature in observe:
            if feature in options:
                raise MetaxyDefinitionError(
                    f"build_metaxy_assets: options= for '{feature.spec.key}', which observe= builds as an "
                    "observable source (dg.asset options do not apply to it); drop one of the two."
                )
            if feature not in samples:
                raise MetaxyDefinitionError(
                    f"build_metaxy_assets: observable root '{feature.spec.key}' needs a samples provider: "
                    f"samples={{{feature.__name__}: fn}}."
                )
            result.append(
                metaxy_observable_source(
                    feature, samples=samples[feature], translator=tr, store_resource_key=store_resource_key
                )
            )
            continue
        result.append(
            _build_asset(
                feature,
                compute.get(feature),
                samples=samples.get(feature),
                translator=tr,
                io_manager_key=io_manager_key,
                skip_empty=skip_empty,
                asset_kwargs=with_built_upstreams(options.get(feature, {}), feature, result, tr),
                checks=checks,
                check_severity=check_severity,
            )
        )
    return result


def build_metaxy_graph_asset(
    graph: FeatureGraph | None = None,
    *,
    key: str | Sequence[str] = ("metaxy", "graph"),
    group_name: str | None = "metaxy",
    store_resource_key: str = DEFAULT_STORE_KEY,
    push: bool = True,
    plan: bool = True,
    samples: Mapping[type[BaseFeature], SamplesProvider] | None = None,
) -> dg.AssetsDefinition:
    """An asset showing the whole feature graph and its diff against the last pushed snapshot.

    Each materialization compares the graph in code with the last snapshot pushed to the store
    (``metaxy graph push`` or this asset), then pushes the current one (``push=True``), so the next
    materialization shows what changed since this one. Metadata:

    * ``metaxy/graph``: one row per feature (versions, fields, deps) as a markdown table;
    * ``metaxy/diff``: added / removed / changed features and fields as a markdown table;
    * ``metaxy/mermaid`` and ``metaxy/diff_mermaid``: mermaid sources in code blocks (the Dagster UI
      renders markdown tables but not mermaid: copy them to a mermaid viewer);
    * ``metaxy/snapshot_version``, ``metaxy/previous_snapshot_version``, ``metaxy/pushed``;
    * with ``plan=True``: ``metaxy/plan``, what a full run would recompute per feature and its
      estimated duration (see :func:`metaxy_core.plan`), as a markdown table, with
      ``metaxy/plan_features_to_run``, ``metaxy/plan_samples_to_process`` and
      ``metaxy/plan_estimated_seconds``. Root features take their samples from ``samples`` (feature ->
      provider) or else from the providers given to the factories of the assets in the same code
      location (or run).

    The asset's data version is the snapshot version.
    """
    from metaxy_core.diff import compare_snapshots
    from metaxy_core.render import render_diff_mermaid, render_mermaid
    from metaxy_core.snapshots import (
        GraphSnapshot,
        SnapshotNotFoundError,
        load_graph_snapshot,
        push_graph_snapshot,
    )

    graph_ref = graph

    def compute(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        g = graph_ref or FeatureGraph.get_active()
        resource: MetaxyStoreResource = getattr(context.resources, store_resource_key)
        with resource.open() as store:
            current = GraphSnapshot.from_graph(g, hash_length=store.hash_length)
            try:
                previous = load_graph_snapshot(store, "latest", project=current.project)
            except SnapshotNotFoundError:
                previous = None
            pushed = push_graph_snapshot(store, g).recorded if push else False
        predicted = None
        if plan:
            from metaxy_core.planning import plan as make_plan

            providers = registered_providers(code_location_assets(context)) | {
                str(f.spec.key): p for f, p in (samples or {}).items()
            }
            given = root_samples(g, providers)
            with resource.open() as store:
                predicted = make_plan(store, graph=g, samples=given)
        baseline = previous or GraphSnapshot(
            snapshot_version="none", hash_length=current.hash_length, features=(), label="nothing pushed yet"
        )
        diff = compare_snapshots(baseline, current)
        meta = {
            "metaxy/snapshot_version": dg.MetadataValue.text(current.snapshot_version),
            "metaxy/previous_snapshot_version": dg.MetadataValue.text(
                previous.snapshot_version if previous else "none"
            ),
            "metaxy/pushed": dg.MetadataValue.bool(pushed),
            "metaxy/features": dg.MetadataValue.int(len(current)),
            "metaxy/graph": dg.MetadataValue.md(md.snapshot_table(current)),
            "metaxy/diff": dg.MetadataValue.md(md.diff_table(diff)),
            "metaxy/mermaid": dg.MetadataValue.md(md.mermaid_block(render_mermaid(current))),
            "metaxy/diff_mermaid": dg.MetadataValue.md(md.mermaid_block(render_diff_mermaid(diff))),
        }
        if predicted is not None:
            meta.update(plan_metadata(predicted))
        context.log.info(
            f"graph {current.snapshot_version}: {len(diff.added)} added, {len(diff.changed)} changed, "
            f"{len(diff.removed)} removed since {baseline.snapshot_version}"
        )
        return dg.MaterializeResult(data_version=dg.DataVersion(current.snapshot_version), metadata=meta)

    asset_key = dg.AssetKey([key] if isinstance(key, str) else list(key))
    return dg.asset(
        key=asset_key,
        group_name=group_name,
        kinds={"metaxy"},
        description="The metaxy feature graph: every feature with its versions, and what changed since the last push.",
        required_resource_keys={store_resource_key},
    )(compute)


def select_metaxy_assets(
    *features: type[BaseFeature] | str,
    translator: MetaxyTranslator | None = None,
    downstream: bool = False,
) -> dg.AssetSelection:
    """An asset selection of metaxy feature assets: all of them, or those of ``features``.

    ``downstream=True`` adds everything downstream of the selected features (e.g. for a job that
    carries one feature's change through the graph).
    """
    if not features:
        selection: dg.AssetSelection = dg.AssetSelection.kind("metaxy")
    else:
        tr = translator or MetaxyTranslator()
        keys = []
        for f in features:
            cls = f if isinstance(f, type) else FeatureGraph.get_active().get_feature(f)
            keys.append(tr.get_asset_key(cls))
        selection = dg.AssetSelection.assets(*keys)
    return selection.downstream() if downstream else selection
