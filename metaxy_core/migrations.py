"""Migrations: re-stamp stored provenance under a new graph without recomputing.

When a definition change does not change outputs (a field or feature renamed, a refactor, a
``code_version`` bump that left results identical), stored samples would still show up as stale:
their provenance was computed under the old definitions. A migration fixes that without running
the pipeline:

1. ``generate_migration`` compares the current graph with the latest snapshot pushed to the store
   and writes a YAML file listing every feature whose *sample provenance* would change (a field's
   code version, fully qualified name or parent fields changed; fields added or removed; the
   feature renamed) with the operation ``restamp``. Features whose version changes only because of
   an upstream change are listed under ``downstream`` for information: they need nothing (see 3).
   A person reviews the file and deletes every operation whose outputs *did* change.
2. ``apply_migration`` runs the operations in topological order, one atomic ``store.write`` per
   feature. For each feature it takes the rows that are stale under the new graph, keeps only the
   rows that were in sync under the old graph (rows already stale before the change need a real
   recompute and are left alone), joins them with the stored rows by key and writes them back with
   the new ``metaxy_provenance_by_field`` and the **stored** ``metaxy_data_version_by_field``.
3. Because data versions are kept, downstream provenance (built from upstream data versions) does
   not move: downstream features stay in sync with nothing to do. A renamed field keeps the data
   version of its old name. Each applied operation is recorded in the ``migrations`` system table,
   so applying again does nothing; a partly applied migration resumes where it stopped.

Root features: a root's provenance hashes user-supplied values (``samples``) that the store never
keeps, so it cannot be re-stamped from stored rows. A root operation needs its samples again: give
them in the YAML (``samples: path/to/file.parquet``, relative to the project root), on the command
line (``--samples video/raw=videos.parquet``) or in Python (``samples={"video/raw": frame}``).
Without them apply stops before writing anything and says so; you may instead delete the root
operation, in which case the root's samples show up as stale at the next ingest and, once
rewritten, their downstream too.

After applying, the current graph is pushed as a snapshot, so the next ``generate`` starts from it.

Schema changes a write cannot make on its own (it widens stored columns losslessly by itself) are
operations run directly and recorded in the same table: :func:`alter_column_type` (``metaxy
migrations alter-column FEATURE COLUMN TYPE``) converts a stored column to another type, and
:func:`add_id_column` (``metaxy migrations add-id-column FEATURE COLUMN --default VALUE``) gives the
stored rows a value for an id column the feature gained.
"""

import json
import types
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import narwhals as nw
import polars as pl

from metaxy_core import columns as C
from metaxy_core.diff import compare_snapshots
from metaxy_core.errors import MetaxyError
from metaxy_core.feature import BaseFeature
from metaxy_core.graph import FeatureGraph
from metaxy_core.keys import FeatureKey
from metaxy_core.snapshots import (
    FeatureSnapshot,
    GraphSnapshot,
    load_graph_snapshot,
    push_graph_snapshot,
)
from metaxy_core.spec import ALL, FeatureDep, FeatureSpec, FieldDep, FieldSpec, LineageRelationship

if TYPE_CHECKING:
    from metaxy_core.stores.base import MetadataStore

MIGRATIONS_TABLE = "migrations"
RESTAMP = "restamp"
_HEADER = """\
# metaxy migration: re-stamp stored provenance under the new graph WITHOUT recomputing.
#
# Review before applying. Keep an operation only if the change is output-neutral for that feature
# (a rename, a refactor, a code_version bump that did not change results); delete the others and
# recompute those features instead. Root features need their samples again (samples: <file>,
# a parquet/json file with the id columns and metaxy_provenance_by_field), or --samples KEY=FILE.
# Features under `downstream` change version only through upstream changes; they stay in sync
# because re-stamping keeps each sample's data version.
#
# Apply with: metaxy migrations apply {id}
"""


