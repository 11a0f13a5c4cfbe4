"""The resolve plan: an engine-neutral description of how a feature's expected rows are built.

Stores turn a :class:`ResolvePlan` into SQL (DuckDB, ...) or polars expressions. The plan fixes
everything that must be identical across engines: which upstream columns are carried (after
``columns=`` / ``rename=``), the join keys and join type, the increment's key columns (the parent's
``on`` columns for expansion), and for every target field the ordered parts of its canonical string.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metaxy_core import columns as C
from metaxy_core.errors import FeatureDefinitionError, ResolveError
from metaxy_core.graph import FeatureGraph
from metaxy_core.keys import FeatureKey


@dataclass(frozen=True)
class TableSchema:
    """What a store knows about a stored feature table."""

    columns: tuple[str, ...]
    """User and id columns (no system columns), in table order."""
    struct_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Field keys present in each struct system column."""
    types: dict[str, str] = field(default_factory=dict)
    """Engine type name per column (for error messages and aggregation id checks)."""
    dtypes: dict[str, Any] = field(default_factory=dict)
    """polars dtype per column, to check and coerce incoming frames against what is stored."""


@dataclass(frozen=True)
class ParentField:
    fq: str
    dep_index: int
    field: str


@dataclass(frozen=True)
class FieldPlan:
    key: str
    fq: str
    code_version: str
    parents: tuple[ParentField, ...]


@dataclass(frozen=True)
class DepPlan:
    index: int
    feature: FeatureKey
    table: str
    lineage: str
    join_on: tuple[str, ...]
    """Target-side names of the columns this dependency joins on."""
    carried: tuple[tuple[str, str], ...]
    """(upstream column, output column) pairs, join columns included."""
    member_ids: tuple[str, ...]
    """Aggregation only: the upstream id columns (upstream names) that identify members."""
    optional: bool
    filters: tuple[object, ...]
    dv_fields: dict[str, bool]
    """Upstream field key -> whether the stored data-version struct has it."""

    @property
    def dv_alias(self) -> str:
        return f"__metaxy_dv_{self.index}"

    def dv_column(self, field: str) -> str:
        return helper_column(f"__metaxy_dv_{self.index}_", field)


@dataclass(frozen=True)
class ResolvePlan:
    feature: FeatureKey
    table: str
    key_columns: tuple[str, ...]
    target_ids: tuple[str, ...]
    fields: tuple[FieldPlan, ...]
    deps: tuple[DepPlan, ...]
    join: str
    """'inner', 'left' (some deps optional) or 'full' (all deps optional)."""
    missing_required: tuple[FeatureKey, ...] = ()
    """Required upstreams with no stored metadata: nothing is expected then."""

    @property
    def is_root(self) -> bool:
        return not self.deps and not self.missing_required

    @property
    def carried_columns(self) -> list[str]:
        seen: list[str] = []
        for dep in self.deps:
            for _, out in dep.carried:
                if out not in seen:
                    seen.append(out)
        return seen


MAX_IDENTIFIER = 63
"""PostgreSQL truncates longer identifiers, so helper column names stay within it."""


def escape_key(text: str) -> str:
    """An injective, lower-case spelling of a key for use inside an identifier.

    Lower-case letters and digits stay; every other character becomes ``_`` plus its two hex digits
    (``A`` -> ``_41``, ``-`` -> ``_2d``, ``_`` -> ``_5f``, ``/`` -> ``_2f``). Distinct keys never share a
    spelling, even in engines that fold identifier case (DuckDB, PostgreSQL): ``a-b``, ``a_b`` and
    ``A_b`` stay three columns.
    """
    out = []
    for ch in text:
        if ("a" <= ch <= "z") or ("0" <= ch <= "9"):
            out.append(ch)
        else:
            out.append(f"_{ord(ch):02x}" if ord(ch) < 256 else f"_u{ord(ch):06x}")
    return "".join(out)


def helper_column(prefix: str, field: str) -> str:
    """``prefix`` + the escaped field key, or + a digest when that would exceed the identifier limit.

    An escaped key never contains ``_h`` (an escape is ``_`` plus hex digits), so digest names
    cannot meet escaped ones.
    """
    name = prefix + escape_key(field)
    if len(name) <= MAX_IDENTIFIER:
        return name
    return prefix + "_h" + hashlib.sha256(field.encode()).hexdigest()[: MAX_IDENTIFIER - len(prefix) - 2]


def field_column(field: str) -> str:
    """Name of the flat helper column holding a field's provenance during resolution."""
    return helper_column("__metaxy_prov_", field)


def stored_field_column(field: str) -> str:
    """Name of the helper column holding a field's stored provenance during comparison."""
    return helper_column("__metaxy_s_", field)


def removed_field_column(field: str) -> str:
    """Helper column of a resolve: the stored provenance of a field the feature no longer has."""
    return helper_column("__metaxy_r_", field)


def stored_count_column(field: str) -> str:
    """Name of the helper column counting a field's distinct stored provenances (expansion)."""
    return helper_column("__metaxy_n_", field)


