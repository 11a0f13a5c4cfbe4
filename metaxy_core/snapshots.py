"""Graph snapshots: the feature graph's definitions and versions, frozen and recorded in a store.

A snapshot holds, per feature, its key, feature version, feature code version, fields (version,
code version, parent fields) and the full spec as JSON. Snapshots are taken from code
(:meth:`GraphSnapshot.from_graph`) or read back from a store's system tables, so graph diffs,
renders and migrations work the same on both.

System tables (written with ``store.append_system`` and read with ``store.read_system``, so every
store has them):

* ``graph_snapshots``: one row per pushed snapshot (project, snapshot version, hash length,
  feature count, a hash of all specs, time of the push).
* ``feature_versions``: one row per feature per pushed snapshot (versions, fields and spec as JSON).

Pushing a graph whose snapshot version and specs are already recorded records nothing.

>>> import metaxy_core as mx
>>> with mx.FeatureGraph().use() as graph:
...     class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video/raw", id_columns=["video_id"],
...                                                     fields=["audio", "frames"])):
...         video_id: str
...     store = mx.InMemoryMetadataStore(hash_length=8)
...     first, again = mx.push_graph_snapshot(store), mx.push_graph_snapshot(store)
>>> first.recorded, again.recorded, first.snapshot_version == again.snapshot_version
(True, False, True)
"""

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from metaxy_core.errors import MetaxyError
from metaxy_core.graph import FeatureGraph
from metaxy_core.keys import FeatureKey

if TYPE_CHECKING:
    from metaxy_core.stores.base import MetadataStore

SNAPSHOTS_TABLE = "graph_snapshots"
FEATURE_VERSIONS_TABLE = "feature_versions"
DEFAULT_PROJECT = "default"


class SnapshotNotFoundError(MetaxyError, LookupError):
    """A graph snapshot reference (``latest``, a version or a prefix) matches no recorded snapshot."""


@dataclass(frozen=True)
class FieldSnapshot:
    """One field of a feature at snapshot time."""

    key: str
    version: str
    code_version: str
    parents: tuple[str, ...] = ()
    """Fully qualified parent fields (``"<feature>.<field>"``), sorted."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "version": self.version,
            "code_version": self.code_version,
            "parents": list(self.parents),
        }


@dataclass(frozen=True)
class FeatureSnapshot:
    """One feature at snapshot time."""

    key: str
    version: str
    code_version: str
    fields: tuple[FieldSnapshot, ...]
    """Sorted by field key."""
    deps: tuple[str, ...] = ()
    """Upstream feature keys, in declaration order."""
    spec: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """The feature's ``FeatureSpec`` as JSON (``spec.model_dump(mode="json")``)."""

    @property
    def is_root(self) -> bool:
        return not self.deps

    def field(self, key: str) -> FieldSnapshot | None:
        return next((f for f in self.fields if f.key == key), None)

    @property
    def field_keys(self) -> list[str]:
        return [f.key for f in self.fields]


