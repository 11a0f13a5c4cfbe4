"""SQL rendering of a :class:`ResolvePlan`.

One query computes expected provenance (upstream join + per-field hashes) and compares it with the
stored current rows in a single FULL OUTER JOIN, labelling each differing key ``new``, ``stale`` or
``orphaned``. Engine differences (hash functions, struct syntax, list filters) live in
:class:`SqlDialect`; subclasses override only what differs.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import ResolveError
from metaxy_core.lineage import (
    DepPlan,
    FieldPlan,
    ResolvePlan,
    TableSchema,
    field_column,
    removed_field_column,
    stored_count_column,
    stored_field_column,
)
from metaxy_core.provenance import check_hash_settings, full_length
from metaxy_core.stores._incremental import KeyRestriction

STATUS = "__metaxy_status"
STORED_PBF = "__metaxy_stored_pbf"
STORED_PROV = "__metaxy_stored_prov"
STATUSES = ("new", "stale", "orphaned")


def split_by_status(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The rows of a fetched diff per status (``new``, ``stale``, ``orphaned``).

    Filtering copies every row it keeps, and the big increments (a first run: all new; a code
    change: all stale) usually have one status only: then the part is the fetched frame itself and
    only the empty parts are built, so a resolve of N rows holds them once, not twice.
    """
    present = frame.get_column(STATUS).unique().to_list()
    if len(present) <= 1:
        only = present[0] if present else None
        return {status: frame if status == only else frame.clear() for status in STATUSES}
    status = pl.col(STATUS)
    return {part: frame.filter(status == part) for part in STATUSES}