class MigrationError(MetaxyError, RuntimeError):
    """A migration cannot be generated or applied; the message says why and what to do."""


@dataclass
class MigrationOp:
    """Re-stamp one feature."""

    feature: str
    op: str = RESTAMP
    reason: str = ""
    fields: list[str] = field(default_factory=list)
    """Fields whose sample provenance changes."""
    root: bool = False
    renamed_from: str | None = None
    """The feature's old key when the feature was renamed (rows are copied from the old table)."""
    field_renames: dict[str, str] = field(default_factory=dict)
    """New field key -> old field key: the new field keeps the old one's data version."""
    samples: str | None = None
    """Root features only: file with the root's samples (id columns + metaxy_provenance_by_field)."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "feature": self.feature,
            "op": self.op,
            "reason": self.reason,
            "fields": self.fields,
        }
        if self.root:
            data["root"] = True
            data["samples"] = self.samples
        if self.renamed_from:
            data["renamed_from"] = self.renamed_from
        if self.field_renames:
            data["field_renames"] = dict(self.field_renames)
        return data


@dataclass
class Migration:
    id: str
    from_snapshot: str
    to_snapshot: str
    hash_length: int
    project: str
    created_at: str
    operations: list[MigrationOp]
    downstream: list[dict[str, str]] = field(default_factory=list)
    description: str = ""
    path: Path | None = None

    def to_yaml(self) -> str:
        import yaml

        body = {
            "id": self.id,
            "description": self.description,
            "created_at": self.created_at,
            "project": self.project,
            "hash_length": self.hash_length,
            "from_snapshot": self.from_snapshot,
            "to_snapshot": self.to_snapshot,
            "operations": [op.to_dict() for op in self.operations],
            "downstream": self.downstream,
        }
        return _HEADER.format(id=self.id) + yaml.safe_dump(body, sort_keys=False, width=110)

    @classmethod
    def load(cls, path: str | Path) -> "Migration":
        import yaml

        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise MigrationError(f"Cannot read migration file {path}: {exc}") from exc
        try:
            ops = [
                MigrationOp(
                    feature=str(o["feature"]),
                    op=str(o.get("op", RESTAMP)),
                    reason=str(o.get("reason", "")),
                    fields=[str(f) for f in o.get("fields") or []],
                    root=bool(o.get("root", False)),
                    renamed_from=o.get("renamed_from"),
                    field_renames={str(k): str(v) for k, v in (o.get("field_renames") or {}).items()},
                    samples=o.get("samples"),
                )
                for o in raw.get("operations") or []
            ]
            migration = cls(
                id=str(raw["id"]),
                from_snapshot=str(raw["from_snapshot"]),
                to_snapshot=str(raw["to_snapshot"]),
                hash_length=int(raw["hash_length"]),
                project=str(raw.get("project") or "default"),
                created_at=str(raw.get("created_at", "")),
                operations=ops,
                downstream=list(raw.get("downstream") or []),
                description=str(raw.get("description") or ""),
                path=path,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise MigrationError(
                f"Migration file {path} is malformed ({type(exc).__name__}: {exc}). Regenerate it with "
                "`metaxy migrations generate`."
            ) from exc
        for op in migration.operations:
            if op.op != RESTAMP:
                raise MigrationError(
                    f"{path}: operation '{op.op}' on '{op.feature}' is unknown; use '{RESTAMP}'."
                )
        return migration


@dataclass
class OpResult:
    feature: str
    status: str
    """``applied``, ``already applied``, ``nothing to do`` or ``would apply`` (dry run)."""
    rows: int = 0
    """Rows re-stamped (or that would be)."""
    left_stale: int = 0
    """Rows stale already before the definition change: left for a real recompute."""


@dataclass
class MigrationResult:
    migration_id: str
    operations: list[OpResult]
    dry_run: bool = False
    snapshot_pushed: str | None = None

    @property
    def rows(self) -> int:
        return sum(op.rows for op in self.operations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id,
            "dry_run": self.dry_run,
            "snapshot_pushed": self.snapshot_pushed,
            "operations": [asdict(op) for op in self.operations],
        }


# -- generate -----------------------------------------------------------------------------------------
def generate_migration(
    store: "MetadataStore",
    *,
    graph: FeatureGraph | None = None,
    directory: str | Path | None = None,
    name: str | None = None,
    write: bool = True,
) -> Migration | None:
    """Compare the current graph with the latest pushed snapshot; return (and write) a migration, or
    None when no stored provenance would change."""
    graph = graph or FeatureGraph.get_active()
    old = load_graph_snapshot(store, "latest")
    if old.hash_length != store.hash_length:
        raise MigrationError(
            f"The latest snapshot was pushed with hash_length {old.hash_length}, the store now uses "
            f"{store.hash_length}: every version and provenance differs, which a migration cannot bridge. "
            f"Set hash_length = {old.hash_length} again, or recompute everything."
        )
    new = GraphSnapshot.from_graph(graph, hash_length=old.hash_length)
    diff = compare_snapshots(old, new)
    renames = _feature_renames(old, new)
    ops: list[MigrationOp] = []
    downstream: list[dict[str, str]] = []
    for feature in new.features:
        before_key = renames.get(feature.key, feature.key)
        before = old.get(before_key)
        if before is None:
            continue  # a new feature: nothing stored, nothing to re-stamp
        op = _restamp_op(before, feature, renamed=before_key != feature.key)
        if op is not None:
            ops.append(op)
            continue
        change = diff.get(feature.key)
        if change is not None and change.status == "changed" and change.upstream_only:
            downstream.append(
                {
                    "feature": feature.key,
                    "note": "version changes only through upstream; stays in sync (upstream data versions are kept)",
                }
            )
    if not ops:
        return None
    now = datetime.now(UTC)
    mid = f"{now:%Y%m%d_%H%M%S}_{old.snapshot_version[:8]}_{new.snapshot_version[:8]}"
    if name:
        mid += "_" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    migration = Migration(
        id=mid,
        from_snapshot=old.snapshot_version,
        to_snapshot=new.snapshot_version,
        hash_length=old.hash_length,
        project=old.project,
        created_at=now.isoformat(timespec="seconds"),
        operations=ops,
        downstream=downstream,
        description=name or "",
    )
    if write:
        folder = Path(directory) if directory is not None else _default_dir()
        folder.mkdir(parents=True, exist_ok=True)
        migration.path = folder / f"{mid}.yaml"
        migration.path.write_text(migration.to_yaml())
    return migration


def _recipe(feature_key: str, f: Any) -> tuple[str, str, tuple[str, ...]]:
    """Everything that enters a field's sample provenance besides upstream data versions."""
    return (f"{feature_key}.{f.key}", f.code_version, tuple(f.parents))


