"""Definition-level versions, computed from code alone.

``H(s)`` is the lowercase hex SHA-256 of ``s`` truncated to ``hash_length``; truncated values feed
the chain forward.

* field version   = H(fq(f) + code_version(f) + concat(field_version(p) for parents p sorted by fq))
* feature version = H(concat(field_key + field_version(f) for fields sorted by key))
* feature code version = H(concat(field_key + code_version(f) for fields sorted by key))
* snapshot version = H(concat(feature_key + feature_version(F) for features sorted by key))
"""

import hashlib
from functools import cache
from typing import TYPE_CHECKING

from metaxy_core.keys import FeatureKey, FieldKey

if TYPE_CHECKING:
    from metaxy_core.graph import FeatureGraph


def definition_hash(text: str, hash_length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:hash_length]


class GraphVersions:
    """Memoised version walk over one graph at one hash length."""

    def __init__(self, graph: "FeatureGraph", hash_length: int) -> None:
        self.graph = graph
        self.hash_length = hash_length
        self.field_version = cache(self._field_version)
        self.feature_version = cache(self._feature_version)

    def _h(self, text: str) -> str:
        return definition_hash(text, self.hash_length)

    def _field_version(self, feature: FeatureKey, field: FieldKey) -> str:
        spec = self.graph.get_spec(feature)
        fspec = next(f for f in spec.fields if f.key == field)
        parents = self.graph.field_parents(feature, field)
        text = f"{feature}.{field}" + fspec.code_version
        text += "".join(self.field_version(p.feature, p.field) for p in parents)
        return self._h(text)

    def field_versions(self, feature: FeatureKey) -> dict[str, str]:
        spec = self.graph.get_spec(feature)
        return {
            str(f.key): self.field_version(feature, f.key)
            for f in sorted(spec.fields, key=lambda f: str(f.key))
        }

    def _feature_version(self, feature: FeatureKey) -> str:
        return self._h("".join(k + v for k, v in self.field_versions(feature).items()))

    def feature_code_version(self, feature: FeatureKey) -> str:
        spec = self.graph.get_spec(feature)
        fields = sorted(spec.fields, key=lambda f: str(f.key))
        return self._h("".join(str(f.key) + f.code_version for f in fields))

    def snapshot_version(self) -> str:
        keys = sorted(self.graph.features_by_key, key=str)
        return self._h("".join(str(k) + self.feature_version(k) for k in keys))
