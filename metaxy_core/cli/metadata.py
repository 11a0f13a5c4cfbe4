"""``metaxy metadata status | delete | compact | copy``."""

from typing import Annotated, Any, Literal

from cyclopts import Parameter

from metaxy_core.cli._app import CTX, CliExit, emit, metadata_app, progress, stdout

OUT_OF_SYNC_EXIT = 3
"""Exit code of ``metadata status --assert-in-sync`` when a feature has new, stale or orphaned samples."""


@metadata_app.command
def status(
    features: Annotated[tuple[str, ...], Parameter(name="FEATURES")] = (),
    *,
    format: Annotated[Literal["terminal", "json"], Parameter(name=["--format", "-f"])] = "terminal",
    assert_in_sync: Annotated[bool, Parameter(negative=())] = False,
    samples: Annotated[tuple[str, ...], Parameter(name="--samples")] = (),
) -> int:
    """New, stale and orphaned samples per feature, counted inside the store.

    Root features take their samples from your pipeline, so without --samples they show as "root"
    with their stored row count, and as stale only the rows written under an older feature version
    (a field's code_version was bumped since; they will all be recomputed).

    Parameters
    ----------
    features
        Feature keys to check (default: all), e.g. video/raw.
    format
        terminal (a table) or json.
    assert_in_sync
        Exit with code 3 when any feature has new, stale or orphaned samples.
    samples
        KEY=FILE: the complete samples of root feature KEY (a Parquet, JSON or NDJSON file with
        the id columns and metaxy_provenance_by_field), so its counts are exact. Repeatable.
    """
    from rich.table import Table

    from metaxy_core.render import dumps
    from metaxy_core.status import feature_status

    graph = CTX.graph()
    for key in features:
        graph.get_feature(key)  # unknown keys fail here, naming the known ones
    given = {key: _read_samples(key, path) for key, path in (_split_samples(item) for item in samples)}
    for key in given:
        if graph.get_feature(key).spec.deps:
            raise CliExit(1, f"--samples {key}=...: '{key}' is not a root feature; only roots take samples.")
    store = CTX.store()
    total = len(features) or len(graph)
    with progress("Resolving", total) as advance:
        rows = feature_status(store, list(features) or None, graph=graph, samples=given, on_feature=advance)
    in_sync = all(r.in_sync for r in rows)
    if format == "json":
        emit(dumps({"store": CTX.store_label, "in_sync": in_sync, "features": [r.to_dict() for r in rows]}))
    else:
        table = Table(title=f"Metadata status (store '{CTX.store_label}')", title_justify="left")
        for name, justify in [
            ("Feature", "left"),
            ("Status", "left"),
            ("Rows", "right"),
            ("New", "right"),
            ("Stale", "right"),
            ("Orphaned", "right"),
        ]:
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        style = {"root": "cyan", "in sync": "green", "out of sync": "yellow"}
        for r in rows:

            def n(value: int | None) -> str:
                return "-" if value is None else str(value)

            table.add_row(
                r.key, f"[{style[r.state]}]{r.state}[/]", str(r.rows), n(r.new), n(r.stale), n(r.orphaned)
            )
        stdout().print(table)
    if assert_in_sync and not in_sync:
        bad = ", ".join(r.key for r in rows if not r.in_sync)
        raise CliExit(OUT_OF_SYNC_EXIT, f"Out of sync: {bad}.")
    return 0


def _split_samples(item: str) -> tuple[str, str]:
    key, sep, path = item.partition("=")
    if not sep or not key or not path:
        raise CliExit(1, f"--samples {item!r}: use KEY=FILE, e.g. --samples video/raw=samples.parquet.")
    return key, path


def _read_samples(key: str, path: str) -> Any:
    """A samples file as polars; the format follows the extension."""
    from pathlib import Path

    import polars as pl

    file = Path(path)
    if not file.is_file():
        raise CliExit(1, f"--samples {key}={path}: no such file.")
    readers = {
        ".parquet": pl.read_parquet,
        ".csv": pl.read_csv,
        ".json": pl.read_json,
        ".ndjson": pl.read_ndjson,
    }
    reader = readers.get(file.suffix.lower())
    if reader is None:
        raise CliExit(1, f"--samples {key}={path}: unknown format; use one of {', '.join(readers)}.")
    return reader(file)


@metadata_app.command
def delete(
    features: Annotated[tuple[str, ...], Parameter(name="FEATURES")],
    *,
    where: Annotated[str | None, Parameter(name=["--where", "-w"])] = None,
    all_rows: Annotated[bool, Parameter(name="--all", negative=())] = False,
    hard: Annotated[bool, Parameter(negative=())] = False,
    dry_run: Annotated[bool, Parameter(negative=())] = False,
) -> None:
    """Delete stored samples of one or more features.

    Soft deletion (the default) marks rows deleted (they count as absent and stay in history);
    --hard removes every stored version of the matching samples.

    Parameters
    ----------
    features
        Feature keys, e.g. video/raw.
    where
        Filter selecting the samples: an expression over the feature's columns, e.g. "video_id IN ('a', 'b')".
    all_rows
        Delete every sample (required when --where is not given).
    hard
        Remove the rows and their history instead of marking them deleted.
    dry_run
        Count the matching samples without deleting anything.
    """
    import narwhals as nw

    graph = CTX.graph()
    classes = [graph.get_feature(key) for key in features]
    if where is None and not all_rows:
        raise CliExit(1, 'Say which samples to delete: --where "<filter>", or --all for every sample.')
    if where is not None and all_rows:
        raise CliExit(1, "Give either --where or --all, not both.")
    store = CTX.store()
    mode = "hard" if hard else "soft"
    out = stdout()
    with store, progress("Deleting", len(classes)) as advance:
        for cls in classes:
            key = cls.spec.key
            if not store.has_feature(cls):
                out.print(f"{key}: nothing stored.")
                advance(str(key))
                continue
            if dry_run:
                frame = store.read(cls, filters=where, include_deleted=hard, lazy=True)
                count = (
                    int(frame.select(nw.len()).collect().item())
                    if isinstance(frame, nw.LazyFrame)
                    else len(frame)
                )
                out.print(f"{key}: would {mode}-delete {count} sample(s).")
            else:
                count = store.delete(cls, where, soft=not hard, all_rows=all_rows)
                out.print(f"{key}: {mode}-deleted {count} sample(s).")
            advance(str(key))