def _restamp_op(old: FeatureSnapshot, new: FeatureSnapshot, *, renamed: bool) -> MigrationOp | None:
    field_renames = _field_renames(old, new)
    reasons: list[str] = []
    changed: list[str] = []
    for f in new.fields:
        before = old.field(field_renames.get(f.key, f.key))
        if before is None:
            changed.append(f.key)
            reasons.append(f"field '{f.key}' added (keep only if stored rows already hold its output)")
            continue
        if _recipe(old.key, before) == _recipe(new.key, f):
            continue
        changed.append(f.key)
        if f.key in field_renames:
            reasons.append(f"field '{field_renames[f.key]}' renamed to '{f.key}'")
        elif before.code_version != f.code_version:
            reasons.append(f"field '{f.key}' code_version {before.code_version!r} -> {f.code_version!r}")
        elif before.parents != f.parents:
            reasons.append(f"field '{f.key}' parents {list(before.parents)} -> {list(f.parents)}")
        elif renamed:
            reasons.append(f"field '{f.key}' moved with the feature")
    kept = {field_renames.get(f.key, f.key) for f in new.fields}
    removed = [f.key for f in old.fields if f.key not in kept]
    for key in removed:
        reasons.append(f"field '{key}' removed")
    if renamed:
        reasons.insert(0, f"feature renamed from '{old.key}'")
    if not changed and not removed and not renamed:
        return None
    return MigrationOp(
        feature=new.key,
        reason="; ".join(reasons),
        fields=changed or [f.key for f in new.fields],
        root=new.is_root,
        renamed_from=old.key if renamed else None,
        field_renames=field_renames,
    )