def q(name: str) -> str:
    """Quote an identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class SqlDialect:
    algorithm: str = "sha256"
    hash_length: int = 16

    def __post_init__(self) -> None:
        check_hash_settings(self.algorithm, self.hash_length)

    def hash(self, parts: Sequence[str]) -> str:
        """Hash of the canonical string of SQL expressions ``parts`` (NULL parts -> '')."""
        text = "concat_ws('|', " + ", ".join(parts) + ")" if len(parts) > 1 else parts[0]
        fn = self.digest(text)
        if self.hash_length < full_length(self.algorithm):
            return f"substr({fn}, 1, {self.hash_length})"
        return fn

    def digest(self, text: str) -> str:
        """Lowercase hex digest of the SQL string expression ``text`` (its UTF-8 bytes)."""
        return f"sha256({text})" if self.algorithm == "sha256" else f"md5({text})"

    @staticmethod
    def part(expr: str) -> str:
        return f"coalesce(CAST({expr} AS VARCHAR), '')"

    @staticmethod
    def struct_field(column: str, field: str) -> str:
        return f"{column}.{q(field)}"

    @staticmethod
    def struct_pack(items: Sequence[tuple[str, str]]) -> str:
        return "struct_pack(" + ", ".join(f"{q(k)} := {v}" for k, v in items) + ")"

    @staticmethod
    def list_of_non_null(items: Sequence[str]) -> str:
        if not items:
            return "CAST([] AS VARCHAR[])"
        return "list_filter([" + ", ".join(items) + "], lambda x: x IS NOT NULL)"

    @staticmethod
    def fence(select: str) -> str:
        """``select`` as a subquery the planner computes once per row instead of inlining it.

        Expected provenance columns are referenced several times downstream (struct, sample hash,
        comparison); an engine that inlines subqueries would hash each field once per reference.
        """
        return select

    @staticmethod
    def string_list(items: Sequence[str]) -> str:
        """A list-of-strings literal from SQL string expressions ``items``."""
        return "CAST([" + ", ".join(items) + "] AS VARCHAR[])"

    @staticmethod
    def text_or_integer(type_name: str) -> bool:
        """Whether a column of engine type ``type_name`` may identify aggregation members."""
        upper = type_name.upper()
        return upper == "VARCHAR" or upper in INTEGER_TYPES

    @staticmethod
    def string_agg_ordered(expr: str, order: str) -> str:
        return f"string_agg({expr}, '|' ORDER BY {order})"

    @staticmethod
    def null_string() -> str:
        return "CAST(NULL AS VARCHAR)"

    @staticmethod
    def literal(value: str) -> str:
        """A string literal (engines differ on backslash escapes)."""
        return lit(value)

    @staticmethod
    def timestamp(value: datetime) -> str:
        """A UTC timestamp literal comparable with the stored ``metaxy_updated_at``."""
        return f"TIMESTAMPTZ {lit(value.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f+00'))}"


def _where(clauses: Sequence[str]) -> str:
    return (" WHERE " + " AND ".join(f"({c})" for c in clauses)) if clauses else ""


INTEGER_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
)


def dep_sql(d: SqlDialect, dep: DepPlan, source: str, upstream_schema: TableSchema) -> str:
    """One dependency as a subquery: carried columns plus one data-version column per upstream field."""
    dv = C.DATA_VERSION_BY_FIELD
    if dep.lineage != "aggregation":
        cols = [f"{q(src)} AS {q(out)}" for src, out in dep.carried]
        for f, present in dep.dv_fields.items():
            value = d.struct_field(q(dv), f) if present else d.null_string()
            cols.append(f"{value} AS {q(dep.dv_column(f))}")
        return f"SELECT {', '.join(cols)} FROM ({source}) AS u"
    for col in dep.member_ids:
        ctype = upstream_schema.types.get(col)
        if ctype is not None and not d.text_or_integer(ctype):
            raise ResolveError(
                f"Aggregation over '{dep.feature}': id column '{col}' has type {ctype}; aggregation needs string or "
                "integer ids (their text form orders the members)."
            )
    member = "concat_ws('|', " + ", ".join(f"CAST({q(c)} AS VARCHAR)" for c in dep.member_ids) + ")"
    group = [q(src) for src, _ in dep.carried]
    cols = [f"{q(src)} AS {q(out)}" for src, out in dep.carried]
    for f, present in dep.dv_fields.items():
        value = d.struct_field(q(dv), f) if present else d.null_string()
        agg = d.string_agg_ordered(f"__metaxy_member || '|' || {d.part(value)}", "__metaxy_member")
        cols.append(f"{d.hash([agg])} AS {q(dep.dv_column(f))}")
    inner = f"SELECT *, {member} AS __metaxy_member FROM ({source}) AS u0"
    return f"SELECT {', '.join(cols)} FROM ({inner}) AS u GROUP BY {', '.join(group)}"


def field_hash_sql(d: SqlDialect, plan: ResolvePlan, fp: FieldPlan, root_value: str | None) -> str:
    parts = [d.literal(fp.fq), d.literal(fp.code_version)]
    if root_value is not None:
        parts.append(d.part(root_value))
    else:
        deps = {dep.index: dep for dep in plan.deps}
        for p in fp.parents:
            parts.append(d.literal(p.fq))
            dep = deps.get(p.dep_index)
            parts.append(d.part(q(dep.dv_column(p.field))) if dep is not None else "''")
    return d.hash(parts)


def expected_sql(
    d: SqlDialect,
    plan: ResolvePlan,
    dep_sources: dict[int, str],
    schemas: dict[int, TableSchema],
    samples_source: str | None,
    target_filters: Sequence[str],
    samples_columns: Sequence[str] = (),
) -> str:
    """Key columns, carried columns, per-field provenance helper columns, struct and sample provenance."""
    if samples_source is not None:
        base = f"SELECT * FROM ({samples_source}) AS s"
        field_exprs = [
            (fp, field_hash_sql(d, plan, fp, d.struct_field(q(C.PROVENANCE_BY_FIELD), fp.key)))
            for fp in plan.fields
        ]
        select_carried = list(samples_columns)
    else:
        subqueries = [dep_sql(d, dep, dep_sources[dep.index], schemas[dep.index]) for dep in plan.deps]
        join_kw = {"inner": "JOIN", "left": "LEFT JOIN", "full": "FULL OUTER JOIN"}
        base = f"SELECT * FROM ({subqueries[0]}) AS d{plan.deps[0].index}"
        for dep, sub in zip(plan.deps[1:], subqueries[1:], strict=True):
            kw = join_kw["left" if dep.optional and plan.join != "full" else plan.join]
            using = ", ".join(q(c) for c in dep.join_on)
            base += f" {kw} ({sub}) AS d{dep.index} USING ({using})"
        field_exprs = [(fp, field_hash_sql(d, plan, fp, None)) for fp in plan.fields]
        select_carried = plan.carried_columns
    prov_cols = [f"{expr} AS {q(field_column(fp.key))}" for fp, expr in field_exprs]
    inner = f"SELECT {', '.join(q(c) for c in select_carried)}, {', '.join(prov_cols)} FROM ({base}) AS j"
    struct = d.struct_pack([(fp.key, q(field_column(fp.key))) for fp in plan.fields])
    sample_parts: list[str] = []
    for fp in plan.fields:
        sample_parts += [d.literal(fp.key), q(field_column(fp.key))]
    outer = (
        f"SELECT *, {struct} AS {q(C.PROVENANCE_BY_FIELD)}, {d.hash(sample_parts)} AS {q(C.PROVENANCE)} "
        f"FROM ({d.fence(inner)}) AS e0"
    )
    return f"SELECT * FROM ({d.fence(outer)}) AS e1{_where(target_filters)}"


def removed_fields(plan: ResolvePlan, schema: TableSchema | None) -> list[str]:
    """Fields stored rows may carry provenance for that the feature no longer has."""
    if schema is None:
        return []
    current = {fp.key for fp in plan.fields}
    return sorted(f for f in schema.struct_fields.get(C.PROVENANCE_BY_FIELD, ()) if f not in current)


def stored_sql(d: SqlDialect, plan: ResolvePlan, source: str, schema: TableSchema) -> str:
    """Stored current rows at increment granularity (grouped by parent for expansion).

    Besides the provenance summaries, one ``__metaxy_r_<field>`` column per removed field (see
    :func:`removed_fields`): non-NULL when a stored row still has provenance for it, so
    :func:`diff_sql` lists the field among a stale row's changed fields.
    """
    present = set(schema.struct_fields.get(C.PROVENANCE_BY_FIELD, ()))
    pbf = q(C.PROVENANCE_BY_FIELD)
    removed = removed_fields(plan, schema)

    def stored_field(f: str) -> str:
        return d.struct_field(pbf, f) if f in present else d.null_string()

    keys = ", ".join(q(c) for c in plan.key_columns)
    if plan.key_columns == plan.target_ids:
        cols = [
            keys,
            f"{pbf} AS {q(STORED_PBF)}",
            f"{q(C.PROVENANCE)} AS {q(STORED_PROV)}",
            "1 AS __metaxy_n",
        ]
        for fp in plan.fields:
            cols += [
                f"{stored_field(fp.key)} AS {q(stored_field_column(fp.key))}",
                f"1 AS {q(stored_count_column(fp.key))}",
            ]
        cols += [f"{stored_field(f)} AS {q(removed_field_column(f))}" for f in removed]
        return f"SELECT {', '.join(cols)} FROM ({source}) AS t"
    # Expansion: one row per parent; deterministic summaries of its children.
    items = [(fp.key, f"min({stored_field(fp.key)})") for fp in plan.fields]
    cols = [
        keys,
        f"{d.struct_pack(items)} AS {q(STORED_PBF)}",
        f"min({q(C.PROVENANCE)}) AS {q(STORED_PROV)}",
        f"count(DISTINCT {q(C.PROVENANCE)}) AS __metaxy_n",
    ]
    for fp in plan.fields:
        cols += [
            f"min({stored_field(fp.key)}) AS {q(stored_field_column(fp.key))}",
            f"count(DISTINCT {stored_field(fp.key)}) AS {q(stored_count_column(fp.key))}",
        ]
    cols += [f"max({stored_field(f)}) AS {q(removed_field_column(f))}" for f in removed]
    return f"SELECT {', '.join(cols)} FROM ({source}) AS t GROUP BY {keys}"


def diff_sql(
    d: SqlDialect,
    plan: ResolvePlan,
    expected: str,
    stored: str | None,
    carried: Sequence[str],
    removed: Sequence[str] = (),
) -> str:
    """Every differing key with its status; expected columns for new/stale, stored ones for orphaned.

    ``removed``: the :func:`removed_fields` the ``stored`` query (from :func:`stored_sql`) carries.
    """
    keys = ", ".join(q(c) for c in plan.key_columns)
    pbf, prov = q(C.PROVENANCE_BY_FIELD), q(C.PROVENANCE)
    non_key = [c for c in carried if c not in plan.key_columns]
    if stored is None:
        all_fields = d.string_list([d.literal(fp.key) for fp in plan.fields])
        cols = [keys, *(q(c) for c in non_key), pbf, prov]
        return (
            f"SELECT 'new' AS {STATUS}, {', '.join(cols)}, {all_fields} AS {q(C.CHANGED_FIELDS)}, "
            f"{d.null_string()} AS {q(STORED_PROV)}, {pbf} AS {q(STORED_PBF)} FROM ({expected}) AS e"
        )
    changes = {
        fp.key: f"CASE WHEN s.{q(stored_count_column(fp.key))} > 1 OR s.{q(stored_field_column(fp.key))} "
        f"IS DISTINCT FROM e.{q(field_column(fp.key))} THEN {d.literal(fp.key)} END"
        for fp in plan.fields
    }
    # a removed field changed for every stored row that still has provenance for it
    changes |= {
        f: f"CASE WHEN s.{q(removed_field_column(f))} IS NOT NULL THEN {d.literal(f)} END" for f in removed
    }
    changed = d.list_of_non_null([changes[f] for f in sorted(changes)])
    status = (
        "CASE WHEN s.__metaxy_present IS NULL THEN 'new' WHEN e.__metaxy_present IS NULL THEN 'orphaned' "
        "ELSE 'stale' END"
    )
    cols = [
        f"{status} AS {STATUS}",
        keys,
        *(f"e.{q(c)}" for c in non_key),
        f"e.{pbf}",
        f"e.{prov}",
        f"{changed} AS {q(C.CHANGED_FIELDS)}",
        f"s.{q(STORED_PROV)}",
        f"s.{q(STORED_PBF)}",
    ]
    return (
        f"SELECT {', '.join(cols)} FROM (SELECT *, 1 AS __metaxy_present FROM ({expected}) AS e0) AS e "
        f"FULL OUTER JOIN (SELECT *, 1 AS __metaxy_present FROM ({stored}) AS s0) AS s USING ({keys}) "
        f"WHERE s.__metaxy_present IS NULL OR e.__metaxy_present IS NULL "
        f"OR s.__metaxy_n > 1 OR e.{prov} IS DISTINCT FROM s.{q(STORED_PROV)}"
    )


# -- restricted resolves (incremental and partial) ------------------------------------------------
NOTHING = "1 = 0"
"""A key restriction that keeps no key: the engine skips the scans it guards."""


def in_keys(columns: Sequence[str], keys: str | None) -> str:
    """Predicate: ``columns`` (in order) are one of the rows of the SELECT ``keys``; None keeps nothing."""
    if keys is None:
        return NOTHING
    left = q(columns[0]) if len(columns) == 1 else "(" + ", ".join(q(c) for c in columns) + ")"
    return f"{left} IN (SELECT * FROM ({keys}) AS k)"


def restriction_keys(
    plan: ResolvePlan,
    samples_source: str | None,
    restriction: KeyRestriction | None,
    changed_keys: Callable[[datetime], str],
) -> str | None:
    """The SELECT of the keys a restricted resolve compares (None: no key).

    ``changed_keys(since)`` is the store's SELECT of the keys written since a checkpoint.
    """
    if restriction is None or restriction.nothing:
        return None
    if restriction.keys is not None:
        return restriction.keys
    if restriction.samples_only:
        assert samples_source is not None, "samples_only restricts a root's resolve to its samples"
        return f"SELECT {', '.join(q(k) for k in plan.key_columns)} FROM ({samples_source}) AS ks"
    assert restriction.since is not None
    return changed_keys(restriction.since)


def restrict(source: str, predicate: str | None) -> str:
    """``source`` (a SELECT) limited to the rows matching ``predicate`` (None: all rows)."""
    if predicate is None:
        return source
    return f"SELECT * FROM ({source}) AS kr WHERE {predicate}"


def dep_key_columns(plan: ResolvePlan, dep: DepPlan) -> list[str]:
    """The upstream columns of ``dep`` that hold the target's key columns, in key order."""
    source_of = {out: src for src, out in dep.carried}
    return [source_of[k] for k in plan.key_columns]


