"""The example project: definitions load, and `python -m example_project` materializes everything on a
fresh Dagster home, with the store moved by the usual metaxy env override."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from example_project.__main__ import main
for argv in (["run"], ["edit", "v002", "audio"], ["run"], ["status"]):
    print(f"=== {' '.join(argv)}", flush=True)
    code = main(argv)
    if code:
        sys.exit(code)
"""


def _rows(section: str) -> dict[str, list[str]]:
    rows = {}
    for line in section.splitlines():
        if line.startswith("video/"):
            cells = line.split()
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
def example_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METAXY_", "DAGSTER_"))}
    env.update(
        EXAMPLE_DATA_DIR=str(tmp_path / "data"),
        METAXY_STORES__DEV__CONFIG__DATABASE=str(tmp_path / "elsewhere" / "meta.duckdb"),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        PYTHONPATH=str(REPO),
    )
    return env


def test_python_m_example_project(example_env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=example_env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sections = proc.stdout.split("=== ")
    first, edit, second, status = sections[1:]
    assert "Generated 3 videos" in first
    assert (
        len(re.findall(r"Run \S+ \((unpartitioned assets|partition train|partition test)\) succeeded", first))
        == 3
    )
    # columns: new stale orphaned written rows changed-fields data-version
    rows = _rows(first)
    assert {k: v[:5] for k, v in rows.items()} == {
        "video/raw": ["3", "0", "0", "3", "3"],
        "video/chunk": ["3", "0", "0", "13", "13"],
        "video/embedding[train]": ["2", "0", "0", "2", "2"],
        "video/embedding[test]": ["1", "0", "0", "1", "1"],
        "video/faces": ["13", "0", "0", "13", "13"],
        "video/stt": ["3", "0", "0", "3", "3"],
    }
    assert "metaxy/graph: snapshot" in first
    assert "pushed=True" in first
    assert (
        f"Metadata store : DuckDBMetadataStore(meta.duckdb) -> {tmp_path / 'elsewhere' / 'meta.duckdb'}"
        in first
    )
    assert (tmp_path / "elsewhere" / "meta.duckdb").is_file()
    assert (tmp_path / "dagster_home" / "history").is_dir()  # the runs are in the given Dagster home

    assert "Edited the audio track of v002" in edit
    rows = _rows(second)
    assert {k: v[:6] for k, v in rows.items()} == {
        "video/raw": ["0", "1", "0", "1", "3", "audio:1"],
        "video/chunk": ["0", "1", "0", "4", "13", "audio:1"],
        "video/embedding[train]": ["0", "0", "0", "0", "2", "-"],
        "video/embedding[test]": ["0", "0", "0", "0", "1", "-"],
        "video/faces": ["0", "0", "0", "0", "13", "-"],
        "video/stt": ["0", "1", "0", "1", "3", "transcription:1"],
    }
    assert _rows(status) == {
        k: ["0", "0", "0"]
        for k in ("video/raw", "video/chunk", "video/embedding", "video/faces", "video/stt")
    }


def test_workspace_points_at_the_definitions() -> None:
    text = (REPO / "workspace.yaml").read_text()
    assert "module_name: example_project.definitions" in text
    assert (REPO / "example_project" / "metaxy.toml").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["postgres", "clickhouse"])
def test_example_project_on_other_engines(example_env: dict[str, str], tmp_path: Path, engine: str) -> None:
    """The same pipeline, run and edited, on PostgreSQL and on ClickHouse (chDB), chosen by env vars only."""
    if engine == "postgres":
        from tests import pg_server

        dsn = pg_server.session_dsn()
        if dsn is None:
            pytest.skip("PostgreSQL server binaries not found")
        config = {"TYPE": "postgres", "CONFIG__DSN": dsn, "CONFIG__SCHEMA": pg_server.fresh_schema()}
    else:
        pytest.importorskip("chdb")
        config = {"TYPE": "clickhouse", "CONFIG__DSN": f"chdb://{tmp_path / 'chdb'}?database=example"}
    env = {**example_env, "METAXY_STORE": "other"}
    env.update({f"METAXY_STORES__OTHER__{k}": v for k, v in config.items()})
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, _edit, second, status = proc.stdout.split("=== ")[1:]
    expected_store = "PostgreSQLMetadataStore" if engine == "postgres" else "ClickHouseMetadataStore"
    assert f"Metadata store : {expected_store}" in first
    assert {k: v[:5] for k, v in _rows(first).items()} == {
        "video/raw": ["3", "0", "0", "3", "3"],
        "video/chunk": ["3", "0", "0", "13", "13"],
        "video/embedding[train]": ["2", "0", "0", "2", "2"],
        "video/embedding[test]": ["1", "0", "0", "1", "1"],
        "video/faces": ["13", "0", "0", "13", "13"],
        "video/stt": ["3", "0", "0", "3", "3"],
    }
    assert {k: v[:6] for k, v in _rows(second).items()} == {
        "video/raw": ["0", "1", "0", "1", "3", "audio:1"],
        "video/chunk": ["0", "1", "0", "4", "13", "audio:1"],
        "video/embedding[train]": ["0", "0", "0", "0", "2", "-"],
        "video/embedding[test]": ["0", "0", "0", "0", "1", "-"],
        "video/faces": ["0", "0", "0", "0", "13", "-"],
        "video/stt": ["0", "1", "0", "1", "3", "transcription:1"],
    }
    assert _rows(status) == {
        k: ["0", "0", "0"]
        for k in ("video/raw", "video/chunk", "video/embedding", "video/faces", "video/stt")
    }