def _field_renames(old: FeatureSnapshot, new: FeatureSnapshot) -> dict[str, str]:
    """new -> old for one removed and one added field with the same code version (a likely rename)."""
    added = [f for f in new.fields if old.field(f.key) is None]
    removed = [f for f in old.fields if new.field(f.key) is None]
    if len(added) == 1 and len(removed) == 1 and added[0].code_version == removed[0].code_version:
        return {added[0].key: removed[0].key}
    return {}


def _feature_renames(old: GraphSnapshot, new: GraphSnapshot) -> dict[str, str]:
    """new key -> old key for removed/added features with identical fields, code versions and ids."""

    def shape(f: FeatureSnapshot) -> str:
        return json.dumps(
            [[(x.key, x.code_version) for x in f.fields], f.spec.get("id_columns"), len(f.deps)],
            sort_keys=True,
        )

    added = [f for f in new.features if old.get(f.key) is None]
    removed = [f for f in old.features if new.get(f.key) is None]
    renames: dict[str, str] = {}
    for a in added:
        matches = [r for r in removed if shape(r) == shape(a)]
        others = [x for x in added if shape(x) == shape(a)]
        if len(matches) == 1 and len(others) == 1:
            renames[a.key] = matches[0].key
    return renames


def _default_dir() -> Path:
    from metaxy_core.config import get_config

    cfg = get_config()
    return cfg.root / cfg.migrations_dir


# -- find -----------------------------------------------------------------------------------------------
def list_migrations(directory: str | Path | None = None) -> list[Migration]:
    """Migration files in ``directory`` (default: the config's ``migrations_dir``), oldest first."""
    folder = Path(directory) if directory is not None else _default_dir()
    if not folder.is_dir():
        return []
    return [Migration.load(p) for p in sorted(folder.glob("*.yaml"))]


def find_migration(ref: str | Path | None = None, directory: str | Path | None = None) -> Migration:
    """A migration by file path, id or unique id prefix; ``None`` means the newest file."""
    if ref is not None and Path(ref).is_file():
        return Migration.load(ref)
    folder = Path(directory) if directory is not None else _default_dir()
    found = list_migrations(folder)
    if not found:
        raise MigrationError(
            f"No migration files in {folder}. Create one with `metaxy migrations generate` (after changing "
            "definitions, with the previous graph pushed)."
        )
    if ref is None:
        return found[-1]
    matches = [m for m in found if m.id.startswith(str(ref)) or str(ref) in m.id]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(m.id for m in found)
    if not matches:
        raise MigrationError(f"No migration '{ref}' in {folder}. Migrations there: {known}.")
    raise MigrationError(
        f"Migration '{ref}' is ambiguous: {', '.join(m.id for m in matches)}. Give the full id."
    )


# -- schema operations -----------------------------------------------------------------------------
_DTYPE_ALIASES: dict[str, pl.DataType] = {
    "str": pl.String(),
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
}


