"""Feature classes: a pydantic model of a feature's user columns, registered in a graph on definition.

>>> import metaxy_core as mx
>>> with mx.FeatureGraph().use():
...     class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video/raw", id_columns=["video_id"],
...                                                     fields=["audio", "frames"])):
...         video_id: str
...         path: str
...     Video.spec.key, Video.user_columns()
(FeatureKey('video/raw'), ['video_id', 'path'])
"""

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from metaxy_core.graph import FeatureGraph
from metaxy_core.spec import FeatureSpec


class BaseFeature(BaseModel):
    """Base class of all features. Subclass it with ``spec=FeatureSpec(...)``.

    Class attributes: ``spec`` (the :class:`FeatureSpec`) and ``graph`` (the :class:`FeatureGraph`
    the class was registered in: the active one at definition time).
    """

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    spec: ClassVar[FeatureSpec]
    graph: ClassVar[FeatureGraph]

    def __init_subclass__(cls, spec: FeatureSpec | None = None, **kwargs: Any) -> None:
        # `spec=` is consumed in __pydantic_init_subclass__, once pydantic has built the fields.
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, spec: FeatureSpec | None = None, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if spec is None:
            # An intermediate base class (like `Feature`), not a feature of its own.
            return
        if not isinstance(spec, FeatureSpec):
            raise TypeError(f"{cls.__name__}: spec= must be a metaxy FeatureSpec, got {type(spec).__name__}.")
        cls.spec = spec
        cls.graph = FeatureGraph.get_active()
        cls.graph.add_feature(cls)

    @classmethod
    def user_columns(cls) -> list[str]:
        """Columns declared on the class (id columns included when declared)."""
        return list(cls.model_fields)

    @classmethod
    def feature_version(cls, hash_length: int | None = None) -> str:
        return cls.graph.feature_version(cls.spec.key, hash_length)

    @classmethod
    def feature_code_version(cls, hash_length: int | None = None) -> str:
        return cls.graph.feature_code_version(cls.spec.key, hash_length)

    @classmethod
    def field_versions(cls, hash_length: int | None = None) -> dict[str, str]:
        """Field key string -> field version (``hash_length`` defaults to the configured one)."""
        return cls.graph.field_versions(cls.spec.key, hash_length)

    @classmethod
    def table_name(cls) -> str:
        return cls.spec.key.table_name


class Feature(BaseFeature):
    """A :class:`BaseFeature` whose samples are identified by ``sample_uid`` unless the spec says otherwise."""
