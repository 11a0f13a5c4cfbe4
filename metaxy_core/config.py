"""Configuration: ``metaxy.toml`` or ``[tool.metaxy]`` in ``pyproject.toml``, overridden by ``METAXY_*``.

The file is found by searching up from the working directory. Environment variables nest with
``__``: ``METAXY_STORES__DEV__CONFIG__DATABASE=/elsewhere/meta.duckdb``. Settings load lazily on
first use, so defaults and env vars work without calling :func:`init`.

Example ``metaxy.toml``::

    project = "video"
    entrypoints = ["my_pipeline.features"]
    store = "dev"

    [stores.dev]
    type = "duckdb"
    config = { database = "metadata.duckdb" }
"""

import difflib
import importlib
import inspect
import os
import tomllib
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from metaxy_core.errors import ConfigError, MetaxyError
from metaxy_core.graph import DEFAULT_HASH_LENGTH, FeatureGraph, set_default_hash_length

if TYPE_CHECKING:
    from metaxy_core.stores.base import MetadataStore

STORE_TYPES = {
    "memory": "metaxy_core.stores.memory:InMemoryMetadataStore",
    "duckdb": "metaxy_core.stores.duckdb:DuckDBMetadataStore",
    "sqlite": "metaxy_core.stores.sqlite:SQLiteMetadataStore",
    "postgres": "metaxy_core.stores.postgres:PostgreSQLMetadataStore",
    "clickhouse": "metaxy_core.stores.clickhouse:ClickHouseMetadataStore",
}
_PATH_KEYS = ("database",)


class StoreConfig(BaseModel):
    """One named store: ``type`` (a known name or ``module:Class``) and constructor keyword arguments."""

    model_config = ConfigDict(extra="forbid")
    type: str = "duckdb"
    config: dict[str, Any] = Field(default_factory=dict)


class _FileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def find_config_file(start: Path | None = None) -> Path | None:
    """``metaxy.toml``, or a ``pyproject.toml`` with ``[tool.metaxy]``, in ``start`` or a parent."""
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "metaxy.toml"
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "metaxy" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


class MetaxyConfig(BaseSettings):
    """Project settings. Build one with :func:`init` (or :func:`get_config` for the lazy default)."""

    model_config = SettingsConfigDict(env_prefix="METAXY_", env_nested_delimiter="__", extra="forbid")

    project: str | None = None
    entrypoints: list[str] = Field(default_factory=list)
    store: str = "dev"
    hash_length: int = Field(default=DEFAULT_HASH_LENGTH, ge=8, le=64)
    stores: dict[str, StoreConfig] = Field(default_factory=dict)
    migrations_dir: str = "migrations"

    # Not settings: where the values came from, for relative paths and error messages.
    _source: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls, _LOADING_FILE_DATA.get("data", {})))

    @property
    def source(self) -> Path | None:
        """The config file these settings were read from (None: defaults and env only)."""
        return self._source

    @property
    def root(self) -> Path:
        """Folder that relative paths in the config are resolved against."""
        return self._source.parent if self._source else Path.cwd()

    def get_store(self, name: str | None = None) -> "MetadataStore":
        """Build the store called ``name`` (default: the ``store`` setting)."""
        name = name or self.store
        stores = self.stores or {"dev": StoreConfig(type="duckdb", config={"database": "metadata.duckdb"})}
        if name not in stores:
            where = f" in {self._source}" if self._source else ""
            raise ConfigError(
                f"No store named '{name}'{where}. Configured stores: {', '.join(sorted(stores)) or 'none'}. "
                f"Add [stores.{name}] with type and config."
            )
        entry = stores[name]
        cls = _load_class(entry.type, f"stores.{name}.type", self._source)
        kwargs = dict(entry.config)
        for key in _PATH_KEYS:
            value = kwargs.get(key)
            if isinstance(value, str) and value != ":memory:" and "://" not in value:
                kwargs[key] = str((self.root / value).resolve()) if not os.path.isabs(value) else value
        valid = _keyword_names(cls)
        unknown = [k for k in kwargs if valid is not None and k not in valid]
        if unknown:
            hints = "".join(_did_you_mean(k, valid or ()) for k in unknown)
            raise ConfigError(
                f"stores.{name}.config{_where(self._source)}: {cls.__name__} has no option(s) {unknown}.{hints} "
                f"Valid options: {', '.join(sorted(valid or ()))}."
            )
        try:
            store = cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"stores.{name}.config{_where(self._source)}: {exc}") from exc
        store.hash_length = self.hash_length
        return store

    def load_entrypoints(self) -> None:
        for module in self.entrypoints:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
                    raise ConfigError(
                        f"entrypoints{_where(self._source)}: no module '{module}' ({exc}). List importable modules "
                        "that define your features, relative to the config file's folder or on PYTHONPATH."
                    ) from exc
                raise self._entrypoint_failed(module, exc) from exc
            except MetaxyError:
                raise
            except Exception as exc:
                raise self._entrypoint_failed(module, exc) from exc
        # every upstream named by key must be defined once all entrypoints are imported
        FeatureGraph.get_active().check_complete()

    def _entrypoint_failed(self, module: str, exc: BaseException) -> ConfigError:
        """The module exists but raised while importing: show where and why."""
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        return ConfigError(
            f"entrypoints{_where(self._source)}: importing '{module}' failed{where}: {type(exc).__name__}: {exc}"
        )


