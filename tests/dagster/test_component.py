"""``MetaxyComponent``: built from YAML attributes, materialized for real, and driven by the ``dg`` CLI."""

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import tomllib
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster.components.testing.utils import component_defs

import metaxy_dagster as mxd

REPO = Path(__file__).resolve().parents[2]
GROUP = "dagster_dg_cli.registry_modules"

FEATURES = """
import metaxy_core as mx

class Doc(mx.BaseFeature, spec=mx.FeatureSpec(key="docs/raw", id_columns=["doc_id"], fields=["text"])):
    doc_id: str
    path: str

class Summary(mx.BaseFeature, spec=mx.FeatureSpec(
        key="docs/summary", id_columns=["doc_id"],
        deps=[mx.FeatureDep(feature=Doc, columns=["path"], rename={"path": "source_path"})],
        fields=["summary"])):
    doc_id: str
    source_path: str
    summary: str
"""

BODIES = """
import polars as pl
from {pkg}.features import Doc, Summary

def list_docs() -> pl.DataFrame:
    return pl.DataFrame({{
        "doc_id": ["d1", "d2"], "path": ["d1.txt", "d2.txt"],
        "metaxy_provenance_by_field": [{{"text": "h1"}}, {{"text": "h2"}}],
    }})

def summarize(increment):
    return increment.to_process().select("doc_id", "source_path", summary=pl.lit("short"))

compute = {{"docs/summary": summarize}}
samples = {{Doc: list_docs}}
"""


def _project(root: Path, package: str) -> Path:
    """A small project package under ``root``: features, bodies and a metaxy.toml with a DuckDB store."""
    pkg = root / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "features.py").write_text(FEATURES)
    (pkg / "bodies.py").write_text(BODIES.format(pkg=package))
    (pkg / "metaxy.toml").write_text(
        f'project = "docs"\nentrypoints = ["{package}.features"]\nstore = "dev"\n\n'
        '[stores.dev]\ntype = "duckdb"\nconfig = { database = "meta.duckdb" }\n'
    )
    return pkg


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    package = f"mxcomp_{uuid.uuid4().hex[:8]}"  # a fresh module, so its features join this test's graph
    pkg = _project(tmp_path, package)
    monkeypatch.syspath_prepend(str(tmp_path))
    return package, pkg


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, dict[str, Any]]:
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
    out = {}
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        out[event.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in meta.items()}
    return out


def test_component_from_yaml_attributes_materializes(
    project: tuple[str, Path], instance: dg.DagsterInstance
) -> None:
    package, pkg = project
    component = mxd.MetaxyComponent.resolve_from_dict(
        {
            "config_file": str(pkg / "metaxy.toml"),
            "compute": f"{package}.bodies",
            "assets": {
                "docs/*": {"owners": ["team:docs"]},
                "docs/summary": {"group_name": "summaries", "tags": {"model": "tiny"}, "kinds": ["llm"]},
            },
            "sensor_status": "running",
        }
    )
    defs = component_defs(component=component)
    summary = defs.resolve_assets_def(dg.AssetKey(["docs", "summary"])).specs_by_key[
        dg.AssetKey(["docs", "summary"])
    ]
    assert summary.owners == ["team:docs"]
    assert (summary.group_name, summary.tags["model"]) == ("summaries", "tiny")
    assert {"llm", "metaxy", "duckdb"} <= set(summary.kinds)
    assert summary.metadata["metaxy/feature"] == "docs/summary"  # metaxy's metadata is kept
    sensor = defs.resolve_sensor_def("metaxy_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {k.name for k in defs.resolve_asset_graph().asset_check_keys} == {
        "metaxy_in_sync",
        "metaxy_no_orphans",
    }

    first = _materialize(defs, instance)
    assert {k: m.get("metaxy/written") for k, m in first.items()} == {
        "docs/raw": 2,
        "docs/summary": 2,
        "metaxy/graph": None,
    }
    with mxd.MetaxyStoreResource(config_file=str(pkg / "metaxy.toml")).open() as store:
        assert store.read("docs/summary").to_polars()["summary"].to_list() == ["short", "short"]
    again = _materialize(defs, instance)
    assert again["docs/summary"]["metaxy/written"] == 0


