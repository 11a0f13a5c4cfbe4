"""``MetaxyComponent``: metaxy feature assets configured in a ``defs.yaml`` for the ``dg`` CLI.

A ``defs.yaml`` names the metaxy config file, the store, which features become assets, where their
bodies and samples providers live, per-feature asset options, and whether the sensor, the asset
checks and the graph asset are built::

    type: metaxy_dagster.MetaxyComponent
    attributes:
      config_file: ../../metaxy.toml       # relative to this file
      store: dev                           # default: the config's store setting
      select: ["video/*"]                  # feature keys or globs; default: every feature
      compute: my_project.bodies           # a module with `compute` (and `samples`) mappings
      assets:
        "video/faces":
          owners: ["team:vision"]
          automation_condition: "{{ automation_condition.eager() }}"
        "video/embedding":
          partitions: {static: [train, test]}
          partition_by: split                # the column whose value is the partition key
          retry_policy: {max_retries: 2, delay: 10}
      sensor: true
      checks: true

``dg scaffold defs metaxy_dagster.MetaxyComponent <path>`` writes such a file to start from.
"""

import fnmatch
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field

import metaxy_core as mx
from metaxy_core.feature import BaseFeature
from metaxy_core.graph import FeatureGraph
from metaxy_dagster.assets import build_metaxy_assets, build_metaxy_graph_asset, metaxy_asset
from metaxy_dagster.errors import MetaxyDefinitionError
from metaxy_dagster.io_manager import MetaxyIOManager
from metaxy_dagster.partition_options import PartitionsOptions, resolve_partition_by
from metaxy_dagster.partitions import PartitionBy
from metaxy_dagster.resource import MetaxyStoreResource
from metaxy_dagster.sensors import build_metaxy_sensor
from metaxy_dagster.translator import FEATURE_METADATA_KEY, MetaxyTranslator, MetaxyTranslatorSettings

TEMPLATE = """\
type: metaxy_dagster.MetaxyComponent

attributes:
  # The metaxy config file (metaxy.toml or a pyproject.toml with [tool.metaxy]), relative to this file.
  # Its entrypoints are imported, so every feature they define is known.
  config_file: {config_file}
  # The store to use (a name from the config); default: the config's `store` setting.
{store_line}
  # Features to build assets for: feature keys or globs ("video/*"); default: all of them.
  # select: ["video/*"]

  # Where asset bodies come from: a module with a `compute` mapping (feature class or key -> function)
  # and optionally a `samples` mapping (root feature -> samples provider), or per feature:
  # compute:
  #   "video/faces": my_project.bodies:faces
  # compute: my_project.bodies

  # Per-feature asset options (feature key or glob -> options), merged with what metaxy derives.
  # assets:
  #   "video/*":
  #     group_name: video
  #     owners: ["team:vision"]
  #     tags: {{tier: gold}}
  #     automation_condition: "{{{{ automation_condition.eager() }}}}"
  #   "video/embedding":
  #     partitions: {{static: [train, test]}}   # or {{dynamic: name}}, {{daily: {{start_date: "2024-01-01"}}}}
  #     partition_by: split                   # the column holding the partition key
  #     retry_policy: {{max_retries: 2, delay: 10}}
  #     pool: gpu

  # The built-in asset checks, the sensor that launches runs for new or stale samples, and the
  # asset that shows the feature graph.
  checks: true
  sensor: true
  graph_asset: true
"""