@dataclass(frozen=True)
class GraphSnapshot:
    """A frozen feature graph: versions and specs of every feature, in topological order."""

    snapshot_version: str
    hash_length: int
    features: tuple[FeatureSnapshot, ...]
    recorded_at: datetime | None = None
    """When it was pushed; ``None`` for a snapshot taken from code."""
    project: str = DEFAULT_PROJECT
    label: str = "current"
    """How it was asked for: ``current``, ``latest`` or the version given."""

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_graph(
        cls, graph: FeatureGraph | None = None, *, hash_length: int | None = None, project: str | None = None
    ) -> "GraphSnapshot":
        """Snapshot of ``graph`` (default: the active one) at ``hash_length`` (default: config)."""
        from metaxy_core.config import get_config
        from metaxy_core.versions import GraphVersions

        graph = graph or FeatureGraph.get_active()
        cfg = get_config()
        length = hash_length or cfg.hash_length
        versions = GraphVersions(graph, length)
        features = []
        for key in graph.topological_order():
            spec = graph.get_spec(key)
            field_versions = versions.field_versions(key)
            fields = tuple(
                FieldSnapshot(
                    key=str(f.key),
                    version=field_versions[str(f.key)],
                    code_version=f.code_version,
                    parents=tuple(p.fq for p in graph.field_parents(key, f.key)),
                )
                for f in sorted(spec.fields, key=lambda f: str(f.key))
            )
            features.append(
                FeatureSnapshot(
                    key=str(key),
                    version=versions.feature_version(key),
                    code_version=versions.feature_code_version(key),
                    fields=fields,
                    deps=tuple(str(d.feature) for d in spec.deps),
                    spec=spec.model_dump(mode="json"),
                )
            )
        return cls(
            snapshot_version=versions.snapshot_version(),
            hash_length=length,
            features=tuple(features),
            project=project or cfg.project or DEFAULT_PROJECT,
        )

    # -- lookup ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[FeatureSnapshot]:
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    def __contains__(self, key: object) -> bool:
        return self.get(str(FeatureKey(key))) is not None  # type: ignore[arg-type]

    def get(self, key: str | FeatureKey) -> FeatureSnapshot | None:
        wanted = str(key)
        return next((f for f in self.features if f.key == wanted), None)

    def feature(self, key: str | FeatureKey) -> FeatureSnapshot:
        found = self.get(key)
        if found is None:
            known = ", ".join(sorted(f.key for f in self.features)) or "none"
            raise SnapshotNotFoundError(
                f"Feature '{key}' is not in graph snapshot {self.snapshot_version[:8]} ({self.label}). "
                f"Its features: {known}."
            )
        return found

    @property
    def edges(self) -> list[tuple[str, str]]:
        """``(upstream, downstream)`` feature key pairs, downstream in topological order."""
        return [(dep, f.key) for f in self.features for dep in f.deps]

    @property
    def spec_hash(self) -> str:
        """Hash of every feature's spec: tells apart two pushes of one snapshot version whose specs differ
        in ways versions do not capture (id columns, lineage, column selection, ...)."""
        payload = json.dumps(
            [[f.key, f.spec] for f in sorted(self.features, key=lambda f: f.key)], sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    # -- output ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON form: snapshot version, then features sorted by key with their fields."""
        return {
            "snapshot_version": self.snapshot_version,
            "features": [
                {
                    "key": f.key,
                    "version": f.version,
                    "code_version": f.code_version,
                    "fields": [
                        {"key": x.key, "version": x.version, "code_version": x.code_version} for x in f.fields
                    ],
                }
                for f in sorted(self.features, key=lambda f: f.key)
            ],
        }


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_graph_snapshot` did."""

    snapshot_version: str
    recorded: bool
    """False when this exact snapshot (version and specs) was already recorded."""
    features: int
    recorded_at: datetime | None


@dataclass(frozen=True)
class SnapshotInfo:
    """One row of the ``graph_snapshots`` system table."""

    snapshot_version: str
    project: str
    hash_length: int
    feature_count: int
    spec_hash: str
    recorded_at: datetime


# -- push -------------------------------------------------------------------------------------------
def push_graph_snapshot(
    store: "MetadataStore", graph: FeatureGraph | None = None, *, project: str | None = None
) -> PushResult:
    """Record ``graph`` (default: the active one) in ``store``'s system tables.

    Versions are taken at the store's hash length. A snapshot already recorded with the same
    version and specs is not recorded again (``PushResult.recorded`` is False).
    """
    snapshot = GraphSnapshot.from_graph(graph, hash_length=store.hash_length, project=project)
    with store:
        for info in list_graph_snapshots(store, project=snapshot.project):
            if info.snapshot_version == snapshot.snapshot_version and info.spec_hash == snapshot.spec_hash:
                return PushResult(snapshot.snapshot_version, False, len(snapshot), info.recorded_at)
        now = datetime.now(UTC)
        features = pl.DataFrame(
            {
                "project": [snapshot.project] * len(snapshot),
                "snapshot_version": [snapshot.snapshot_version] * len(snapshot),
                "position": list(range(len(snapshot))),
                "feature_key": [f.key for f in snapshot],
                "feature_version": [f.version for f in snapshot],
                "feature_code_version": [f.code_version for f in snapshot],
                "fields_json": [json.dumps([x.to_dict() for x in f.fields]) for f in snapshot],
                "deps_json": [json.dumps(list(f.deps)) for f in snapshot],
                "spec_json": [json.dumps(f.spec, sort_keys=True) for f in snapshot],
                "recorded_at": [now] * len(snapshot),
            },
            schema_overrides={"position": pl.Int64, "recorded_at": pl.Datetime("us", "UTC")},
        )
        header = pl.DataFrame(
            {
                "project": [snapshot.project],
                "snapshot_version": [snapshot.snapshot_version],
                "hash_length": [snapshot.hash_length],
                "feature_count": [len(snapshot)],
                "spec_hash": [snapshot.spec_hash],
                "recorded_at": [now],
            },
            schema_overrides={
                "hash_length": pl.Int64,
                "feature_count": pl.Int64,
                "recorded_at": pl.Datetime("us", "UTC"),
            },
        )
        # Features first: a snapshot is only listed (and so visible) once its rows are all there.
        if len(snapshot):
            store.append_system(FEATURE_VERSIONS_TABLE, features)
        store.append_system(SNAPSHOTS_TABLE, header)
    return PushResult(snapshot.snapshot_version, True, len(snapshot), now)


# -- read back ---------------------------------------------------------------------------------------
def list_graph_snapshots(store: "MetadataStore", *, project: str | None = None) -> list[SnapshotInfo]:
    """Recorded snapshots of ``project`` (default: the config's), oldest first."""
    project = _project(project)
    with store:
        rows = store.read_system(SNAPSHOTS_TABLE)
    if rows is None or rows.height == 0:
        return []
    rows = rows.filter(pl.col("project") == project).sort("recorded_at", maintain_order=True)
    return [
        SnapshotInfo(
            snapshot_version=r["snapshot_version"],
            project=r["project"],
            hash_length=int(r["hash_length"]),
            feature_count=int(r["feature_count"]),
            spec_hash=r["spec_hash"],
            recorded_at=r["recorded_at"],
        )
        for r in rows.iter_rows(named=True)
    ]


def load_graph_snapshot(
    store: "MetadataStore", ref: str = "latest", *, project: str | None = None
) -> GraphSnapshot:
    """A recorded snapshot: ``latest`` (the last pushed) or a snapshot version / unique prefix of one.

    Raises :class:`SnapshotNotFoundError` naming what was asked and what is recorded.
    """
    project = _project(project)
    infos = list_graph_snapshots(store, project=project)
    info = _pick(infos, ref, store, project)
    with store:
        rows = store.read_system(FEATURE_VERSIONS_TABLE)
    features: list[FeatureSnapshot] = []
    if rows is not None and rows.height:
        # The same version may be recorded more than once (specs changed); take that push's rows.
        mine = rows.filter(
            (pl.col("project") == project)
            & (pl.col("snapshot_version") == info.snapshot_version)
            & (pl.col("recorded_at") == info.recorded_at)
        ).sort("position")
        for r in mine.iter_rows(named=True):
            features.append(
                FeatureSnapshot(
                    key=r["feature_key"],
                    version=r["feature_version"],
                    code_version=r["feature_code_version"],
                    fields=tuple(
                        FieldSnapshot(x["key"], x["version"], x["code_version"], tuple(x.get("parents", ())))
                        for x in json.loads(r["fields_json"])
                    ),
                    deps=tuple(json.loads(r["deps_json"])),
                    spec=json.loads(r["spec_json"]),
                )
            )
    return GraphSnapshot(
        snapshot_version=info.snapshot_version,
        hash_length=info.hash_length,
        features=tuple(features),
        recorded_at=info.recorded_at,
        project=project,
        label=ref,
    )


def resolve_snapshot(
    ref: "str | GraphSnapshot | FeatureGraph",
    *,
    store: "MetadataStore | None" = None,
    hash_length: int | None = None,
    project: str | None = None,
) -> GraphSnapshot:
    """Turn ``current`` / ``latest`` / a version prefix / a graph / a snapshot into a :class:`GraphSnapshot`.

    ``current`` (or a :class:`FeatureGraph`) is taken from code at ``hash_length`` (default: the
    store's, else the config's); everything else needs ``store``.
    """
    if isinstance(ref, GraphSnapshot):
        return ref
    if isinstance(ref, FeatureGraph):
        return GraphSnapshot.from_graph(ref, hash_length=hash_length or _store_length(store), project=project)
    if ref == "current":
        snap = GraphSnapshot.from_graph(hash_length=hash_length or _store_length(store), project=project)
        return snap
    if store is None:
        raise SnapshotNotFoundError(
            f"Snapshot '{ref}' is read from a store, but no store was given. Pass store=..., or use 'current'."
        )
    return load_graph_snapshot(store, ref, project=project)


def _store_length(store: "MetadataStore | None") -> int | None:
    return store.hash_length if store is not None else None


def _project(project: str | None) -> str:
    if project:
        return project
    from metaxy_core.config import get_config

    return get_config().project or DEFAULT_PROJECT


def _pick(infos: Sequence[SnapshotInfo], ref: str, store: "MetadataStore", project: str) -> SnapshotInfo:
    if not infos:
        raise SnapshotNotFoundError(
            f"No graph snapshot of project '{project}' is recorded in {store!r}, so '{ref}' cannot be found. "
            "Record one with `metaxy graph push` (or mx.push_graph_snapshot(store))."
        )
    if ref == "latest":
        return infos[-1]
    ref_l = ref.lower()
    matches = [i for i in infos if i.snapshot_version.startswith(ref_l)]
    distinct = {i.snapshot_version for i in matches}
    if len(distinct) == 1:
        return matches[-1]
    recorded = ", ".join(
        f"{i.snapshot_version[:12]} ({i.recorded_at:%Y-%m-%d %H:%M:%S})" for i in reversed(infos[-10:])
    )
    if not distinct:
        raise SnapshotNotFoundError(
            f"No graph snapshot '{ref}' in {store!r} (project '{project}'). Use 'latest', 'current' or a version "
            f"prefix; recorded (newest first): {recorded}."
        )
    raise SnapshotNotFoundError(
        f"Snapshot prefix '{ref}' is ambiguous: it matches {', '.join(sorted(v[:16] for v in distinct))}. "
        "Give more characters."
    )