def test_switches_and_selection(project: tuple[str, Path]) -> None:
    package, pkg = project
    component = mxd.MetaxyComponent(
        config_file=str(pkg / "metaxy.toml"),
        select=["docs/raw"],
        samples={"docs/raw": f"{package}.bodies:list_docs"},
        sensor=False,
        checks=False,
        graph_asset=False,
        key_prefix=["lake"],
    )
    defs = component_defs(component=component)
    graph = defs.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == {dg.AssetKey(["lake", "docs", "raw"])}
    assert not graph.asset_check_keys
    assert not list(defs.sensors or [])

    observed = component_defs(
        component=mxd.MetaxyComponent(
            config_file=str(pkg / "metaxy.toml"),
            compute=f"{package}.bodies",
            observe=["docs/raw"],
            graph_asset=False,
        )
    ).resolve_asset_graph()
    assert observed.get(dg.AssetKey(["docs", "raw"])).is_observable
    assert observed.get(dg.AssetKey(["docs", "summary"])).is_materializable


def test_two_components_on_one_config_merge(project: tuple[str, Path]) -> None:
    """Components splitting one project's features (one defs.yaml per team) share the store resources."""
    package, pkg = project
    config = str(pkg / "metaxy.toml")
    first = component_defs(
        component=mxd.MetaxyComponent(
            config_file=config, select=["docs/raw"], samples={"docs/raw": f"{package}.bodies:list_docs"}
        )
    )
    second = component_defs(
        component=mxd.MetaxyComponent(
            config_file=config,
            select=["docs/summary"],
            compute=f"{package}.bodies",
            # the config's default store, named: still the same resource as the first's
            store="dev",
            sensor_name="summary_sensor",
            graph_asset=False,
        )
    )
    merged = dg.Definitions.merge(first, second)
    assert {k.to_user_string() for k in merged.resolve_asset_graph().materializable_asset_keys} == {
        "docs/raw",
        "docs/summary",
        "metaxy/graph",
    }
    assert merged.resources is not None
    assert set(merged.resources) == {"metaxy_store", "metaxy_io_manager"}


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"select": ["nope/*"]}, r"select \['nope/\*'\] matches no feature; known features: \['docs/raw'"),
        ({"compute": {"docs/summary": "no_colon"}}, r"compute\['docs/summary'\] is 'no_colon'; write it as"),
        ({"compute": "no_such_module_here"}, r"cannot import module 'no_such_module_here'"),
        ({"config_file": "missing.toml"}, r"config_file 'missing.toml' does not exist"),
        # A feature without a body names the component's attributes, not the Python factories.
        ({}, r"\['docs/raw', 'docs/summary'\] have no asset body.*`compute:`.*`samples:`.*`select:`"),
        ({"store": "prod"}, r"store: 'prod' is not a store of .*metaxy.toml.*\['dev'\]"),
        (  # a misspelled key in assets/observe would otherwise configure nothing, silently
            {"compute": "{pkg}.bodies", "assets": {"doc/summary": {"owners": ["team:docs"]}}},
            r"assets: 'doc/summary' matches no selected feature.*\['docs/raw', 'docs/summary'\]",
        ),
        ({"compute": "{pkg}.bodies", "observe": ["docs/rw"]}, r"observe: 'docs/rw' matches no selected"),
        (
            {"compute": "{pkg}.bodies", "observe": ["docs/raw"], "assets": {"docs/raw": {"owners": ["a:b"]}}},
            r"assets: 'docs/raw' selects only observable sources",
        ),
    ],
)
def test_bad_attributes_are_named(
    project: tuple[str, Path], attributes: dict[str, Any], message: str
) -> None:
    package, pkg = project
    if attributes.get("compute") == "{pkg}.bodies":
        attributes = {**attributes, "compute": f"{package}.bodies"}
    component = mxd.MetaxyComponent(**{"config_file": str(pkg / "metaxy.toml"), **attributes})
    with pytest.raises(mxd.MetaxyDefinitionError, match=message):
        component_defs(component=component)