class RetryOptions(dg.Model):
    """How often and after what delay a failed step is retried."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(default=1, description="Retries after the first failure.")
    delay: float | None = Field(default=None, description="Seconds before a retry.")
    backoff: Literal["linear", "exponential"] | None = Field(
        default=None, description="How the delay grows from one retry to the next."
    )
    jitter: Literal["full", "plus_minus"] | None = Field(
        default=None, description="Randomness added to the delay."
    )

    def build(self, where: str) -> dg.RetryPolicy:
        if self.max_retries < 0 or (self.delay is not None and self.delay < 0):
            raise MetaxyDefinitionError(
                f"{where}: max_retries ({self.max_retries}) and delay ({self.delay}) cannot be negative."
            )
        return dg.RetryPolicy(
            max_retries=self.max_retries,
            delay=self.delay,
            backoff=None if self.backoff is None else dg.Backoff(self.backoff.upper()),
            jitter=None if self.jitter is None else dg.Jitter(self.jitter.upper()),
        )


class MetaxyAssetOptions(dg.Resolvable, dg.Model):
    """Asset options for the features a key or glob selects (the ``dg.asset`` options of a spec)."""

    # automation_condition holds a resolved AutomationCondition, which pydantic cannot describe.
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    group_name: str | None = Field(default=None, description="Replaces the group the translator derives.")
    description: str | None = Field(default=None, description="Replaces the feature's docstring.")
    code_version: str | None = Field(default=None, description="Replaces the feature code version.")
    owners: list[str] = Field(default_factory=list, description="Added to the owners.")
    tags: dict[str, str] = Field(default_factory=dict, description="Added to the tags (these win).")
    kinds: list[str] = Field(default_factory=list, description="Added to the kinds.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Added to the metadata (these win).")
    automation_condition: Annotated[
        dg.AutomationCondition | None,
        dg.Resolver.default(
            model_field_type=str | None,
            description='A template such as "{{ automation_condition.eager() }}".',
        ),
    ] = None

    partitions: PartitionsOptions | None = Field(
        default=None,
        description="The asset's partitions: {static: [keys]}, {dynamic: name}, {daily: {start_date: ...}} "
        "(also hourly, weekly, monthly) or {multi: {dimension: partitions, ...}}.",
    )
    partition_by: str | dict[str, str] | None = Field(
        default=None,
        description="The column holding the partition key (a timestamp column for time windows), or "
        "{dimension: column} for multi-partitions; a partition run then sees only its samples.",
    )
    retry_policy: RetryOptions | None = Field(default=None, description="Retries of the asset's step.")
    pool: str | None = Field(default=None, description="The concurrency pool of the asset's step.")
    op_tags: dict[str, Any] = Field(
        default_factory=dict, description="Added to the tags of the asset's step."
    )

    def apply(self, spec: dg.AssetSpec) -> dg.AssetSpec:
        """``spec`` with these options: the merge rule of ``metaxy_asset``'s ``dg.asset`` options."""
        merged: dict[str, Any] = {}
        if self.owners:
            merged["owners"] = list(self.owners)
        if self.tags:
            merged["tags"] = dict(self.tags)
        if self.kinds:
            merged["kinds"] = set(self.kinds)
        if self.metadata:
            merged["metadata"] = dict(self.metadata)
        replaced = {
            k: v
            for k, v in (
                ("group_name", self.group_name),
                ("description", self.description),
                ("code_version", self.code_version),
                ("automation_condition", self.automation_condition),
            )
            if v is not None
        }
        return spec.merge_attributes(**merged).replace_attributes(**replaced)


class MetaxyScaffoldParams(BaseModel):
    config_file: str = Field(
        default="metaxy.toml", description="The metaxy config file, relative to defs.yaml."
    )
    store: str | None = Field(
        default=None, description="The store name; default: the config's store setting."
    )


class MetaxyComponentScaffolder(dg.Scaffolder[MetaxyScaffoldParams]):
    """Writes a commented ``defs.yaml`` for :class:`MetaxyComponent`."""

    @classmethod
    def get_scaffold_params(cls) -> type[MetaxyScaffoldParams]:
        return MetaxyScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[MetaxyScaffoldParams]) -> None:
        params = request.params or MetaxyScaffoldParams()
        store_line = f"  store: {params.store}" if params.store else "  # store: dev"
        target = Path(request.target_path)
        target.mkdir(parents=True, exist_ok=True)
        (target / "defs.yaml").write_text(
            TEMPLATE.format(config_file=params.config_file, store_line=store_line)
        )