@metadata_app.command
def compact(
    features: Annotated[tuple[str, ...], Parameter(name="FEATURES")] = (),
    *,
    keep_versions: Annotated[int | None, Parameter(name="--keep-versions")] = None,
    older_than: Annotated[str | None, Parameter(name="--older-than")] = None,
) -> None:
    """Remove old superseded row versions from history (current rows are never touched).

    A superseded version of a sample is removed when it is not one of the sample's N most recent
    superseded versions (--keep-versions) and, with --older-than, was written longer ago than that.
    The history that is kept stays readable. Stores that resolve incrementally also prune their
    resolve bookkeeping (old in-sync checkpoints and the change events none of them needs).

    Parameters
    ----------
    features
        Feature keys to compact (default: every stored feature), e.g. video/raw.
    keep_versions
        Superseded versions to keep per sample (default 0 with --older-than).
    older_than
        Remove only versions written longer ago than this: a number and a unit, s, m, h, d or w (e.g. 30d).
    """
    graph = CTX.graph()
    classes = [graph.get_feature(key) for key in features]
    if keep_versions is None and older_than is None:
        raise CliExit(1, "Say what to keep: --keep-versions N and/or --older-than DURATION (e.g. 30d).")
    if keep_versions is not None and keep_versions < 0:
        raise CliExit(1, f"--keep-versions {keep_versions}: give a number >= 0.")
    age = None if older_than is None else _duration(older_than)
    store = CTX.store()
    out = stdout()
    with store, graph.use():
        removed = store.compact(classes or None, keep_versions=keep_versions, older_than=age)
    for key, count in removed.items():
        out.print(f"{key}: removed {count} superseded version(s).")
    if not removed:
        out.print("Nothing stored to compact.")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(text: str) -> Any:
    """``30d`` -> timedelta(days=30); units s, m, h, d, w."""
    from datetime import timedelta

    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in _UNITS or not value.replace(".", "", 1).isdigit():
        raise CliExit(
            1, f"--older-than {text!r}: give a number and a unit, s, m, h, d or w (e.g. 30d or 12h)."
        )
    return timedelta(seconds=float(value) * _UNITS[unit])


@metadata_app.command
def copy(
    features: Annotated[tuple[str, ...], Parameter(name="FEATURES")] = (),
    *,
    from_store: Annotated[str, Parameter(name="--from")],
    to_store: Annotated[str, Parameter(name="--to")],
    history: Annotated[bool, Parameter(negative=())] = False,
    snapshots: Annotated[bool, Parameter(negative=())] = False,
    batch_size: int = 100_000,
    format: Annotated[Literal["terminal", "json"], Parameter(name=["--format", "-f"])] = "terminal",
) -> None:
    """Copy stored metadata from one configured store to another (e.g. DuckDB to PostgreSQL).

    Rows keep every system column, so provenance and data versions are byte-identical and nothing
    is recomputed. Run the same command again after an interruption: it resumes. Counts are
    verified at the end.

    Parameters
    ----------
    features
        Feature keys to copy (default: every stored feature the project defines).
    from_store
        Name of the source store in metaxy.toml ([stores.NAME]).
    to_store
        Name of the target store in metaxy.toml.
    history
        Also copy superseded row versions (replayed oldest first).
    snapshots
        Also copy graph snapshots, migration records and recorded run times (for metaxy plan).
    batch_size
        Rows per atomic write in the target.
    format
        terminal (a table) or json.
    """
    from rich.table import Table

    from metaxy_core.render import dumps
    from metaxy_core.transfer import copy_metadata

    if from_store == to_store:
        raise CliExit(
            1, f"--from and --to both name store '{from_store}'; copy between two different stores."
        )
    graph = CTX.graph()
    for key in features:
        graph.get_feature(key)  # unknown keys fail here, naming the known ones
    config = CTX.config()
    source, target = config.get_store(from_store), config.get_store(to_store)
    with source:
        total = len(features) or len([k for k in source.list_features() if k in graph])
    seen: set[str] = set()
    with progress("Copying", total) as advance:

        def on_batch(key: str, done: int, rows: int) -> None:
            advance(f"{key} {done}/{rows} rows", steps=0 if key in seen else 1)
            seen.add(key)

        report = copy_metadata(
            source,
            target,
            features=list(features) or None,
            history=history,
            snapshots=snapshots,
            batch_size=batch_size,
            graph=graph,
            on_batch=on_batch,
        )
    if format == "json":
        emit(dumps({"from": from_store, "to": to_store, "features": [r.to_dict() for r in report]}))
        return
    table = Table(title=f"Copied '{from_store}' -> '{to_store}' (counts verified)", title_justify="left")
    for name in ("Feature", "Rows", "Copied", "Already there", "History"):
        table.add_column(name, justify="left" if name == "Feature" else "right", no_wrap=True)
    for r in report:
        hist = "-" if r.history_rows is None else str(r.history_rows)
        table.add_row(r.key, str(r.rows), str(r.copied), str(r.skipped), hist)
    stdout().print(table)
