"""The feature graph: registration, validation, topological order and field-level parents.

Feature classes register themselves in the *active* graph when defined. Tests and notebooks isolate
themselves with ``with FeatureGraph().use(): ...``.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from metaxy_core.errors import FeatureDefinitionError, FeatureNotFoundError
from metaxy_core.keys import FeatureKey, FieldKey
from metaxy_core.spec import ALL, FeatureSpec

if TYPE_CHECKING:
    from metaxy_core.feature import BaseFeature

SYSTEM_COLUMN_PREFIX = "metaxy_"
MAX_TABLE_NAME = 63
"""Longest identifier PostgreSQL keeps; longer table names are cut and could meet."""

DEFAULT_HASH_LENGTH = 16
"""Hex characters of every version when nobody says otherwise."""

_hash_length_source: Callable[[], int] | None = None


def set_default_hash_length(source: Callable[[], int] | None) -> None:
    """Where graphs take the hash length when a caller passes none (``None``: 16).

    The graph does not read settings itself; the settings layer installs its reader here, so
    ``Video.feature_version()`` follows ``METAXY_HASH_LENGTH`` while this module stays free of it.
    """
    global _hash_length_source
    _hash_length_source = source


def default_hash_length() -> int:
    return DEFAULT_HASH_LENGTH if _hash_length_source is None else _hash_length_source()


@dataclass(frozen=True, order=True)
class FieldRef:
    """A field of a feature; orders by its fully qualified name ``"<feature>.<field>"``."""

    fq: str
    feature: FeatureKey
    field: FieldKey

    @classmethod
    def of(cls, feature: FeatureKey, field: FieldKey) -> "FieldRef":
        return cls(fq=f"{feature}.{field}", feature=feature, field=field)


class FeatureGraph:
    """A set of feature classes keyed by feature key."""

    _default: ClassVar["FeatureGraph | None"] = None
    _active: ClassVar[ContextVar["FeatureGraph | None"]] = ContextVar("metaxy_active_graph", default=None)

    def __init__(self) -> None:
        self.features_by_key: dict[FeatureKey, type[BaseFeature]] = {}
        # Features that name an upstream by key before that upstream is defined (a forward
        # reference). They join the graph once every upstream exists; until then using the graph
        # raises, so a misspelt key cannot go unnoticed.
        self._pending: dict[FeatureKey, type[BaseFeature]] = {}
        self._cache: dict[Any, Any] = {}

    # -- activation -------------------------------------------------------------------------------
    @classmethod
    def get_active(cls) -> "FeatureGraph":
        graph = cls._active.get()
        if graph is not None:
            return graph
        if cls._default is None:
            cls._default = FeatureGraph()
        return cls._default

    @contextmanager
    def use(self) -> Iterator["FeatureGraph"]:
        """Make this graph the active one inside the ``with`` block."""
        token = self._active.set(self)
        try:
            yield self
        finally:
            self._active.reset(token)

    # -- registration -----------------------------------------------------------------------------
    def add_feature(self, cls: "type[BaseFeature]") -> None:
        spec = cls.spec
        existing = self.features_by_key.get(spec.key) or self._pending.get(spec.key)
        if existing is not None and existing is not cls:
            same_definition = (existing.__module__, existing.__qualname__) == (
                cls.__module__,
                cls.__qualname__,
            )
            if not same_definition:
                raise FeatureDefinitionError(
                    f"Feature key '{spec.key}' is already used by {existing.__module__}.{existing.__qualname__}; "
                    f"{cls.__module__}.{cls.__qualname__} must use another key (or define it in an isolated "
                    "graph with `with mx.FeatureGraph().use(): ...`)."
                )
        name = f"Feature '{spec.key}' ({cls.__name__})"
        for dep in spec.deps:
            if dep.feature == spec.key:
                raise FeatureDefinitionError(
                    f"{name} depends on itself: this is a cycle; remove that dependency."
                )
        # A cycle can only be written with a forward reference, so look for one before deferring.
        self._check_cycles(extra=cls)
        if any(dep.feature not in self.features_by_key for dep in spec.deps):
            self.features_by_key.pop(spec.key, None)
            self._pending[spec.key] = cls
            self._cache.clear()
            return
        self._admit(cls, existing)
        self._admit_pending()

    def _admit(self, cls: "type[BaseFeature]", existing: "type[BaseFeature] | None") -> None:
        spec = cls.spec
        self._validate(cls)
        self._check_table_name(cls)
        self._pending.pop(spec.key, None)
        self.features_by_key[spec.key] = cls
        self._cache.clear()
        try:
            self._check_cycles()
        except FeatureDefinitionError:
            if existing is None or existing is cls:
                del self.features_by_key[spec.key]
            else:
                self.features_by_key[spec.key] = existing
            raise

    def _admit_pending(self) -> None:
        """Admit the forward-referencing features whose upstreams now all exist."""
        progress = True
        while progress:
            progress = False
            for key, cls in list(self._pending.items()):
                if all(dep.feature in self.features_by_key for dep in cls.spec.deps):
                    del self._pending[key]
                    self._admit(cls, None)
                    progress = True

    def check_complete(self, key: FeatureKey | None = None) -> None:
        """Raise if a feature still names an upstream that was never defined.

        Called before the graph is used (versions, ordering, lookups) and after config entrypoints are
        imported, so a misspelt upstream key fails early with the feature that names it.
        """
        if not self._pending:
            return
        cls = self._pending.get(key) if key is not None else None
        cls = cls or next(iter(self._pending.values()))
        missing = [str(d.feature) for d in cls.spec.deps if d.feature not in self.features_by_key]
        known = ", ".join(sorted(str(k) for k in self.features_by_key)) or "none"
        raise FeatureDefinitionError(
            f"Feature '{cls.spec.key}' ({cls.__name__}) depends on unknown feature '{missing[0]}', which is "
            f"never defined. Define that feature (an upstream named by key may be defined later) or fix the "
            f"key. Known features: {known}."
        )

    def _check_table_name(self, cls: "type[BaseFeature]") -> None:
        """Two keys must never share a stored table.

        Key parts cannot produce the same joined name (see :mod:`metaxy_core.keys`), but SQL engines
        fold identifier case and PostgreSQL keeps only the first 63 characters, so ``docs/Page`` and
        ``docs/page`` would read and overwrite each other's rows.
        """
        key = cls.spec.key
        table = key.table_name
        for other_key, other in self.features_by_key.items():
            other_table = other_key.table_name
            if other_key == key or other_table.lower()[:MAX_TABLE_NAME] != table.lower()[:MAX_TABLE_NAME]:
                continue
            if other_table.lower() == table.lower():
                reason = (
                    f"their tables '{table}' and '{other_table}' differ only in letter case, and SQL engines fold "
                    "table names to one case"
                )
            else:
                reason = (
                    f"their tables '{table}' and '{other_table}' share the first {MAX_TABLE_NAME} characters, all "
                    "that PostgreSQL keeps of a table name"
                )
            raise FeatureDefinitionError(
                f"Feature key '{key}' ({cls.__name__}) collides with '{other_key}' ({other.__name__}) as table "
                f"names: {reason}. Rename one of the keys so their table names differ."
            )

    def _validate(self, cls: "type[BaseFeature]") -> None:
        spec = cls.spec
        name = f"Feature '{spec.key}' ({cls.__name__})"
        folded_columns: dict[str, str] = {}
        for column in cls.model_fields:
            other_column = folded_columns.setdefault(column.lower(), column)
            if other_column != column:
                raise FeatureDefinitionError(
                    f"{name} declares columns '{other_column}' and '{column}' that differ only in letter case; "
                    "SQL engines treat them as one column. Rename one."
                )
            if column.startswith(SYSTEM_COLUMN_PREFIX):
                raise FeatureDefinitionError(
                    f"{name} declares column '{column}', but the '{SYSTEM_COLUMN_PREFIX}' prefix is reserved "
                    "for system columns: rename the column."
                )
        for column in spec.id_columns:
            if column.startswith(SYSTEM_COLUMN_PREFIX):
                raise FeatureDefinitionError(
                    f"{name}: id column '{column}' uses the reserved '{SYSTEM_COLUMN_PREFIX}' prefix: rename it."
                )
        dep_keys = {d.feature for d in spec.deps}
        self._validate_columns(cls)
        folded: dict[str, FieldKey] = {}
        for f in spec.fields:
            other_field = folded.setdefault(str(f.key).lower(), f.key)
            if other_field != f.key:
                raise FeatureDefinitionError(
                    f"{name}: field keys '{other_field}' and '{f.key}' differ only in letter case; SQL engines fold "
                    "column and struct field names to one case, so they would share a column. Rename one."
                )
        for f in spec.fields:
            if f.deps is None or f.deps is ALL:
                continue
            for fdep in f.deps:
                if fdep.feature not in dep_keys:
                    raise FeatureDefinitionError(
                        f"{name}, field '{f.key}': FieldDep on '{fdep.feature}', which is not among the feature's "
                        f"deps ({', '.join(sorted(map(str, dep_keys))) or 'none'}). Add FeatureDep(feature="
                        f"'{fdep.feature}') to the spec's deps."
                    )
                if fdep.fields is ALL:
                    continue
                upstream_fields = set(self.features_by_key[fdep.feature].spec.field_keys)
                for uf in fdep.fields:
                    if uf not in upstream_fields:
                        raise FeatureDefinitionError(
                            f"{name}, field '{f.key}': depends on field '{uf}' of '{fdep.feature}', which has no "
                            f"such field (it has: {', '.join(sorted(map(str, upstream_fields)))})."
                        )

    def _validate_columns(self, cls: "type[BaseFeature]") -> None:
        """Catch column selection mistakes at definition time when the upstreams declare their columns.

        Upstreams without declared columns are checked again at resolve time, against stored data.
        """
        spec = cls.spec
        expansion = [d for d in spec.deps if d.lineage.type == "expansion"]
        key_columns = set(expansion[0].lineage.on or ()) if expansion else set(spec.id_columns)
        owners: dict[str, FeatureKey] = {}
        for dep in spec.deps:
            rename = dep.rename or {}
            for src, dst in rename.items():
                if dst.startswith(SYSTEM_COLUMN_PREFIX):
                    raise FeatureDefinitionError(
                        f"Feature '{spec.key}': FeatureDep(feature='{dep.feature}', rename={{'{src}': '{dst}'}}) "
                        f"renames onto the reserved '{SYSTEM_COLUMN_PREFIX}' prefix: pick another name."
                    )
            upstream = self.features_by_key[dep.feature]
            declared = list(upstream.model_fields)
            if not declared:
                continue
            if dep.columns is not None:
                unknown = [c for c in dep.columns if c not in declared]
                if unknown:
                    raise FeatureDefinitionError(
                        f"Feature '{spec.key}': FeatureDep(feature='{dep.feature}', columns={list(dep.columns)}) "
                        f"selects {unknown}, which '{dep.feature}' does not declare (it declares {declared})."
                    )
            if dep.lineage.type == "aggregation":
                continue
            join = set(dep.lineage.on or ()) if dep.lineage.type == "expansion" else key_columns
            # the join columns must come from the upstream (its declared or id columns, after rename)
            available = {rename.get(c, c) for c in [*declared, *upstream.spec.id_columns]}
            missing_join = sorted(join - available)
            if missing_join:
                what = "lineage on=" if dep.lineage.type == "expansion" else "id column(s)"
                raise FeatureDefinitionError(
                    f"Feature '{spec.key}': {what} {missing_join} must come from '{dep.feature}', which has no such "
                    f"column (it declares {declared} and ids {list(upstream.spec.id_columns)}). Declare the column "
                    f"on '{dep.feature}', or map one with FeatureDep(feature='{dep.feature}', rename={{...}})."
                )
            chosen = declared if dep.columns is None else list(dep.columns)
            for column in chosen:
                out = rename.get(column, column)
                if out in join:
                    continue
                if out in owners and owners[out] != dep.feature:
                    raise FeatureDefinitionError(
                        f"Feature '{spec.key}': column '{out}' would come from both '{owners[out]}' and "
                        f"'{dep.feature}'. Select columns with FeatureDep(feature='{dep.feature}', columns=[...]) "
                        f"or rename one: FeatureDep(feature='{dep.feature}', rename={{'{column}': "
                        f"'{dep.feature.parts[-1]}_{column}'}})."
                    )
                owners[out] = dep.feature

    def _check_cycles(self, extra: "type[BaseFeature] | None" = None) -> None:
        """Raise on a dependency cycle among the defined, pending and ``extra`` features."""
        features = {**self.features_by_key, **self._pending}
        if extra is not None:
            features[extra.spec.key] = extra
        state: dict[FeatureKey, int] = {}

        def visit(key: FeatureKey, path: list[FeatureKey]) -> None:
            if state.get(key) == 2:
                return
            if state.get(key) == 1:
                cycle = " -> ".join(str(k) for k in [*path[path.index(key) :], key])
                raise FeatureDefinitionError(
                    f"Dependency cycle between features: {cycle}. Remove one of these deps."
                )
            state[key] = 1
            cls = features.get(key)
            if cls is not None:
                for dep in cls.spec.deps:
                    visit(dep.feature, [*path, key])
            state[key] = 2

        for key in sorted(features):
            visit(key, [])

    def remove_feature(self, key: FeatureKey | str) -> None:
        self._pending.pop(FeatureKey(key), None)
        self.features_by_key.pop(FeatureKey(key), None)
        self._cache.clear()

    # -- lookup -----------------------------------------------------------------------------------
    def get_feature(self, key: "FeatureKey | str | list[str] | type[BaseFeature]") -> "type[BaseFeature]":
        if isinstance(key, type):
            return key
        fkey = FeatureKey(key)
        try:
            return self.features_by_key[fkey]
        except KeyError:
            if fkey in self._pending:
                self.check_complete(fkey)
            known = ", ".join(sorted(str(k) for k in self.features_by_key)) or "none"
            raise FeatureNotFoundError(f"Unknown feature '{fkey}'. Known features: {known}.") from None

    def get_spec(self, key: FeatureKey) -> FeatureSpec:
        return self.get_feature(key).spec

    def __contains__(self, key: object) -> bool:
        try:
            return FeatureKey(key) in self.features_by_key  # type: ignore[arg-type]
        except Exception:
            return False

    def __len__(self) -> int:
        return len(self.features_by_key)

    def topological_order(self) -> list[FeatureKey]:
        """Every feature after its dependencies; ties broken by key for determinism."""
        self.check_complete()
        order: list[FeatureKey] = []
        done: set[FeatureKey] = set()

        def visit(key: FeatureKey) -> None:
            if key in done:
                return
            done.add(key)
            for dep in sorted(d.feature for d in self.features_by_key[key].spec.deps):
                visit(dep)
            order.append(key)

        for key in sorted(self.features_by_key):
            visit(key)
        return order

    def downstream_of(self, key: FeatureKey) -> list[FeatureKey]:
        """All features that (transitively) depend on ``key``, in topological order."""
        result: set[FeatureKey] = set()
        for k in self.topological_order():
            if any(d.feature == key or d.feature in result for d in self.features_by_key[k].spec.deps):
                result.add(k)
        return [k for k in self.topological_order() if k in result]

    def field_parents(self, key: FeatureKey, field: FieldKey) -> list[FieldRef]:
        """Upstream fields that ``key.field`` depends on, de-duplicated and sorted by ``fq``."""
        cache_key = ("parents", key, field)
        if cache_key in self._cache:
            return self._cache[cache_key]
        spec = self.get_spec(key)
        fspec = next(f for f in spec.fields if f.key == field)
        parents: set[FieldRef] = set()
        if fspec.deps is ALL:
            for dep in spec.deps:
                for uf in self.get_spec(dep.feature).field_keys:
                    parents.add(FieldRef.of(dep.feature, uf))
        elif fspec.deps is None:
            for dep in spec.deps:
                upstream = self.get_spec(dep.feature).field_keys
                chosen = [field] if field in upstream else upstream
                for uf in chosen:
                    parents.add(FieldRef.of(dep.feature, uf))
        else:
            for fdep in fspec.deps:
                chosen = self.get_spec(fdep.feature).field_keys if fdep.fields is ALL else list(fdep.fields)
                for uf in chosen:
                    parents.add(FieldRef.of(fdep.feature, uf))
        result = sorted(parents)
        self._cache[cache_key] = result
        return result

    # -- versions (see metaxy_core.versions) -------------------------------------------------------
    def versions(self, hash_length: int | None = None) -> "Any":
        """Definition-level versions at ``hash_length`` (default: :func:`default_hash_length`)."""
        from metaxy_core.versions import GraphVersions

        self.check_complete()
        length = default_hash_length() if hash_length is None else hash_length
        cache_key = ("versions", length)
        if cache_key not in self._cache:
            self._cache[cache_key] = GraphVersions(self, length)
        return self._cache[cache_key]

    def feature_version(self, key: FeatureKey | str, hash_length: int | None = None) -> str:
        return self.versions(hash_length).feature_version(FeatureKey(key))

    def feature_code_version(self, key: FeatureKey | str, hash_length: int | None = None) -> str:
        return self.versions(hash_length).feature_code_version(FeatureKey(key))

    def field_versions(self, key: FeatureKey | str, hash_length: int | None = None) -> dict[str, str]:
        return self.versions(hash_length).field_versions(FeatureKey(key))

    @property
    def snapshot_version(self) -> str:
        return self.versions().snapshot_version()