def _keyword_names(cls: Any) -> set[str] | None:
    """Keyword arguments a store class takes (None when it accepts any)."""
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name != "self" and p.kind is not p.VAR_POSITIONAL}


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean '{close[0]}' for '{word}'?" if close else ""


def _where(source: Path | None) -> str:
    return f" (in {source})" if source else ""


def _load_class(spec: str, key: str, source: Path | None) -> Any:
    target = STORE_TYPES.get(spec, spec)
    if ":" not in target:
        raise ConfigError(
            f"{key}{_where(source)}: unknown store type '{spec}'. Use one of {', '.join(STORE_TYPES)} "
            "or 'module:Class'."
        )
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{key}{_where(source)}: cannot load store class '{target}': {exc}") from exc


_LOADING_FILE_DATA: dict[str, Any] = {}
_current: MetaxyConfig | None = None


def load_config(config_file: str | Path | None = None, **overrides: Any) -> MetaxyConfig:
    """Read settings from ``config_file`` (or the one found searching up) plus env vars."""
    config_file = config_file or os.environ.get("METAXY_CONFIG") or None
    path = Path(config_file).resolve() if config_file else find_config_file()
    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"Config file {path} does not exist.")
        raw = _read_toml(path)
        data = raw.get("tool", {}).get("metaxy", {}) if path.name == "pyproject.toml" else raw
        pointer = data.get("config_file")
        if isinstance(pointer, str) and len(data) == 1:
            # `[tool.metaxy] config_file = "path/metaxy.toml"`: the settings live in that file
            return load_config(path.parent / pointer, **overrides)
    _LOADING_FILE_DATA["data"] = data
    try:
        cfg = MetaxyConfig(**overrides)
    except ValidationError as exc:
        known = list(MetaxyConfig.model_fields)
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            + (_did_you_mean(str(e["loc"][0]), known) if e["type"] == "extra_forbidden" and e["loc"] else "")
            for e in exc.errors()
        )
        raise ConfigError(f"Invalid metaxy config{_where(path)} (or METAXY_* env vars): {problems}") from exc
    finally:
        _LOADING_FILE_DATA.clear()
    cfg._source = path
    return cfg


def init(
    config_file: str | Path | None = None, *, load_entrypoints: bool = True, **overrides: Any
) -> MetaxyConfig:
    """Load the config, make it current, import its entrypoints and return it."""
    global _current
    cfg = load_config(config_file, **overrides)
    _current = cfg
    if load_entrypoints:
        cfg.load_entrypoints()
    return cfg


def get_config() -> MetaxyConfig:
    """The current config, loaded lazily (file found from the working directory, plus env vars)."""
    global _current
    if _current is None:
        _current = load_config()
    return _current


def set_config(cfg: MetaxyConfig | None) -> None:
    """Replace the current config (``None`` re-reads lazily on next use)."""
    global _current
    _current = cfg


# Versions computed without an explicit hash length (``Video.feature_version()``) follow the settings,
# read lazily like every other one. The graph itself stays unaware of where the number comes from.
set_default_hash_length(lambda: get_config().hash_length)
