"""metaxy_core: sample-level, field-level data versioning for multimodal pipelines."""

from typing import Any

from metaxy_core.config import MetaxyConfig as MetaxyConfig
from metaxy_core.config import StoreConfig as StoreConfig
from metaxy_core.config import get_config as get_config
from metaxy_core.config import init as init
from metaxy_core.config import load_config as load_config
from metaxy_core.config import set_config as set_config
from metaxy_core.diff import GraphDiff as GraphDiff
from metaxy_core.diff import diff_graphs as diff_graphs
from metaxy_core.errors import ConfigError as ConfigError
from metaxy_core.errors import FeatureDefinitionError as FeatureDefinitionError
from metaxy_core.errors import FeatureNotFoundError as FeatureNotFoundError
from metaxy_core.errors import FilterError as FilterError
from metaxy_core.errors import InvalidKeyError as InvalidKeyError
from metaxy_core.errors import MetadataValidationError as MetadataValidationError
from metaxy_core.errors import MetaxyError as MetaxyError
from metaxy_core.errors import ResolveError as ResolveError
from metaxy_core.errors import StoreError as StoreError
from metaxy_core.feature import BaseFeature as BaseFeature
from metaxy_core.feature import Feature as Feature
from metaxy_core.graph import FeatureGraph as FeatureGraph
from metaxy_core.increment import Increment as Increment
from metaxy_core.keys import FeatureKey as FeatureKey
from metaxy_core.keys import FieldKey as FieldKey
from metaxy_core.migrations import apply_migration as apply_migration
from metaxy_core.migrations import generate_migration as generate_migration
from metaxy_core.migrations import migration_status as migration_status
from metaxy_core.planning import Plan as Plan
from metaxy_core.planning import plan as plan
from metaxy_core.render import render_diff as render_diff
from metaxy_core.render import render_graph as render_graph
from metaxy_core.snapshots import GraphSnapshot as GraphSnapshot
from metaxy_core.snapshots import SnapshotNotFoundError as SnapshotNotFoundError
from metaxy_core.snapshots import load_graph_snapshot as load_graph_snapshot
from metaxy_core.snapshots import push_graph_snapshot as push_graph_snapshot
from metaxy_core.spec import ALL as ALL
from metaxy_core.spec import FeatureDep as FeatureDep
from metaxy_core.spec import FeatureSpec as FeatureSpec
from metaxy_core.spec import FieldDep as FieldDep
from metaxy_core.spec import FieldSpec as FieldSpec
from metaxy_core.spec import LineageRelationship as LineageRelationship
from metaxy_core.status import feature_status as feature_status
from metaxy_core.stores.base import MetadataStore as MetadataStore
from metaxy_core.stores.duckdb import DuckDBMetadataStore as DuckDBMetadataStore
from metaxy_core.stores.memory import InMemoryMetadataStore as InMemoryMetadataStore
from metaxy_core.stores.sqlite import SQLiteMetadataStore as SQLiteMetadataStore
from metaxy_core.transfer import FeatureCopy as FeatureCopy
from metaxy_core.transfer import copy_metadata as copy_metadata

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Stores with optional drivers (PostgreSQL, ClickHouse, ...) load on first use only.
    from metaxy_core import stores

    if name in stores._LAZY:
        return getattr(stores, name)
    raise AttributeError(f"module 'metaxy_core' has no attribute {name!r}")
