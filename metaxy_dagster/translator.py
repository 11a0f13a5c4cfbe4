"""``MetaxyTranslator``: how a feature class becomes a Dagster asset spec.

Subclass it and override any ``get_*`` method to change keys, groups, tags, metadata, kinds or
descriptions; :meth:`MetaxyTranslator.get_asset_spec` combines them. Every metaxy factory takes
``translator=`` and uses the same translator for an asset's own key and its dependencies' keys, so
one translator per code location keeps the graph connected.
"""

import inspect
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from metaxy_core.feature import BaseFeature
from metaxy_core.keys import FeatureKey
from metaxy_dagster import metadata as md

FEATURE_METADATA_KEY = "metaxy/feature"
"""Definition metadata key holding the feature key string; the IO manager and sensor read it."""
FEATURE_TAG = "metaxy/feature"
"""Tag on every metaxy asset. Its value is the feature key with '.' for '/' (Dagster tag values
cannot hold '/'), or empty for keys longer than a tag value may be; filter on it in the UI."""


def feature_tag_value(key: FeatureKey) -> str:
    value = ".".join(key.parts)
    return value if len(value) <= 63 else ""


@dataclass(frozen=True)
class MetaxyTranslatorSettings:
    """Switches for the default translator.

    Attributes:
        key_prefix: parts prepended to every asset key (e.g. ``("metaxy",)``).
        store_kind: the kind shown next to ``metaxy`` (the Dagster UI's storage badge).
        column_schema: attach ``dagster/column_schema`` from the feature's columns.
        group_from_key: default group name = the feature key's first part (for keys with two or more parts).
    """

    key_prefix: tuple[str, ...] = ()
    store_kind: str | None = "duckdb"
    column_schema: bool = True
    group_from_key: bool = True
    extra_kinds: tuple[str, ...] = field(default_factory=tuple)


class MetaxyTranslator:
    """Maps metaxy features to Dagster asset properties.

    >>> import metaxy_core as mx
    >>> from metaxy_dagster import MetaxyTranslator
    >>> with mx.FeatureGraph().use():
    ...     class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video/raw", id_columns=["video_id"])):
    ...         '''Raw videos.'''
    ...         video_id: str
    ...     spec = MetaxyTranslator().get_asset_spec(Video)
    >>> spec.key.path, spec.group_name, sorted(spec.kinds), spec.description
    (['video', 'raw'], 'video', ['duckdb', 'metaxy'], 'Raw videos.')
    """

    def __init__(self, settings: MetaxyTranslatorSettings | None = None) -> None:
        self.settings = settings or MetaxyTranslatorSettings()

    # -- overridable pieces -------------------------------------------------------------------------
    def get_asset_key(self, feature: type[BaseFeature]) -> dg.AssetKey:
        return dg.AssetKey([*self.settings.key_prefix, *feature.spec.key.parts])

    def get_group_name(self, feature: type[BaseFeature]) -> str | None:
        parts = feature.spec.key.parts
        if self.settings.group_from_key and len(parts) > 1:
            return parts[0]
        return None

    def get_description(self, feature: type[BaseFeature]) -> str:
        doc = inspect.getdoc(feature)
        # pydantic models inherit BaseModel's docstring; only the feature's own docstring counts.
        if doc and feature.__doc__ is not None and "__doc__" in feature.__dict__:
            return doc
        return f"Metaxy feature `{feature.spec.key}`."

    def get_tags(self, feature: type[BaseFeature]) -> dict[str, str]:
        return {}

    def get_kinds(self, feature: type[BaseFeature]) -> set[str]:
        kinds = {"metaxy", *self.settings.extra_kinds}
        if self.settings.store_kind:
            kinds.add(self.settings.store_kind)
        return kinds

    def get_code_version(self, feature: type[BaseFeature]) -> str:
        return feature.feature_code_version()

    def get_metadata(self, feature: type[BaseFeature]) -> dict[str, Any]:
        """Definition metadata: feature key and versions, fields, lineage, column schema."""
        meta: dict[str, Any] = {
            FEATURE_METADATA_KEY: str(feature.spec.key),
            "metaxy/feature_version": feature.feature_version(),
            "metaxy/feature_code_version": feature.feature_code_version(),
            "metaxy/id_columns": dg.MetadataValue.json(list(feature.spec.id_columns)),
            "metaxy/fields": dg.MetadataValue.md(md.fields_table(feature)),
            "metaxy/field_versions": dg.MetadataValue.json(feature.field_versions()),
            "dagster/table_name": feature.spec.key.table_name,
        }
        if feature.spec.deps:
            meta["metaxy/lineage"] = dg.MetadataValue.md(md.lineage_table(feature))
        if self.settings.column_schema:
            meta["dagster/column_schema"] = md.column_schema(feature)
        return meta

    def get_dep_keys(self, feature: type[BaseFeature]) -> list[dg.AssetKey]:
        graph = feature.graph
        return [self.get_asset_key(graph.get_feature(dep.feature)) for dep in feature.spec.deps]

    def get_owners(self, feature: type[BaseFeature]) -> list[str] | None:
        """Owners of the asset (``team:...`` or e-mail addresses); none by default."""
        return None

    def get_automation_condition(self, feature: type[BaseFeature]) -> dg.AutomationCondition | None:
        """None by default; :func:`metaxy_dagster.metaxy_automation_condition` is the recommended one."""
        return None

    def get_partition_mapping(
        self, feature: type[BaseFeature], upstream: type[BaseFeature]
    ) -> dg.PartitionMapping | None:
        """How ``feature``'s partitions map to ``upstream``'s (Dagster's default when None)."""
        return None

    def get_check_specs(self, feature: type[BaseFeature], asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
        """Extra checks for every asset (besides the built-in ones); the body yields their results."""
        return []

    # -- combined -----------------------------------------------------------------------------------
    def get_asset_spec(self, feature: type[BaseFeature]) -> dg.AssetSpec:
        graph = feature.graph
        deps = [
            dg.AssetDep(
                self.get_asset_key(graph.get_feature(dep.feature)),
                partition_mapping=self.get_partition_mapping(feature, graph.get_feature(dep.feature)),
            )
            for dep in feature.spec.deps
        ]
        return dg.AssetSpec(
            key=self.get_asset_key(feature),
            deps=deps,
            description=self.get_description(feature),
            metadata=self.get_metadata(feature),
            group_name=self.get_group_name(feature),
            code_version=self.get_code_version(feature),
            tags={FEATURE_TAG: feature_tag_value(feature.spec.key), **self.get_tags(feature)},
            kinds=self.get_kinds(feature),
            owners=self.get_owners(feature),
            automation_condition=self.get_automation_condition(feature),
        )

    def feature_for_key(
        self, features: list[type[BaseFeature]], key: dg.AssetKey
    ) -> type[BaseFeature] | None:
        """The feature among ``features`` whose asset key is ``key``."""
        for feature in features:
            if self.get_asset_key(feature) == key:
                return feature
        return None


def feature_key_of(spec_metadata: dict[str, Any]) -> FeatureKey | None:
    """The feature key recorded in an asset's definition metadata, if it is a metaxy asset."""
    value = spec_metadata.get(FEATURE_METADATA_KEY)
    if value is None:
        return None
    text = value.value if hasattr(value, "value") else value
    return FeatureKey(str(text))