def changed_keys_sql(
    d: SqlDialect | None,
    plan: ResolvePlan,
    dep_tables: dict[int, str],
    target_table: str | None,
    since: datetime,
    *,
    stamps: Mapping[int | None, str] | None = None,
) -> str:
    """Target keys whose upstream rows or own stored row were written at or after ``since``.

    ``dep_tables`` / ``target_table``: SELECTs of the stored rows of each upstream and of the target
    (every version a store may still show; more rows only means more keys to recheck). Only for
    identity lineage, where an upstream row's key columns are the target's key columns.
    ``stamps``: ``since`` as a literal per table (dep index; None for the target), for engines that
    store times in a per-column form (SQLite: integers in each column's unit) instead of ``d``'s.
    """

    def stamp(table: int | None) -> str:
        if stamps is not None:
            return stamps[table]
        assert d is not None
        return d.timestamp(since)

    parts = []
    for dep in plan.deps:
        cols = ", ".join(
            f"{q(src)} AS {q(k)}" for src, k in zip(dep_key_columns(plan, dep), plan.key_columns, strict=True)
        )
        parts.append(
            f"SELECT {cols} FROM ({dep_tables[dep.index]}) AS c{dep.index} "
            f"WHERE {q(C.UPDATED_AT)} >= {stamp(dep.index)}"
        )
    if target_table is not None:
        keys = ", ".join(q(k) for k in plan.key_columns)
        parts.append(f"SELECT {keys} FROM ({target_table}) AS ct WHERE {q(C.UPDATED_AT)} >= {stamp(None)}")
    return f"SELECT DISTINCT * FROM ({' UNION ALL '.join(parts)}) AS changed"


