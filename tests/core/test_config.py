"""Configuration: file discovery, pyproject, env overrides, stores, errors naming file and key."""

import re
import sys
import textwrap
from pathlib import Path

import pytest

import metaxy_core as mx

METAXY_TOML = """
project = "demo"
store = "dev"
hash_length = 32

[stores.dev]
type = "duckdb"
config = { database = "meta/metadata.duckdb" }

[stores.scratch]
type = "memory"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with metaxy.toml at its root; the working directory is a nested subfolder."""
    root = tmp_path / "project"
    write(root / "metaxy.toml", METAXY_TOML)
    work = root / "src" / "pipelines"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return root


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = mx.load_config()
    assert cfg.source is None
    assert cfg.hash_length == 16
    assert cfg.store == "dev"
    assert cfg.entrypoints == []
    assert cfg.root == tmp_path


def test_metaxy_toml_found_searching_up(project: Path) -> None:
    cfg = mx.load_config()
    assert cfg.source == project / "metaxy.toml"
    assert cfg.root == project
    assert cfg.project == "demo"
    assert cfg.hash_length == 32
    assert sorted(cfg.stores) == ["dev", "scratch"]


def test_lazy_config_is_used_by_versions(project: Path) -> None:
    class Doc(mx.Feature, spec=mx.FeatureSpec(key="doc")):
        pass

    assert len(Doc.feature_version()) == 32
    assert mx.get_config().source == project / "metaxy.toml"


def test_pyproject_tool_metaxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "x"\n\n[tool.metaxy]\nproject = "from-pyproject"\nhash_length = 24\n',
    )
    # a nearer pyproject.toml without [tool.metaxy] is not a metaxy config
    write(tmp_path / "pkg" / "pyproject.toml", '[project]\nname = "inner"\n')
    (tmp_path / "pkg" / "deep").mkdir()
    monkeypatch.chdir(tmp_path / "pkg" / "deep")
    cfg = mx.load_config()
    assert cfg.source == tmp_path / "pyproject.toml"
    assert cfg.project == "from-pyproject"
    assert cfg.hash_length == 24


def test_nearest_file_wins(project: Path) -> None:
    write(project / "src" / "metaxy.toml", 'project = "inner"\n')
    cfg = mx.load_config()
    assert cfg.source == project / "src" / "metaxy.toml"
    assert cfg.project == "inner"
    assert cfg.hash_length == 16


