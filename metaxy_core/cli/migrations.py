"""``metaxy migrations generate | apply | status | alter-column | add-id-column``."""

from pathlib import Path
from typing import Annotated, Literal

from cyclopts import Parameter

from metaxy_core.cli._app import CTX, CliExit, emit, migrations_app, progress, stdout

FORMAT = Parameter(name=["--format", "-f"])


def _directory(directory: str | None) -> Path:
    cfg = CTX.config()
    return Path(directory) if directory else cfg.root / cfg.migrations_dir


@migrations_app.command
def generate(
    *, name: str | None = None, directory: Annotated[str | None, Parameter(name="--dir")] = None
) -> None:
    """Write a migration for the features whose stored provenance the current graph would change.

    Compares the code with the latest snapshot pushed to the store and writes a YAML file to the
    config's migrations_dir (default: migrations/). Review it before applying: keep only the
    changes that did not change outputs.

    Parameters
    ----------
    name
        A short description added to the migration id.
    directory
        Where to write the file (default: the config's migrations_dir).
    """
    from metaxy_core.migrations import generate_migration

    graph = CTX.graph()
    store = CTX.store()
    migration = generate_migration(store, graph=graph, directory=_directory(directory), name=name)
    out = stdout()
    if migration is None:
        out.print(
            "Nothing to migrate: no stored provenance changes between the latest snapshot and the code."
        )
        return
    out.print(f"Wrote {migration.path} ({len(migration.operations)} operation(s)):")
    for op in migration.operations:
        root = " [cyan](root: needs samples)[/cyan]" if op.root else ""
        out.print(f"  restamp {op.feature}{root}: {op.reason}")
    for info in migration.downstream:
        out.print(f"  [dim]downstream {info['feature']}: nothing to do[/dim]")
    out.print(f"Review it, then run: metaxy migrations apply {migration.id}")


@migrations_app.command
def apply(
    migration: Annotated[str | None, Parameter(name="MIGRATION")] = None,
    *,
    samples: Annotated[tuple[str, ...], Parameter(name="--samples", consume_multiple=False)] = (),
    dry_run: Annotated[bool, Parameter(negative=())] = False,
    directory: Annotated[str | None, Parameter(name="--dir")] = None,
) -> None:
    """Apply a migration: re-stamp provenance without recomputing (idempotent).

    Parameters
    ----------
    migration
        Migration id (or unique prefix) or file path; default: the newest file.
    samples
        KEY=FILE: samples of a root feature (parquet/json with id columns and
        metaxy_provenance_by_field); repeat per root feature.
    dry_run
        Show what would be re-stamped without writing.
    directory
        Where migration files live (default: the config's migrations_dir).
    """
    from metaxy_core.migrations import apply_migration, find_migration

    graph = CTX.graph()
    given: dict[str, str] = {}
    for item in samples:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise CliExit(1, f"--samples expects KEY=FILE (e.g. video/raw=videos.parquet), got '{item}'.")
        graph.get_feature(key)
        given[key] = path
    store = CTX.store()
    m = find_migration(migration, _directory(directory))
    with progress("Re-stamping", len(m.operations)) as advance:
        result = apply_migration(store, m, graph=graph, samples=given, dry_run=dry_run, on_feature=advance)
    out = stdout()
    if all(op.status == "already applied" for op in result.operations):
        out.print(
            f"Migration {m.id} is already applied ({len(result.operations)} operation(s)); nothing to do."
        )
        return
    verb = "Dry run of" if dry_run else "Applied"
    out.print(f"{verb} migration {m.id}:")
    for op in result.operations:
        extra = (
            f", {op.left_stale} row(s) already stale before the change left for recompute"
            if op.left_stale
            else ""
        )
        out.print(f"  {op.feature}: {op.status} ({op.rows} row(s) re-stamped{extra})")
    if result.snapshot_pushed:
        out.print(f"Pushed graph snapshot [cyan]{result.snapshot_pushed}[/cyan].")


@migrations_app.command(name="status")
def status_(
    *,
    format: Annotated[Literal["terminal", "json"], FORMAT] = "terminal",
    directory: Annotated[str | None, Parameter(name="--dir")] = None,
) -> None:
    """List migration files and whether the store records them as applied.

    Parameters
    ----------
    format
        terminal (a table) or json.
    directory
        Where migration files live (default: the config's migrations_dir).
    """
    from rich.table import Table

    from metaxy_core.migrations import migration_status
    from metaxy_core.render import dumps

    folder = _directory(directory)
    rows = migration_status(CTX.store(), folder)
    if format == "json":
        emit(dumps([r.to_dict() for r in rows]))
        return
    if not rows:
        stdout().print(f"No migration files in {folder}.")
        return
    table = Table(title=f"Migrations in {folder} (store '{CTX.store_label}')", title_justify="left")
    table.add_column("Migration", no_wrap=True)
    table.add_column("State")
    table.add_column("Operations")
    for r in rows:
        ops = "\n".join(
            f"{op['feature']}: " + (f"applied, {op['rows']} row(s)" if op["applied"] else "pending")
            for op in r.operations
        )
        colour = "green" if r.state == "applied" else "yellow"
        table.add_row(r.id, f"[{colour}]{r.state}[/]", ops)
    stdout().print(table)


@migrations_app.command(name="alter-column")
def alter_column(
    feature: Annotated[str, Parameter(name="FEATURE")],
    column: Annotated[str, Parameter(name="COLUMN")],
    dtype: Annotated[str, Parameter(name="TYPE")],
) -> None:
    """Convert a stored user column to another type (current rows and history), e.g. Int64 -> String.

    A write widens columns losslessly by itself (int -> float, int -> str); use this for other
    changes. Every stored value must convert, or nothing changes. Recorded in the migrations table.

    Parameters
    ----------
    feature
        Feature key, e.g. video/raw.
    column
        The stored column.
    dtype
        The new type: a polars type name (String, Int64, Float64, Boolean, Date, Datetime, ...).
    """
    from metaxy_core.migrations import alter_column_type, parse_dtype

    cls = CTX.graph().get_feature(feature)
    target = parse_dtype(dtype)
    rows = alter_column_type(CTX.store(), cls, column, target)
    stdout().print(f"Converted {feature}.{column} to {target} ({rows} current row(s), history included).")


@migrations_app.command(name="add-id-column")
def add_id_column_(
    feature: Annotated[str, Parameter(name="FEATURE")],
    column: Annotated[str, Parameter(name="COLUMN")],
    *,
    default: str,
    dtype: Annotated[str | None, Parameter(name="--type")] = None,
) -> None:
    """Give stored rows a value for an id column the feature gained (it must be in its id_columns).

    Parameters
    ----------
    feature
        Feature key, e.g. video/raw.
    column
        The new id column.
    default
        The value every stored row (and history row) gets; converted to the column's type.
    dtype
        The column's type when the feature does not annotate it (default: String).
    """
    from metaxy_core.migrations import add_id_column, parse_dtype

    cls = CTX.graph().get_feature(feature)
    target = parse_dtype(dtype) if dtype is not None else None
    if target is None:
        from metaxy_core.schema import polars_dtype

        info = cls.model_fields.get(column)
        target = (polars_dtype(info.annotation)[0] if info is not None else None) or parse_dtype("String")
    rows = add_id_column(CTX.store(), cls, column, default, target)
    stdout().print(
        f"Added id column {feature}.{column} = {default!r} to {rows} current row(s) and their history."
    )