def restricted_dep_sources(plan: ResolvePlan, sources: dict[int, str], keys: str | None) -> dict[int, str]:
    """Each upstream's rows limited to the target keys in the SELECT ``keys`` (identity lineage)."""
    return {
        dep.index: restrict(sources[dep.index], in_keys(dep_key_columns(plan, dep), keys))
        for dep in plan.deps
    }


# -- history retention ----------------------------------------------------------------------------
def compact_victims_sql(
    d: SqlDialect,
    history: str,
    ids: Sequence[str],
    row: str,
    keep_versions: int,
    before: datetime | None,
) -> str:
    """``row`` (a row identity such as DuckDB's ``rowid``) of every history row to remove.

    Per sample (``ids``), superseded versions rank newest first by ``metaxy_updated_at``; those past
    ``keep_versions`` and (with ``before``) written before it are removed.
    """
    parts = ", ".join(q(c) for c in ids)
    updated = q(C.UPDATED_AT)
    ranked = (
        f"SELECT {row} AS __metaxy_row, {updated} AS __metaxy_at, row_number() OVER (PARTITION BY {parts} "
        f"ORDER BY {updated} DESC, {q(C.CREATED_AT)} DESC) AS __metaxy_rank FROM {history}"
    )
    condition = f"__metaxy_rank > {int(keep_versions)}"
    if before is not None:
        condition += f" AND __metaxy_at < {d.timestamp(before)}"
    return f"SELECT __metaxy_row FROM ({ranked}) AS r WHERE {condition}"
