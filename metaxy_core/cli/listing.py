"""``metaxy list features``."""

from typing import Annotated, Literal

from cyclopts import Parameter

from metaxy_core.cli._app import CTX, emit, list_app, stdout


@list_app.command
def features(
    *, format: Annotated[Literal["terminal", "json"], Parameter(name=["--format", "-f"])] = "terminal"
) -> None:
    """List the features the project defines, with their versions, fields and dependencies.

    Parameters
    ----------
    format
        terminal (a table) or json (full versions).
    """
    from rich.table import Table

    from metaxy_core.render import dumps
    from metaxy_core.snapshots import GraphSnapshot

    graph = CTX.graph()
    snap = GraphSnapshot.from_graph(graph, hash_length=CTX.config().hash_length)
    if format == "json":
        emit(
            dumps(
                {
                    "snapshot_version": snap.snapshot_version,
                    "features": [
                        {
                            "key": f.key,
                            "version": f.version,
                            "code_version": f.code_version,
                            "root": f.is_root,
                            "deps": list(f.deps),
                            "fields": [
                                {"key": x.key, "version": x.version, "code_version": x.code_version}
                                for x in f.fields
                            ],
                        }
                        for f in snap.features
                    ],
                }
            )
        )
        return
    table = Table(title=f"{len(snap)} features (snapshot {snap.snapshot_version})", title_justify="left")
    table.add_column("Feature", no_wrap=True)
    table.add_column("Version", no_wrap=True)
    table.add_column("Fields")
    table.add_column("Depends on")
    for f in snap.features:
        fields = "\n".join(f"{x.key} {x.version[:8]}" for x in f.fields)
        table.add_row(f.key, f.version, fields, ", ".join(f.deps) or "[dim](root)[/dim]")
    stdout().print(table)