@dg.scaffold_with(MetaxyComponentScaffolder)
class MetaxyComponent(dg.Component, dg.Resolvable, dg.Model):
    """Metaxy feature assets, their checks, sensor and graph asset, from a metaxy config file.

    Each selected feature becomes an asset (as with ``build_metaxy_assets``) whose body is looked up
    in ``compute``; a root feature with a samples provider needs no body. The component provides the
    ``metaxy_store`` and ``metaxy_io_manager`` resources for the store it names.
    """

    config_file: str | None = Field(
        default=None,
        description="The metaxy config file, relative to defs.yaml; default: found from the working directory.",
    )
    store: str | None = Field(
        default=None, description="Store name from the config; default: its `store` setting."
    )
    select: list[str] | None = Field(
        default=None,
        description="Feature keys or globs ('video/*') to build assets for; default: all features.",
    )
    compute: str | dict[str, str] | None = Field(
        default=None,
        description="A module with a `compute` mapping (feature class or key -> body), or feature key -> "
        "'module:function'.",
    )
    samples: str | dict[str, str] | None = Field(
        default=None,
        description="Root feature key -> 'module:function' samples provider; default: the `samples` mapping of "
        "the compute module, if any.",
    )
    observe: list[str] = Field(
        default_factory=list, description="Root features to build as observable sources instead of assets."
    )
    assets: dict[str, MetaxyAssetOptions] = Field(
        default_factory=dict,
        description="Feature key or glob -> asset options; later entries win where several match.",
    )
    key_prefix: list[str] = Field(default_factory=list, description="Parts prepended to every asset key.")
    checks: bool = Field(default=True, description="Build the metaxy_in_sync and metaxy_no_orphans checks.")
    sensor: bool = Field(
        default=True, description="Build the sensor that launches runs for new or stale samples."
    )
    sensor_name: str = Field(default="metaxy_sensor", description="Name of the sensor.")
    sensor_interval_seconds: int = Field(
        default=30, description="Minimum seconds between sensor evaluations."
    )
    sensor_status: Literal["running", "stopped"] = Field(
        default="stopped", description="The sensor's default status."
    )
    graph_asset: bool = Field(
        default=True, description="Build the asset showing the feature graph and its diff."
    )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        config_path = None if self.config_file is None else (context.path / self.config_file).resolve()
        if config_path is not None and not config_path.is_file():
            raise MetaxyDefinitionError(
                f"MetaxyComponent at {context.path}: config_file '{self.config_file}' does not exist "
                f"(resolved to {config_path}); give it relative to the defs.yaml folder."
            )
        cfg = mx.init(config_path)
        where = f"MetaxyComponent ({context.path / 'defs.yaml'})"
        if self.store is not None and self.store not in cfg.stores:
            # Caught here, so `dg check defs` reports it rather than the first run.
            raise MetaxyDefinitionError(
                f"{where}: store: '{self.store}' is not a store of {cfg.source or 'the metaxy config'} "
                f"(its stores: {sorted(cfg.stores)}). Name one of them, or add [stores.{self.store}] there."
            )
        features = self._selected(FeatureGraph.get_active())
        observe = [f for f in features if self._matches(f, self.observe)]
        self._check_patterns(features, observe, where)
        compute, samples = self._bodies(features)
        self._check_bodies(features, compute, samples, observe, where)
        store_type = (
            cfg.stores[self.store or cfg.store].type if (self.store or cfg.store) in cfg.stores else None
        )
        translator = MetaxyTranslator(
            MetaxyTranslatorSettings(
                key_prefix=tuple(self.key_prefix),
                store_kind=store_type
                if store_type in {"duckdb", "sqlite", "postgres", "clickhouse"}
                else None,
            )
        )
        steps = {f: self._step_options(f, where) for f in features if f not in observe}
        # build_metaxy_assets takes no partition_by, so those features are built one by one (their deps
        # still connect: the component's translator gives every asset its key).
        by_partition = [f for f in features if steps.get(f, ({}, None))[1] is not None]
        rest = [f for f in features if f not in by_partition]
        built: list[dg.AssetsDefinition | dg.SourceAsset] = build_metaxy_assets(
            rest,
            compute={f: b for f, b in compute.items() if f in rest},
            samples={f: s for f, s in samples.items() if f in rest},
            observe=observe,
            options={f: steps[f][0] for f in rest if f in steps and steps[f][0]},
            translator=translator,
            checks=self.checks,
        )
        for feature in by_partition:
            options, partition_by = steps[feature]
            body: Any = compute.get(feature)  # None: a root written from its samples provider
            built.append(
                metaxy_asset(
                    feature,
                    samples=samples.get(feature),
                    translator=translator,
                    checks=self.checks,
                    partition_by=partition_by,
                    **options,
                )(body)
            )
        assets = [self._with_options(a) for a in built]
        store, io_manager = _resources(
            None if config_path is None else str(config_path), self.store, self.store or cfg.store
        )
        # The sensor's runs have no partition key, so it leaves partitioned assets to backfills (and is
        # not built when every asset is partitioned or observed: it would have nothing to launch).
        unpartitioned = [a for a in assets if isinstance(a, dg.AssetsDefinition) and a.partitions_def is None]
        sensors = []
        if self.sensor and unpartitioned:
            sensors.append(
                build_metaxy_sensor(
                    unpartitioned,
                    translator=translator,
                    name=self.sensor_name,
                    minimum_interval_seconds=self.sensor_interval_seconds,
                    default_status=dg.DefaultSensorStatus(self.sensor_status.upper()),
                )
            )
        extra = [build_metaxy_graph_asset(FeatureGraph.get_active())] if self.graph_asset else []
        return dg.Definitions(
            assets=[*assets, *extra],
            sensors=sensors,
            resources={"metaxy_store": store, "metaxy_io_manager": io_manager},
        )

    # -- pieces ---------------------------------------------------------------------------------------
    @staticmethod
    def _matches(feature: type[BaseFeature], patterns: Sequence[str]) -> bool:
        key = str(feature.spec.key)
        return any(fnmatch.fnmatchcase(key, p) for p in patterns)

    def _selected(self, graph: FeatureGraph) -> list[type[BaseFeature]]:
        every = list(graph.features_by_key.values())
        if self.select is None:
            return every
        unmatched = [
            p for p in self.select if not any(fnmatch.fnmatchcase(str(f.spec.key), p) for f in every)
        ]
        if unmatched:
            raise MetaxyDefinitionError(
                f"MetaxyComponent: select {unmatched} matches no feature; known features: "
                f"{sorted(str(f.spec.key) for f in every)}."
            )
        return [f for f in every if self._matches(f, self.select)]

    def _check_patterns(
        self, features: list[type[BaseFeature]], observe: list[type[BaseFeature]], where: str
    ) -> None:
        """Every key or glob of ``assets:`` and ``observe:`` selects a feature (a typo configures nothing)."""
        keys = sorted(str(f.spec.key) for f in features)
        for option, patterns in (("assets", list(self.assets)), ("observe", self.observe)):
            for pattern in patterns:
                if not any(fnmatch.fnmatchcase(key, pattern) for key in keys):
                    raise MetaxyDefinitionError(
                        f"{where}: {option}: '{pattern}' matches no selected feature; selected features: {keys}. "
                        "Fix the key or glob (or widen `select:`)."
                    )
        observed = {str(f.spec.key) for f in observe}
        for pattern in self.assets:
            matched = {key for key in keys if fnmatch.fnmatchcase(key, pattern)}
            if matched <= observed:
                raise MetaxyDefinitionError(
                    f"{where}: assets: '{pattern}' selects only observable sources ({sorted(matched)}, from "
                    "`observe:`), which take no asset options. Drop the entry, or the features from `observe:`."
                )

    @staticmethod
    def _check_bodies(
        features: list[type[BaseFeature]],
        compute: Mapping[type[BaseFeature], Any],
        samples: Mapping[type[BaseFeature], Any],
        observe: list[type[BaseFeature]],
        where: str,
    ) -> None:
        """Every selected feature can be built: it has a body, or is a root with a samples provider."""

        def buildable(f: type[BaseFeature]) -> bool:
            if f in observe:  # an observable source lists its samples on each observation
                return f in samples
            return f in compute or (not f.spec.deps and f in samples)

        missing = [str(f.spec.key) for f in features if not buildable(f)]
        if missing:
            raise MetaxyDefinitionError(
                f"{where}: feature(s) {missing} have no asset body. Name one in `compute:` (a module with a "
                '`compute` mapping from feature key to function, or per feature: "feature/key": '
                "module:function), give a root feature a samples provider in `samples:` (it is then written "
                "as listed), or leave the feature out with `select:`."
            )

    def _bodies(
        self, features: list[type[BaseFeature]]
    ) -> tuple[dict[type[BaseFeature], Callable[..., Any]], dict[type[BaseFeature], Callable[[], Any]]]:
        by_key = {str(f.spec.key): f for f in features}
        compute: dict[type[BaseFeature], Callable[..., Any]] = {}
        samples: dict[type[BaseFeature], Callable[[], Any]] = {}
        if isinstance(self.compute, str):
            module = _import(self.compute, "compute")
            compute.update(
                _feature_mapping(getattr(module, "compute", {}), by_key, f"{self.compute}.compute")
            )
            if self.samples is None:
                samples.update(
                    _feature_mapping(getattr(module, "samples", {}), by_key, f"{self.compute}.samples")
                )
        elif self.compute:
            compute.update(_feature_mapping(_load_each(self.compute, "compute"), by_key, "compute"))
        if isinstance(self.samples, str):
            module = _import(self.samples, "samples")
            samples.update(
                _feature_mapping(getattr(module, "samples", {}), by_key, f"{self.samples}.samples")
            )
        elif self.samples:
            samples.update(_feature_mapping(_load_each(self.samples, "samples"), by_key, "samples"))
        return compute, samples

    def _step_options(
        self, feature: type[BaseFeature], where: str
    ) -> tuple[dict[str, Any], PartitionBy | None]:
        """The ``dg.asset`` step options and ``partition_by`` of ``feature`` (later matching entries win)."""
        key = str(feature.spec.key)
        options: dict[str, Any] = {}
        partitions: tuple[str, PartitionsOptions] | None = None
        partition_by: tuple[str, str | dict[str, str]] | None = None
        op_tags: dict[str, Any] = {}
        for pattern, entry in self.assets.items():
            if not fnmatch.fnmatchcase(key, pattern):
                continue
            at = f"{where}: assets['{pattern}']"
            if entry.partitions is not None:
                partitions = (at, entry.partitions)
            if entry.partition_by is not None:
                partition_by = (at, entry.partition_by)
            if entry.retry_policy is not None:
                options["retry_policy"] = entry.retry_policy.build(f"{at}.retry_policy")
            if entry.pool is not None:
                options["pool"] = entry.pool
            op_tags.update(entry.op_tags)
        if op_tags:
            options["op_tags"] = op_tags
        if partitions is None:
            if partition_by is not None:
                raise MetaxyDefinitionError(
                    f"{partition_by[0]}.partition_by: '{key}' has no partitions; add partitions: (e.g. "
                    "{static: [train, test]}) or drop partition_by."
                )
            return options, None
        partitions_def = partitions[1].build(f"{partitions[0]}.partitions")
        options["partitions_def"] = partitions_def
        if partition_by is None:
            return options, None
        return options, resolve_partition_by(
            feature, partitions_def, partition_by[1], f"{partition_by[0]}.partition_by"
        )

    def _with_options(self, asset: dg.AssetsDefinition | dg.SourceAsset) -> Any:
        if not self.assets or not isinstance(asset, dg.AssetsDefinition):
            return asset

        def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
            value = spec.metadata.get(FEATURE_METADATA_KEY)
            key = str(getattr(value, "value", value))
            for pattern, options in self.assets.items():
                if fnmatch.fnmatchcase(key, pattern):
                    spec = options.apply(spec)
            return spec

        return asset.map_asset_specs(apply)


