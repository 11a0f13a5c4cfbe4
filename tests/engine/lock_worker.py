"""Worker process for the DuckDB lock tests: ``python -m tests.engine.lock_worker MODE DATABASE OUT ...``.

Modes:
  hold SECONDS READ_ONLY    open the store (read-only if READ_ONLY == "1"), touch OUT.opened, keep it for
                            SECONDS or until OUT.release exists, exit
  enter                     open the store for writing, append "<pid> <monotonic time>" to OUT, exit
  cycle ITERATIONS INDEX    alternate writes and read-only resolves; dump the waits and holds to OUT
"""

import json
import os
import sys
import time
from pathlib import Path

import polars as pl

import metaxy_core as mx


def _raw() -> type[mx.BaseFeature]:
    class Raw(mx.Feature, spec=mx.FeatureSpec(key="raw")):
        pass

    return Raw


def _samples(tag: str, n: int = 5_000) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_uid": pl.int_range(n, eager=True).cast(pl.String),
            "metaxy_provenance_by_field": pl.struct(
                (pl.lit(tag) + (pl.int_range(n, eager=True) % 3).cast(pl.String)).alias("default"), eager=True
            ),
        }
    )


def main(mode: str, database: str, out: str, *args: str) -> None:
    with mx.FeatureGraph().use():
        raw = _raw()
        if mode == "hold":
            seconds, read_only = float(args[0]), args[1] == "1"
            with mx.DuckDBMetadataStore(database, read_only=read_only, lock_timeout=60):
                Path(out + ".opened").touch()
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline and not Path(out + ".release").exists():
                    time.sleep(0.01)
            return
        store = mx.DuckDBMetadataStore(database, hash_length=8, lock_timeout=120)
        if mode == "enter":
            with store, open(out, "a") as f:
                f.write(f"{os.getpid()} {time.monotonic()}\n")
            return
        iterations, index = int(args[0]), int(args[1])
        waits, holds = [], []
        for i in range(iterations):
            samples = _samples(f"{index}-{i}-")
            start = time.monotonic()
            if i % 2:
                # a read outside `with`: opened read-only for the call
                store.resolve_update(raw, samples=samples)
                holds.append(0.0)
                waits.append(time.monotonic() - start)
                continue
            with store:
                entered = time.monotonic()
                inc = store.resolve_update(raw, samples=samples)
                todo = pl.concat(
                    [inc.new.to_polars(), inc.stale.to_polars().drop("metaxy_changed_fields")], how="diagonal"
                )
                store.write(raw, todo)
            waits.append(entered - start)
            holds.append(time.monotonic() - entered)
        Path(out).write_text(json.dumps({"waits": waits, "holds": holds}))


if __name__ == "__main__":
    main(*sys.argv[1:])
