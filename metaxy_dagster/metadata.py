"""Dagster metadata built from features, increments and graphs: markdown tables, previews, diffs.

The Dagster UI renders GitHub-flavoured markdown tables but not mermaid, so graphs are shown as
tables, with the mermaid source alongside in a fenced code block for copying elsewhere.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from metaxy_core import columns as C
from metaxy_core.schema import polars_dtype
from metaxy_core.spec import DEFAULT_CODE_VERSION

if TYPE_CHECKING:
    from metaxy_core.diff import GraphDiff
    from metaxy_core.feature import BaseFeature
    from metaxy_core.snapshots import GraphSnapshot

_SYSTEM_DESCRIPTIONS = {
    C.PROVENANCE_BY_FIELD: (
        "struct",
        "Per-field provenance hash (from upstream data versions and code versions).",
    ),
    C.PROVENANCE: ("string", "Hash of the per-field provenance."),
    C.DATA_VERSION_BY_FIELD: (
        "struct",
        "Per-field data version (defaults to the provenance; may be user-set).",
    ),
    C.DATA_VERSION: ("string", "Hash of the per-field data versions."),
    C.FEATURE_VERSION: ("string", "Feature version the row was written under."),
    C.SNAPSHOT_VERSION: ("string", "Graph snapshot version the row was written under."),
    C.CREATED_AT: ("timestamp", "When the row was written (UTC)."),
    C.UPDATED_AT: ("timestamp", "When the row was last replaced (UTC)."),
    C.DELETED_AT: ("timestamp", "Soft-deletion time (UTC); null for live rows."),
    C.MATERIALIZATION_ID: (
        "string",
        "Id of the write that produced the row (the Dagster run id for assets).",
    ),
}


SHORT_HASH = 8
"""Characters of a version or hash shown in UI tables (the full values are in the JSON metadata)."""


def short(value: str | None) -> str:
    return "" if value is None else str(value)[:SHORT_HASH]


def code_version_label(code_version: str | None) -> str:
    """The default code version reads as ``initial`` in the UI."""
    return "initial" if code_version == DEFAULT_CODE_VERSION else str(code_version)


def _relative(value: str) -> str:
    """An absolute path under the working directory, shown relative to it (narrow asset panes)."""
    if not value.startswith("/"):
        return value
    try:
        return str(Path(value).relative_to(Path.cwd()))
    except ValueError:
        return value


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (pipes in cells escaped)."""
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# -- definition metadata --------------------------------------------------------------------------
def fields_table(feature: "type[BaseFeature]") -> str:
    """Fields with code version, version and parent fields."""
    graph = feature.graph
    key = feature.spec.key
    versions = feature.field_versions()
    rows = []
    for f in sorted(feature.spec.fields, key=lambda f: str(f.key)):
        parents = ", ".join(p.fq for p in graph.field_parents(key, f.key)) or "—"
        rows.append(
            [f"`{f.key}`", code_version_label(f.code_version), f"`{short(versions[str(f.key)])}`", parents]
        )
    return markdown_table(["field", "code version", "version", "depends on"], rows)


def lineage_table(feature: "type[BaseFeature]") -> str:
    """One row per dependency: upstream feature, lineage type, join columns, carried columns."""
    rows = []
    for dep in feature.spec.deps:
        lineage = dep.lineage.type
        on = ", ".join(dep.lineage.on or ()) or ", ".join(feature.spec.id_columns)
        columns = "all" if dep.columns is None else ", ".join(dep.columns) or "none"
        rename = ", ".join(f"{a} → {b}" for a, b in (dep.rename or {}).items()) or "—"
        rows.append([f"`{dep.feature}`", lineage, on, columns, rename, "yes" if dep.optional else "no"])
    return markdown_table(["upstream", "lineage", "on", "columns", "renamed", "optional"], rows)


def column_schema(feature: "type[BaseFeature]") -> dg.TableSchema:
    """``dagster/column_schema``: declared user columns (id columns first), then the system columns."""
    columns: list[dg.TableColumn] = []
    declared = feature.model_fields
    ids = list(feature.spec.id_columns)
    for name in [*ids, *(c for c in declared if c not in ids)]:
        info = declared.get(name)
        if info is None:
            columns.append(dg.TableColumn(name, "unknown", description="Id column (type not declared)."))
            continue
        dtype, nullable = polars_dtype(info.annotation)
        constraints = dg.TableColumnConstraints(nullable=nullable or name not in ids, unique=False)
        description = info.description or ("Id column." if name in ids else None)
        columns.append(
            dg.TableColumn(
                name,
                str(dtype) if dtype is not None else "object",
                description=description,
                constraints=constraints,
            )
        )
    for name, (kind, description) in _SYSTEM_DESCRIPTIONS.items():
        columns.append(dg.TableColumn(name, kind, description=description))
    return dg.TableSchema(columns=columns)