def parse_dtype(name: "str | pl.DataType | type[pl.DataType]") -> pl.DataType:
    """A polars dtype from its name (``Float64``, ``pl.String``, ``int``, ...)."""
    if isinstance(name, pl.DataType):
        return name
    if isinstance(name, type) and issubclass(name, pl.DataType):
        return name()
    text = str(name).strip().removeprefix("pl.").removeprefix("polars.")
    if text.lower() in _DTYPE_ALIASES:
        return _DTYPE_ALIASES[text.lower()]
    found = getattr(pl, text, None)
    if isinstance(found, type) and issubclass(found, pl.DataType) and not found.is_nested():
        return found()
    raise MigrationError(
        f"Unknown column type '{name}': use a polars type name such as String, Int64, Float64, Boolean, Date, "
        "Datetime (or str, int, float, bool)."
    )


def alter_column_type(
    store: "MetadataStore", feature: Any, column: str, dtype: "str | pl.DataType | type[pl.DataType]"
) -> int:
    """Convert a stored user column of ``feature`` to ``dtype`` (current rows and history); recorded.

    For type changes a write refuses (e.g. str -> int, float -> int): every stored value must
    convert, or nothing changes. Returns the number of current rows.
    """
    target = parse_dtype(dtype)
    with store:
        cls = store.feature_class(feature)
        rows = store.alter_column_type(cls, column, target)
        _record_schema_op(store, "alter_column", f"{cls.spec.key}:{column}:{target}", str(cls.spec.key), rows)
    return rows


def add_id_column(
    store: "MetadataStore",
    feature: Any,
    column: str,
    default: Any,
    dtype: "str | pl.DataType | type[pl.DataType] | None" = None,
) -> int:
    """Give the stored rows of ``feature`` the id column ``column`` it gained, set to ``default``.

    The feature's spec must already list the column in ``id_columns``. Its type is the declared
    annotation's (else ``dtype``, else the default's). Returns the number of current rows.
    """
    with store:
        cls = store.feature_class(feature)
        rows = store.add_id_column(cls, column, default, None if dtype is None else parse_dtype(dtype))
        _record_schema_op(
            store, "add_id_column", f"{cls.spec.key}:{column}={default}", str(cls.spec.key), rows
        )
    return rows


def _record_schema_op(store: "MetadataStore", op: str, what: str, feature_key: str, rows: int) -> None:
    now = datetime.now(UTC)
    row = pl.DataFrame(
        {
            "migration_id": [f"{op}:{what}@{now.isoformat(timespec='seconds')}"],
            "feature_key": [feature_key],
            "op": [op],
            "rows": [rows],
            "left_stale": [0],
            "from_snapshot": [None],
            "to_snapshot": [None],
            "applied_at": [now],
        },
        schema_overrides={
            "rows": pl.Int64,
            "left_stale": pl.Int64,
            "from_snapshot": pl.String,
            "to_snapshot": pl.String,
            "applied_at": pl.Datetime("us", "UTC"),
        },
    )
    store.append_system(MIGRATIONS_TABLE, row)


def applied_records(store: "MetadataStore") -> pl.DataFrame:
    """Rows of the ``migrations`` system table (empty frame when nothing was applied)."""
    with store:
        rows = store.read_system(MIGRATIONS_TABLE)
    if rows is None:
        return pl.DataFrame(
            schema={
                "migration_id": pl.String,
                "feature_key": pl.String,
                "rows": pl.Int64,
                "applied_at": pl.Datetime("us", "UTC"),
            }
        )
    return rows


@dataclass
class MigrationStatus:
    id: str
    path: str | None
    operations: list[dict[str, Any]]

    @property
    def applied(self) -> bool:
        return all(op["applied"] for op in self.operations)

    @property
    def state(self) -> str:
        done = sum(op["applied"] for op in self.operations)
        if done == len(self.operations):
            return "applied"
        return "pending" if done == 0 else f"partly applied ({done}/{len(self.operations)})"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "state": self.state, "operations": self.operations}


