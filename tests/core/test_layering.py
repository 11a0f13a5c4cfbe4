"""Layering: stores and the graph sit below settings and the tools built on stores.

A store gets its hash settings from whoever builds it; the graph gets its hash length from its caller
(the settings layer installs a default). Engine drivers load only when their store is used.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import metaxy_core as mx

PACKAGE = Path(mx.__file__).parent
UPPER = ("config", "snapshots", "diff", "status", "migrations", "cli")
DRIVERS = ("psycopg", "clickhouse_connect", "chdb", "adbc_driver_manager", "adbc_driver_sqlite")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize(
    "path",
    [*sorted((PACKAGE / "stores").glob("*.py")), PACKAGE / "graph.py"],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_lower_layers_import_no_upper_layer(path: Path) -> None:
    forbidden = {f"metaxy_core.{name}" for name in UPPER}
    bad = sorted(
        m for m in _imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden)
    )
    assert not bad, f"{path.name} imports {bad}; pass settings in instead of importing the upper layer"


def test_importing_the_package_loads_no_engine_driver() -> None:
    code = (
        "import sys, metaxy_core, metaxy_core.stores\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {DRIVERS!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    assert out == ""


def test_a_store_does_not_read_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAXY_HASH_LENGTH", "32")
    assert mx.get_config().hash_length == 32
    assert mx.InMemoryMetadataStore().hash_length == 16
    assert mx.InMemoryMetadataStore(hash_length=8).hash_length == 8
    # the settings layer hands its value to the stores it builds
    cfg = mx.load_config(None, stores={"m": {"type": "memory"}}, store="m")
    assert cfg.get_store().hash_length == 32


def test_graph_versions_take_the_hash_length_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    class Video(mx.Feature, spec=mx.FeatureSpec(key="video")):
        pass

    assert len(Video.feature_version(hash_length=8)) == 8
    assert len(Video.graph.feature_version("video", 24)) == 24
    monkeypatch.setenv("METAXY_HASH_LENGTH", "40")
    mx.set_config(None)
    # without an explicit length, the settings layer's default applies
    assert len(Video.feature_version()) == 40
    assert Video.feature_version() == Video.feature_version(hash_length=40)