# -- the dg CLI, in subprocesses -------------------------------------------------------------------
def _entry_point_dir(tmp_path: Path) -> Path | None:
    """A dist-info declaring pyproject.toml's registry entry point, unless the installed package has it.

    Entry points are recorded when a package is installed, so an editable install made before the
    entry point was added does not have it; the test then declares the same one itself.
    """
    if any(e.value == "metaxy_dagster" for e in importlib.metadata.entry_points(group=GROUP)):
        return None
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]
    site = tmp_path / "entry_points"
    dist = site / "metaxy_dagster_dg_test-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: metaxy-dagster-dg-test\nVersion: 0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in declared.items())
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")
    return site


def _dg(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    dg_cli = Path(sys.executable).with_name("dg")
    return subprocess.run(
        [str(dg_cli), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _env(tmp_path: Path, *paths: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METAXY_", "DAGSTER_"))}
    extra = _entry_point_dir(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [REPO, *paths, *([extra] if extra else [])])
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    env["DG_DISABLE_TELEMETRY"] = "1"
    return env


@pytest.mark.slow
def test_dg_lists_scaffolds_and_checks_the_component(tmp_path: Path) -> None:
    root = tmp_path / "proj_root"
    package = "dgproj"
    pkg = _project(root, package)
    (pkg / "defs").mkdir()
    (pkg / "defs" / "__init__.py").write_text("")
    (pkg / "definitions.py").write_text(
        "from pathlib import Path\nimport dagster as dg\n\n"
        "defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    (root / "dg.toml").write_text(f'directory_type = "project"\n\n[project]\nroot_module = "{package}"\n')
    env = _env(tmp_path, root)

    listed = _dg(["list", "components", "--json"], root, env)
    assert listed.returncode == 0, listed.stderr
    keys = [item["key"] for item in json.loads(listed.stdout)["items"]]
    assert "metaxy_dagster.MetaxyComponent" in keys

    scaffolded = _dg(
        ["scaffold", "defs", "metaxy_dagster.MetaxyComponent", "docs", "--config-file", "../../metaxy.toml"],
        root,
        env,
    )
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    defs_yaml = pkg / "defs" / "docs" / "defs.yaml"
    text = defs_yaml.read_text()
    assert "type: metaxy_dagster.MetaxyComponent" in text
    assert "config_file: ../../metaxy.toml" in text
    defs_yaml.write_text(text.replace("  # compute: my_project.bodies", f"  compute: {package}.bodies"))

    checked = _dg(["check", "defs"], root, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed_defs = json.loads(_dg(["list", "defs", "--json"], root, env).stdout)
    assert {a["asset_key"] for a in listed_defs["assets"]} == {"docs/raw", "docs/summary", "metaxy/graph"}
    assert [s["name"] for s in listed_defs["sensors"]] == ["metaxy_sensor"]

    defs_yaml.write_text(defs_yaml.read_text().replace("  sensor: true", "  sensr: true"))
    broken = _dg(["check", "defs"], root, env)
    assert broken.returncode != 0
    assert "'sensr' was unexpected" in broken.stdout + broken.stderr


@pytest.mark.slow
def test_example_project_defs_folder_with_dg(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env["EXAMPLE_DATA_DIR"] = str(tmp_path / "data")
    env["METAXY_STORES__DEV__CONFIG__DATABASE"] = str(tmp_path / "meta.duckdb")
    checked = _dg(["check", "defs"], REPO, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = json.loads(_dg(["list", "defs", "--json"], REPO, env).stdout)
    assets = {a["asset_key"]: a for a in listed["assets"]}
    assert set(assets) == {
        "video/raw",
        "video/chunk",
        "video/faces",
        "video/stt",
        "video/embedding",
        "metaxy/graph",
    }
    assert assets["video/faces"]["owners"] == [{"team": "media"}]  # dg prints team owners as objects
    assert {"key": "model", "value": "tiny-faces"} in assets["video/faces"]["tags"]
    assert assets["video/chunk"]["dependency_keys"] == ["video/raw"]
    assert assets["video/embedding"]["dependency_keys"] == ["video/raw"]
    assert assets["video/embedding"]["owners"] == [{"team": "media"}]


@pytest.mark.slow
def test_example_project_component_definitions_materialize(tmp_path: Path) -> None:
    """The defs/ variant of the example project runs the pipeline like definitions.py does: the
    unpartitioned assets in one run, then video/embedding one split at a time."""
    script = textwrap.dedent(
        """
        import json
        import dagster as dg
        from example_project.component_definitions import defs

        job = defs.resolve_implicit_global_asset_job_def()
        graph = defs.resolve_asset_graph()
        embedding = dg.AssetKey(["video", "embedding"])
        rest = [k for k in graph.materializable_asset_keys if k != embedding]
        with dg.instance_for_test() as instance:
            for _ in range(2):
                written = {}
                for keys, partition in [(rest, None), ([embedding], "test"), ([embedding], "train")]:
                    result = job.execute_in_process(instance=instance, asset_selection=keys, partition_key=partition)
                    for e in result.get_asset_materialization_events():
                        if "metaxy/written" in e.materialization.metadata:
                            name = e.asset_key.to_user_string() + (f"[{partition}]" if partition else "")
                            written[name] = e.materialization.metadata["metaxy/written"].value
                print(json.dumps(written))
        """
    )
    env = _env(tmp_path)
    env["EXAMPLE_DATA_DIR"] = str(tmp_path / "data")
    env["METAXY_STORES__DEV__CONFIG__DATABASE"] = str(tmp_path / "meta.duckdb")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    first, second = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert first == {
        "video/raw": 3,
        "video/chunk": 13,
        "video/faces": 13,
        "video/stt": 3,
        "video/embedding[test]": 1,  # each split's run writes only its own videos
        "video/embedding[train]": 2,
    }
    assert set(second.values()) == {0}


# -- partitions and step options -------------------------------------------------------------------
PARTITIONED_FEATURES = """
import datetime as dt
import metaxy_core as mx

class Doc(mx.BaseFeature, spec=mx.FeatureSpec(key="docs/raw", id_columns=["doc_id"], fields=["text"])):
    doc_id: str
    split: str
    written_at: dt.datetime

class BySplit(mx.BaseFeature, spec=mx.FeatureSpec(
        key="docs/by_split", id_columns=["doc_id"], deps=[mx.FeatureDep(feature=Doc, columns=["split"])],
        fields=["n"])):
    doc_id: str
    split: str

class ByDay(mx.BaseFeature, spec=mx.FeatureSpec(
        key="docs/by_day", id_columns=["doc_id"], deps=[mx.FeatureDep(feature=Doc, columns=["written_at"])],
        fields=["n"])):
    doc_id: str
    written_at: dt.datetime
"""

PARTITIONED_BODIES = """
import datetime as dt
import polars as pl

SEEN = []

def list_docs():
    return pl.DataFrame({
        "doc_id": ["d1", "d2", "d3"], "split": ["train", "test", "train"],
        "written_at": [dt.datetime(2024, 1, 1, 9), dt.datetime(2024, 1, 2, 9), dt.datetime(2024, 1, 2, 23)],
        "metaxy_provenance_by_field": [{"text": "h1"}, {"text": "h2"}, {"text": "h3"}],
    })

def by_split(increment):
    todo = increment.to_process()
    SEEN.append(("by_split", sorted(todo["doc_id"].to_list())))
    return todo.select("doc_id", "split")

def by_day(increment):
    todo = increment.to_process()
    SEEN.append(("by_day", sorted(todo["doc_id"].to_list())))
    return todo.select("doc_id", "written_at")

compute = {"docs/by_split": by_split, "docs/by_day": by_day}
samples = {"docs/raw": list_docs}
"""


@pytest.fixture
def partitioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    package = f"mxpart_{uuid.uuid4().hex[:8]}"
    pkg = _project(tmp_path, package)
    (pkg / "features.py").write_text(PARTITIONED_FEATURES)
    (pkg / "bodies.py").write_text(PARTITIONED_BODIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return package, pkg


PARTITION_OPTIONS = {
    "docs/by_*": {"retry_policy": {"max_retries": 2, "delay": 1}, "op_tags": {"team": "docs"}},
    "docs/by_split": {"partitions": {"static": ["train", "test"]}, "partition_by": "split", "pool": "gpu"},
    "docs/by_day": {"partitions": {"daily": {"start_date": "2024-01-01"}}, "partition_by": "written_at"},
}


def test_partitions_and_step_options_from_yaml(
    partitioned: tuple[str, Path], instance: dg.DagsterInstance
) -> None:
    package, pkg = partitioned
    component = mxd.MetaxyComponent.resolve_from_dict(
        {
            "config_file": str(pkg / "metaxy.toml"),
            "compute": f"{package}.bodies",
            "assets": PARTITION_OPTIONS,
            "graph_asset": False,
        }
    )
    defs = component_defs(component=component)
    by_split = defs.resolve_assets_def(dg.AssetKey(["docs", "by_split"]))
    assert by_split.partitions_def == dg.StaticPartitionsDefinition(["train", "test"])
    assert isinstance(
        defs.resolve_assets_def(dg.AssetKey(["docs", "by_day"])).partitions_def, dg.DailyPartitionsDefinition
    )
    op = by_split.node_def
    assert isinstance(op, dg.OpDefinition)
    assert (op.retry_policy, op.pool, op.tags["team"]) == (
        dg.RetryPolicy(max_retries=2, delay=1),
        "gpu",
        "docs",
    )
    # The sensor launches runs without a partition key: it manages the unpartitioned root only.
    sensor = defs.resolve_sensor_def("metaxy_sensor")
    assert {k.to_user_string() for k in sensor.asset_selection.resolve(defs.resolve_asset_graph())} == {
        "docs/raw"
    }

    assets = list(defs.assets or [])

    def run(key: str, partition: str | None = None) -> dict[str, Any]:
        result = dg.materialize(
            assets,
            selection=[dg.AssetKey(key.split("/"))],
            partition_key=partition,
            instance=instance,
            resources=defs.resources,
        )
        (event,) = result.get_asset_materialization_events()
        return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}

    assert run("docs/raw")["metaxy/written"] == 3
    assert run("docs/by_split", "train")["metaxy/written"] == 2
    assert run("docs/by_day", "2024-01-02")["metaxy/written"] == 2
    assert run("docs/by_split", "train")["metaxy/written"] == 0  # done: the test docs are not its business
    seen = importlib.import_module(f"{package}.bodies").SEEN
    assert seen == [("by_split", ["d1", "d3"]), ("by_day", ["d2", "d3"])]
    with mxd.MetaxyStoreResource(config_file=str(pkg / "metaxy.toml")).open() as store:
        assert sorted(store.read("docs/by_split").to_polars()["doc_id"].to_list()) == ["d1", "d3"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"docs/by_split": {"partition_by": "split"}},
            r"assets\['docs/by_split'\]\.partition_by: 'docs/by_split' has no partitions; add partitions:",
        ),
        (
            {"docs/by_split": {"partitions": {"static": ["a"], "dynamic": "d"}}},
            r"assets\['docs/by_split'\]\.partitions: give exactly one of static, dynamic.*got \['static', 'dynamic'\]",
        ),
        (
            {"docs/by_split": {"partitions": {"static": ["train"]}, "partition_by": "fold"}},
            r"assets\['docs/by_split'\]\.partition_by: .*\['fold'\] are not columns of the feature",
        ),
        (
            {"docs/by_day": {"partitions": {"daily": {"start_date": "Jan 1st"}}}},
            r"assets\['docs/by_day'\]\.partitions: time data 'Jan 1st'",
        ),
        (
            {"docs/by_day": {"partitions": {"daily": {"start_date": "2024-01-01"}}, "partition_by": "day"}},
            r"assets\['docs/by_day'\]\.partition_by: 'day' is not a column of 'docs/by_day'",
        ),
        (
            {"docs/by_split": {"partitions": {"multi": {"a": {"static": ["x"]}}}}},
            r"partitions\.multi: Dagster multi-partitions have exactly two dimensions",
        ),
        (
            {"docs/by_split": {"retry_policy": {"max_retries": -1}}},
            r"assets\['docs/by_split'\]\.retry_policy: max_retries \(-1\)",
        ),
    ],
)
def test_bad_partition_options_are_named(
    partitioned: tuple[str, Path], options: dict[str, Any], message: str
) -> None:
    package, pkg = partitioned
    component = mxd.MetaxyComponent.resolve_from_dict(
        {"config_file": str(pkg / "metaxy.toml"), "compute": f"{package}.bodies", "assets": options}
    )
    with pytest.raises(mxd.MetaxyDefinitionError, match=message):
        component_defs(component=component)


def test_multi_partitions_map_each_dimension_to_a_column(
    partitioned: tuple[str, Path], instance: dg.DagsterInstance
) -> None:
    package, pkg = partitioned
    multi = {"multi": {"split": {"static": ["train", "test"]}, "doc": {"dynamic": "docs"}}}
    component = mxd.MetaxyComponent.resolve_from_dict(
        {
            "config_file": str(pkg / "metaxy.toml"),
            "compute": f"{package}.bodies",
            "assets": {
                "docs/by_split": {"partitions": multi, "partition_by": {"split": "split", "doc": "doc_id"}}
            },
            "select": ["docs/raw", "docs/by_split"],
            "graph_asset": False,
        }
    )
    defs = component_defs(component=component)
    partitions_def = defs.resolve_assets_def(dg.AssetKey(["docs", "by_split"])).partitions_def
    assert isinstance(partitions_def, dg.MultiPartitionsDefinition)
    assert {d.name for d in partitions_def.partitions_defs} == {"split", "doc"}
    instance.add_dynamic_partitions("docs", ["d1", "d2"])
    assets = list(defs.assets or [])
    dg.materialize(
        assets, selection=[dg.AssetKey(["docs", "raw"])], instance=instance, resources=defs.resources
    )
    result = dg.materialize(
        assets,
        selection=[dg.AssetKey(["docs", "by_split"])],
        partition_key=dg.MultiPartitionKey({"split": "train", "doc": "d1"}),
        instance=instance,
        resources=defs.resources,
    )
    assert importlib.import_module(f"{package}.bodies").SEEN == [("by_split", ["d1"])]
    assert result.success

    # Every selected feature partitioned: the sensor would have nothing to launch, so there is none.
    only = mxd.MetaxyComponent.resolve_from_dict(
        {
            "config_file": str(pkg / "metaxy.toml"),
            "compute": f"{package}.bodies",
            "assets": {
                "docs/by_split": {"partitions": {"static": ["train", "test"]}, "partition_by": "split"}
            },
            "select": ["docs/by_split"],
            "graph_asset": False,
        }
    )
    assert not list(component_defs(component=only).sensors or [])
