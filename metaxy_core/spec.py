"""Declarative specs: fields, field dependencies, feature dependencies, lineage and features.

Specs are plain data. Feature classes given as dependencies are replaced by their keys, so a spec
serialises to JSON (graph snapshots store it) and compares by value.

>>> import metaxy_core as mx
>>> spec = mx.FeatureSpec(key="video/raw", id_columns=["video_id"],
...                       fields=[mx.FieldSpec("audio", code_version=1), "frames"])
>>> [str(f.key) for f in spec.fields], spec.fields[0].code_version
(['audio', 'frames'], '1')
"""

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from metaxy_core.errors import FeatureDefinitionError
from metaxy_core.keys import FeatureKey, FieldKey

DEFAULT_CODE_VERSION = "__metaxy_initial__"
DEFAULT_ID_COLUMNS = ("sample_uid",)


class _Special(StrEnum):
    ALL = "__all__"

    def __repr__(self) -> str:
        return "mx.ALL"


ALL = _Special.ALL
"""Depend on every field: ``FieldSpec(deps=mx.ALL)`` or ``FieldDep(feature=X, fields=mx.ALL)``."""


def _to_feature_key(value: Any) -> FeatureKey:
    """Accept a feature class, a spec, a key or anything a key accepts."""
    spec = getattr(value, "spec", None)
    if isinstance(value, type) and isinstance(spec, FeatureSpec):
        return spec.key
    if isinstance(value, FeatureSpec):
        return value.key
    return FeatureKey(value)


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class LineageRelationship(_Spec):
    """How target samples map to upstream samples.

    ``identity()`` (the default) is 1:1 on the id columns; ``expansion(on=...)`` is 1:N (one parent
    row, identified by ``on``, becomes many target rows); ``aggregation(on=...)`` is N:1 (upstream rows
    sharing the ``on`` values become one target row).
    """

    type: Literal["identity", "expansion", "aggregation"] = "identity"
    on: tuple[str, ...] | None = None

    @classmethod
    def identity(cls) -> Self:
        return cls(type="identity")

    @classmethod
    def expansion(cls, on: Sequence[str]) -> Self:
        return cls(type="expansion", on=tuple(on))

    @classmethod
    def aggregation(cls, on: Sequence[str]) -> Self:
        return cls(type="aggregation", on=tuple(on))

    @model_validator(mode="after")
    def _check_on(self) -> Self:
        if self.type != "identity" and not self.on:
            raise FeatureDefinitionError(
                f"LineageRelationship.{self.type}() needs on=[...] naming the columns that link "
                "target rows to upstream rows."
            )
        return self


class FieldDep(_Spec):
    """Field-level dependency: which fields of ``feature`` a field depends on.

    ``FieldDep(feature=Video, fields=["audio"])``; ``fields=mx.ALL`` (the default) takes every field.
    The older spelling ``feature_key=`` is accepted.
    """

    feature: FeatureKey
    fields: tuple[FieldKey, ...] | _Special = ALL

    def __init__(self, feature: Any = None, /, **data: Any) -> None:
        if feature is None:
            feature = data.pop("feature", None)
        if feature is None:
            feature = data.pop("feature_key", None)
        if feature is None:
            raise FeatureDefinitionError("FieldDep needs feature=<feature class or key>.")
        super().__init__(feature=_to_feature_key(feature), **data)

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        if value is ALL or value == ALL.value:
            return ALL
        if isinstance(value, str | FieldKey):
            value = [value]
        return tuple(FieldKey(v) for v in value)


