"""Dagster definitions of the example project: ``dagster dev -w workspace.yaml`` loads this module.

The store comes from ``example_project/metaxy.toml`` (store ``dev``: a DuckDB file under
``example_project/data``); ``METAXY_STORES__DEV__CONFIG__DATABASE`` moves it elsewhere.
"""

import os
from pathlib import Path

import dagster as dg

import metaxy_core as mx
import metaxy_dagster as mxd

CONFIG_FILE = Path(__file__).resolve().parent / "metaxy.toml"

# Load the project's metaxy config (hash length, stores) and import its features.
mx.init(CONFIG_FILE)

from example_project import media  # noqa: E402
from example_project.assets import FEATURE_ASSETS, UNPARTITIONED_ASSETS, feature_graph  # noqa: E402

# A fresh clone has no demo media: create them on first load, so the first materialization in the UI
# has new samples to process (`python -m example_project reset` removes them again).
if not media.list_video_ids():
    media.generate_videos()

# The config's `store` setting picks the store: "dev" (DuckDB) unless METAXY_STORE names another one,
# e.g. one defined entirely by environment variables (see metaxy.toml).
store = mxd.MetaxyStoreResource(config_file=str(CONFIG_FILE))

# The sensor launches runs without partitions, so it watches the unpartitioned features; launch the
# partitions of video/embedding (train, test) from the UI's partition picker or a backfill.
metaxy_sensor = mxd.build_metaxy_sensor(
    UNPARTITIONED_ASSETS,
    name="metaxy_sensor",
    minimum_interval_seconds=int(os.environ.get("EXAMPLE_SENSOR_INTERVAL", "30")),
    # Running by default so `dagster dev` picks up new or edited videos; EXAMPLE_SENSOR_STATUS=stopped
    # leaves it to the UI (or GraphQL) to start it.
    default_status=dg.DefaultSensorStatus(os.environ.get("EXAMPLE_SENSOR_STATUS", "running").upper()),
)

# Observations tell Dagster what the store holds: after a delete made outside Dagster its children turn
# Unsynced, and a feature in sync with its upstream (faces after an audio-only edit) turns Fresh again.
# The job `metaxy_observe` can be launched from the UI's Jobs page; the schedule runs it every 15 minutes.
observation_schedule = mxd.build_metaxy_observation_schedule(
    FEATURE_ASSETS,
    default_status=dg.DefaultScheduleStatus(os.environ.get("EXAMPLE_OBSERVE_STATUS", "stopped").upper()),
)

defs = dg.Definitions(
    assets=[*FEATURE_ASSETS, feature_graph],
    sensors=[metaxy_sensor],
    schedules=[observation_schedule],
    resources={"metaxy_store": store, "metaxy_io_manager": mxd.MetaxyIOManager(store=store)},
)