# -- materialization metadata ---------------------------------------------------------------------
def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def preview_table(frame: pl.DataFrame, limit: int = 10) -> dg.TableMetadataValue:
    """The first ``limit`` rows: user columns plus the per-sample data version."""
    keep = [c for c in frame.columns if not C.is_system(c)]
    if C.DATA_VERSION in frame.columns:
        keep.append(C.DATA_VERSION)
    elif C.PROVENANCE in frame.columns:
        keep.append(C.PROVENANCE)
    head = frame.select(keep).head(limit)
    hashes = {C.DATA_VERSION, C.PROVENANCE}
    schema = dg.TableSchema(columns=[dg.TableColumn(c, str(head.schema[c])) for c in head.columns])

    def cell(column: str, value: Any) -> Any:
        if isinstance(value, str):
            return short(value) if column in hashes else _relative(value)
        return _scalar(value)

    records = [dg.TableRecord({k: cell(k, v) for k, v in row.items()}) for row in head.iter_rows(named=True)]
    return dg.MetadataValue.table(records=records, schema=schema)


def changed_field_counts(stale: pl.DataFrame) -> dict[str, int]:
    """Field key -> number of stale samples whose provenance changed on that field."""
    if stale.height == 0 or C.CHANGED_FIELDS not in stale.columns:
        return {}
    counts = stale.select(pl.col(C.CHANGED_FIELDS).explode().drop_nulls().value_counts(sort=True)).unnest(
        C.CHANGED_FIELDS
    )
    return {str(r[C.CHANGED_FIELDS]): int(r["count"]) for r in counts.iter_rows(named=True)}


def definition_diff(
    feature: "type[BaseFeature]",
    previous: Mapping[str, Any] | None,
) -> str:
    """Markdown: this feature's definition against the one recorded at the previous materialization.

    ``previous`` is the previous materialization's metadata (``metaxy/feature_version``,
    ``metaxy/field_versions``, ``metaxy/field_code_versions`` values), or None for the first one.
    """
    current_versions = feature.field_versions()
    current_code = {str(f.key): f.code_version for f in feature.spec.fields}
    if not previous:
        return (
            f"First materialization of `{feature.spec.key}` (feature version `{feature.feature_version()}`)."
        )
    prev_versions: dict[str, str] = dict(previous.get("metaxy/field_versions") or {})
    prev_code: dict[str, str] = dict(previous.get("metaxy/field_code_versions") or {})
    prev_feature = previous.get("metaxy/feature_version")
    if prev_feature == feature.feature_version():
        return f"Definition unchanged since the previous materialization (feature version `{prev_feature}`)."
    rows = []
    for name in sorted(set(current_versions) | set(prev_versions)):
        before, after = prev_versions.get(name), current_versions.get(name)
        if before == after:
            continue
        if before is None:
            change = "added"
        elif after is None:
            change = "removed"
        elif prev_code.get(name) not in (None, current_code.get(name)):
            change = (
                f"code version {code_version_label(prev_code.get(name))} → "
                f"{code_version_label(current_code.get(name))}"
            )
        else:
            change = "upstream changed"
        rows.append(
            [
                f"`{name}`",
                f"`{short(before)}`" if before else "—",
                f"`{short(after)}`" if after else "—",
                change,
            ]
        )
    header = f"Feature version `{prev_feature}` → `{feature.feature_version()}`\n\n"
    return header + markdown_table(["field", "previous version", "current version", "change"], rows)


# -- the whole graph (from metaxy_core snapshots and diffs) -------------------------------------
def snapshot_table(snapshot: "GraphSnapshot") -> str:
    """Every feature of a graph snapshot: key, version, code version, fields with versions, deps."""
    rows = []
    for f in snapshot.features:
        fields = ", ".join(f"{x.key} (`{short(x.version)}`)" for x in f.fields)
        rows.append(
            [
                f"`{f.key}`",
                f"`{short(f.version)}`",
                f"`{short(f.code_version)}`",
                fields,
                ", ".join(f.deps) or "—",
            ]
        )
    return markdown_table(["feature", "version", "code version", "fields", "depends on"], rows)


def _arrow(old: str | None, new: str | None) -> str:
    if old == new:
        return f"`{short(new)}`"
    return f"`{short(old) or '—'}` → `{short(new) or '—'}`"


def diff_table(diff: "GraphDiff") -> str:
    """Markdown: one row per added, removed or changed feature, with the fields that changed."""
    head = (
        f"Snapshot `{diff.old.snapshot_version}` ({diff.old.label}) → "
        f"`{diff.new.snapshot_version}` ({diff.new.label})"
    )
    if not diff.has_changes:
        return f"{head}\n\nNo changes."
    rows = []
    for c in diff.features:
        if c.status == "unchanged":
            continue
        fields = []
        for x in c.changed_fields:
            text = f"{x.key} {x.status}"
            if x.status == "changed":
                text = f"{x.key}: {_arrow(x.old_version, x.new_version)}"
                if x.old_code_version != x.new_code_version:
                    text += (
                        f" (code {code_version_label(x.old_code_version)} → "
                        f"{code_version_label(x.new_code_version)})"
                    )
            fields.append(text)
        status = "changed (upstream only)" if c.upstream_only else c.status
        rows.append(
            [
                f"`{c.key}`",
                status,
                ", ".join(c.reasons) or "—",
                _arrow(c.old_version, c.new_version),
                "; ".join(fields) or "—",
            ]
        )
    return f"{head}\n\n" + markdown_table(["feature", "status", "reasons", "version", "changed fields"], rows)


def mermaid_block(source: str) -> str:
    """Mermaid source as a fenced code block (the Dagster UI shows it as text, for copying)."""
    return "```mermaid\n" + source.rstrip("\n") + "\n```"