class FieldSpec(_Spec):
    """A versioned logical part of a feature (``audio``, ``frames``).

    ``code_version`` may be an int or a string and is stored as ``str(code_version)``. ``deps``:
    ``None`` applies the default rule (the same-named field of each upstream that has one, otherwise
    all of that upstream's fields); ``mx.ALL`` depends on every field of every dependency; a list
    of :class:`FieldDep` replaces the default entirely.
    """

    key: FieldKey
    code_version: str = DEFAULT_CODE_VERSION
    deps: tuple[FieldDep, ...] | _Special | None = None

    def __init__(self, key: Any = None, /, **data: Any) -> None:
        if key is None:
            key = data.pop("key", None)
        if key is None:
            raise FeatureDefinitionError("FieldSpec needs a key, e.g. FieldSpec('audio').")
        super().__init__(key=FieldKey(key), **data)

    @field_validator("code_version", mode="before")
    @classmethod
    def _code_version(cls, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise FeatureDefinitionError(f"code_version must be an int or a string, got {value!r}.")
        return str(value)

    @field_validator("deps", mode="before")
    @classmethod
    def _deps(cls, value: Any) -> Any:
        if value is None:
            return None
        if value is ALL or value == ALL.value:
            return ALL
        if isinstance(value, FieldDep):
            value = [value]
        return tuple(value)


class FeatureDep(_Spec):
    """Dependency on an upstream feature.

    ``columns`` selects upstream user columns carried into the increment (``None``: all, ``()``:
    none), ``rename`` renames them, ``lineage`` maps samples (identity by default), ``optional``
    makes the join a left join, ``filters`` (narwhals expressions or SQL ``WHERE`` strings) restrict
    upstream rows. The older spelling ``key=`` is accepted.
    """

    feature: FeatureKey
    columns: tuple[str, ...] | None = None
    rename: dict[str, str] | None = None
    lineage: LineageRelationship = Field(default_factory=LineageRelationship.identity)
    optional: bool = False
    filters: tuple[Any, ...] | None = None

    def __init__(self, feature: Any = None, /, **data: Any) -> None:
        if feature is None:
            feature = data.pop("feature", None)
        if feature is None:
            feature = data.pop("key", None)
        if feature is None:
            raise FeatureDefinitionError("FeatureDep needs feature=<feature class or key>.")
        super().__init__(feature=_to_feature_key(feature), **data)

    @property
    def key(self) -> FeatureKey:
        """Older spelling of :attr:`feature`."""
        return self.feature

    @field_validator("columns", mode="before")
    @classmethod
    def _columns(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, Sequence):
            return (value,)
        return tuple(value)

    @field_serializer("filters")
    def _ser_filters(self, value: tuple[Any, ...] | None) -> list[str] | None:
        return None if value is None else [str(v) for v in value]


class FeatureSpec(_Spec):
    """The declaration of a feature: key, id columns, upstream deps and versioned fields.

    A spec without ``fields`` has one field, ``default``. ``deps`` accepts :class:`FeatureDep`
    objects or bare feature classes/keys. ``Feature.spec`` is this object; calling it
    (``Feature.spec()``, the older spelling) returns it too.
    """

    key: FeatureKey
    id_columns: tuple[str, ...] = DEFAULT_ID_COLUMNS
    deps: tuple[FeatureDep, ...] = ()
    fields: tuple[FieldSpec, ...] = (FieldSpec("default"),)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, key: Any = None, /, **data: Any) -> None:
        if key is None:
            key = data.pop("key", None)
        if key is None:
            raise FeatureDefinitionError("FeatureSpec needs key=..., e.g. FeatureSpec(key='video/raw').")
        super().__init__(key=FeatureKey(key), **data)

    def __call__(self) -> Self:
        return self

    @field_validator("id_columns", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        if value is None:
            return DEFAULT_ID_COLUMNS
        if isinstance(value, str):
            return (value,)
        return tuple(value)

    @field_validator("deps", mode="before")
    @classmethod
    def _deps(cls, value: Any) -> Any:
        if value is None:
            return ()
        return tuple(v if isinstance(v, FeatureDep) else FeatureDep(feature=v) for v in value)

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        if value is None or (isinstance(value, Sequence) and len(value) == 0):
            return (FieldSpec("default"),)
        return tuple(FieldSpec(v) if isinstance(v, str | FieldKey) else v for v in value)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.id_columns:
            raise FeatureDefinitionError(f"Feature '{self.key}': id_columns must name at least one column.")
        seen: set[FieldKey] = set()
        for f in self.fields:
            if f.key in seen:
                raise FeatureDefinitionError(
                    f"Feature '{self.key}' declares field '{f.key}' twice: field keys must be unique."
                )
            seen.add(f.key)
        dep_keys = [d.feature for d in self.deps]
        dupes = {str(k) for k in dep_keys if dep_keys.count(k) > 1}
        if dupes:
            raise FeatureDefinitionError(
                f"Feature '{self.key}' lists dependency {sorted(dupes)} more than once: list each "
                "upstream feature once."
            )
        return self

    @property
    def field_keys(self) -> list[FieldKey]:
        return [f.key for f in self.fields]

    def dep(self, key: FeatureKey) -> FeatureDep:
        for d in self.deps:
            if d.feature == key:
                return d
        raise KeyError(key)
