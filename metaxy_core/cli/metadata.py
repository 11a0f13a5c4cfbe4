"""``metaxy metadata status | delete``."""

from typing import Annotated, Literal

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
) -> int:
    """New, stale and orphaned samples per feature, counted inside the store.

    Root features take their samples from your pipeline, so here they show as "root" with their
    stored row count.

    Parameters
    ----------
    features
        Feature keys to check (default: all), e.g. video/raw.
    format
        terminal (a table) or json.
    assert_in_sync
        Exit with code 3 when any feature has new, stale or orphaned samples.
    """
    from rich.table import Table

    from metaxy_core.render import dumps
    from metaxy_core.status import feature_status

    graph = CTX.graph()
    for key in features:
        graph.get_feature(key)  # unknown keys fail here, naming the known ones
    store = CTX.store()
    total = len(features) or len(graph)
    with progress("Resolving", total) as advance:
        rows = feature_status(store, list(features) or None, graph=graph, on_feature=advance)
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