def test_explicit_file(tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere" / "custom.toml", 'project = "custom"\n')
    cfg = mx.load_config(path)
    assert cfg.source == path
    assert cfg.project == "custom"


def test_env_overrides_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAXY_HASH_LENGTH", "20")
    monkeypatch.setenv("METAXY_PROJECT", "from-env")
    monkeypatch.setenv("METAXY_STORE", "scratch")
    cfg = mx.load_config()
    assert (cfg.hash_length, cfg.project, cfg.store) == (20, "from-env", "scratch")
    assert isinstance(cfg.get_store(), mx.InMemoryMetadataStore)


def test_nested_env_override_of_store_database(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere" / "meta.duckdb"
    monkeypatch.setenv("METAXY_STORES__DEV__CONFIG__DATABASE", str(elsewhere))
    cfg = mx.load_config()
    assert cfg.stores["dev"].type == "duckdb"  # merged with the file, not replacing the entry
    store = cfg.get_store("dev")
    assert isinstance(store, mx.DuckDBMetadataStore)
    assert store.database == str(elsewhere)


def test_env_only_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METAXY_STORES__CI__TYPE", "memory")
    assert isinstance(mx.load_config().get_store("ci"), mx.InMemoryMetadataStore)


def test_get_store_path_relative_to_config_file(project: Path) -> None:
    cfg = mx.load_config()
    store = cfg.get_store("dev")
    assert isinstance(store, mx.DuckDBMetadataStore)
    assert store.database == str(project / "meta" / "metadata.duckdb")
    assert store.hash_length == 32
    assert isinstance(cfg.get_store("scratch"), mx.InMemoryMetadataStore)
    assert cfg.get_store().database == store.database  # type: ignore[attr-defined]

    class Doc(mx.Feature, spec=mx.FeatureSpec(key="doc")):
        pass

    import polars as pl

    with store:
        samples = pl.DataFrame({"sample_uid": [1], "metaxy_provenance_by_field": [{"default": "x"}]})
        store.write(Doc, store.resolve_update(Doc, samples=samples).new)
    assert (project / "meta" / "metadata.duckdb").is_file()


def test_store_class_by_module_path(tmp_path: Path) -> None:
    path = write(
        tmp_path / "metaxy.toml",
        '[stores.custom]\ntype = "metaxy_core.stores.memory:InMemoryMetadataStore"\nconfig = { hash_algorithm = "md5" }\n',
    )
    store = mx.load_config(path).get_store("custom")
    assert isinstance(store, mx.InMemoryMetadataStore)
    assert store.hash_algorithm == "md5"


def test_init_imports_entrypoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, graph: mx.FeatureGraph
) -> None:
    write(
        tmp_path / "my_features_for_init_test.py",
        'import metaxy_core as mx\n\nclass Doc(mx.Feature, spec=mx.FeatureSpec(key="init/doc")):\n    pass\n',
    )
    write(tmp_path / "metaxy.toml", 'entrypoints = ["my_features_for_init_test"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_features_for_init_test", raising=False)
    try:
        cfg = mx.init()
        assert mx.get_config() is cfg
        assert "init/doc" in graph
    finally:
        sys.modules.pop("my_features_for_init_test", None)


# -- errors name the file and the key ---------------------------------------------------------------


def test_unknown_store_name(project: Path) -> None:
    cfg = mx.load_config()
    with pytest.raises(
        mx.ConfigError,
        match=rf"No store named 'prod' in {re.escape(str(project / 'metaxy.toml'))}\. Configured stores: dev, scratch",
    ):
        cfg.get_store("prod")


def test_unknown_store_type(tmp_path: Path) -> None:
    path = write(tmp_path / "metaxy.toml", '[stores.dev]\ntype = "oracle"\n')
    with pytest.raises(
        mx.ConfigError, match=rf"stores\.dev\.type \(in {re.escape(str(path))}\): unknown store type 'oracle'"
    ):
        mx.load_config(path).get_store("dev")


def test_bad_store_config_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "metaxy.toml", '[stores.dev]\ntype = "duckdb"\nconfig = { databse = "x.duckdb" }\n'
    )
    with pytest.raises(mx.ConfigError, match=rf"stores\.dev\.config \(in {re.escape(str(path))}\):.*databse"):
        mx.load_config(path).get_store("dev")


@pytest.mark.parametrize("value", ["4", "65", '"long"'])
def test_bad_hash_length_in_file(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "metaxy.toml", f"hash_length = {value}\n")
    with pytest.raises(
        mx.ConfigError, match=rf"Invalid metaxy config \(in {re.escape(str(path))}\).*hash_length"
    ):
        mx.load_config(path)


def test_bad_hash_length_in_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METAXY_HASH_LENGTH", "100")
    with pytest.raises(mx.ConfigError, match=r"Invalid metaxy config.*METAXY_\* env vars.*hash_length"):
        mx.load_config()


def test_unknown_setting_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "metaxy.toml", "hash_lenght = 32\n")
    with pytest.raises(mx.ConfigError, match=rf"\(in {re.escape(str(path))}\).*hash_lenght"):
        mx.load_config(path)


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path / "metaxy.toml", "project = \n")
    with pytest.raises(mx.ConfigError, match=rf"{re.escape(str(path))}: invalid TOML"):
        mx.load_config(path)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(mx.ConfigError, match=r"Config file .*nope\.toml does not exist"):
        mx.load_config(tmp_path / "nope.toml")


def test_bad_entrypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "metaxy.toml", 'entrypoints = ["no_such_module_xyz"]\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        mx.ConfigError,
        match=rf"entrypoints \(in {re.escape(str(path))}\): no module 'no_such_module_xyz'",
    ):
        mx.init()
