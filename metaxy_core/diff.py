"""Graph diff: which features and fields were added, removed or changed between two snapshots.

A feature whose version changed is ``changed``; its ``reasons`` say why:

* ``code_version``: a field's code version changed;
* ``fields``: fields were added or removed;
* ``field_deps``: a field now depends on other upstream fields;
* ``deps``: the feature depends on other upstream features;
* ``spec``: the spec differs in ways versions do not capture (id columns, lineage, columns, ...);
  such a feature is ``changed`` even though its version is not;
* ``upstream``: a field's version changed only because an upstream field's version did.

A change whose only reason is ``upstream`` is flagged ``upstream_only``: the feature's own
definition is untouched, but its samples will need recomputing once the upstream data changes.

>>> import metaxy_core as mx
>>> def build(audio_version):
...     with mx.FeatureGraph().use() as graph:
...         class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video", id_columns=["id"],
...                 fields=[mx.FieldSpec("audio", code_version=audio_version), "frames"])):
...             id: str
...         class Stt(mx.BaseFeature, spec=mx.FeatureSpec(key="stt", id_columns=["id"], deps=[Video],
...                 fields=["audio"])):
...             id: str
...     return graph
>>> d = mx.diff_graphs(build("1"), build("2"))
>>> [(c.key, c.status, c.reasons) for c in d.features]
[('video', 'changed', ('code_version',)), ('stt', 'changed', ('upstream',))]
>>> d.features[1].upstream_only
True
"""

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from metaxy_core.errors import MetaxyError
from metaxy_core.graph import FeatureGraph
from metaxy_core.snapshots import FeatureSnapshot, FieldSnapshot, GraphSnapshot, resolve_snapshot

if TYPE_CHECKING:
    from metaxy_core.stores.base import MetadataStore

Status = Literal["added", "removed", "changed", "unchanged"]
SnapshotRef = "str | GraphSnapshot | FeatureGraph"


@dataclass(frozen=True)
class FieldChange:
    key: str
    status: Status
    old_version: str | None
    new_version: str | None
    old_code_version: str | None
    new_code_version: str | None
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "old_code_version": self.old_code_version,
            "new_code_version": self.new_code_version,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class FeatureChange:
    key: str
    status: Status
    old_version: str | None
    new_version: str | None
    old_code_version: str | None
    new_code_version: str | None
    fields: tuple[FieldChange, ...]
    reasons: tuple[str, ...] = ()

    @property
    def upstream_only(self) -> bool:
        """Changed only because an upstream feature changed: the feature's own definition is the same."""
        return self.status == "changed" and self.reasons == ("upstream",)

    @property
    def changed_fields(self) -> list[FieldChange]:
        return [f for f in self.fields if f.status != "unchanged"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "upstream_only": self.upstream_only,
            "reasons": list(self.reasons),
            "old_version": self.old_version,
            "new_version": self.new_version,
            "old_code_version": self.old_code_version,
            "new_code_version": self.new_code_version,
            "fields": [f.to_dict() for f in self.fields],
        }


