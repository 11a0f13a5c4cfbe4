"""``metaxy graph push | render | diff | history``."""

from typing import Annotated, Literal

from cyclopts import Parameter

from metaxy_core.cli._app import CTX, emit, graph_app, stdout

GraphFormat = Literal["terminal", "mermaid", "dot", "json"]
DiffFormat = Literal["terminal", "mermaid", "json"]
FORMAT = Parameter(name=["--format", "-f"])


@graph_app.command
def push() -> None:
    """Record the current graph (versions and specs) in the store; a snapshot already recorded is not recorded again."""
    from metaxy_core.snapshots import push_graph_snapshot

    graph = CTX.graph()
    store = CTX.store()
    result = push_graph_snapshot(store, graph)
    out = stdout()
    if result.recorded:
        out.print(
            f"Recorded graph snapshot [cyan]{result.snapshot_version}[/cyan] ({result.features} features) "
            f"in store '{CTX.store_label}'."
        )
    else:
        when = f"{result.recorded_at:%Y-%m-%d %H:%M:%S} UTC" if result.recorded_at else "earlier"
        out.print(
            f"Graph snapshot [cyan]{result.snapshot_version}[/cyan] is already recorded in store "
            f"'{CTX.store_label}' (pushed {when}); nothing recorded."
        )


@graph_app.command
def render(
    *,
    format: Annotated[GraphFormat, FORMAT] = "terminal",
    snapshot: Annotated[
        str, Parameter(help="'current' (the code), 'latest' or a pushed snapshot version (prefix).")
    ] = "current",
) -> None:
    """Render the feature graph: keys, feature and field versions, dependencies.

    Parameters
    ----------
    format
        terminal (a tree), mermaid, dot (graphviz) or json (full versions).
    snapshot
        'current' (the code), 'latest' or a pushed snapshot version (a unique prefix is enough).
    """
    from metaxy_core.render import graph_tree, render_graph
    from metaxy_core.snapshots import resolve_snapshot

    if snapshot == "current":
        CTX.graph()
        store = None
        hash_length = CTX.config().hash_length
    else:
        CTX.config()
        store = CTX.store()
        hash_length = None
    snap = resolve_snapshot(snapshot, store=store, hash_length=hash_length)
    if format == "terminal":
        stdout().print(graph_tree(snap))
    else:
        emit(render_graph(snap, format))


@graph_app.command
def diff(
    from_: Annotated[str, Parameter(name="FROM")] = "latest",
    to: Annotated[str, Parameter(name="TO")] = "current",
    *,
    format: Annotated[DiffFormat, FORMAT] = "terminal",
) -> None:
    """Compare two graphs: added, removed and changed features and fields.

    Features whose version changed only because something upstream changed are flagged
    "upstream" (json: "upstream_only": true; mermaid: dashed outline).

    Parameters
    ----------
    from_
        'latest' (the last pushed snapshot), 'current' (the code) or a pushed snapshot version (prefix).
    to
        Same choices; default 'current'.
    format
        terminal (a table), mermaid (merged graph, coloured) or json.
    """
    from metaxy_core.diff import diff_graphs
    from metaxy_core.render import diff_table, render_diff

    if "current" in (from_, to):
        CTX.graph()
    needs_store = any(ref != "current" for ref in (from_, to))
    store = CTX.store() if needs_store else None
    result = diff_graphs(from_, to, store=store)
    if format == "terminal":
        stdout().print(diff_table(result))
    else:
        emit(render_diff(result, format))


@graph_app.command
def history(*, format: Annotated[Literal["terminal", "json"], FORMAT] = "terminal") -> None:
    """List the graph snapshots pushed to the store, newest first."""
    from rich.table import Table

    from metaxy_core.render import dumps
    from metaxy_core.snapshots import list_graph_snapshots

    CTX.config()
    infos = list(reversed(list_graph_snapshots(CTX.store())))
    if format == "json":
        emit(
            dumps(
                [
                    {
                        "snapshot_version": i.snapshot_version,
                        "recorded_at": i.recorded_at.isoformat(),
                        "features": i.feature_count,
                        "hash_length": i.hash_length,
                    }
                    for i in infos
                ]
            )
        )
        return
    if not infos:
        stdout().print(
            f"No graph snapshot pushed to store '{CTX.store_label}' yet (run `metaxy graph push`)."
        )
        return
    table = Table(title=f"Graph snapshots in store '{CTX.store_label}'", title_justify="left")
    table.add_column("Snapshot", no_wrap=True)
    table.add_column("Pushed (UTC)", no_wrap=True)
    table.add_column("Features", justify="right")
    for i in infos:
        table.add_row(i.snapshot_version, f"{i.recorded_at:%Y-%m-%d %H:%M:%S}", str(i.feature_count))
    stdout().print(table)