def migration_status(store: "MetadataStore", directory: str | Path | None = None) -> list[MigrationStatus]:
    """Every migration file with, per operation, whether the store records it as applied."""
    records = applied_records(store)
    done = {(r["migration_id"], r["feature_key"]): r for r in records.iter_rows(named=True)}
    result = []
    for m in list_migrations(directory):
        ops = []
        for op in m.operations:
            rec = done.get((m.id, op.feature))
            ops.append(
                {
                    "feature": op.feature,
                    "applied": rec is not None,
                    "rows": int(rec["rows"]) if rec else None,
                    "applied_at": rec["applied_at"].isoformat() if rec else None,
                }
            )
        result.append(MigrationStatus(m.id, str(m.path) if m.path else None, ops))
    return result


# -- apply ----------------------------------------------------------------------------------------------
def apply_migration(
    store: "MetadataStore",
    migration: "Migration | str | Path | None" = None,
    *,
    graph: FeatureGraph | None = None,
    samples: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    on_feature: Callable[[str], None] | None = None,
) -> MigrationResult:
    """Apply ``migration`` (an object, a file, an id; default: the newest file) to ``store``.

    ``samples`` maps root feature keys to their samples (a frame or a file path). Idempotent: the
    operations recorded as applied are skipped.
    """
    graph = graph or FeatureGraph.get_active()
    m = migration if isinstance(migration, Migration) else find_migration(migration)
    current = GraphSnapshot.from_graph(graph, hash_length=m.hash_length)
    with store:
        done = {(r["migration_id"], r["feature_key"]) for r in applied_records(store).iter_rows(named=True)}
        pending = [op for op in m.operations if (m.id, op.feature) not in done]
        results = {
            op.feature: OpResult(op.feature, "already applied") for op in m.operations if op not in pending
        }
        if not pending:
            return MigrationResult(m.id, [results[op.feature] for op in m.operations], dry_run)
        if current.snapshot_version != m.to_snapshot:
            raise MigrationError(
                f"Migration {m.id} was generated for graph {m.to_snapshot[:8]}, but the code's graph is now "
                f"{current.snapshot_version[:8]}. Regenerate it with `metaxy migrations generate` (and delete "
                f"{m.path or 'the old file'})."
            )
        unknown = [op.feature for op in pending if op.feature not in graph]
        if unknown:
            raise MigrationError(
                f"Migration {m.id} names feature(s) {unknown} that the current graph does not define. "
                f"Known features: {', '.join(sorted(map(str, graph.features_by_key)))}."
            )
        old_graph = _graph_from_snapshot(load_graph_snapshot(store, m.from_snapshot, project=m.project))
        root_samples = _root_samples(m, pending, samples, graph)
        order = {key: i for i, key in enumerate(graph.topological_order())}
        pending.sort(key=lambda op: order[FeatureKey(op.feature)])

        # Decide, before writing anything, which rows were already stale under the old graph:
        # once upstream rows are re-stamped, the old graph's view of downstream rows is gone.
        stale_before = {
            op.feature: _old_stale_keys(store, old_graph, graph, op, root_samples.get(op.feature))
            for op in pending
        }
        for op in pending:
            result = _restamp(
                store,
                m,
                graph,
                old_graph,
                op,
                root_samples.get(op.feature),
                stale_before[op.feature],
                dry_run,
            )
            results[op.feature] = result
            if not dry_run:
                _record(store, m, op, result)
            if on_feature is not None:
                on_feature(op.feature)
        pushed = None
        if not dry_run:
            pushed = push_graph_snapshot(store, graph, project=m.project).snapshot_version
    return MigrationResult(m.id, [results[op.feature] for op in m.operations], dry_run, pushed)


def _record(store: "MetadataStore", m: Migration, op: MigrationOp, result: OpResult) -> None:
    row = pl.DataFrame(
        {
            "migration_id": [m.id],
            "feature_key": [op.feature],
            "op": [op.op],
            "rows": [result.rows],
            "left_stale": [result.left_stale],
            "from_snapshot": [m.from_snapshot],
            "to_snapshot": [m.to_snapshot],
            "applied_at": [datetime.now(UTC)],
        },
        schema_overrides={"rows": pl.Int64, "left_stale": pl.Int64, "applied_at": pl.Datetime("us", "UTC")},
    )
    store.append_system(MIGRATIONS_TABLE, row)