@dataclass(frozen=True)
class GraphDiff:
    """The result of :func:`diff_graphs`. ``features`` follow the new graph's topological order, then
    removed features in the old graph's order."""

    old: GraphSnapshot
    new: GraphSnapshot
    features: tuple[FeatureChange, ...]

    def _with(self, status: Status) -> list[FeatureChange]:
        return [f for f in self.features if f.status == status]

    @property
    def added(self) -> list[FeatureChange]:
        return self._with("added")

    @property
    def removed(self) -> list[FeatureChange]:
        return self._with("removed")

    @property
    def changed(self) -> list[FeatureChange]:
        return self._with("changed")

    @property
    def unchanged(self) -> list[FeatureChange]:
        return self._with("unchanged")

    @property
    def has_changes(self) -> bool:
        return any(f.status != "unchanged" for f in self.features)

    def get(self, key: str) -> FeatureChange | None:
        return next((f for f in self.features if f.key == str(key)), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": {"ref": self.old.label, "snapshot_version": self.old.snapshot_version},
            "to": {"ref": self.new.label, "snapshot_version": self.new.snapshot_version},
            "hash_length": self.new.hash_length,
            "summary": {
                "added": len(self.added),
                "removed": len(self.removed),
                "changed": len(self.changed),
                "upstream_only": sum(f.upstream_only for f in self.changed),
                "unchanged": len(self.unchanged),
            },
            "features": [f.to_dict() for f in self.features],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


class GraphDiffError(MetaxyError, ValueError):
    """Two snapshots cannot be compared (e.g. they were taken at different hash lengths)."""


def diff_graphs(
    old: "str | GraphSnapshot | FeatureGraph" = "latest",
    new: "str | GraphSnapshot | FeatureGraph" = "current",
    *,
    store: "MetadataStore | None" = None,
    project: str | None = None,
) -> GraphDiff:
    """Compare two graphs: each a :class:`FeatureGraph`, a :class:`GraphSnapshot`, ``"current"`` (the
    code), ``"latest"`` (the last snapshot pushed to ``store``) or a pushed snapshot version (a unique
    prefix is enough).

    A graph taken from code is versioned at the hash length of the stored snapshot it is compared
    with, so the code can be compared with a snapshot pushed under another ``hash_length`` setting.
    """

    def from_code(ref: object) -> bool:
        return isinstance(ref, FeatureGraph) or ref == "current"

    # Stored snapshots first: a graph from code is then versioned at their hash length.
    snaps = {
        i: resolve_snapshot(r, store=store, project=project)
        for i, r in enumerate((old, new))
        if not from_code(r)
    }
    length = next((s.hash_length for s in snaps.values()), None)
    old_s = snaps.get(0) or resolve_snapshot(old, store=store, hash_length=length, project=project)
    new_s = snaps.get(1) or resolve_snapshot(new, store=store, hash_length=length, project=project)
    if old_s.hash_length != new_s.hash_length:
        raise GraphDiffError(
            f"Cannot compare snapshot {old_s.snapshot_version[:8]} (hash_length {old_s.hash_length}) with "
            f"{new_s.snapshot_version[:8]} (hash_length {new_s.hash_length}): versions at different hash lengths "
            "never match. Compare each with 'current' instead."
        )
    return compare_snapshots(old_s, new_s)


def compare_snapshots(old: GraphSnapshot, new: GraphSnapshot) -> GraphDiff:
    """The diff of two snapshots taken at the same hash length."""
    changes: list[FeatureChange] = []
    for feature in new.features:
        before = old.get(feature.key)
        changes.append(_added(feature) if before is None else _compare(before, feature))
    for feature in old.features:
        if new.get(feature.key) is None:
            changes.append(_removed(feature))
    return GraphDiff(old=old, new=new, features=tuple(changes))


def _added(f: FeatureSnapshot) -> FeatureChange:
    fields = tuple(FieldChange(x.key, "added", None, x.version, None, x.code_version) for x in f.fields)
    return FeatureChange(f.key, "added", None, f.version, None, f.code_version, fields)


def _removed(f: FeatureSnapshot) -> FeatureChange:
    fields = tuple(FieldChange(x.key, "removed", x.version, None, x.code_version, None) for x in f.fields)
    return FeatureChange(f.key, "removed", f.version, None, f.code_version, None, fields)


def _compare_field(old: FieldSnapshot, new: FieldSnapshot) -> FieldChange:
    reasons: list[str] = []
    if old.code_version != new.code_version:
        reasons.append("code_version")
    if old.parents != new.parents:
        reasons.append("field_deps")
    if old.version != new.version and not reasons:
        reasons.append("upstream")
    status: Status = "changed" if old.version != new.version else "unchanged"
    return FieldChange(
        new.key, status, old.version, new.version, old.code_version, new.code_version, tuple(reasons)
    )


def _compare(old: FeatureSnapshot, new: FeatureSnapshot) -> FeatureChange:
    fields: list[FieldChange] = []
    reasons: list[str] = []
    keys = sorted({*old.field_keys, *new.field_keys})
    for key in keys:
        a, b = old.field(key), new.field(key)
        if a is None and b is not None:
            fields.append(FieldChange(key, "added", None, b.version, None, b.code_version))
        elif b is None and a is not None:
            fields.append(FieldChange(key, "removed", a.version, None, a.code_version, None))
        elif a is not None and b is not None:
            fields.append(_compare_field(a, b))
    if any(f.status in ("added", "removed") for f in fields):
        reasons.append("fields")
    for reason in ("code_version", "field_deps"):
        if any(reason in f.reasons for f in fields):
            reasons.append(reason)
    if set(old.deps) != set(new.deps):
        reasons.append("deps")
    if "deps" not in reasons and old.spec and new.spec and _spec_rest(old.spec) != _spec_rest(new.spec):
        reasons.append("spec")
    if any("upstream" in f.reasons for f in fields):
        reasons.append("upstream")
    changed = old.version != new.version or bool(reasons)
    return FeatureChange(
        new.key,
        "changed" if changed else "unchanged",
        old.version,
        new.version,
        old.code_version,
        new.code_version,
        tuple(fields),
        tuple(reasons),
    )


def _spec_rest(spec: dict[str, Any]) -> str:
    """The parts of a spec that versions do not cover (fields and dep keys are compared separately)."""
    rest = {k: v for k, v in spec.items() if k not in ("fields", "key")}
    rest["deps"] = sorted(json.dumps(d, sort_keys=True) for d in spec.get("deps", []))
    return json.dumps(rest, sort_keys=True)