# Dagster merges the definitions of a project's components only when a resource key holds the very
# same object in each, so components naming the same config file and store share their resources.
_RESOURCES: dict[tuple[str | None, str | None], tuple[MetaxyStoreResource, MetaxyIOManager]] = {}


def _resources(
    config_file: str | None, store: str | None, resolved: str | None
) -> tuple[MetaxyStoreResource, MetaxyIOManager]:
    # Keyed by the store the config resolves to, so `store: dev` and no `store:` (when dev is the
    # default) share one resource instead of clashing as two different `metaxy_store` resources.
    key = (config_file, resolved)
    if key not in _RESOURCES:
        resource = MetaxyStoreResource(config_file=config_file, store=store)
        _RESOURCES[key] = (resource, MetaxyIOManager(store=resource))
    return _RESOURCES[key]


def _import(module_name: str, option: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise MetaxyDefinitionError(
            f"MetaxyComponent: {option}: cannot import module '{module_name}': {exc}. Give an importable module "
            "(on the code location's path)."
        ) from exc


def _load_each(references: Mapping[str, str], option: str) -> dict[str, Any]:
    """Feature key -> the object a 'module:attribute' reference names."""
    loaded: dict[str, Any] = {}
    for key, reference in references.items():
        module_name, _, attribute = reference.partition(":")
        if not attribute:
            raise MetaxyDefinitionError(
                f"MetaxyComponent: {option}['{key}'] is '{reference}'; write it as 'module:function'."
            )
        module = _import(module_name, f"{option}['{key}']")
        if not hasattr(module, attribute):
            raise MetaxyDefinitionError(
                f"MetaxyComponent: {option}['{key}']: module '{module_name}' has no attribute '{attribute}'."
            )
        loaded[key] = getattr(module, attribute)
    return loaded


def _feature_mapping(
    mapping: Mapping[Any, Any], by_key: Mapping[str, type[BaseFeature]], where: str
) -> dict[type[BaseFeature], Any]:
    """Entries of a feature class or key mapping that are selected features (others are ignored)."""
    out: dict[type[BaseFeature], Any] = {}
    known = FeatureGraph.get_active().features_by_key
    for feature, value in mapping.items():
        key = str(feature.spec.key) if isinstance(feature, type) else str(feature)
        if key not in {str(k) for k in known}:
            raise MetaxyDefinitionError(
                f"MetaxyComponent: {where} names feature '{key}', which the metaxy config's entrypoints do not "
                f"define (known: {sorted(str(k) for k in known)})."
            )
        if key in by_key:
            out[by_key[key]] = value
    return out
