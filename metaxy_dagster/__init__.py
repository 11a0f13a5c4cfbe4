"""metaxy_dagster: Dagster assets, resources, IO manager and sensor for metaxy features.

A minimal setup::

    import dagster as dg
    import metaxy_dagster as mxd

    @mxd.metaxy_asset(VideoChunk)
    def chunks(context: dg.AssetExecutionContext, increment: mxd.MetaxyIncrement):
        return split(increment.to_process())

    store = mxd.MetaxyStoreResource(store="dev")
    defs = dg.Definitions(
        assets=[raw, chunks],
        sensors=[mxd.build_metaxy_sensor([raw, chunks])],
        resources={"metaxy_store": store, "metaxy_io_manager": mxd.MetaxyIOManager(store=store)},
    )
"""

from metaxy_dagster.assets import DEFAULT_IO_MANAGER_KEY as DEFAULT_IO_MANAGER_KEY
from metaxy_dagster.assets import DEFAULT_STORE_KEY as DEFAULT_STORE_KEY
from metaxy_dagster.assets import MetaxyAssetInfo as MetaxyAssetInfo
from metaxy_dagster.assets import build_metaxy_assets as build_metaxy_assets
from metaxy_dagster.assets import build_metaxy_graph_asset as build_metaxy_graph_asset
from metaxy_dagster.assets import metaxy_asset as metaxy_asset
from metaxy_dagster.assets import metaxy_observable_source as metaxy_observable_source
from metaxy_dagster.assets import select_metaxy_assets as select_metaxy_assets
from metaxy_dagster.automation import metaxy_automation_condition as metaxy_automation_condition
from metaxy_dagster.checks import IN_SYNC as IN_SYNC
from metaxy_dagster.checks import NO_ORPHANS as NO_ORPHANS
from metaxy_dagster.component import MetaxyAssetOptions as MetaxyAssetOptions
from metaxy_dagster.component import MetaxyComponent as MetaxyComponent
from metaxy_dagster.data_versions import FeatureDataVersion as FeatureDataVersion
from metaxy_dagster.data_versions import feature_data_version as feature_data_version
from metaxy_dagster.errors import MetaxyDagsterError as MetaxyDagsterError
from metaxy_dagster.errors import MetaxyDefinitionError as MetaxyDefinitionError
from metaxy_dagster.errors import MetaxyOutputError as MetaxyOutputError
from metaxy_dagster.io_manager import BatchProgress as BatchProgress
from metaxy_dagster.io_manager import MetaxyIncrement as MetaxyIncrement
from metaxy_dagster.io_manager import MetaxyIOManager as MetaxyIOManager
from metaxy_dagster.io_manager import MetaxyWriteReport as MetaxyWriteReport
from metaxy_dagster.metaxify import column_lineage as column_lineage
from metaxy_dagster.metaxify import metaxify as metaxify
from metaxy_dagster.multi_asset import metaxy_multi_asset as metaxy_multi_asset
from metaxy_dagster.observations import FeatureObservation as FeatureObservation
from metaxy_dagster.observations import build_metaxy_observation_job as build_metaxy_observation_job
from metaxy_dagster.observations import build_metaxy_observation_schedule as build_metaxy_observation_schedule
from metaxy_dagster.observations import build_metaxy_observation_sensor as build_metaxy_observation_sensor
from metaxy_dagster.observations import observe_metaxy_assets as observe_metaxy_assets
from metaxy_dagster.partitions import add_dynamic_partitions as add_dynamic_partitions
from metaxy_dagster.partitions import dynamic_partitions_request as dynamic_partitions_request
from metaxy_dagster.pipes import MetaxyPipesResult as MetaxyPipesResult
from metaxy_dagster.pipes import metaxy_pipes_asset as metaxy_pipes_asset
from metaxy_dagster.pipes import run_pipes as run_pipes
from metaxy_dagster.resource import MetaxyStoreResource as MetaxyStoreResource
from metaxy_dagster.sensors import build_metaxy_sensor as build_metaxy_sensor
from metaxy_dagster.translator import FEATURE_TAG as FEATURE_TAG
from metaxy_dagster.translator import MetaxyTranslator as MetaxyTranslator
from metaxy_dagster.translator import MetaxyTranslatorSettings as MetaxyTranslatorSettings

__version__ = "0.1.0"
