"""Feature and field keys.

A key is a tuple of parts. Its string form joins the parts with ``/`` (``"video/raw"``); the table
name joins them with ``__`` (``"video__raw"``), which is why a feature key part may never contain
``__`` nor start or end with ``_``: every table name then splits back into exactly one key.

>>> import metaxy_core as mx
>>> mx.FeatureKey("video/raw") == mx.FeatureKey(["video", "raw"])
True
>>> mx.FeatureKey("video/raw").table_name
'video__raw'
"""

import re
from collections.abc import Iterable
from functools import total_ordering
from typing import Any, ClassVar, Self

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from metaxy_core.errors import InvalidKeyError

_PART = re.compile(r"^[A-Za-z0-9_-]+$")


@total_ordering
class _Key:
    """Immutable, hashable, ordered by its string form."""

    __slots__ = ("parts",)
    kind: ClassVar[str] = "key"
    parts: tuple[str, ...]

    def __init__(self, key: "str | Iterable[str] | _Key") -> None:
        parts = self._parse(key)
        object.__setattr__(self, "parts", parts)

    @classmethod
    def _parse(cls, key: Any) -> tuple[str, ...]:
        if isinstance(key, _Key):
            return key.parts
        if isinstance(key, str):
            parts: tuple[str, ...] = tuple(key.split("/"))
        elif isinstance(key, Iterable):
            parts = tuple(key)
        else:
            raise InvalidKeyError(
                f"Cannot build a {cls.kind} from {key!r} ({type(key).__name__}): "
                f"use a string like 'a/b', a list like ['a', 'b'] or a {cls.__name__}."
            )
        if not parts:
            raise InvalidKeyError(f"A {cls.kind} needs at least one part, got {key!r}.")
        for part in parts:
            if not isinstance(part, str) or not _PART.match(part):
                raise InvalidKeyError(
                    f"Invalid {cls.kind} part {part!r} in {key!r}: parts must be non-empty and use only "
                    "letters, digits, '_' and '-' (use '/' or a list to separate parts)."
                )
            if "__" in part:
                raise InvalidKeyError(
                    f"Invalid {cls.kind} part {part!r} in {key!r}: '__' is reserved as the table-name "
                    "separator; use a single '_' or split the part with '/'."
                )
            if cls.kind == "feature key" and (part.startswith("_") or part.endswith("_")):
                # 'a_/b' and 'a/_b' would both be table 'a___b'; without edge underscores every table
                # name splits back into exactly one key.
                raise InvalidKeyError(
                    f"Invalid {cls.kind} part {part!r} in {key!r}: a part may not start or end with '_', "
                    "which would run into the '__' table-name separator; drop the underscore."
                )
        return parts

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def to_string(self) -> str:
        return "/".join(self.parts)

    @property
    def table_name(self) -> str:
        return "__".join(self.parts)

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_string()!r})"

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.parts))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, type(self)):
            return self.parts == other.parts
        if isinstance(other, str):
            return self.to_string() == other
        return NotImplemented

    def __lt__(self, other: Self) -> bool:
        return self.to_string() < other.to_string()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self.parts),))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda k: k.to_string()),
        )

    @classmethod
    def _validate(cls, value: Any) -> Self:
        return value if isinstance(value, cls) else cls(value)


class FeatureKey(_Key):
    """Identifies a feature: ``FeatureKey("video/raw")`` or ``FeatureKey(["video", "raw"])``."""

    __slots__ = ()
    kind = "feature key"


class FieldKey(_Key):
    """Identifies a field of a feature: ``FieldKey("audio")``."""

    __slots__ = ()
    kind = "field key"


CoercibleToFeatureKey = str | Iterable[str] | FeatureKey
CoercibleToFieldKey = str | Iterable[str] | FieldKey
