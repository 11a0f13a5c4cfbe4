"""An external process for the Pipes tests: transcribes the videos of the increment it is given.

Run by ``dg.PipesSubprocessClient``; knows nothing of metaxy or the store. ``PIPES_MODE`` picks how
the rows go back: ``file`` (parquet at ``metaxy_rows_path``), ``message`` (a custom message) or
``none`` (no rows: the step must fail) or ``crash`` (the process fails after writing its rows).
"""

import os

import polars as pl
from dagster_pipes import open_dagster_pipes


def main() -> None:
    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        todo = pl.read_parquet(extras["metaxy_increment_path"])
        rows = todo.select("video_id", pl.format("text of {}", "video_id").alias("text"))
        pipes.log.info(f"transcribed {rows.height} video(s) of {extras['metaxy_feature']}")
        mode = os.environ.get("PIPES_MODE", "file")
        if mode in ("file", "crash"):
            rows.write_parquet(extras["metaxy_rows_path"])
        if mode == "crash":
            raise RuntimeError("the model crashed")
        elif mode == "message":
            pipes.report_custom_message({"metaxy_rows": rows.to_dicts()})
        if os.environ.get("PIPES_CHECK"):
            pipes.report_asset_check("rows_nonempty", passed=rows.height > 0, metadata={"rows": rows.height})
        pipes.report_asset_materialization(
            metadata={"model": "tiny-stt", "videos_seen": {"raw_value": todo.height, "type": "int"}},
            data_version="external-version",
        )


if __name__ == "__main__":
    main()
