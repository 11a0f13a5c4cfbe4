"""``@metaxy_multi_asset([FeatureA, FeatureB])``: one step computes several features.

For work that produces several features in one pass (one GPU pass writes embeddings and captions).
Each feature keeps its own asset (key, deps, code version, checks, data version); the step resolves
every selected feature's increment before the body runs and hands them in as ``increments``, a dict
from feature key string to :class:`MetaxyIncrement`. The body returns a dict from feature key string
to rows (any dataframe narwhals reads), or None for a feature to write nothing for it::

    @mxd.metaxy_multi_asset([Embedding, Caption])
    def vision(increments: dict[str, mxd.MetaxyIncrement]) -> dict[str, pl.DataFrame]:
        todo = increments["docs/embedding"].to_process()
        return {"docs/embedding": embed(todo), "docs/caption": caption(increments["docs/caption"].to_process())}

Every returned frame is checked and stamped before any is written; then each feature is written
atomically on its own and reports its own ``MaterializeResult`` (a feature with nothing to do keeps
its data version). ``increments[...].batches(n)`` / ``.commit(rows)`` work per feature as in
:func:`metaxy_asset`; a feature whose increment committed may be returned as None. The asset is
built with ``can_subset=True``: a run that selects some of the features resolves, passes and
expects only those.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from metaxy_core.feature import BaseFeature
from metaxy_dagster.assets import (
    _OP_OPTIONS,
    _SPEC_MERGED,
    _SPEC_REPLACED,
    DEFAULT_IO_MANAGER_KEY,
    AssetBody,
    _asset_spec,
    _body_params,
    _call_samples,
    _unwrap,
)
from metaxy_dagster.batches import bind_commits, finish_increment
from metaxy_dagster.checks import builtin_check_specs, check_results, selected_builtin_checks
from metaxy_dagster.errors import MetaxyDefinitionError, MetaxyOutputError
from metaxy_dagster.io_manager import (
    MetaxyIncrement,
    MetaxyIOManager,
    MetaxyWriteReport,
    SamplesProvider,
    previous_materialization_metadata,
)
from metaxy_dagster.partitions import PartitionBy, check_partition_by, describe, partition_filters
from metaxy_dagster.registry import MetaxyAssetInfo, bind, check_code_location
from metaxy_dagster.translator import MetaxyTranslator

_OPTIONS = (*_SPEC_MERGED, *_SPEC_REPLACED, *_OP_OPTIONS, "key_prefix", "check_specs", "name", "ins")


def metaxy_multi_asset(
    features: Sequence[type[BaseFeature]],
    *,
    samples: Mapping[type[BaseFeature], SamplesProvider] | None = None,
    translator: MetaxyTranslator | None = None,
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY,
    skip_empty: bool = True,
    checks: bool | Iterable[str] = True,
    check_severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
    partition_by: PartitionBy | None = None,
    **asset_kwargs: Any,
) -> Callable[[AssetBody], dg.AssetsDefinition]:
    """Decorator: the function computes the rows of several features in one step.

    Args:
        features: the feature classes (none may depend on another: each increment is resolved
            before the body runs).
        samples: root feature -> samples provider (every root feature needs one, so it has an
            increment).
        translator, io_manager_key, skip_empty, checks, check_severity, partition_by: as in
            :func:`metaxy_asset`, for every feature (``skip_empty``: the body is not called when no
            selected feature has new or stale samples; ``partition_by``: every feature has the column).
        asset_kwargs: ``dg.multi_asset``-style options. Spec options (``metadata``, ``tags``,
            ``owners``, ``kinds``, ``deps``, ``description``, ``group_name``, ``code_version``,
            ``automation_condition``, ``key_prefix``, ...) apply to every feature's spec, merged with
            the translator's as in :func:`metaxy_asset`; step options (``partitions_def``,
            ``retry_policy``, ``op_tags``, ``pool``, ``ins``, ``name``, ...) configure the one step;
            ``check_specs`` adds your own checks (each names its asset; the body yields their results).

    The body's parameters: ``context``, ``increments``, names from ``ins=``, and resources annotated
    with their class.
    """
    chosen = list(features)
    tr = translator or MetaxyTranslator()
    given = dict(samples or {})

    def decorator(fn: AssetBody) -> dg.AssetsDefinition:
        return _build(
            chosen,
            fn,
            samples=given,
            translator=tr,
            io_manager_key=io_manager_key,
            skip_empty=skip_empty,
            checks=checks,
            check_severity=check_severity,
            partition_by=partition_by,
            asset_kwargs=asset_kwargs,
        )

    return decorator


def _check_features(features: list[type[BaseFeature]], samples: Mapping[type[BaseFeature], Any]) -> None:
    if not features:
        raise MetaxyDefinitionError("metaxy_multi_asset: give at least one feature class.")
    keys = [str(f.spec.key) for f in features]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise MetaxyDefinitionError(f"metaxy_multi_asset: feature(s) {twice} are listed more than once.")
    inside = {f.spec.key for f in features}
    for feature in features:
        upstream = [str(d.feature) for d in feature.spec.deps if d.feature in inside]
        if upstream:
            raise MetaxyDefinitionError(
                f"metaxy_multi_asset({keys}): '{feature.spec.key}' depends on {upstream} of the same step, whose "
                "rows are written only after the body returns, so its increment could not be resolved first. "
                "Compute it in its own asset (metaxy_asset) downstream of this one."
            )
        if not feature.spec.deps and feature not in samples:
            raise MetaxyDefinitionError(
                f"metaxy_multi_asset({keys}): root feature '{feature.spec.key}' needs a samples provider so its "
                f"increment can be resolved before the body runs: samples={{{feature.__name__}: fn}}."
            )
    stray = [str(f.spec.key) for f in samples if f not in features]
    if stray:
        raise MetaxyDefinitionError(
            f"metaxy_multi_asset({keys}): samples= names {stray}, which are not in features."
        )
    non_roots = [str(f.spec.key) for f in samples if f.spec.deps]
    if non_roots:
        raise MetaxyDefinitionError(
            f"metaxy_multi_asset({keys}): samples= is only for root features; {non_roots} have deps. Drop them."
        )


def _build(
    features: list[type[BaseFeature]],
    fn: AssetBody,
    *,
    samples: Mapping[type[BaseFeature], SamplesProvider],
    translator: MetaxyTranslator,
    io_manager_key: str,
    skip_empty: bool,
    checks: bool | Iterable[str],
    check_severity: dg.AssetCheckSeverity,
    partition_by: PartitionBy | None,
    asset_kwargs: Mapping[str, Any],
) -> dg.AssetsDefinition:
    _check_features(features, samples)
    keys = [str(f.spec.key) for f in features]
    options = dict(asset_kwargs)
    unknown = sorted(k for k in options if k not in _OPTIONS)
    if unknown:
        raise MetaxyDefinitionError(
            f"metaxy_multi_asset({keys}): unsupported option(s) {unknown}; supported: {', '.join(sorted(_OPTIONS))}. "
            "Asset keys come from the translator (use key_prefix= or a MetaxyTranslator subclass)."
        )
    for feature in features:
        check_partition_by(feature, options.get("partitions_def"), partition_by)
    ins: dict[str, dg.AssetIn] = dict(options.pop("ins", None) or {})
    where = f"{fn.__name__} (metaxy_multi_asset of {keys})"
    wants_context, _, resource_keys, _ = _body_params(
        features[0], fn, has_increment=True, inputs=ins, increment_name="increments", where=where
    )
    spec_options = {k: options.pop(k) for k in (*_SPEC_MERGED, *_SPEC_REPLACED, "key_prefix") if k in options}
    builtin = selected_builtin_checks(checks)
    specs: list[dg.AssetSpec] = []
    check_specs: list[dg.AssetCheckSpec] = list(options.pop("check_specs", None) or [])
    asset_keys: dict[str, dg.AssetKey] = {}
    for feature in features:
        spec = _asset_spec(translator.get_asset_spec(feature), dict(spec_options), feature, io_manager_key)
        if ins:
            spec = spec.merge_attributes(deps=[a.key or dg.AssetKey(name) for name, a in ins.items()])
        specs.append(spec)
        asset_keys[str(feature.spec.key)] = spec.key
        check_specs.extend(translator.get_check_specs(feature, spec.key))
    clash = [c.name for c in check_specs if c.name in builtin]
    if clash:
        raise MetaxyDefinitionError(
            f"metaxy_multi_asset({keys}): check_specs {clash} reuse built-in check names; rename them or drop the "
            "built-in ones with checks=False."
        )
    user_check_keys = {c.key for c in check_specs}
    by_key = {str(f.spec.key): f for f in features}

    def materialize(
        context: dg.AssetExecutionContext, io: MetaxyIOManager, chosen: list[str], loaded: Mapping[str, Any]
    ) -> Iterator[Any]:
        run_id = context.run_id
        filters = partition_filters(context, partition_by) or None
        if filters:
            context.log.info(f"{keys}: partition(s) {context.partition_keys}: {describe(filters)}")
        previous = {k: previous_materialization_metadata(context.instance, asset_keys[k]) for k in chosen}
        increments: dict[str, MetaxyIncrement] = {}
        try:
            for k in chosen:
                feature = by_key[k]
                provider = samples.get(feature)
                given = _call_samples(provider, feature) if provider is not None else None
                increments[k] = io.resolve_increment(feature, samples=given, filters=filters)
                context.log.info(f"{k}: increment {increments[k].summary()}")
                bind_commits(io, increments[k], run_id, context.log)
            user_results: list[dg.AssetCheckResult] = []
            if skip_empty and all(inc.is_empty for inc in increments.values()):
                context.log.info(f"{chosen}: nothing new or stale; the body was not called.")
                returned: dict[str, Any] = dict.fromkeys(chosen)
            else:
                kwargs: dict[str, Any] = {name: getattr(context.resources, name) for name in resource_keys}
                kwargs.update(loaded)
                if wants_context:
                    kwargs["context"] = context
                kwargs["increments"] = dict(increments)
                value, version, _, user_results = _unwrap(fn(**kwargs))
                returned = _returned(value, version, chosen, keys)
            reports = _write_all(io, increments, returned, run_id, filters)
        finally:
            for inc in increments.values():
                inc.close()
        for k in chosen:
            report = reports[k]
            context.log.info(
                f"{k}: written={report.written} missing={report.missing} data_version={report.data_version.data_version}"
            )
            yield dg.MaterializeResult(
                asset_key=asset_keys[k],
                data_version=report.data_version.as_dagster(),
                metadata=report.metadata(previous[k]),
            )
        selected_checks = context.selected_asset_check_keys
        for result in user_results:
            if result.asset_key is None:
                raise MetaxyDefinitionError(
                    f"{where}: a dg.AssetCheckResult without asset_key; in a multi-asset each result names its asset."
                )
            if dg.AssetCheckKey(result.asset_key, result.check_name) in selected_checks:
                yield result

    def compute(context: dg.AssetExecutionContext, **loaded: Any) -> Iterator[Any]:
        io: MetaxyIOManager = getattr(context.resources, io_manager_key)
        if not isinstance(io, MetaxyIOManager):
            raise MetaxyDefinitionError(
                f"Resource '{io_manager_key}' is a {type(io).__name__}; metaxy assets need a MetaxyIOManager there "
                f"(resources={{'{io_manager_key}': MetaxyIOManager(store=MetaxyStoreResource(...))}})."
            )
        check_code_location(context, f"metaxy_multi_asset {keys}")
        chosen = [k for k in keys if asset_keys[k] in context.selected_asset_keys]
        selected_checks = context.selected_asset_check_keys
        if chosen:
            yield from materialize(context, io, chosen, loaded)
        elif any(c in selected_checks for c in user_check_keys):
            raise MetaxyDefinitionError(
                f"{where}: your check_specs are results of the body, so they run only with a materialization; "
                "select their assets too."
            )
        filters = partition_filters(context, partition_by) or None
        for k in keys:
            wanted = [n for n in builtin if dg.AssetCheckKey(asset_keys[k], n) in selected_checks]
            if not wanted:
                continue
            feature = by_key[k]
            provider = samples.get(feature)
            given = _call_samples(provider, feature) if provider is not None else None
            with io.store.open() as store:
                increment = store.resolve_update(feature, samples=given, filters=filters, lazy=True)
                results = check_results(feature, asset_keys[k], increment, wanted, check_severity)
            yield from results

    asset = dg.multi_asset(
        name=options.pop("name", None) or fn.__name__,
        specs=specs,
        check_specs=[*(c for k in keys for c in builtin_check_specs(asset_keys[k], builtin)), *check_specs],
        can_subset=True,
        ins=ins or None,
        required_resource_keys={io_manager_key, *resource_keys},
        **{k: options.pop(k) for k in _OP_OPTIONS if k in options},
    )(compute)
    bind(
        asset,
        [
            MetaxyAssetInfo(
                by_key[k],
                asset_keys[k],
                samples.get(by_key[k]),
                False,
                partition_by=partition_by,
                check_severity=check_severity,
            )
            for k in keys
        ],
    )
    return asset


def _returned(
    value: Any, version: dg.DataVersion | None, chosen: list[str], keys: list[str]
) -> dict[str, Any]:
    """The body's dict, checked: exactly the selected feature keys."""
    if version is not None or not isinstance(value, Mapping):
        raise MetaxyOutputError(
            f"A metaxy_multi_asset body returns a dict from feature key to rows (or None), e.g. "
            f"{{{', '.join(repr(k) + ': rows' for k in chosen)}}}; it returned a {type(value).__name__}. "
            "Each feature's data version comes from its stored rows. Nothing was written."
        )
    returned = {str(k): v for k, v in value.items()}
    unknown = [k for k in returned if k not in chosen]
    if unknown:
        unselected = [k for k in unknown if k in keys]
        hint = (
            f" {unselected} are not selected in this run (a subset run computes only {chosen}): leave them out."
            if unselected
            else ""
        )
        raise MetaxyOutputError(
            f"A metaxy_multi_asset body returned rows for {unknown}, which this step does not compute; it computes "
            f"{chosen}.{hint} Nothing was written."
        )
    missing = [k for k in chosen if k not in returned]
    if missing:
        raise MetaxyOutputError(
            f"A metaxy_multi_asset body returned no entry for feature(s) {missing}. Return rows for every selected "
            f"feature ({chosen}), or None for one to write nothing for it. Nothing was written."
        )
    return returned


def _write_all(
    io: MetaxyIOManager,
    increments: Mapping[str, MetaxyIncrement],
    returned: Mapping[str, Any],
    run_id: str,
    filters: Any,
) -> dict[str, MetaxyWriteReport]:
    """Stamp every feature's rows first (any error before any write), then write each atomically."""
    stamped = {}
    for k, inc in increments.items():
        rows = returned[k]
        if rows is not None and not inc.committed:
            stamped[k] = io.stamp(inc.feature, inc, rows)
    reports = {}
    for k, inc in increments.items():
        rows = returned[k]
        if inc.committed:
            reports[k] = finish_increment(io, inc, rows, run_id, filters)
        elif k in stamped:
            reports[k] = io.write_stamped(
                inc.feature, inc, stamped[k], materialization_id=run_id, filters=filters
            )
        else:  # None: nothing written for this feature; its samples stay new/stale
            reports[k] = io.report_unwritten(inc.feature, inc, filters=filters)
    return reports
