"""Command line of the example project.

    python -m example_project                 # generate videos if there are none, materialize everything
    python -m example_project run             # the same
    python -m example_project generate -n 5   # (re)write 5 videos
    python -m example_project edit v001 audio # change one track of one video (audio or frames)
    python -m example_project status          # new / stale / orphaned samples per feature, no run
    python -m example_project reset           # delete example_project/data (videos, metadata, Dagster home)

``run`` uses a real Dagster instance: ``$DAGSTER_HOME`` if set, else ``example_project/data/dagster_home``;
start the UI on the same instance with ``DAGSTER_HOME=<that dir> dagster dev -w workspace.yaml``.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any


def _dagster_home() -> Path:
    from example_project import media

    home = Path(os.environ.get("DAGSTER_HOME") or media.data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    widths = [max(len(str(x)) for x in [h, *(r[i] for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[Any]) -> str:
        # Text columns left-aligned, numbers right-aligned.
        return "  ".join(
            str(c).rjust(w) if isinstance(c, int) or c == "-" * w else str(c).ljust(w)
            for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def run(verbose: bool = False) -> int:
    home = _dagster_home()
    import dagster as dg

    import metaxy_core as mx
    from example_project import media

    if not media.list_video_ids():
        media.generate_videos()
        print(f"Generated {len(media.list_video_ids())} videos in {media.videos_dir()}")
    from example_project.definitions import defs, store

    instance = dg.DagsterInstance.get()
    # Dagster's step logs go to the instance either way; keep the console quiet unless asked.
    run_config = {"loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "WARNING"}}}}
    job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()
    keys = sorted(graph.materializable_asset_keys)
    partitioned = [k for k in keys if graph.get(k).is_partitioned]
    # One run for the unpartitioned assets, then one run per partition of each partitioned asset
    # (video/embedding: train, then test).
    plans: list[tuple[list[dg.AssetKey], str | None]] = [([k for k in keys if k not in partitioned], None)]
    for key in partitioned:
        partitions_def = graph.get(key).partitions_def
        assert partitions_def is not None
        plans += [([key], p) for p in partitions_def.get_partition_keys(dynamic_partitions_store=instance)]
    results = []
    for keys, partition in plans:
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            run_config=run_config,
            asset_selection=keys,
            partition_key=partition,
            raise_on_error=False,
        )
        results.append((result, partition, time.perf_counter() - started))
    rows = []
    order = {str(k): i for i, k in enumerate(mx.FeatureGraph.get_active().topological_order())}
    graph_meta: dict[str, Any] = {}
    for result, partition, _ in results:
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            key = mat.asset_key.to_user_string()
            if "metaxy/new" not in meta:
                graph_meta = meta
                continue
            changed = ", ".join(f"{k}:{v}" for k, v in meta["metaxy/changed_fields"].items()) or "-"
            rows.append(
                [
                    key + (f"[{partition}]" if partition else ""),
                    meta["metaxy/new"],
                    meta["metaxy/stale"],
                    meta["metaxy/orphaned"],
                    meta["metaxy/written"],
                    meta["dagster/row_count"],
                    changed,
                    mat.tags.get("dagster/data_version", ""),
                ]
            )
    rows.sort(key=lambda r: order.get(r[0].split("[")[0], len(order)))  # partitions stay in run order
    print()
    for result, partition, elapsed in results:
        what = f"partition {partition}" if partition else "unpartitioned assets"
        print(f"Run {result.run_id} ({what}) {'succeeded' if result.success else 'FAILED'} in {elapsed:.1f}s")
    print()
    print(
        _table(
            ["asset", "new", "stale", "orphaned", "written", "rows", "changed fields", "data version"], rows
        )
    )
    if graph_meta:
        print(
            f"\nmetaxy/graph: snapshot {graph_meta['metaxy/snapshot_version']} "
            f"(previous {graph_meta['metaxy/previous_snapshot_version']}, pushed={graph_meta['metaxy/pushed']})"
        )
    print(f"\nMetadata store : {store.describe()} -> {getattr(store.get_store(), 'database', '')}")
    print(f"Dagster home   : {home}")
    print(f"Open the UI    : DAGSTER_HOME={home} dagster dev -w workspace.yaml")
    failed = [event for result, _, _ in results for event in result.all_events if event.is_step_failure]
    for event in failed:
        print(f"\nFAILED {event.step_key}: {event.step_failure_data.error.message.strip()}", file=sys.stderr)
    return 1 if failed or not all(result.success for result, _, _ in results) else 0


def status() -> int:
    import metaxy_core as mx
    from example_project import media
    from example_project.definitions import CONFIG_FILE, store

    cfg = mx.init(CONFIG_FILE)
    graph = mx.FeatureGraph.get_active()
    rows = []
    samples = media.list_videos()
    with store.open() as s:
        for key in graph.topological_order():
            feature = graph.get_feature(key)
            inc = s.resolve_update(feature, samples=None if feature.spec.deps else samples, lazy=True)
            c = inc.counts()
            rows.append([str(key), c["new"], c["stale"], c["orphaned"]])
    print(_table(["feature", "new", "stale", "orphaned"], rows))
    print(f"\nstore: {cfg.source} -> {getattr(store.get_store(), 'database', '')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m example_project", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Dagster's step logs")
    sub.add_parser("run", help="materialize every asset (the default)")
    gen = sub.add_parser("generate", help="write fake videos")
    gen.add_argument("-n", "--videos", type=int, default=3)
    gen.add_argument("--seed", type=int, default=7)
    edit = sub.add_parser("edit", help="change one track of one video")
    edit.add_argument("video_id")
    edit.add_argument("track", choices=["audio", "frames"])
    sub.add_parser("status", help="count new / stale / orphaned samples per feature")
    sub.add_parser("reset", help="delete the data directory")
    args = parser.parse_args(argv)

    from example_project import media

    if args.command in (None, "run"):
        return run(verbose=args.verbose)
    if args.command == "generate":
        paths = media.generate_videos(args.videos, seed=args.seed)
        print(f"Wrote {len(paths)} videos to {media.videos_dir()}")
        return 0
    if args.command == "edit":
        media.edit_track(args.video_id, args.track)
        print(f"Edited the {args.track} track of {args.video_id}")
        return 0
    if args.command == "status":
        return status()
    if args.command == "reset":
        shutil.rmtree(media.data_dir(), ignore_errors=True)
        print(f"Deleted {media.data_dir()}")
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