def _root_samples(
    m: Migration, ops: list[MigrationOp], given: Mapping[str, Any] | None, graph: FeatureGraph
) -> dict[str, pl.DataFrame]:
    from metaxy_core.config import get_config

    given = {
        str(FeatureKey(k) if not isinstance(k, type) else k.spec.key): v for k, v in (given or {}).items()
    }
    out: dict[str, pl.DataFrame] = {}
    missing = []
    for op in ops:
        if not graph.get_feature(op.feature).spec.deps:
            source = given.get(op.feature, op.samples)
            if source is None:
                missing.append(op.feature)
                continue
            if isinstance(source, str | Path):
                path = Path(source)
                if not path.is_absolute():
                    path = get_config().root / path
                source = read_frame(path)
            out[op.feature] = _polars(source)
    if missing:
        raise MigrationError(
            f"Migration {m.id}: root feature(s) {missing} cannot be re-stamped from stored rows (a root's provenance "
            "hashes the samples' user values, which the store does not keep). Give their samples: `samples: "
            "<file>` in the migration file, `--samples KEY=FILE` on the command line or samples={...} in Python; "
            "or delete the operation to recompute the root instead. Nothing was written."
        )
    return out


def read_frame(path: Path) -> pl.DataFrame:
    """Samples from a parquet, JSON (records) or NDJSON file."""
    if not path.is_file():
        raise MigrationError(f"Samples file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.read_parquet(path)
    if suffix == ".json":
        return pl.read_json(path)
    if suffix in (".ndjson", ".jsonl"):
        return pl.read_ndjson(path)
    raise MigrationError(
        f"Samples file {path}: unsupported format '{suffix}'. Use .parquet, .json or .ndjson (a struct column "
        f"'{C.PROVENANCE_BY_FIELD}' does not fit in CSV)."
    )


def _polars(frame: Any) -> pl.DataFrame:
    from metaxy_core.stores.base import to_polars

    return to_polars(frame, "migration samples")


def _keys_frame(frame: Any, keys: list[str]) -> pl.DataFrame:
    if isinstance(frame, nw.LazyFrame):
        return frame.select(keys).collect().to_polars()
    if isinstance(frame, nw.DataFrame):
        return frame.select(keys).to_polars()
    return _polars(frame).select(keys)


def _old_stale_keys(
    store: "MetadataStore",
    old_graph: FeatureGraph,
    graph: FeatureGraph,
    op: MigrationOp,
    samples: pl.DataFrame | None,
) -> pl.DataFrame | None:
    old_key = op.renamed_from or op.feature
    if old_key not in old_graph:
        return None
    old_cls = old_graph.get_feature(old_key)
    if not store.has_feature(old_cls):
        return None
    keys = list(store.plan(old_cls).key_columns)
    inc = store.resolve_update(old_cls, samples=samples, lazy=True)
    return _keys_frame(inc.stale, keys)


def _restamp(
    store: "MetadataStore",
    m: Migration,
    graph: FeatureGraph,
    old_graph: FeatureGraph,
    op: MigrationOp,
    samples: pl.DataFrame | None,
    stale_before: pl.DataFrame | None,
    dry_run: bool,
) -> OpResult:
    cls = graph.get_feature(op.feature)
    source_cls = old_graph.get_feature(op.renamed_from) if op.renamed_from else cls
    if op.renamed_from and op.renamed_from not in old_graph:
        raise MigrationError(
            f"Migration {m.id}: '{op.feature}' is renamed from '{op.renamed_from}', which the old graph lacks."
        )
    if not store.has_feature(source_cls):
        return OpResult(op.feature, "nothing to do")
    keys = list(store.plan(cls).key_columns)
    inc = store.resolve_update(cls, samples=samples)
    # A renamed feature's rows are not in its new table yet: the resolver sees them as new.
    candidates = (inc.new if op.renamed_from else inc.stale).to_polars()
    candidates = candidates.select([*keys, C.PROVENANCE_BY_FIELD, C.PROVENANCE])
    left_stale = 0
    if stale_before is not None and stale_before.height and candidates.height:
        before = candidates.height
        candidates = candidates.join(stale_before.unique(), on=keys, how="anti", nulls_equal=True)
        left_stale = before - candidates.height
    if candidates.height == 0:
        return OpResult(op.feature, "nothing to do" if not dry_run else "would apply", 0, left_stale)
    stored = store.read(source_cls).to_polars()
    declared = set(cls.model_fields)
    user = [
        c
        for c in stored.columns
        if not C.is_system(c) and (not declared or c in declared or c in cls.spec.id_columns or c in keys)
    ]
    fields = sorted(str(f) for f in cls.spec.field_keys)
    stored_dv = stored.schema[C.DATA_VERSION_BY_FIELD]
    have = {f.name for f in stored_dv.fields} if isinstance(stored_dv, pl.Struct) else set()
    dv_parts = []
    for f in fields:
        src = op.field_renames.get(f, f)
        value = (
            pl.col(C.DATA_VERSION_BY_FIELD).struct.field(src)
            if src in have
            else pl.lit(None, dtype=pl.String)
        )
        dv_parts.append(value.alias(f))
    rows = stored.select(*user, pl.struct(dv_parts).alias(C.DATA_VERSION_BY_FIELD)).join(
        candidates, on=keys, how="inner", nulls_equal=True
    )
    if dry_run:
        return OpResult(op.feature, "would apply", rows.height, left_stale)
    written = store.write(cls, rows, materialization_id=f"migration:{m.id}")
    return OpResult(op.feature, "applied", written, left_stale)


# -- the old graph, rebuilt from a snapshot -------------------------------------------------------------
def _graph_from_snapshot(snapshot: GraphSnapshot) -> FeatureGraph:
    """Feature classes (no declared columns) for every feature of ``snapshot``, in a graph of their own.

    Only used to resolve increments under the old definitions; dependency filters are dropped (they
    pick which rows are expected, not the provenance of a row that is).
    """
    graph = FeatureGraph()
    with graph.use():
        for f in snapshot.features:
            if not f.spec:
                raise MigrationError(f"Snapshot {snapshot.snapshot_version[:8]} has no spec for '{f.key}'.")
            spec = _spec_from_json(f.spec)
            name = "Old_" + f.key.replace("/", "__").replace("-", "_")
            types.new_class(
                name, (BaseFeature,), {"spec": spec}, lambda ns: ns.update({"__module__": __name__})
            )
    return graph


def _spec_from_json(data: dict[str, Any]) -> FeatureSpec:
    deps = [
        FeatureDep(
            feature=d["feature"],
            columns=d.get("columns"),
            rename=d.get("rename"),
            lineage=LineageRelationship(type=d["lineage"]["type"], on=d["lineage"].get("on")),
            optional=bool(d.get("optional", False)),
        )
        for d in data.get("deps", [])
    ]
    fields = [
        FieldSpec(f["key"], code_version=f["code_version"], deps=_field_deps(f.get("deps")))
        for f in data["fields"]
    ]
    return FeatureSpec(key=data["key"], id_columns=data["id_columns"], deps=deps, fields=fields)


def _field_deps(value: Any) -> Any:
    if value is None:
        return None
    if value == ALL.value:
        return ALL
    return [
        FieldDep(feature=d["feature"], fields=ALL if d["fields"] == ALL.value else d["fields"]) for d in value
    ]
