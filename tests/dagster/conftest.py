"""Fixtures for the Dagster integration tests: a real (sqlite-backed) Dagster instance per test, a
DuckDB file in tmp_path, and the video pipeline of :mod:`tests.dagster.pipeline`."""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests.dagster.pipeline import Features, Samples, define_features, resources


@pytest.fixture(scope="session")
def _instance_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Dagster home whose sqlite storages are created and migrated once per session."""
    home = tmp_path_factory.mktemp("dagster_home_template")
    with dg.instance_for_test(temp_dir=str(home)):
        pass
    return home


@pytest.fixture
def instance(tmp_path: Path, _instance_template: Path) -> Iterator[dg.DagsterInstance]:
    """A real Dagster instance (sqlite run/event storage in tmp_path), not an ephemeral one.

    Each test gets its own copy of a migrated template: 0.1 s instead of ~1.5 s to create one.
    """
    home = tmp_path / "dagster_home"
    shutil.copytree(_instance_template, home)
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def database(tmp_path: Path) -> str:
    return str(tmp_path / "metadata.duckdb")


@pytest.fixture
def res(database: str) -> dict[str, Any]:
    return resources(database)


@pytest.fixture
def features() -> Features:
    return define_features()


@pytest.fixture
def samples() -> Samples:
    return Samples(videos={"v1": ("a1", "f1"), "v2": ("a2", "f2")}, chunks_per_video={"v1": 2, "v2": 3})