def build_plan(
    graph: FeatureGraph,
    key: FeatureKey,
    schema_of: Callable[[FeatureKey], TableSchema | None],
    root_columns: tuple[str, ...] = (),
) -> ResolvePlan:
    """Build the plan for ``key``. ``schema_of`` returns the stored schema of a feature or None."""
    feature = graph.get_feature(key)
    spec = feature.spec
    target_ids = tuple(spec.id_columns)

    expansion_on = {d.lineage.on for d in spec.deps if d.lineage.type == "expansion"}
    if len(expansion_on) > 1:
        raise FeatureDefinitionError(
            f"Feature '{key}' has expansion deps with different on= columns {sorted(expansion_on)}: "
            "use the same parent id columns for every expansion dependency."
        )
    key_columns = tuple(next(iter(expansion_on))) if expansion_on else target_ids  # type: ignore[arg-type]

    deps: list[DepPlan] = []
    missing: list[FeatureKey] = []
    owners: dict[str, FeatureKey] = {}
    for index, dep in enumerate(spec.deps):
        upstream = graph.get_spec(dep.feature)
        schema = schema_of(dep.feature)
        if schema is None:
            if not dep.optional:
                missing.append(dep.feature)
            continue
        rename = dict(dep.rename or {})
        for src, dst in rename.items():
            if dst.startswith("metaxy_"):
                raise FeatureDefinitionError(
                    f"Feature '{key}': rename {{'{src}': '{dst}'}} on dependency '{dep.feature}' targets a "
                    "reserved system column name: pick a name without the 'metaxy_' prefix."
                )
            if dst in schema.columns and dst not in rename:
                raise FeatureDefinitionError(
                    f"Feature '{key}': rename {{'{src}': '{dst}'}} on dependency '{dep.feature}' collides with "
                    f"its existing column '{dst}': rename that one too or pick another name."
                )
        renamed = {c: rename.get(c, c) for c in schema.columns}
        available = set(renamed.values())
        lineage = dep.lineage.type
        join_on = tuple(dep.lineage.on or ()) if lineage != "identity" else key_columns
        if lineage == "aggregation":
            join_on = tuple(dep.lineage.on or ())
        missing_cols = [c for c in join_on if c not in available]
        if missing_cols:
            raise ResolveError(
                f"Feature '{key}' joins dependency '{dep.feature}' on {list(join_on)}, but '{dep.feature}' has no "
                f"column {missing_cols} (it has {sorted(available)}). Map its columns with "
                f"FeatureDep(feature='{dep.feature}', rename={{...}}) or fix the lineage on= columns."
            )
        back = {v: k for k, v in renamed.items()}
        if lineage == "aggregation":
            wanted_out: list[str] = list(join_on)
        elif dep.columns is None:
            wanted_out = [renamed[c] for c in schema.columns]
        else:
            unknown = [c for c in dep.columns if c not in schema.columns]
            if unknown:
                raise ResolveError(
                    f"Feature '{key}': columns={list(dep.columns)} on dependency '{dep.feature}' names "
                    f"{unknown}, which '{dep.feature}' does not have (it has {list(schema.columns)})."
                )
            wanted_out = list(join_on) + [renamed[c] for c in dep.columns if renamed[c] not in join_on]
        carried: list[tuple[str, str]] = []
        for out in wanted_out:
            if out in join_on:
                carried.append((back[out], out))
                continue
            other = owners.get(out)
            if other is not None:
                raise ResolveError(
                    f"Feature '{key}': column '{out}' comes from both '{other}' and '{dep.feature}'. Keep one "
                    f"with FeatureDep(..., columns=[...]) or rename one with FeatureDep(..., rename={{'{back[out]}': "
                    f"'{dep.feature.parts[-1]}_{back[out]}'}})."
                )
            owners[out] = dep.feature
            carried.append((back[out], out))
        member_ids: tuple[str, ...] = ()
        if lineage == "aggregation":
            member_ids = tuple(upstream.id_columns)
            absent = [c for c in member_ids if c not in schema.columns]
            if absent:
                raise ResolveError(
                    f"Feature '{key}' aggregates '{dep.feature}', whose id columns {absent} are not stored."
                )
        present = set(schema.struct_fields.get(C.DATA_VERSION_BY_FIELD, ()))
        deps.append(
            DepPlan(
                index=index,
                feature=dep.feature,
                table=dep.feature.table_name,
                lineage=lineage,
                join_on=join_on,
                carried=tuple(carried),
                member_ids=member_ids,
                optional=dep.optional,
                filters=tuple(dep.filters or ()),
                dv_fields={str(f): str(f) in present for f in upstream.field_keys},
            )
        )
    for out in root_columns:
        owners.setdefault(out, key)

    dep_index = {d.feature: d.index for d in deps}
    fields: list[FieldPlan] = []
    for fspec in sorted(spec.fields, key=lambda f: str(f.key)):
        parents = tuple(
            ParentField(fq=p.fq, dep_index=dep_index[p.feature], field=str(p.field))
            for p in graph.field_parents(key, fspec.key)
            if p.feature in dep_index
        )
        fields.append(FieldPlan(str(fspec.key), f"{key}.{fspec.key}", fspec.code_version, parents))

    if not spec.deps:
        join = "inner"
    elif all(d.optional for d in spec.deps):
        join = "full"
    elif any(d.optional for d in spec.deps):
        join = "left"
    else:
        join = "inner"
    # Required deps come first so optional ones can be left-joined onto them.
    deps.sort(key=lambda d: (d.optional, d.index))
    return ResolvePlan(
        feature=key,
        table=key.table_name,
        key_columns=key_columns,
        target_ids=target_ids,
        fields=tuple(fields),
        deps=tuple(deps),
        join=join,
        missing_required=tuple(missing),
    )
